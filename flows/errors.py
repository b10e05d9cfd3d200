"""The platform's domain errors: bad input that no retry can fix, each naming what was wrong."""

from __future__ import annotations


class TripDataError(ValueError):
    """A trip-record file that cannot be used; the message names the file and the problem."""

    def __init__(self, source: str, problem: str) -> None:
        super().__init__(f"{source}: {problem}")
        self.source, self.problem = source, problem


class SchemaMismatch(TripDataError):
    """A file whose columns a registered version cannot read: which column, which types."""


class NothingPublished(LookupError):
    """No month of trip records to work on (TLC has not published one in the window looked at)."""


class InvalidParameters(ValueError):
    """A flow was asked for something that cannot work (a month that is not YYYY-MM, ...)."""


class NotPromotable(RuntimeError):
    """A version that may not be promoted or used (failed run, missing metrics, ...)."""


class MissingModel(LookupError):
    """No registered version where one is needed (an alias nobody has set yet, ...)."""


class UntrustedVersion(NotPromotable):
    """A registered version the stack did not make or approve, or whose files changed since:
    never loaded (loading a version imports its code)."""

    def __init__(self, model_name: str, version: str, problem: str) -> None:
        super().__init__(f"version {version} of {model_name} refused: {problem}")
        self.model_name, self.version, self.problem = model_name, str(version), problem


# Errors that another attempt cannot fix: retrying them only delays the message.
PERMANENT_ERRORS: tuple[type[Exception], ...] = (
    TripDataError,
    InvalidParameters,
    NotPromotable,
    MissingModel,
    NothingPublished,
)
