"""The members' probability files (``id,split,label,<one column per class>``), read and joined on ``id``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from emorec.errors import InputError, list_some

KEY_COLUMNS = ["id", "split", "label"]


def read_probability_files(paths: Mapping[str, Path]) -> tuple[pd.DataFrame, list[str], np.ndarray]:
    """Read and join the members' probability files (``{member: path}``) on ``id``.

    Returns ``(rows, class_names, probabilities)``: ``rows`` has ``id, split,
    label`` (class index) in the first file's order, ``probabilities`` is
    (members, rows, classes) with NaN where a member has no score. Raises
    :class:`InputError` when the files disagree on ids, splits, labels or
    class columns, or one is malformed.
    """
    tables = {member: _read_probability_file(path, member) for member, path in paths.items()}
    (first_member, first), others = next(iter(tables.items())), list(tables.items())[1:]
    class_names = list(first.columns[3:])
    for member, table in others:
        where = f"{paths[member]} and {paths[first_member]}"
        if list(table.columns[3:]) != class_names:
            raise InputError(f"{where} have different class columns: {list(table.columns[3:])} vs {class_names}")
        missing, extra = set(first["id"]) - set(table["id"]), set(table["id"]) - set(first["id"])
        if missing or extra:
            raise InputError(
                f"{where} hold different ids ({len(missing)} only in the second, {len(extra)} only in the first):\n"
                f"{list_some(sorted(missing | extra))}\nRun every phase on the same manifest (and --run-name)."
            )
        aligned = table.set_index("id").loc[first["id"]]
        for column in ("split", "label"):
            differ = first["id"][aligned[column].to_numpy() != first[column].to_numpy()]
            if len(differ):
                raise InputError(
                    f"{where} disagree on the {column} of {len(differ)} id(s):\n"
                    f"{list_some(differ.tolist())}\nRun every phase on the same manifest and split."
                )
        tables[member] = aligned.reset_index()
    unknown = ~first["label"].isin(class_names)
    if unknown.any():
        raise InputError(
            f"{paths[first_member]}: labels that are not class columns: {sorted(set(first['label'][unknown]))}"
        )
    probabilities = np.stack([table[class_names].to_numpy(np.float64) for table in tables.values()])
    rows = pd.DataFrame(
        {
            "id": first["id"],
            "split": first["split"],
            "label": first["label"].map({name: i for i, name in enumerate(class_names)}).to_numpy(),
        }
    )
    return rows, class_names, probabilities


def _read_probability_file(path: Path, member: str) -> pd.DataFrame:
    """One member's probability file, refused (naming the phase to rerun) when malformed or ids repeat."""
    try:
        table = pd.read_csv(path, dtype={"id": str, "split": str, "label": str})
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as error:
        raise InputError(
            f"{path}: cannot be read as a probability file ({error}). It is written by "
            f"`python {member}.py`: run that phase again."
        ) from error
    if list(table.columns[:3]) != KEY_COLUMNS or table.shape[1] < 5:
        raise InputError(
            f"{path}: not a probability file (columns id,split,label,<one per class>), got "
            f"{list(table.columns)}. It is written by `python {member}.py`: run that phase again."
        )
    duplicated = table["id"][table["id"].duplicated()]
    if len(duplicated):
        raise InputError(f"{path}: {len(duplicated)} duplicated id(s):\n{list_some(duplicated.tolist())}")
    return table
