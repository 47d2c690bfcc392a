"""The one train/val/test split every phase shares: drawn once and stored beside the manifest, checked for
leakage, and the labelled subsample a run trains on.

The split is stratified by label, grouped by tweet and by normalised text (rows
of one tweet, and tweets whose texts TER would see as the same, always share a
split) and seeded; it is stored once beside the manifest as
``<manifest stem>.split.csv`` (``id,split``) and reused by every later run and
every phase. Every split, drawn or given, is checked for leakage (tweets and
normalised texts in more than one split), and fingerprinted, so that the
phases of a run can prove they used the same rows and the same split.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from emorec.data.manifest import SPLITS
from emorec.errors import InputError, list_some
from emorec.fileio import write_csv_atomic
from emorec.storage import beside_or_fallback, exclusive

log = logging.getLogger("emorec")


DEFAULT_FRACTIONS = (0.7, 0.1, 0.2)


def split_path(manifest_path: str | os.PathLike) -> Path:
    """Return the path of the stored split (``id,split``) that belongs to a manifest."""
    manifest_path = Path(manifest_path)
    return manifest_path.with_name(f"{manifest_path.stem}.split.csv")


def assign_split(
    frame: pd.DataFrame,
    manifest_path: str | os.PathLike,
    seed: int = 0,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    resplit: bool = False,
    draw: bool = True,
    class_names: Sequence[str] | None = None,
) -> tuple[pd.DataFrame, str]:
    """Give every row its split (train/val/test), the same for every phase and run.

    Takes the frame from :func:`read_manifest`, the manifest's path, the seed,
    the train/val/test fractions and whether to draw a new split. A manifest
    with its own ``split`` column keeps it. Otherwise the split stored beside the
    manifest (:func:`split_path`) is reused; if there is none (or ``resplit``),
    one is drawn (:func:`draw_split`) and stored, unless ``draw`` is False (a
    phase that only reads what earlier phases made), which raises instead.
    Returns a copy of the frame with a ``split`` column, and where the split came from: manifest, stored or
    drawn (``class_names`` name the classes in a message about a split that cannot be drawn). Raises
    :class:`InputError` when the stored split does not match the manifest's ids.
    """
    result = frame.copy()
    if "split" in frame.columns:
        log.info("using the manifest's own split: %s", _split_counts(frame["split"]))
        return result, "manifest"
    stored = beside_or_fallback(split_path(manifest_path), "the split")
    if stored.exists() and not resplit:
        splits, source = _reuse_split(stored, frame), "stored"
    elif not draw:
        raise InputError(
            f"{stored}: the split of {manifest_path} is missing; the phases of this run stored it "
            "there. Rerun them (TER.py, IER.py, Intermediate_fusion.py) to draw and use a new one."
        )
    else:
        # Drawn before the lock is taken, so a manifest that cannot be split leaves no lock file behind; the same
        # seed draws the same split, so drawing it before knowing whether it will be stored costs only its time.
        drawn = draw_split(frame, seed, fractions, class_names)
        # Two runs starting at once on a manifest without a split: the first draws it, the second reuses it.
        with exclusive(stored.with_name(f".{stored.name}.lock"), f"drawing the split {stored}"):
            if stored.exists() and not resplit:
                splits, source = _reuse_split(stored, frame), "stored"
            else:
                splits = drawn
                write_csv_atomic(pd.DataFrame({"id": frame["id"], "split": splits}), stored)
                log.info("drew a new split with seed %d, stored in %s: %s", seed, stored, _split_counts(splits))
                source = "drawn"
    result["split"] = splits.to_numpy()
    return result, source


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
    frame: pd.DataFrame,
    seed: int = 0,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    class_names: Sequence[str] | None = None,
) -> pd.Series:
    """Draw a seeded train/val/test split, stratified by label and grouped by tweet and normalised text.

    Whole units (:func:`split_units`: a tweet's images, and every tweet whose
    text normalises the same) are assigned, stratified by each unit's label
    (its first row's), so neither a tweet nor a text straddles two splits.
    Returns a Series of split names aligned with ``frame``. ``class_names`` name the classes in the message
    about a split that cannot be drawn (else their indices).
    """
    fractions = _check_fractions(fractions)
    units = split_units(frame)
    tweets = frame["label"].groupby(units, sort=True).first()
    train_fraction, val_fraction, test_fraction = fractions
    try:
        rest, test = train_test_split(tweets.index, test_size=test_fraction, stratify=tweets, random_state=seed)
        train, val = train_test_split(
            rest,
            test_size=val_fraction / (train_fraction + val_fraction),
            stratify=tweets[rest],
            random_state=seed,
        )
    except ValueError as error:  # scikit-learn's words name classes by index: say it in the data's own
        counts = tweets.value_counts().sort_index()
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
        "examples": {
            kind: [
                f"{key!r} in " + "/".join(sorted(set(frame["split"][(keys == key).to_numpy()])))
                for key in found[:examples]
            ]
            for (kind, found), keys in zip(straddling.items(), (frame["group"], normalised))
        },
    }


def check_leakage(frame: pd.DataFrame, strict: bool = False, source: str = "given") -> dict:
    """Count the split's leakage (:func:`split_leakage`), log it when there is any, and return it.

    With ``strict`` any leakage raises :class:`InputError` (``--strict-split``). ``source`` (where the split came
    from, see :func:`assign_split`) says in the message how to fix it.
    """
    leakage = split_leakage(frame)
    if leakage["straddling_tweets"] or leakage["straddling_texts"]:
        fix = {
            "manifest": "fix the manifest's split column (B-T4SA: convert it again with "
            "`python -m emorec.bt4sa ... --regroup`)",
            "stored": "--resplit draws a split that keeps tweets and texts whole",
        }.get(source, "redraw the split")
        message = (
            f"the split ({source}) leaks: {leakage['straddling_tweets']} tweet(s) and "
            f"{leakage['straddling_texts']} normalised text(s) occur in more than one split "
            f"({leakage['rows_involved']} rows involved).\n"
            + list_some([*leakage["examples"]["tweets"], *leakage["examples"]["texts"]])
            + f"\nTo fix: {fix}."
        )
        if strict:
            raise InputError(message + " (--strict-split makes this an error.)")
        log.warning("%s Scores on such a split are optimistic; --strict-split refuses it.", message)
    return leakage


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


@dataclass(frozen=True)
class TrainingRows:
    """The rows a run learns from: ``mask``, aligned with the frame, and for a subsample its ``ids`` in the
    frame's order (None: the whole train split), which the run records beside its ``.args.json``."""

    mask: np.ndarray
    ids: list[str] | None


def fit_rows(frame, training: np.ndarray, usable: np.ndarray) -> dict[str, np.ndarray]:
    """The row numbers a phase trains and validates on: its ``training`` rows (a mask) and the val split's, each
    only where ``usable`` (an image that could be read)."""
    val = (frame["split"] == "val").to_numpy()
    return {"train": np.flatnonzero(training & usable), "val": np.flatnonzero(val & usable)}


def select_training_rows(
    frame: pd.DataFrame,
    class_names: Sequence[str],
    fraction: float | None = None,
    per_class: int | None = None,
    seed: int = 0,
) -> TrainingRows:
    """The training rows of a run: the whole train split, or the subsample that ``--label-fraction``
    (``fraction``) or ``--labels-per-class`` (``per_class``) asks for (:func:`labelled_training_rows`); a
    subsample's count per class is logged."""
    rows = labelled_training_rows(frame, fraction, per_class, seed)
    if fraction is None and per_class is None:
        return TrainingRows(rows, None)
    per_class_counts = np.bincount(frame["label"][rows], minlength=len(class_names))
    log.info(
        "training on %d of %d labelled training examples (per class: %s)",
        rows.sum(),
        int((frame["split"] == "train").sum()),
        ", ".join(f"{name} {n}" for name, n in zip(class_names, per_class_counts)),
    )
    return TrainingRows(rows, frame["id"][rows].tolist())


def _check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    fractions = tuple(float(f) for f in fractions)
    if len(fractions) != 3 or min(fractions) <= 0 or abs(sum(fractions) - 1) > 1e-6:
        raise InputError(f"split fractions must be three positive numbers summing to 1, got {fractions}")
    return fractions


def _split_counts(splits: pd.Series) -> str:
    counts = splits.value_counts()
    return ", ".join(f"{name} {counts.get(name, 0)}" for name in SPLITS)
