"""Errors that are the user's to fix: reported as one clear line, never a stack trace."""

import contextlib
from collections.abc import Iterator


class JobError(Exception):
    """A problem with the job's inputs or state that the user can act on."""


@contextlib.contextmanager
def reported_as_job_error(*kinds: type[BaseException]) -> Iterator[None]:
    """Inside, exceptions of ``kinds`` (a missing shard folder, weights file, a config a dataset
    cannot satisfy) become ``JobError``s with the same message."""
    try:
        yield
    except kinds as exc:
        raise JobError(str(exc)) from exc
