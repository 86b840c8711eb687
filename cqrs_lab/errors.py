"""The error family: one base class, and a subclass for each way a user's request can fail.

Every message names the offending thing (stream, file, position, field), so a learner can act on it.
"""

from __future__ import annotations


class CqrsLabError(Exception):
    """Base of every error cqrs_lab raises on purpose."""


class ConcurrencyError(CqrsLabError):
    """An append expected a stream version that is no longer the stream's version."""

    def __init__(self, stream_id: str, expected: int, actual: int) -> None:
        self.stream_id, self.expected, self.actual = stream_id, expected, actual
        wanted = "to not exist yet" if expected == 0 else f"at version {expected}"
        found = "does not exist" if actual == 0 else f"is at version {actual}"
        super().__init__(f"stream {stream_id!r} was expected {wanted}, but it {found}")


class DuplicateEventError(CqrsLabError):
    """An append carried an event_id that the log (or the same batch) already holds."""

    def __init__(self, event_id: str) -> None:
        self.event_id = event_id
        super().__init__(f"event_id {event_id!r} is already in the log")


class InvalidEventError(CqrsLabError, ValueError):
    """An event handed to the log is malformed (empty stream id, payload not a JSON object, ...)."""


class StoreLockedError(CqrsLabError):
    """Another process holds the lock of a store for longer than we were willing to wait."""


class CorruptLogError(CqrsLabError):
    """A segment file is unreadable, tampered with, or inconsistent with the rest of the log."""


class LogNotFoundError(CqrsLabError, FileNotFoundError):
    """There is no event log (or lab) at the given path."""


class DomainRejection(CqrsLabError):
    """A command broke a business rule; `reason` says which, in words a learner understands."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)
