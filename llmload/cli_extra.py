"""Registration point for analysis subcommands (history, trends, compare, recommend, ...).

Each feature module exposes ``add_subcommand(subparsers)`` and registers its handler with ``llmload.cli.command``;
this module lists them so ``cli.py`` stays small.
"""

from __future__ import annotations

from typing import Any


def add_subcommands(subparsers: Any) -> None:
    """Add every feature module's subcommands."""
    from llmload import compare  # history, trends, compare

    compare.add_subcommand(subparsers)
    from llmload import recommend  # recommend

    recommend.add_subcommand(subparsers)
    from llmload import consistency  # consistency

    consistency.add_subcommand(subparsers)
