"""A manifest with its shared split, checked and fingerprinted: what every phase starts from."""

from __future__ import annotations

import os
from typing import Sequence

import pandas as pd

from emorec.data.fingerprints import data_fingerprint
from emorec.data.manifest import DEFAULT_IMAGE_ROOT, read_manifest
from emorec.data.splits import DEFAULT_FRACTIONS, assign_split, check_leakage


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
