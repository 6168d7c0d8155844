"""Typed errors: every user mistake maps to one of these, never to a bare traceback."""

from __future__ import annotations


class UnspokenError(Exception):
    """Base class of every error unspoken raises on purpose."""


class InputError(UnspokenError, ValueError):
    """The content, criteria or options passed in are not usable (empty, wrong type, too long).

    ``field`` names the offending input when there is one (``"content"``, ``"criteria[2]"``), so a service can
    point at it without parsing the message.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class BundleError(UnspokenError):
    """A bundle folder is missing, damaged, or does not fit this runtime."""


class BindingError(BundleError):
    """A head was trained for a different backbone, layer, width or template than the graph it is paired with."""


class MissingExtraError(UnspokenError):
    """An operation needs an optional dependency group that is not installed."""
