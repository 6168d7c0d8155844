"""Typed errors: every user mistake maps to one of these, never to a bare traceback."""

from __future__ import annotations


class UnspokenError(Exception):
    """Base class of every error unspoken raises on purpose."""


class InputError(UnspokenError, ValueError):
    """The content, criteria or options passed in are not usable (empty, wrong type, too long)."""


class BundleError(UnspokenError):
    """A bundle folder is missing, damaged, or does not fit this runtime."""


class BindingError(BundleError):
    """A head was trained for a different backbone, layer, width or template than the graph it is paired with."""


class MissingExtraError(UnspokenError):
    """An operation needs an optional dependency group that is not installed."""
