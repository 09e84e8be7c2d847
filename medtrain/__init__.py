"""The medical and fine-grained attention tasks, on the same engine as the face tasks."""
