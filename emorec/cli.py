"""Command-line glue shared by the phase scripts and the package's tools."""

from __future__ import annotations

import logging
import sys
from typing import Callable, Sequence

from emorec.errors import InputError


def setup_logging(verbose: bool = False) -> None:
    """Send the package's log lines to stderr as ``[emorec] message`` (INFO, or DEBUG if ``verbose``)."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="[%(name)s] %(message)s",
        stream=sys.stderr,
        force=True,
    )


def run(main: Callable[[Sequence[str] | None], object], argv: Sequence[str] | None = None) -> int:
    """Call ``main(argv)`` and turn an :class:`InputError` into ``error: ...`` on stderr and status 2.

    Returns the exit status for ``sys.exit``: 0 on success (or ``main``'s own
    integer result), 2 for a user error. Any other exception propagates with
    its traceback, since it is a bug.
    """
    try:
        result = main(argv)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return result if isinstance(result, int) else 0
