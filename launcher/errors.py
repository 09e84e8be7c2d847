"""Errors that are the user's to fix: reported as one clear line, never a stack trace."""


class JobError(Exception):
    """A problem with the job's inputs or state that the user can act on."""
