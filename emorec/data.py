"""The data contract: reading a manifest and the one train/val/test split every phase shares.

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

The split is stratified by label, grouped by tweet and by normalised text (rows
of one tweet, and tweets whose texts TER would see as the same, always share a
split) and seeded; it is stored once beside the manifest as
``<manifest stem>.split.csv`` (``id,split``) and reused by every later run and
every phase. Every split, drawn or given, is checked for leakage (tweets and
normalised texts in more than one split), and fingerprinted, so that the
phases of a run can prove they used the same rows and the same split.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import logging
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from emorec.errors import InputError, list_some
from emorec.fileio import read_csv_table, record_lines, write_csv_atomic
from emorec.storage import beside_or_fallback, exclusive

log = logging.getLogger("emorec")

DEFAULT_CLASS_NAMES = ("happy", "sad", "hate", "anger")
DEFAULT_IMAGE_ROOT = "data_t4sa"
DEFAULT_MANIFEST = "data_files/image_labels.csv"
DEFAULT_GLOVE = "data_files/glove.twitter.27B.200d.txt"
GLOVE_DOWNLOAD = "https://nlp.stanford.edu/data/glove.twitter.27B.zip"
SPLITS = ("train", "val", "test")
DEFAULT_FRACTIONS = (0.7, 0.1, 0.2)
REQUIRED_COLUMNS = ("label", "text", "image")


DEMO_FOLDER = "data_t4sa/demo"


def glove_fix(path: str | os.PathLike) -> str:
    """How to get the GloVe file that ``path`` names, or how to train without it."""
    return (
        f"Download {GLOVE_DOWNLOAD} (1.4 GB), unzip it and place glove.twitter.27B.200d.txt "
        f"at {path} (or pass --glove PATH). To train without pretrained vectors, pass --glove none; "
        f"the demo's vectors are --glove {DEMO_FOLDER}/glove.demo.200d.txt."
    )


def missing_glove_message(path: str | os.PathLike) -> str:
    """Explain that the GloVe file ``path`` is missing, and how to get it or train without it."""
    return f"GloVe file not found: {path}\n{glove_fix(path)}"


def manifest_fix(path: str | os.PathLike) -> str:
    """The commands that give a phase the manifest ``path``: place real data there, convert B-T4SA, or make the demo."""
    return (
        f"Place the IIT-R TIER manifest (header label,text,image) at {path}, or point --manifest at your CSV; "
        "convert B-T4SA with `python -m emorec.bt4sa --root data_t4sa --out data_files/bt4sa.csv` and pass "
        "--manifest data_files/bt4sa.csv; or make the demo data set with `python -m emorec.demo` (or `make data`), "
        f"which writes {DEMO_FOLDER}/, and pass --manifest {DEMO_FOLDER}/image_labels.csv --image-root {DEMO_FOLDER}."
    )


def class_names_path(manifest_path: str | os.PathLike) -> Path:
    """Return the path of the class-names file that belongs to a manifest."""
    manifest_path = Path(manifest_path)
    return manifest_path.with_name(f"{manifest_path.stem}.classes.txt")


def split_path(manifest_path: str | os.PathLike) -> Path:
    """Return the path of the stored split (``id,split``) that belongs to a manifest."""
    manifest_path = Path(manifest_path)
    return manifest_path.with_name(f"{manifest_path.stem}.split.csv")


def read_class_names(
    manifest_path: str | os.PathLike, class_names: Sequence[str] | None = None
) -> tuple[str, ...]:
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
) -> pd.DataFrame:
    """Read and check a manifest.

    Takes the manifest CSV's path, the folder its image paths are relative to,
    and optionally the class names (see :func:`read_class_names`). With
    ``images_required=False`` (a text-only phase) the image column may be
    missing or empty: such rows need an ``id`` and are their own group, and
    their ``image_path`` is empty; images that are named must still exist. Returns a
    DataFrame with columns ``id`` (str), ``label`` (int class index), ``text``,
    ``image_path`` (absolute), ``group`` (the tweet the row belongs to) and,
    when the manifest has one, ``split``. Its ``attrs["class_names"]`` holds the
    class names.

    Raises one :class:`InputError` that lists every problem found (missing
    file or columns; unknown labels, empty texts, duplicated ids, bad split
    values, image files that do not exist), naming the file, the first rows of
    each kind and what to do.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"manifest not found: {path}\n{manifest_fix(path)}")
    names = read_class_names(path, class_names)
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

    raw = raw.apply(lambda column: column.str.strip())
    problems: list[str] = []

    @functools.cache
    def line() -> pd.Series:
        """Each row's line as an editor shows it (the header is line 1; a text over several lines counts them all),
        read only when there is a problem to report."""
        try:
            starts = record_lines(path)
        except (ValueError, csv.Error):
            starts = []
        return pd.Series(starts if len(starts) == len(raw) else raw.index + 2, index=raw.index)

    def flag(bad: pd.Series, title: str, fix: str, shown: pd.Series | None = None) -> None:
        """Record a problem for the rows where ``bad`` holds: each by line, with its ``shown`` value."""
        if bad.any():
            rows = [f"line {line()[i]}" + ("" if shown is None else f": {shown[i]!r}") for i in raw.index[bad]]
            problems.append(_problem(title.replace("{count}", str(bad.sum())), rows, fix))

    labels = parse_labels(raw["label"], names)
    flag(
        labels.isna(),
        "unknown label in {count} row(s)",
        f"a label is a class index 0..{len(names) - 1} or one of: {', '.join(names)} "
        f"(other classes: list them in {class_names_path(path).name}, one per line)",
        shown=raw["label"],
    )
    flag(raw["text"] == "", "empty or missing text in {count} row(s)", "give every row its tweet's text, or remove the row")
    empty_image = raw["image"] == ""
    if images_required:
        flag(empty_image, "empty image path in {count} row(s)", "give every row its image file, relative to the image root")

    stems = raw["image"].map(image_stem)
    ids = raw["id"] if "id" in raw.columns else stems
    empty_id = ids == ""
    flag(empty_id, "empty id in {count} row(s)", "give every row an id, or drop the id column to use the image file names"
         + ("" if images_required else " (a row without an image needs an id column)"))
    duplicated = ids.duplicated(keep=False) & ~empty_id
    if duplicated.any():
        repeats = line()[duplicated].groupby(ids[duplicated], sort=False).agg(list)
        problems.append(
            _problem(
                f"duplicated id in {duplicated.sum()} row(s)",
                [f"id {key!r} on lines {', '.join(map(str, rows))}" for key, rows in repeats.items()],
                "every row needs its own id (by default the image file's name without extension)",
            )
        )

    if "split" in raw.columns:
        raw["split"] = raw["split"].str.lower()
        flag(
            ~raw["split"].isin(SPLITS),
            "bad split value in {count} row(s)",
            f"a split is one of {', '.join(SPLITS)}; or drop the column to split automatically",
            shown=raw["split"],
        )

    image_root = Path(image_root)
    image_paths, found = resolve_image_paths(raw["image"], image_root)
    image_paths[empty_image] = ""
    flag(
        ~found & ~empty_image,
        f"{{count}} image file(s) not found under the image root {image_root}",
        "check --image-root; image paths are relative to it (the paper's "
        "'/data_bt4sa/76809/<id>-1.jpg' also resolves as '<root>/76809/<id>-1.jpg')",
        shown=image_paths,
    )

    if problems:
        raise InputError(f"{path}: the manifest has problems.\n" + "\n".join(problems))

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
    frame = frame.reset_index(drop=True)
    frame.attrs["class_names"] = names
    frame.attrs["image_root"] = str(image_root.resolve())  # the image keys of the feature store are relative to it
    return frame


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


def assign_split(
    frame: pd.DataFrame,
    manifest_path: str | os.PathLike,
    seed: int = 0,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    resplit: bool = False,
    draw: bool = True,
) -> pd.DataFrame:
    """Give every row its split (train/val/test), the same for every phase and run.

    Takes the frame from :func:`read_manifest`, the manifest's path, the seed,
    the train/val/test fractions and whether to draw a new split. A manifest
    with its own ``split`` column keeps it. Otherwise the split stored beside the
    manifest (:func:`split_path`) is reused; if there is none (or ``resplit``),
    one is drawn (:func:`draw_split`) and stored, unless ``draw`` is False (a
    phase that only reads what earlier phases made), which raises instead.
    Returns a copy of the frame with a ``split`` column and
    ``attrs["split_source"]`` (manifest, stored or drawn). Raises
    :class:`InputError` when the stored split does not match the manifest's ids.
    """
    result = frame.copy()
    if "split" in frame.columns:
        log.info("using the manifest's own split: %s", _split_counts(frame["split"]))
        result.attrs["split_source"] = "manifest"
        return result
    stored = beside_or_fallback(split_path(manifest_path), "the split")
    if stored.exists() and not resplit:
        splits, result.attrs["split_source"] = _reuse_split(stored, frame), "stored"
    elif not draw:
        raise InputError(f"{stored}: the split of {manifest_path} is missing; the phases of this run stored it "
                         "there. Rerun them (TER.py, IER.py, Intermediate_fusion.py) to draw and use a new one.")
    else:
        # Drawn before the lock is taken, so a manifest that cannot be split leaves no lock file behind; the same
        # seed draws the same split, so drawing it before knowing whether it will be stored costs only its time.
        drawn = draw_split(frame, seed, fractions)
        # Two runs starting at once on a manifest without a split: the first draws it, the second reuses it.
        with exclusive(stored.with_name(f".{stored.name}.lock"), f"drawing the split {stored}"):
            if stored.exists() and not resplit:
                splits, result.attrs["split_source"] = _reuse_split(stored, frame), "stored"
            else:
                splits = drawn
                write_csv_atomic(pd.DataFrame({"id": frame["id"], "split": splits}), stored)
                log.info("drew a new split with seed %d, stored in %s: %s", seed, stored, _split_counts(splits))
                result.attrs["split_source"] = "drawn"
    result["split"] = splits.to_numpy()
    return result


def _reuse_split(stored: Path, frame: pd.DataFrame) -> pd.Series:
    splits = read_stored_split(stored, frame["id"])
    log.info("reusing the split in %s (--resplit draws a new one): %s", stored, _split_counts(splits))
    return splits


def split_units(frame: pd.DataFrame) -> pd.Series:
    """The units a split keeps whole: rows linked by tweet (``group``) or by normalised text, transitively.

    A tweet's images share its text, and a text posted again (a retweet, a
    copy) normalises to the same tokens (:func:`emorec.text.normalise_texts`,
    TER's own normalisation), so a split that kept them apart would test TER
    on inputs it was trained on. Frames without a ``text`` column are grouped
    by tweet alone. Returns, aligned with ``frame``, each row's unit, named
    after the smallest tweet (``group``) in it.
    """
    groups = frame["group"].astype(str)
    if "text" not in frame.columns:
        return groups.rename("unit")
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    group_codes, group_names = pd.factorize(groups, sort=True)
    text_codes, _ = pd.factorize(pd.Series(normalised_texts(frame["text"]), index=frame.index))
    n_groups = len(group_names)
    # One node per tweet and per normalised text; each row links its tweet to its text.
    size = n_groups + text_codes.max() + 1
    links = coo_matrix((np.ones(len(frame)), (group_codes, n_groups + text_codes)), shape=(size, size))
    _, component = connected_components(links, directed=False)
    # Name each unit after its smallest tweet, so that a data set without shared texts keeps its tweets' order.
    first_group = pd.Series(np.arange(n_groups)).groupby(component[:n_groups]).min()
    return pd.Series(group_names[first_group[component[group_codes]].to_numpy()], index=frame.index, name="unit")


def normalised_texts(texts: pd.Series) -> list[str]:
    """The texts as TER's vectorizer sees them (:func:`emorec.text.normalise_texts`)."""
    from emorec.text import normalise_texts

    return normalise_texts(texts.tolist())


def draw_split(
    frame: pd.DataFrame, seed: int = 0, fractions: Sequence[float] = DEFAULT_FRACTIONS
) -> pd.Series:
    """Draw a seeded train/val/test split, stratified by label and grouped by tweet and normalised text.

    Whole units (:func:`split_units`: a tweet's images, and every tweet whose
    text normalises the same) are assigned, stratified by each unit's label
    (its first row's), so neither a tweet nor a text straddles two splits.
    Returns a Series of split names aligned with ``frame``.
    """
    fractions = _check_fractions(fractions)
    units = split_units(frame)
    tweets = frame["label"].groupby(units, sort=True).first()
    train_fraction, val_fraction, test_fraction = fractions
    try:
        rest, test = train_test_split(
            tweets.index, test_size=test_fraction, stratify=tweets, random_state=seed
        )
        train, val = train_test_split(
            rest,
            test_size=val_fraction / (train_fraction + val_fraction),
            stratify=tweets[rest],
            random_state=seed,
        )
    except ValueError as error:  # scikit-learn's words name classes by index: say it in the data's own
        counts = tweets.value_counts().sort_index()
        class_names = frame.attrs.get("class_names")
        named = {class_names[label] if class_names else label: count for label, count in counts.items()}
        fewest = min(named, key=named.get)
        raise InputError(
            f"cannot draw a stratified {'/'.join(f'{f:g}' for f in fractions)} train/val/test split of "
            f"{len(tweets)} tweet(s): class {fewest!r} has {named[fewest]} (per class: "
            f"{', '.join(f'{name}: {count}' for name, count in named.items())}). Every class needs at least 2 "
            f"tweets for each cut, and the smaller splits at least one tweet per class; add examples, or give "
            "the manifest a split column."
        ) from error
    split_of_unit = pd.Series("train", index=tweets.index)
    split_of_unit[val] = "val"
    split_of_unit[test] = "test"
    return units.map(split_of_unit).rename("split")


def split_leakage(frame: pd.DataFrame, examples: int = 5) -> dict:
    """Count what straddles the splits of ``frame`` (which has ``split``, ``group`` and ``text``).

    Returns ``{"straddling_tweets", "straddling_texts", "rows_involved",
    "examples": {"tweets": [...], "texts": [...]}}``: the tweets (groups) and
    the normalised texts (as TER normalises them) that occur in more than one
    split, the rows they hold, and the first ``examples`` of each with their splits.
    """
    normalised = pd.Series(normalised_texts(frame["text"]), index=frame.index)
    straddling = {}
    for kind, key in (("tweets", frame["group"]), ("texts", normalised)):
        counts = frame["split"].groupby(key, sort=True).nunique()
        straddling[kind] = counts.index[counts > 1]
    involved = frame["group"].isin(straddling["tweets"]) | normalised.isin(straddling["texts"])
    return {
        "straddling_tweets": len(straddling["tweets"]),
        "straddling_texts": len(straddling["texts"]),
        "rows_involved": int(involved.sum()),
        "examples": {kind: [f"{key!r} in " + "/".join(sorted(set(frame["split"][(keys == key).to_numpy()])))
                            for key in found[:examples]]
                     for (kind, found), keys in zip(straddling.items(), (frame["group"], normalised))},
    }


def check_leakage(frame: pd.DataFrame, strict: bool = False) -> dict:
    """Count the split's leakage (:func:`split_leakage`), log it when there is any, and return it.

    With ``strict`` any leakage raises :class:`InputError` (``--strict-split``).
    """
    leakage = split_leakage(frame)
    if leakage["straddling_tweets"] or leakage["straddling_texts"]:
        source = frame.attrs.get("split_source", "given")
        fix = {"manifest": "fix the manifest's split column (B-T4SA: convert it again with `python -m emorec.bt4sa ... --regroup`)",
               "stored": "--resplit draws a split that keeps tweets and texts whole"}.get(source, "redraw the split")
        message = (f"the split ({source}) leaks: {leakage['straddling_tweets']} tweet(s) and "
                   f"{leakage['straddling_texts']} normalised text(s) occur in more than one split "
                   f"({leakage['rows_involved']} rows involved).\n"
                   + list_some([*leakage["examples"]["tweets"], *leakage["examples"]["texts"]])
                   + f"\nTo fix: {fix}.")
        if strict:
            raise InputError(message + " (--strict-split makes this an error.)")
        log.warning("%s Scores on such a split are optimistic; --strict-split refuses it.", message)
    return leakage


def data_fingerprint(frame: pd.DataFrame) -> dict:
    """What a phase records of the data it used: row count, split counts and sha256 fingerprints.

    ``manifest_sha256`` covers each row's id, label, text, tweet and image file
    name, in order; ``split_sha256`` each row's id and split. Two phases with
    equal fingerprints read the same rows and used the same split.
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
        "split_source": frame.attrs.get("split_source", "given"),
        "manifest_sha256": sha256(frame["id"], frame["label"], frame["text"], frame["group"],
                                  frame["image_path"].map(os.path.basename)),
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
            problems.append(f"{phase} ({path}) read other manifest rows ({theirs['rows']:,} rows, sha256 "
                            f"{theirs['manifest_sha256'][:12]}; now {expected['rows']:,}, {expected['manifest_sha256'][:12]})")
        elif theirs["split_sha256"] != expected["split_sha256"]:
            problems.append(f"{phase} ({path}) used another split (sha256 {theirs['split_sha256'][:12]}, "
                            f"{_counts_text(theirs['split_counts'])}; now {expected['split_sha256'][:12]}, "
                            f"{_counts_text(expected['split_counts'])}): the split was redrawn (--resplit) or "
                            "the manifest's split column changed")
    if problems:
        raise InputError("inputs from phases that used other data than this run:\n"
                         + "\n".join(f"- {problem}" for problem in problems)
                         + f"\nRerun {rerun} on the manifest and split as they are now.")


def read_stored_split(path: Path, ids: pd.Series) -> pd.Series:
    """Read a stored ``id,split`` file and return the split of each id in ``ids`` (aligned with it).

    Raises :class:`InputError` when the file is malformed or its ids differ from ``ids``.
    """
    try:
        stored = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: stored split cannot be read ({error}); use --resplit.") from error
    if list(stored.columns[:2]) != ["id", "split"] or not stored["split"].isin(SPLITS).all():
        raise InputError(
            f"{path}: not a stored split (needs columns id,split with values {', '.join(SPLITS)}); "
            "use --resplit to draw a new one."
        )
    added = sorted(set(ids) - set(stored["id"]))
    removed = sorted(set(stored["id"]) - set(ids))
    if added or removed or stored["id"].duplicated().any():
        details = []
        if added:
            details.append(f"{len(added)} id(s) in the manifest but not in the split:\n{list_some(added)}")
        if removed:
            details.append(f"{len(removed)} id(s) in the split but not in the manifest:\n{list_some(removed)}")
        raise InputError(
            f"{path}: the stored split no longer matches the manifest.\n"
            + "\n".join(details)
            + "\nUse --resplit to draw a new split (results made with the old one are then not comparable)."
        )
    return ids.map(stored.set_index("id")["split"]).rename("split")


def load_dataset(
    manifest_path: str | os.PathLike,
    image_root: str | os.PathLike = DEFAULT_IMAGE_ROOT,
    seed: int = 0,
    resplit: bool = False,
    class_names: Sequence[str] | None = None,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    images_required: bool = True,
    strict_split: bool = False,
    draw: bool = True,
) -> pd.DataFrame:
    """Read a manifest and give it its shared split: what every phase starts from.

    Returns the frame of :func:`read_manifest` (``images_required`` is passed
    to it) with a ``split`` column (see :func:`assign_split`; ``draw`` False
    refuses to draw one), checked for leakage (:func:`check_leakage`, an error
    with ``strict_split``). ``attrs["data"]`` holds its :func:`data_fingerprint`
    and ``attrs["split_leakage"]`` the leakage counts. Nothing is written
    unless the manifest is valid.
    """
    frame = read_manifest(manifest_path, image_root, class_names, images_required)
    frame = assign_split(frame, manifest_path, seed=seed, fractions=fractions, resplit=resplit, draw=draw)
    frame.attrs["split_leakage"] = check_leakage(frame, strict_split)
    frame.attrs["data"] = data_fingerprint(frame)
    return frame


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


def labelled_training_rows(
    frame: pd.DataFrame, fraction: float | None = None, per_class: int | None = None, seed: int = 0
) -> np.ndarray:
    """The training rows a phase learns from: all of the train split, or a stratified, seeded subsample of it.

    With ``fraction`` each class keeps round(fraction x its training rows), at
    least one; with ``per_class`` each class keeps that many (all of a smaller
    class). The draw depends only on the frame's rows, labels and splits and on
    ``seed``, so every phase of a run picks the same rows. Val and test rows are
    never touched. Returns a boolean mask aligned with ``frame``.
    """
    train = (frame["split"] == "train").to_numpy()
    if fraction is None and per_class is None:
        return train
    labels = frame["label"].to_numpy()
    rng = np.random.default_rng(seed)
    keep = np.zeros(len(frame), dtype=bool)
    for label in np.unique(labels[train]):
        rows = np.flatnonzero(train & (labels == label))
        wanted = per_class if per_class is not None else max(1, round(fraction * len(rows)))
        keep[rng.permutation(rows)[: min(wanted, len(rows))]] = True
    return keep


def _check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    fractions = tuple(float(f) for f in fractions)
    if len(fractions) != 3 or min(fractions) <= 0 or abs(sum(fractions) - 1) > 1e-6:
        raise InputError(f"split fractions must be three positive numbers summing to 1, got {fractions}")
    return fractions


def _counts_text(counts: dict) -> str:
    return ", ".join(f"{split} {counts.get(split, 0):,}" for split in SPLITS)


def _split_counts(splits: pd.Series) -> str:
    counts = splits.value_counts()
    return ", ".join(f"{name} {counts.get(name, 0)}" for name in SPLITS)


def _problem(title: str, rows: list[str], fix: str) -> str:
    return f"- {title}:\n{list_some(rows)}\n  what to do: {fix}"
