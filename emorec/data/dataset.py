"""A manifest with its shared split, checked and fingerprinted: what every phase starts from."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from emorec.data.fingerprints import data_fingerprint
from emorec.data.manifest import DEFAULT_IMAGE_ROOT, SPLITS, Manifest, read_manifest
from emorec.data.splits import DEFAULT_FRACTIONS, assign_split, check_leakage
from emorec.errors import InputError

log = logging.getLogger("emorec")


@dataclass(frozen=True)
class Dataset(Manifest):
    """A manifest whose ``frame`` has its ``split`` column, with what the phase found of it: where the split came
    from (manifest, stored or drawn), its leakage counts (:func:`emorec.data.splits.check_leakage`) and its
    fingerprint (:func:`emorec.data.fingerprints.data_fingerprint`), which a run records and later phases check,
    and the classes each split lacks (:func:`check_class_coverage`)."""

    split_source: str
    split_leakage: dict
    fingerprint: dict
    absent_classes: dict


def load_dataset(
    manifest_path: str | os.PathLike,
    image_root: str | os.PathLike = DEFAULT_IMAGE_ROOT,
    seed: int = 0,
    resplit: bool = False,
    class_names: Sequence[str] | None = None,
    images_required: bool = True,
    strict_split: bool = False,
    draw: bool = True,
) -> Dataset:
    """Read a manifest and give it its shared split: what every phase starts from.

    Returns the :class:`Dataset` of the :func:`~emorec.data.manifest.read_manifest` rows (``images_required`` is
    passed to it) with a ``split`` column (see :func:`~emorec.data.splits.assign_split`; ``draw`` False refuses
    to draw one), checked for leakage (an error with ``strict_split``) and for classes a split lacks
    (:func:`check_class_coverage`), and fingerprinted. Nothing is written unless the manifest is valid.
    """
    manifest = read_manifest(manifest_path, image_root, class_names, images_required)
    frame, source = assign_split(
        manifest.frame,
        manifest_path,
        seed=seed,
        fractions=DEFAULT_FRACTIONS,
        resplit=resplit,
        draw=draw,
        class_names=manifest.class_names,
    )
    return Dataset(
        frame,
        manifest.class_names,
        manifest.image_root,
        split_source=source,
        split_leakage=check_leakage(frame, strict_split, source),
        fingerprint=data_fingerprint(frame, source),
        absent_classes=check_class_coverage(frame, manifest.class_names, source),
    )


def check_class_coverage(frame: pd.DataFrame, class_names: Sequence[str], source: str = "given") -> dict[str, list]:
    """The classes each split lacks, ``{split: [class name, ...]}`` (splits that lack none left out).

    A class without training rows cannot be learnt: :class:`InputError`, naming it. A class with training rows but
    none in val or test is logged as a warning: its F1 is undefined there, so macro-F1 averages the classes present
    in that split (:func:`emorec.metrics.method_scores`), and the report says which were left out.
    """
    counts = pd.crosstab(frame["label"], frame["split"]).reindex(index=range(len(class_names)), columns=SPLITS)
    counts = counts.fillna(0).astype(int)
    absent = {split: [class_names[c] for c in counts.index[counts[split] == 0]] for split in SPLITS}
    if absent["train"]:
        rows = ", ".join(
            f"{class_names[c]} ({counts.at[c, 'val']} val, {counts.at[c, 'test']} test)"
            for c in counts.index[counts["train"] == 0]
        )
        raise InputError(
            f"the split ({source}) has no training rows for {len(absent['train'])} class(es): {rows}. A class "
            "must be learnt from training rows: give it some in the split, or leave its rows and name out."
        )
    for split in ("val", "test"):
        if absent[split]:
            log.warning(
                "the split (%s) has no %s rows of %s: %s-set macro-F1 averages the other %d classes",
                source,
                split,
                ", ".join(absent[split]),
                split,
                len(class_names) - len(absent[split]),
            )
    return {split: names for split, names in absent.items() if names}
