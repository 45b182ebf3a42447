"""Error kinds that decide what happens to a message whose handling failed."""

from __future__ import annotations


class EventRejected(ValueError):
    """A well-formed event that breaks a business rule: never retried, sent to the DLQ.

    `reason` is one line a user can act on (which field, which value, what was expected).
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TransientError(RuntimeError):
    """A failure that will pass by itself (a dependency is down): retried, never skipped."""
