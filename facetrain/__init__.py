"""The face tasks: models, losses with online mining, verification evaluation."""
