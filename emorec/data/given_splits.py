"""A published split, reused as is: the split of each id, from one ``id,split`` CSV or from three id lists.

Published splits come in two shapes: one table of ids and their splits (the
form of ``<manifest stem>.split.csv``), or a folder with one id list per split
(``train.txt``, ``val.txt``, ``test.txt``; ``dev.txt`` or ``valid.txt`` for
val), one id per line.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from emorec.data.manifest import SPLITS
from emorec.errors import InputError, list_some
from emorec.fileio import not_utf8, read_csv_table, record_lines

LIST_NAMES = {"train": ("train.txt",), "val": ("val.txt", "dev.txt", "valid.txt"), "test": ("test.txt",)}


def read_split_file(path: str | os.PathLike) -> pd.Series:
    """Read a given split: a Series of split names (train/val/test) indexed by id (str).

    ``path`` is an ``id,split`` CSV or a folder of id lists (see the module's notes). Raises
    :class:`InputError` for a missing file or list, a bad split value, or an id given twice (naming them).
    """
    path = Path(path)
    if path.is_dir():
        ids, splits = [], []
        for split, names in LIST_NAMES.items():
            found = [path / name for name in names if (path / name).is_file()]
            if not found:
                raise InputError(
                    f"{path}: no {' or '.join(names)}; a split folder holds one id list per split "
                    f"({', '.join(names[0] for names in LIST_NAMES.values())}), one id per line."
                )
            listed = _id_list(found[0])
            ids += listed
            splits += [split] * len(listed)
        given = pd.DataFrame({"id": ids, "split": splits})
    elif path.is_file():
        given = read_csv_table(path, "split file")
        if not {"id", "split"} <= set(given.columns):
            raise InputError(f"{path}: a split file needs columns id,split; found {', '.join(given.columns)}.")
        given = given.assign(id=given["id"].str.strip(), split=given["split"].str.strip().str.lower())
        bad = given.index[~given["split"].isin(SPLITS)]
        if len(bad):
            lines = record_lines(path)
            raise InputError(
                f"{path}: {len(bad)} row(s) with a split other than {', '.join(SPLITS)}:\n"
                + list_some(f"line {lines[row]}: {given.at[row, 'split']!r}" for row in bad)
            )
    else:
        raise InputError(
            f"split file not found: {path} (an id,split CSV, or a folder with train.txt, val.txt and test.txt)."
        )
    repeated = given["id"][given["id"].duplicated(keep=False)]
    if len(repeated):
        raise InputError(
            f"{path}: {repeated.nunique()} id(s) given more than once:\n" + list_some(sorted(set(repeated)))
        )
    return given.set_index("id")["split"]


def _id_list(path: Path) -> list[str]:
    """The ids of a list file: the first field of each non-empty line (a CSV's header ``id`` is skipped)."""
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as error:
        raise InputError(not_utf8(path, "list of ids")) from error
    ids = [line.replace(",", " ").split()[0] for line in lines if line.strip()]
    return ids[1:] if ids[:1] == ["id"] else ids
