"""The command-line interface."""

from macrohard.cli.app import app

__all__ = ["app"]
