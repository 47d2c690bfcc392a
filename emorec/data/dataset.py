"""A manifest with its shared split, checked and fingerprinted: what every phase starts from."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from emorec.data.fingerprints import data_fingerprint
from emorec.data.manifest import DEFAULT_IMAGE_ROOT, Manifest, read_manifest
from emorec.data.splits import DEFAULT_FRACTIONS, assign_split, check_leakage


@dataclass(frozen=True)
class Dataset(Manifest):
    """A manifest whose ``frame`` has its ``split`` column, with what the phase found of it: where the split came
    from (manifest, stored or drawn), its leakage counts (:func:`emorec.data.splits.check_leakage`) and its
    fingerprint (:func:`emorec.data.fingerprints.data_fingerprint`), which a run records and later phases check."""

    split_source: str
    split_leakage: dict
    fingerprint: dict


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
    to draw one), checked for leakage (an error with ``strict_split``) and fingerprinted. Nothing is written
    unless the manifest is valid.
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
    )
