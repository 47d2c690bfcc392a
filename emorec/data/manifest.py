"""Reading a manifest: its rows, its class names and where its images are.

A manifest is the IIT-R TIER form of the paper's ``data_files/image_labels.csv``:
a CSV with header ``label,text,image``, optionally ``id`` (else the image file's
stem is the id), ``split`` (train/val/test, kept as given) and ``group`` (rows of
one tweet; else the image stem before its last ``-``). ``label`` is a class
index or a class name. ``image`` is relative to the image root; the paper's
absolute-looking ``/data_bt4sa/76809/768097967425200128-1.jpg`` resolves under
the image root too.

Class names default to happy, sad, hate, anger (indices 0..3, the paper's
order). A data set with other classes names them once, one per line in order,
in ``<manifest stem>.classes.txt`` beside the manifest (the B-T4SA converter
writes it), or a caller passes them explicitly.
"""

from __future__ import annotations

import csv
import functools
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from emorec.errors import InputError, list_some
from emorec.fileio import read_csv_table, record_lines

log = logging.getLogger("emorec")


DEFAULT_CLASS_NAMES = ("happy", "sad", "hate", "anger")
DEFAULT_IMAGE_ROOT = "data_t4sa"
DEFAULT_MANIFEST = "data_files/image_labels.csv"
SPLITS = ("train", "val", "test")
REQUIRED_COLUMNS = ("label", "text", "image")
DEMO_FOLDER = "data_t4sa/demo"
# More than this share of the named image files missing is a wrong --image-root, not posts whose image was deleted.
MOST_MISSING = 0.5


@dataclass(frozen=True)
class Manifest:
    """A manifest as read (:func:`read_manifest`): its rows, its class names in index order and the image root."""

    frame: pd.DataFrame
    class_names: tuple[str, ...]
    image_root: str  # absolute: the feature store's image keys are relative to it


def manifest_fix(path: str | os.PathLike) -> str:
    """The commands that give a phase the manifest ``path``: place real data there, convert B-T4SA or MVSA, or make
    the demo."""
    return (
        f"Place the IIT-R TIER manifest (header label,text,image) at {path}, or point --manifest at your CSV; "
        "convert B-T4SA with `python -m emorec.bt4sa --root data_t4sa --out data_files/bt4sa.csv` and pass "
        "--manifest data_files/bt4sa.csv; convert MVSA with `python -m emorec.mvsa --root <MVSA folder> --out "
        "data_files/mvsa_single.csv` and pass --manifest data_files/mvsa_single.csv --image-root <MVSA folder>; "
        "or make the demo data set with `python -m emorec.demo` (or `make data`), "
        f"which writes {DEMO_FOLDER}/, and pass --manifest {DEMO_FOLDER}/image_labels.csv --image-root {DEMO_FOLDER}."
    )


def class_names_path(manifest_path: str | os.PathLike) -> Path:
    """Return the path of the class-names file that belongs to a manifest."""
    manifest_path = Path(manifest_path)
    return manifest_path.with_name(f"{manifest_path.stem}.classes.txt")


def read_class_names(manifest_path: str | os.PathLike, class_names: Sequence[str] | None = None) -> tuple[str, ...]:
    """Return the class names of a manifest, in index order.

    Takes the manifest's path and optional explicit names. Explicit names win;
    otherwise the manifest's ``.classes.txt`` is read when it exists; otherwise
    the paper's four classes. Raises :class:`InputError` for empty or repeated names.
    """
    source = "the class names given"
    if class_names is None:
        sidecar = class_names_path(manifest_path)
        if sidecar.exists():
            source = str(sidecar)
            lines = sidecar.read_text(encoding="utf-8").splitlines()
            class_names = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
        else:
            return DEFAULT_CLASS_NAMES
    names = tuple(name.strip().lower() for name in class_names)
    if len(names) < 2 or "" in names or len(set(names)) != len(names):
        raise InputError(
            f"{source}: need at least two distinct, non-empty class names, got {list(names)}. "
            "Write one class name per line, in index order."
        )
    return names


def read_manifest(
    path: str | os.PathLike,
    image_root: str | os.PathLike = DEFAULT_IMAGE_ROOT,
    class_names: Sequence[str] | None = None,
    images_required: bool = True,
) -> Manifest:
    """Read and check a manifest.

    Takes the manifest CSV's path, the folder its image paths are relative to, and optionally the class names
    (see :func:`read_class_names`). A post may lack its text or its image (an empty cell, or an image file that is
    not there: counted as no image, as one that does not decode), not both; a row without an image needs an
    ``id`` and is its own group, and its ``image_path`` is empty. With ``images_required=False`` (a text-only
    phase) the image column may be missing; otherwise some row must have an image. Returns the
    :class:`Manifest`: a frame with columns ``id`` (str), ``label`` (int class index), ``text``, ``image_path``
    (absolute), ``group`` (the tweet the row belongs to) and, when the manifest has one, ``split``, beside its
    class names and image root.

    Raises one :class:`InputError` that lists every problem found (missing file or columns; unknown labels,
    rows with neither text nor image, duplicated ids, bad split values, most image files not there), naming the
    file, the first rows of each kind and what to do.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"manifest not found: {path}\n{manifest_fix(path)}")
    names = read_class_names(path, class_names)
    raw = _read_rows(path, images_required)
    problems = _Problems(path, raw)
    labels = _checked_labels(problems, raw, names)
    ids, stems = _checked_ids(problems, raw)
    if "split" in raw.columns:
        raw["split"] = raw["split"].str.lower()
        problems.flag(
            ~raw["split"].isin(SPLITS),
            "bad split value in {count} row(s)",
            f"a split is one of {', '.join(SPLITS)}; or drop the column to split automatically",
            shown=raw["split"],
        )
    image_root = Path(image_root)
    image_paths, found = _checked_images(problems, raw, image_root)
    _checked_sides(problems, raw, found, images_required)
    if problems.found:
        raise InputError(f"{path}: the manifest has problems.\n" + "\n".join(problems.found))
    empty_image = raw["image"] == ""
    frame = pd.DataFrame(
        {
            "id": ids,
            "label": labels.astype(int),
            "text": raw["text"],
            "image_path": image_paths,
            "group": raw["group"] if "group" in raw.columns else stems.map(tweet_of_stem).where(~empty_image, ids),
        }
    )
    if "split" in raw.columns:
        frame["split"] = raw["split"]
    return Manifest(frame.reset_index(drop=True), names, str(image_root.resolve()))


def _checked_sides(problems: _Problems, raw: pd.DataFrame, found: pd.Series, images_required: bool) -> None:
    """Rows with neither a text nor an image flagged; for an image phase, a manifest without any image."""
    problems.flag(
        (raw["text"] == "") & ~found,
        "{count} row(s) with neither a text nor an image file that is there",
        "a post needs its text, its image or both: fill them in, or remove those rows",
    )
    if images_required and not found.any() and not problems.found:
        problems.found.append(
            "- no row has an image: the image phases need images (the image column is empty, or its files are "
            "not under --image-root)\n  what to do: give the rows their image files, relative to --image-root; a "
            "text-only data set runs TER.py alone"
        )


def _checked_labels(problems: _Problems, raw: pd.DataFrame, names: list[str]) -> pd.Series:
    """Each row's class index (NaN where unknown); unknown labels and empty texts flagged."""
    labels = parse_labels(raw["label"], names)
    problems.flag(
        labels.isna(),
        "unknown label in {count} row(s)",
        f"a label is a class index 0..{len(names) - 1} or one of: {', '.join(names)} "
        f"(other classes: list them in {class_names_path(problems.path).name}, one per line)",
        shown=raw["label"],
    )
    return labels


def _read_rows(path: Path, images_required: bool) -> pd.DataFrame:
    """The manifest's rows as text, stripped; refused without its columns or rows."""
    raw = read_csv_table(path, "manifest")
    if not images_required and "image" not in raw.columns:
        raw["image"] = ""
    missing = [column for column in REQUIRED_COLUMNS if column not in raw.columns]
    if missing:
        raise InputError(
            f"{path}: missing column(s) {', '.join(missing)}; found {', '.join(raw.columns) or 'none'}.\n"
            "A manifest needs the header label,text,image (optional: id, split, group)."
        )
    if raw.empty:
        raise InputError(f"{path}: the manifest has a header but no rows.")
    return raw.apply(lambda column: column.str.strip())


class _Problems:
    """The problems found in a manifest's rows (``raw``), each with the first offending lines."""

    def __init__(self, path: Path, raw: pd.DataFrame):
        self.path, self.raw, self.found = path, raw, []

    @functools.cached_property
    def lines(self) -> pd.Series:
        """Each row's line as an editor shows it (the header is line 1; a text over several lines counts them
        all), read only when there is a problem to report."""
        try:
            starts = record_lines(self.path)
        except (ValueError, csv.Error):
            starts = []
        return pd.Series(starts if len(starts) == len(self.raw) else self.raw.index + 2, index=self.raw.index)

    def flag(self, bad: pd.Series, title: str, fix: str, shown: pd.Series | None = None) -> None:
        """Record a problem for the rows where ``bad`` holds: each by line, with its ``shown`` value."""
        if bad.any():
            rows = [f"line {self.lines[i]}" + ("" if shown is None else f": {shown[i]!r}") for i in self.raw.index[bad]]
            self.found.append(_problem(title.replace("{count}", str(bad.sum())), rows, fix))


def _checked_ids(problems: _Problems, raw: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Each row's id (the id column, else its image file's stem) and image stem; empty and repeated ids flagged."""
    stems = raw["image"].map(image_stem)
    ids = raw["id"] if "id" in raw.columns else stems
    empty_id = ids == ""
    problems.flag(
        empty_id,
        "empty id in {count} row(s)",
        "give every row an id, or drop the id column to use the image file names (a row without an image "
        "needs an id column)",
    )
    duplicated = ids.duplicated(keep=False) & ~empty_id
    if duplicated.any():
        repeats = problems.lines[duplicated].groupby(ids[duplicated], sort=False).agg(list)
        problems.found.append(
            _problem(
                f"duplicated id in {duplicated.sum()} row(s)",
                [f"id {key!r} on lines {', '.join(map(str, rows))}" for key, rows in repeats.items()],
                "every row needs its own id (by default the image file's name without extension)",
            )
        )
    return ids, stems


def _checked_images(problems: _Problems, raw: pd.DataFrame, image_root: Path) -> tuple[pd.Series, pd.Series]:
    """Each row's image path under ``image_root`` (empty for a row without one) and whether its file is there.

    A file that is not there counts as no image for its row, as one that does not decode (the image phases list
    both); most of the named files missing is an error, since that is a wrong ``--image-root``, not missing posts.
    """
    empty_image = raw["image"] == ""
    image_paths, found = resolve_image_paths(raw["image"], image_root)
    image_paths[empty_image] = ""
    missing = ~found & ~empty_image
    if missing.sum() > MOST_MISSING * (~empty_image).sum():
        problems.flag(
            missing,
            f"{{count}} of {(~empty_image).sum()} image file(s) not found under the image root {image_root}",
            "check --image-root; image paths are relative to it (the paper's "
            "'/data_bt4sa/76809/<id>-1.jpg' also resolves as '<root>/76809/<id>-1.jpg')",
            shown=image_paths,
        )
    return image_paths, found & ~empty_image


def texts_given(frame: pd.DataFrame) -> np.ndarray:
    """Which rows of a manifest's frame (:func:`read_manifest`'s, its texts stripped) have a text."""
    return (frame["text"] != "").to_numpy()


def parse_labels(values: pd.Series, class_names: Sequence[str]) -> pd.Series:
    """Map label strings (class indices or case-insensitive class names) to class indices.

    Returns a float Series (NaN where a label is unknown), aligned with ``values``.
    """
    by_name = {name: index for index, name in enumerate(class_names)}
    by_name.update({str(index): index for index in range(len(class_names))})
    return values.str.lower().map(by_name).astype(float)


def image_stem(image: str) -> str:
    """Return an image path's file name without extension (the default row id)."""
    return os.path.splitext(os.path.basename(image.replace("\\", "/")))[0]


def tweet_of_stem(stem: str) -> str:
    """Return the tweet a B-T4SA style stem ``<tweet id>-<n>`` belongs to (the whole stem if it has no '-')."""
    return stem.rsplit("-", 1)[0] if "-" in stem else stem


def resolve_image_paths(images: pd.Series, image_root: Path) -> tuple[pd.Series, pd.Series]:
    """Resolve manifest image paths against the image root.

    A relative path is ``<root>/<path>``. An absolute-looking one (the paper's
    ``/data_bt4sa/76809/x.jpg``) is tried as ``<root>/data_bt4sa/76809/x.jpg``,
    then ``<root>/76809/x.jpg``, then as the absolute path itself. Returns the
    absolute paths (the first candidate when none exists) and whether each exists.
    """
    root = str(image_root.resolve())
    resolved, exists = [], []
    for image in images:  # os.path rather than pathlib: this runs once per row (97k for IIT-R TIER)
        image = image.replace("\\", "/")
        relative = image.lstrip("/")
        candidates = [os.path.join(root, relative)]
        if image.startswith("/"):
            if "/" in relative:
                candidates.append(os.path.join(root, relative.split("/", 1)[1]))
            candidates.append(image)
        found = next((candidate for candidate in candidates if os.path.isfile(candidate)), None)
        resolved.append(found or candidates[0])
        exists.append(found is not None)
    return pd.Series(resolved, index=images.index), pd.Series(exists, index=images.index)


def _problem(title: str, rows: list[str], fix: str) -> str:
    return f"- {title}:\n{list_some(rows)}\n  what to do: {fix}"
