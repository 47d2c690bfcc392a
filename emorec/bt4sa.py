"""Convert B-T4SA, as distributed, into a manifest with its own split.

B-T4SA (Vadicamo et al., 2017) ships three split files ``b-t4sa_train.txt``,
``b-t4sa_val.txt`` and ``b-t4sa_test.txt``, one ``data/75801/758014713804587008-1.jpg 2``
per line (0 negative, 1 neutral, 2 positive), the images under
``data/<5 digits>/<tweet id>-<n>.jpg``, and the tweets' text in
``raw_tweets_text.csv`` (``"id","text"``). The manifest written here has
columns ``label,text,image,id,split``, image paths relative to the B-T4SA root
(pass that folder to the phases as ``--image-root``), and its class names in
``<manifest stem>.classes.txt`` beside it.

The official split is per image, so the images of one tweet (which share its
text) can sit in different splits, and so can tweets whose texts normalise
alike. The converter counts both and reports them; ``--regroup`` moves each
such tweet wholly into one split (:func:`regroup_split`).

Usage::

    python -m emorec.bt4sa --root data_t4sa --out data_files/bt4sa.csv [--regroup]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from emorec.cli import ArgumentParser, HelpFormatter, run, setup_logging
from emorec.data.manifest import class_names_path, image_stem, tweet_of_stem
from emorec.data.splits import split_leakage, split_units
from emorec.errors import InputError, list_some
from emorec.fileio import read_csv_table, write_csv_atomic, write_text_atomic

log = logging.getLogger("emorec")

CLASS_NAMES = ("negative", "neutral", "positive")
SPLIT_FILES = {"train": "b-t4sa_train.txt", "val": "b-t4sa_val.txt", "test": "b-t4sa_test.txt"}
TEXT_FILE = "raw_tweets_text.csv"
REGROUP_ORDER = ("test", "val", "train")  # where --regroup sends a tweet whose images are evenly split


def read_split_file(path: Path) -> pd.DataFrame:
    """Read one B-T4SA split file (``<relative image path> <label>`` per line).

    Returns a DataFrame with columns ``image`` and ``label`` (class name).
    Raises :class:`InputError` naming the first malformed lines.
    """
    if not path.is_file():
        raise InputError(
            f"B-T4SA split file not found: {path}\n"
            f"--root must be the B-T4SA folder holding {', '.join(SPLIT_FILES.values())}, "
            f"{TEXT_FILE} and data/."
        )
    images, labels, bad = [], [], []
    try:
        with open(path, encoding="utf-8-sig") as lines:
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                parts = line.rsplit(maxsplit=1)
                if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                    bad.append(f"line {number}: {line.rstrip()[:200]!r}")
                    continue
                images.append(parts[0])
                labels.append(CLASS_NAMES[int(parts[1])])
    except UnicodeDecodeError as error:
        raise InputError(f"{path}: not a UTF-8 text file ({error}); is it the B-T4SA split file?") from error
    if bad:
        raise InputError(
            f"{path}: {len(bad)} malformed line(s); each line is '<image path> <label 0|1|2>':\n{list_some(bad)}"
        )
    return pd.DataFrame({"image": images, "label": labels})


def read_tweet_texts(path: Path) -> pd.Series:
    """Read ``raw_tweets_text.csv`` (columns id,text) and return the texts indexed by tweet id (str)."""
    if not path.is_file():
        raise InputError(f"B-T4SA tweet texts not found: {path} (it comes with B-T4SA as {TEXT_FILE}).")
    texts = read_csv_table(path, "tweet text file")
    if not {"id", "text"} <= set(texts.columns):
        raise InputError(f"{path}: needs columns id,text; found {', '.join(texts.columns)}.")
    texts["id"] = texts["id"].str.strip()
    return texts.drop_duplicates("id").set_index("id")["text"]


def convert(
    root: str | os.PathLike, out: str | os.PathLike, drop_missing_text: bool = False, regroup: bool = False
) -> tuple[pd.DataFrame, dict]:
    """Convert the B-T4SA folder ``root`` into the manifest ``out`` (and its class-names file).

    Returns the manifest as written (columns label,text,image,id,split) and
    its leakage counts: the tweets and normalised texts that straddle
    the official split (:func:`emorec.data.splits.split_leakage`), counted before
    ``regroup`` (:func:`regroup_split`) moves them. Rows whose tweet has no
    text are an error, or dropped and counted with ``drop_missing_text``.
    Nothing is written when the input is bad.
    """
    root = Path(root)
    parts = []
    for split, name in SPLIT_FILES.items():
        part = read_split_file(root / name)
        part["split"] = split
        parts.append(part)
    manifest = pd.concat(parts, ignore_index=True)
    if manifest.empty:
        raise InputError(f"{root}: the split files ({', '.join(SPLIT_FILES.values())}) list no image.")
    manifest["id"] = manifest["image"].map(image_stem)
    repeated = manifest["id"].duplicated(keep=False)
    if repeated.any():
        rows = manifest[repeated].sort_values("id")
        raise InputError(
            f"{root}: {repeated.sum()} image(s) listed more than once across the split files:\n"
            + list_some(f"{row.image} ({row.split})" for row in rows.itertuples())
        )

    texts = read_tweet_texts(root / TEXT_FILE)
    # As objects: where no id has a text, map() gives a float column, which a later pandas refuses to fill with "".
    manifest["text"] = manifest["id"].map(tweet_of_stem).map(texts).astype(object).fillna("").str.strip()
    no_text = manifest["text"] == ""
    if no_text.any():
        if not drop_missing_text:
            raise InputError(
                f"{root / TEXT_FILE}: no text for {no_text.sum()} image(s):\n"
                + list_some(manifest.loc[no_text, "image"])
                + "\nUse --drop-missing-text to leave those images out."
            )
        log.warning("dropped %d image(s) whose tweet has no text in %s", no_text.sum(), TEXT_FILE)
        manifest = manifest[~no_text]

    manifest = manifest[["label", "text", "image", "id", "split"]]
    manifest, leakage = _check_straddling(manifest, regroup)
    write_csv_atomic(manifest, out)
    write_text_atomic(class_names_path(out), "\n".join(CLASS_NAMES) + "\n")
    counts = manifest["split"].value_counts()
    log.info(
        "wrote %s: %d images (train %d, val %d, test %d), classes %s",
        out,
        len(manifest),
        counts.get("train", 0),
        counts.get("val", 0),
        counts.get("test", 0),
        ", ".join(CLASS_NAMES),
    )
    log.info("image paths are relative to %s: pass --image-root %s to the phases", root, root)
    return manifest, leakage


def regroup_split(manifest: pd.DataFrame) -> pd.Series:
    """A split that keeps every tweet, and every set of tweets with the same normalised text, in one split.

    Each unit (:func:`emorec.data.split_units`) goes wholly to the split that
    already holds most of its images; on a tie, to test, then val, then
    train, so that the held-out splits never lose a tweet to training on a
    tie. Units already whole keep their split. Returns the new split of each
    row of ``manifest`` (columns id, text, split).
    """
    frame = manifest.assign(group=manifest["id"].map(tweet_of_stem))
    units = split_units(frame)
    counts = pd.crosstab(units, frame["split"]).reindex(columns=REGROUP_ORDER, fill_value=0)
    # idxmax takes the first of equal counts: the columns are in tie-breaking order.
    return units.map(counts.idxmax(axis=1)).rename("split")


def _check_straddling(manifest: pd.DataFrame, regroup: bool) -> tuple[pd.DataFrame, dict]:
    """Count and report what straddles the official split; with ``regroup``, move it (:func:`regroup_split`).
    Returns the manifest to write and the counts (:func:`emorec.data.splits.split_leakage`)."""
    frame = manifest.assign(group=manifest["id"].map(tweet_of_stem))
    leakage = split_leakage(frame)
    if leakage["straddling_tweets"] or leakage["straddling_texts"]:
        log.warning(
            "the official split has %d tweet(s) with images in more than one split and %d normalised text(s) in "
            "more than one split (%d images involved); TER would be validated or tested on texts it was trained "
            "on.\n%s\n%s",
            leakage["straddling_tweets"],
            leakage["straddling_texts"],
            leakage["rows_involved"],
            list_some([*leakage["examples"]["tweets"], *leakage["examples"]["texts"]]),
            "moving each such tweet wholly into one split (--regroup)"
            if regroup
            else "--regroup moves each wholly into one split; the phases' --strict-split refuses the split as it is",
        )
    else:
        log.info("no tweet and no normalised text straddles the official split")
    if regroup:
        regrouped = regroup_split(manifest)
        moved = manifest["split"] != regrouped
        if moved.any():
            moves = (manifest["split"][moved] + " -> " + regrouped[moved]).value_counts()
            log.info("--regroup moved %d image(s): %s", moved.sum(), ", ".join(f"{m} {n}" for m, n in moves.items()))
        manifest = manifest.assign(split=regrouped)
    return manifest, leakage


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the converter's command line."""
    parser = ArgumentParser(
        prog="python -m emorec.bt4sa",
        description="Convert B-T4SA (split files, raw_tweets_text.csv, data/) into a manifest with its split.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "--root", required=True, help="the B-T4SA folder (holds b-t4sa_*.txt, raw_tweets_text.csv, data/)"
    )
    parser.add_argument("--out", default="data_files/bt4sa.csv", help="the manifest CSV to write")
    parser.add_argument(
        "--drop-missing-text", action="store_true", help="leave out images whose tweet has no text instead of stopping"
    )
    parser.add_argument(
        "--regroup",
        action="store_true",
        help="move every tweet whose images straddle the official split (and every tweet sharing a normalised "
        "text with another split's) wholly into the split holding most of its images (ties: test, val, train); "
        "without it the official split is kept as it is, and its straddling tweets and texts are reported",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the converter; returns 0."""
    setup_logging()
    args = parse_args(argv)
    convert(args.root, args.out, args.drop_missing_text, args.regroup)
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
