"""A run's image feature store as predict.py reads it: the features of an image IER stored are read back rather
than computed again (they are what the phases scored, and the backbone is the slow part)."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger("emorec")


@dataclass
class StoredImages:
    """IER's feature store of a run, with how IER keyed its images: the features of an image it holds are read
    from it rather than computed again (they are what the phases scored, and the backbone is the slow part)."""

    store: object
    image_root: Path
    cache_key: str

    @classmethod
    def of_run(cls, checkpoints: Path, ier_flags: dict) -> StoredImages | None:
        """The store IER's metrics name, or None (logged) when it is not there or cannot be read."""
        from emorec.feature_store import DamagedCache, FeatureStore

        folder = json.loads((checkpoints / "IER.metrics.json").read_text()).get("feature_store")
        try:
            store = FeatureStore.open(Path(folder)) if folder and Path(folder).is_dir() else None
        except DamagedCache as error:
            log.info("the run's image feature store cannot be read (%s): every image goes through the backbone", error)
            return None
        if store is None:
            log.info("the run's image feature store %s is not here: every image goes through the backbone", folder)
            return None
        return cls(store, Path(ier_flags.get("image_root", ".")), ier_flags.get("cache_key", "stat"))

    def lookup(self, paths: Sequence[str]):
        """Which of ``paths`` the store holds (a boolean mask), and their features (in the mask's order)."""
        from emorec.feature_store import image_keys

        keys = image_keys(paths, self.image_root, self.cache_key)
        held = np.array([key in self.store.entries for key in keys], dtype=bool)
        if held.any():
            log.info(
                "image features: %d of %d images read from the run's feature store %s%s",
                held.sum(),
                len(keys),
                self.store.folder,
                f"; the backbone runs on the other {(~held).sum()}" if not held.all() else "",
            )
        return held, self.store.view([key for key, stored in zip(keys, held) if stored])
