"""Atomic file writing (a crash never leaves a half-written output behind), and reading the CSV files a user gives."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from emorec.errors import InputError

_UMASK = os.umask(0)
os.umask(_UMASK)
csv.field_size_limit(2**31 - 1)  # a tweet's text is short, but a damaged file may hold a huge field: read, then judge


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``.

    Write the whole file to the yielded path inside the ``with`` block. If the
    block raises, the temporary file is removed and ``path`` is left as it was.
    The parent folder is created when missing.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Keep the suffix: some writers (Keras' model.save) insist on it.
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes it private; give it the usual mode
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_csv_atomic(frame, path: str | os.PathLike) -> None:
    """Write a pandas DataFrame to ``path`` as CSV (no index) atomically."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def write_json_atomic(path: str | os.PathLike, data) -> None:
    """Write ``data`` as indented JSON (UTF-8) to ``path`` atomically."""
    write_text_atomic(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def read_csv_table(path: str | os.PathLike, what: str = "CSV file", lowercase: bool = True):
    """Read the UTF-8 CSV file ``path`` (a byte-order mark is allowed) as a DataFrame of strings, empty cells as "".

    Column names are stripped, and lower-cased with ``lowercase``. Raises :class:`InputError`
    naming the file (and calling it ``what``) when it cannot be read: not
    UTF-8, not a table, empty, or a column named twice.
    """
    import pandas as pd

    path = Path(path)
    try:
        with open(path, encoding="utf-8-sig", newline="") as lines:
            header = next(csv.reader(lines), [])
        table = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise InputError(not_utf8(path, what)) from error
    except (ValueError, csv.Error, OverflowError, OSError) as error:  # pandas' errors are ValueErrors
        raise InputError(
            f"{path}: the {what} cannot be read as a UTF-8 CSV file ({type(error).__name__}: {_short(error)})"
        ) from error

    def name(column) -> str:
        return str(column).strip().lower() if lowercase else str(column).strip()

    names = [name(column) for column in header]
    repeated = sorted({column for column in names if names.count(column) > 1})
    if repeated:
        raise InputError(f"{path}: the {what} names column(s) {', '.join(map(repr, repeated))} more than once.")
    table.columns = [name(column) for column in table.columns]
    return table


def not_utf8(path: str | os.PathLike, what: str, limit: int = 10) -> str:
    """The message for the text file ``path`` (a ``what``) that is not UTF-8: its first ``limit`` offending lines,
    each with the column (in characters, as an editor counts them) and the byte that cannot be read."""
    from emorec.errors import list_some

    bad = []
    with open(path, "rb") as lines:
        for number, line in enumerate(lines, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as error:
                column = len(line[: error.start].decode("utf-8", errors="replace")) + 1
                bad.append(f"line {number}, column {column}: byte 0x{line[error.start]:02x}")
    return (
        f"{path}: the {what} is not UTF-8 text ({len(bad)} line(s) with bytes UTF-8 cannot read):\n"
        + list_some(bad, limit)
        + "\n  what to do: save it as UTF-8 (a spreadsheet's 'CSV UTF-8', or `iconv -f latin1 -t utf-8`)"
    )


def record_lines(path: str | os.PathLike) -> list[int]:
    """The line (1-based, as an editor shows it) on which each data record of the CSV file ``path`` starts, in the
    order pandas reads them: a quoted text that spans lines moves every later record down. Blank lines are no
    record, as for pandas."""
    starts, previous = [], 1
    with open(path, encoding="utf-8-sig", newline="") as lines:
        reader = csv.reader(lines)
        next(reader, None)  # the header
        previous = reader.line_num
        for record in reader:
            if record:
                starts.append(previous + 1)
            previous = reader.line_num
    return starts


def _short(error: Exception, limit: int = 300) -> str:
    text = str(error)
    return text if len(text) <= limit else text[:limit] + "..."
