"""The build's exceptions; each message says what to do about it."""

from __future__ import annotations


class BuildError(Exception):
    """A stage cannot go on; the message names the input at fault and the fix."""


class RecipeError(BuildError):
    """The recipe file is missing, not TOML, or has an unknown or invalid setting."""
