"""What a phase records of the data it used, so that the phases of a run can prove they read the same rows, used
the same split and learnt from the same examples: the data fingerprint and the subsample's training ids."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from emorec.data.manifest import SPLITS
from emorec.errors import InputError


def data_fingerprint(frame: pd.DataFrame, split_source: str = "given") -> dict:
    """What a phase records of the data it used: row count, split counts and sha256 fingerprints.

    ``manifest_sha256`` covers each row's id, label, text, tweet and image file
    name, in order; ``split_sha256`` each row's id and split. Two phases with
    equal fingerprints read the same rows and used the same split. ``split_source`` (see
    :func:`emorec.data.splits.assign_split`) is recorded beside them.
    """

    def sha256(*columns: pd.Series) -> str:
        digest = hashlib.sha256()
        for column in columns:
            digest.update("\x1f".join(column.astype(str)).encode("utf-8"))
            digest.update(b"\x1e")
        return digest.hexdigest()

    return {
        "rows": len(frame),
        "split_counts": {split: int((frame["split"] == split).sum()) for split in SPLITS},
        "split_source": split_source,
        "manifest_sha256": sha256(
            frame["id"], frame["label"], frame["text"], frame["group"], frame["image_path"].map(os.path.basename)
        ),
        "split_sha256": sha256(frame["id"], frame["split"]),
    }


def check_same_data(expected: dict, recorded: dict, rerun: str) -> None:
    """Refuse to combine phases that used other data than ``expected`` (a :func:`data_fingerprint`).

    ``recorded`` maps each earlier phase to ``(path of its .args.json, its
    parsed content)``. ``rerun`` says which phases to rerun, in order. Raises
    one :class:`InputError` naming every phase that read another manifest or
    used another split (or recorded none: a run from before fingerprints).
    """
    problems = []
    for phase, (path, flags) in recorded.items():
        theirs = flags.get("data")
        if theirs is None:
            problems.append(f"{phase} ({path}) recorded no data fingerprint (a run from an older version)")
        elif theirs["manifest_sha256"] != expected["manifest_sha256"]:
            problems.append(
                f"{phase} ({path}) read other manifest rows ({theirs['rows']:,} rows, sha256 "
                f"{theirs['manifest_sha256'][:12]}; now {expected['rows']:,}, {expected['manifest_sha256'][:12]})"
            )
        elif theirs["split_sha256"] != expected["split_sha256"]:
            problems.append(
                f"{phase} ({path}) used another split (sha256 {theirs['split_sha256'][:12]}, "
                f"{_counts_text(theirs['split_counts'])}; now {expected['split_sha256'][:12]}, "
                f"{_counts_text(expected['split_counts'])}): the split was redrawn (--resplit) or "
                "the manifest's split column changed"
            )
    if problems:
        raise InputError(
            "inputs from phases that used other data than this run:\n"
            + "\n".join(f"- {problem}" for problem in problems)
            + f"\nRerun {rerun} on the manifest and split as they are now."
        )


def training_ids_fingerprint(ids: Sequence[str]) -> dict:
    """What a run's ``.args.json`` records of its subsampled training ids: their ``count`` and the ``sha256`` of
    their lines (the ids themselves go to :func:`training_ids_file`, which grows with the data)."""
    return {"count": len(ids), "sha256": hashlib.sha256("\n".join(ids).encode()).hexdigest()}


def training_ids_file(args_json: Path) -> Path:
    """The file beside a phase's ``<phase>.args.json`` that lists its subsampled training ids, one per line."""
    return args_json.with_name(args_json.name.replace(".args.json", ".training_ids.txt"))


def read_training_ids(args_json: Path, recorded: dict) -> list[str] | None:
    """The training ids a phase subsampled (None when it trained on the whole train split), read from
    :func:`training_ids_file` and checked against the fingerprint in its parsed ``.args.json`` ``recorded``;
    :class:`InputError` when the file is missing or other than the one the phase wrote."""
    fingerprint = recorded.get("training_ids")
    if fingerprint is None:
        return None
    path = training_ids_file(args_json)
    rerun = f"Run the phase that wrote {args_json.name} again."
    if not isinstance(fingerprint, dict):
        raise InputError(f"{args_json} lists its training ids inline, as releases before the ids file did. {rerun}")
    try:
        ids = path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise InputError(f"{path}: the training ids of {args_json.name} cannot be read ({error}). {rerun}") from error
    if training_ids_fingerprint(ids) != fingerprint:
        raise InputError(f"{path} is not the list of training ids that {args_json.name} records. {rerun}")
    return ids


def _counts_text(counts: dict) -> str:
    return ", ".join(f"{split} {counts.get(split, 0):,}" for split in SPLITS)
