"""The one exception type for errors a user can cause and fix.

A phase script prints an :class:`InputError` as ``error: <message>`` without a
traceback and exits with status 2 (see :func:`emorec.cli.run`); any other
exception is a bug and keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Iterable

MAX_LISTED = 10


class InputError(Exception):
    """Bad input (a missing file, a malformed manifest, a bad flag) that the user can fix."""


def list_some(items: Iterable[object], limit: int = MAX_LISTED) -> str:
    """Return the first ``limit`` items, one per indented line, plus how many were left out.

    Takes any iterable of printable items; returns a string for an error message.
    """
    items = list(items)
    lines = [f"  {item}" for item in items[:limit]]
    if len(items) > limit:
        lines.append(f"  ... and {len(items) - limit} more ({len(items)} in all)")
    return "\n".join(lines)
