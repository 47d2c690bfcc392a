"""Convert MVSA-Single or MVSA-Multiple, as distributed, into a manifest with the field's labels and split.

MVSA (Niu et al., 2016) ships ``data/<ID>.jpg`` and ``data/<ID>.txt`` (raw
bytes, often not UTF-8) and ``labelResultAll.txt``: a header line, then
``<ID>\\t<text label>,<image label>`` per tweet; MVSA-Multiple has three such
columns, one per annotator, and is recognised from the file itself. The field's
protocol (Xu and Mao, 2017; :mod:`emorec.mvsa_labels`) turns each tweet's labels
into one. The texts are decoded per file (:mod:`emorec.legacy_text`). The split
is the literature's random 8:1:1, stratified by label and seeded, drawn here
once and written into the manifest's ``split`` column, or taken from
``--split-file``. What the conversion found (every rule's count, the encodings,
the rows left out and why) goes to the log and to ``<manifest stem>.conversion.json``.

Usage::

    python -m emorec.mvsa --root MVSA_Single --out data_files/mvsa_single.csv
"""

from __future__ import annotations

import argparse
import codecs
import logging
import os
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from emorec.cli import ArgumentParser, HelpFormatter, run, setup_logging
from emorec.data.given_splits import read_split_file
from emorec.data.manifest import SPLITS, class_names_path
from emorec.data.splits import draw_split
from emorec.errors import InputError
from emorec.fileio import write_csv_atomic, write_json_atomic, write_text_atomic
from emorec.legacy_text import DEFAULT_LEGACY_ENCODINGS, decode_text
from emorec.mvsa_labels import CLASS_NAMES, apply_protocol, read_label_file

log = logging.getLogger("emorec")

LABEL_FILE = "labelResultAll.txt"
DATA_FOLDER = "data"
FRACTIONS = (0.8, 0.1, 0.1)
LISTED = 5  # ids named in a log line about a problem


def conversion_record_path(manifest_path: str | os.PathLike) -> Path:
    """Where the converter records what it found: ``<manifest stem>.conversion.json`` beside the manifest."""
    manifest_path = Path(manifest_path)
    return manifest_path.with_name(f"{manifest_path.stem}.conversion.json")


def check_folder(root: Path) -> None:
    """Raise one :class:`InputError` naming everything an MVSA folder lacks, and what such a folder holds."""
    missing = [
        name
        for name, present in (
            (f"{root}/{LABEL_FILE}", (root / LABEL_FILE).is_file()),
            (f"{root}/{DATA_FOLDER}/", (root / DATA_FOLDER).is_dir()),
        )
        if not present
    ]
    if missing:
        raise InputError(
            f"{root} is not an MVSA folder: missing {' and '.join(missing)}.\n"
            f"An MVSA-Single or MVSA-Multiple folder, as distributed, holds {LABEL_FILE} (a header line, then "
            f"'<ID><TAB><text label>,<image label>' per tweet, three such columns in MVSA-Multiple) and "
            f"{DATA_FOLDER}/ with <ID>.jpg and <ID>.txt for each tweet. Pass that folder as --root."
        )


def convert(
    root: str | os.PathLike,
    out: str | os.PathLike,
    seed: int = 0,
    split_file: str | os.PathLike | None = None,
    legacy_encodings: Sequence[str] = DEFAULT_LEGACY_ENCODINGS,
) -> tuple[pd.DataFrame, dict]:
    """Convert the MVSA folder ``root`` into the manifest ``out``, its class names and its conversion record.

    The labels go through the field's protocol (:func:`emorec.mvsa_labels.apply_protocol`); each text file is
    decoded (:func:`emorec.legacy_text.decode_text`, trying ``legacy_encodings`` where it is not UTF-8); the pairs
    that cannot be used (no files, no text, no image, an empty text, no label) are counted, named in the log and
    left out. The split is drawn with ``seed`` (8:1:1, stratified by label) or read from ``split_file``
    (:func:`emorec.data.given_splits.read_split_file`). Returns the manifest as written (label,text,image,id,split)
    and the record. Nothing is written when the input is bad.
    """
    root, out = Path(root), Path(out)
    check_folder(root)
    labels = read_label_file(root / LABEL_FILE)
    kept, rules = apply_protocol(labels)
    files = _files_by_id(root / DATA_FOLDER)
    problems = {
        "labelled, no files (left out)": sorted(set(kept.index) - set(files), key=_id_order),
        "no text file (left out)": [],
        "no image file (left out)": [],
        "empty text (left out)": [],
        "undecodable text (kept, with U+FFFD)": [],
        "files with no label (left out)": sorted(set(files) - set(labels["id"]), key=_id_order),
    }
    rows, encodings = _usable_pairs(root, kept, files, legacy_encodings, problems)
    _log_counts(labels, rules, encodings, problems)
    if not rows:
        raise InputError(
            f"{root}: no usable image+text pair (every labelled tweet lacks a file, a text or a label "
            "the protocol keeps); see the counts above."
        )
    manifest = pd.DataFrame(rows)

    manifest, split_source = _with_split(manifest, root, seed, split_file, problems)

    record = {
        "source": str(root),
        "layout": labels.attrs["layout"],
        "pairs_in": len(labels),
        "rules": rules,
        "encodings": dict(encodings),
        "problems": {kind: ids for kind, ids in problems.items() if ids},
        "rows": len(manifest),
        "classes": manifest["label"].value_counts().reindex(CLASS_NAMES, fill_value=0).to_dict(),
        "splits": manifest["split"].value_counts().reindex(SPLITS, fill_value=0).to_dict(),
        "split": split_source,
    }
    _write_conversion(out, root, manifest, record)
    return manifest, record


def _usable_pairs(root: Path, kept: pd.Series, files: dict, legacy_encodings, problems: dict) -> tuple[list, Counter]:
    """The manifest rows of the ``kept`` tweets (id -> label) whose text and image ``files`` exist and whose text
    is not empty, and how many texts each encoding decoded; the others added to ``problems``."""
    encodings, rows = Counter(), []
    for tweet, label in kept.items():
        present = files.get(tweet, {})
        if not present:
            continue
        if ".txt" not in present or ".jpg" not in present:
            problems["no text file (left out)" if ".txt" not in present else "no image file (left out)"].append(tweet)
            continue
        text, encoding = decode_text((root / DATA_FOLDER / present[".txt"]).read_bytes(), legacy_encodings)
        encodings[encoding] += 1
        if encoding == "undecodable":
            problems["undecodable text (kept, with U+FFFD)"].append(tweet)
        if not text.strip():
            problems["empty text (left out)"].append(tweet)
            continue
        rows.append({"label": label, "text": text.strip(), "image": f"{DATA_FOLDER}/{present['.jpg']}", "id": tweet})
    return rows, encodings


def _with_split(manifest: pd.DataFrame, root: Path, seed: int, split_file, problems: dict) -> tuple[pd.DataFrame, dict]:
    """``manifest`` with its split, drawn with ``seed`` or read from ``split_file`` (the rows it does not list
    left out and added to ``problems``), and where the split came from."""
    if split_file is None:
        try:
            manifest["split"] = draw_split(manifest.assign(group=manifest["id"]), seed, FRACTIONS).to_numpy()
        except InputError as error:
            raise InputError(f"{root}: {error}") from error
        split_source = {
            "drawn": {
                "seed": seed,
                "fractions": list(FRACTIONS),
                "stratified_by": "label",
                "grouped_by": "tweet and normalised text",
            }
        }
    else:
        manifest, unlisted = _take_split(manifest, read_split_file(split_file))
        problems["not in the split file (left out)"] = unlisted
        split_source = {"file": str(split_file)}
    return manifest, split_source


def _write_conversion(out: Path, root: Path, manifest: pd.DataFrame, record: dict) -> None:
    """Write the manifest ``out`` (image paths relative to ``root``), its class names and conversion record."""
    write_csv_atomic(manifest[["label", "text", "image", "id", "split"]], out)
    write_text_atomic(class_names_path(out), "\n".join(CLASS_NAMES) + "\n")
    write_json_atomic(conversion_record_path(out), record)
    log.info(
        "wrote %s: %d pairs (%s), split %s, classes %s",
        out,
        len(manifest),
        ", ".join(f"{name} {n}" for name, n in record["classes"].items()),
        ", ".join(f"{name} {n}" for name, n in record["splits"].items()),
        ", ".join(CLASS_NAMES),
    )
    log.info("image paths are relative to %s: pass --manifest %s --image-root %s to the phases", root, out, root)


def _files_by_id(data: Path) -> dict[str, dict[str, str]]:
    """The ids of ``data/``, each with its files by suffix: ``{id: {".jpg": "<ID>.jpg", ".txt": "<ID>.txt"}}`` (the
    suffix in lower case, the name as it is: a copy may write ``.JPG``)."""
    files: dict[str, dict[str, str]] = {}
    with os.scandir(data) as entries:
        for entry in entries:
            stem, suffix = os.path.splitext(entry.name)
            if suffix.lower() in (".jpg", ".txt") and entry.is_file():
                files.setdefault(stem, {})[suffix.lower()] = entry.name
    return files


def _id_order(tweet: str) -> tuple:
    return (0, int(tweet), "") if tweet.isdigit() else (1, 0, tweet)


def _log_counts(labels: pd.DataFrame, rules: dict, encodings: Counter, problems: dict) -> None:
    log.info("%s: %s layout, %d labelled pairs in", LABEL_FILE, labels.attrs["layout"], len(labels))
    for rule, count in rules.items():
        log.info("  %s: %d", rule, count)
    log.info("texts decoded: %s", ", ".join(f"{name} {n}" for name, n in encodings.most_common()))
    for kind, ids in problems.items():
        if ids:
            log.warning(
                "%d %s: %s%s",
                len(ids),
                kind,
                ", ".join(ids[:LISTED]),
                f" ... ({len(ids) - LISTED} more in the conversion record)" if len(ids) > LISTED else "",
            )


def _take_split(manifest: pd.DataFrame, given: pd.Series) -> tuple[pd.DataFrame, list[str]]:
    """Give each row its split from ``given`` (split by id); rows it does not list are left out (returned)."""
    listed = manifest["id"].isin(given.index)
    unlisted = manifest.loc[~listed, "id"].tolist()
    absent = sorted(set(given.index) - set(manifest["id"]), key=_id_order)
    if absent:
        log.warning(
            "%d id(s) of the split file are not among the converted pairs (no files, or dropped by the protocol): %s",
            len(absent),
            ", ".join(absent[:LISTED]),
        )
    manifest = manifest[listed].assign(split=lambda frame: frame["id"].map(given))
    empty = [name for name in SPLITS if not (manifest["split"] == name).any()]
    if empty:
        raise InputError(
            f"the split file leaves {', '.join(empty)} without a single converted pair; every phase "
            "needs train, val and test rows. Is it the split of this data set?"
        )
    return manifest, unlisted


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the converter's command line."""
    parser = ArgumentParser(
        prog="python -m emorec.mvsa",
        description="Convert MVSA-Single or MVSA-Multiple (labelResultAll.txt, data/<ID>.jpg and .txt) into a "
        "manifest with the field's label protocol and an 8:1:1 split (docs/data.md#mvsa).",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--root", required=True, help="the MVSA folder (holds labelResultAll.txt and data/)")
    parser.add_argument(
        "--out",
        default="data_files/mvsa_single.csv",
        help="the manifest CSV to write; its class names and conversion record go beside it",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="the seed of the 8:1:1 split, stratified by label (ignored with --split-file)",
    )
    parser.add_argument(
        "--split-file",
        default=None,
        help="a given split instead of a drawn one: a CSV with columns id,split (train/val/test), or a folder "
        "holding train.txt, val.txt (or dev.txt, valid.txt) and test.txt with one id per line; pairs it does not "
        "list are left out and counted. Default: none, the split is drawn with --seed",
    )
    parser.add_argument(
        "--encodings",
        default=",".join(DEFAULT_LEGACY_ENCODINGS),
        help="the legacy encodings tried, comma-separated, for a text file that is not UTF-8; each file takes the "
        "one whose reading looks least like mojibake (ties: the earlier)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the converter; returns 0."""
    setup_logging()
    args = parse_args(argv)
    encodings = [name.strip() for name in args.encodings.split(",") if name.strip()]
    for name in encodings:
        try:
            codecs.lookup(name)
        except LookupError:
            raise InputError(
                f"--encodings: {name!r} is not an encoding Python knows (gb18030, big5, cp1252, ...)."
            ) from None
    convert(args.root, args.out, args.seed, args.split_file, encodings)
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
