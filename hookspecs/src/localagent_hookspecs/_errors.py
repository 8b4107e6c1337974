"""The one exception a plugin raises to turn a failure into a coded error reply."""

from __future__ import annotations

__all__ = ["MessageError"]


class MessageError(Exception):
    """A failure that the client should see as ``{"error": {"code", "message"}}``.

    Raise it from an ``on_message`` implementation when a request cannot be
    served for a reason the client can act on (bad arguments, a missing file,
    a program that is not allowed). Any other exception is reported through
    ``on_error`` and reaches the client as ``internal_error``.

    Attributes:
        code: A short, stable, machine-readable code such as ``"bad_request"``.
        message: A human-readable explanation, safe to show to the client.
        details: Optional JSON-serialisable extra information.
    """

    def __init__(self, code: str, message: str, *, details: object = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details

    def __repr__(self) -> str:
        return f"MessageError({self.code!r}, {self.message!r})"
