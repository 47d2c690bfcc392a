"""Filling the feature store and reading it back: each image's backbone features computed once, in a streaming
input pipeline, by one process or several sharing the store's folder (each its share of the images; see
:mod:`emorec.feature_store` for the store's layout and locks); and the features a later phase reads, never computed
there."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import keras
import numpy as np

from emorec.errors import InputError, list_some
from emorec.feature_store import DamagedCache, FeatureStore, StoredFeatures, backbone_name, image_keys, store_folder
from emorec.storage import exclusive

if TYPE_CHECKING:
    from emorec.data.manifest import Manifest
    from emorec.runs import RunConfig

log = logging.getLogger("emorec")


@dataclass(frozen=True)
class Extraction:
    """How the backbone runs over the images: ``extractor`` (from :func:`emorec.images.build_extractor`),
    ``batch_size`` images at a time, the store's entries recorded every ``chunk`` images, on the devices of
    ``strategy`` (:func:`emorec.images.backbone_runner`; None: this process's)."""

    extractor: keras.Model
    batch_size: int = 32
    chunk: int = 512
    strategy: object = None
    batches: object = None  # (paths, image size, batch size) -> (pixels, ok) batches; None: emorec.images' decoding

    @property
    def image_size(self) -> int:
        return int(self.extractor.input_shape[1])


def open_image_store(
    cache_dir, backbone: str, weights_identity: str, extractor, pooling: str, precision: str
) -> FeatureStore:
    """The feature store of one backbone configuration under ``cache_dir`` (or the fallback folder where it is
    read-only, :func:`emorec.storage.beside_or_fallback`), made with its configuration if new: ``backbone`` a
    CNN's name or a preset, ``extractor`` what :func:`emorec.images.build_extractor` built with
    ``weights_identity``, ``pooling`` and ``precision``."""
    from emorec.storage import beside_or_fallback

    size = int(extractor.input_shape[1])
    folder = store_folder(cache_dir, backbone, weights_identity, size, pooling, precision)
    config = {
        "backbone": backbone_name(backbone),
        "weights": weights_identity,
        "image_size": size,
        "pooling": pooling,
        "precision": precision,
        "feature_shape": list(extractor.output_shape[1:]),
    }
    return FeatureStore.open(beside_or_fallback(folder, "the image feature store"), config)


def ensure_features(
    store: FeatureStore,
    paths: Sequence[str],
    keys: Sequence[str],
    extraction: Extraction,
    on_bad_image: str = "skip",
    share: tuple[int, int] = (0, 1),
) -> StoredFeatures | None:
    """The features of the images ``paths`` (with their store ``keys``), computing those the store lacks first.

    The backbone (``extraction``) runs only on missing images, one process at a time per share. Unreadable images
    are recorded as such (``ok`` False) and left out with one warning, or, with ``on_bad_image='error'``, stop
    the run naming the files. ``share`` ``(i, K)`` computes only share ``i`` of ``K`` (:func:`share_of`), while
    other processes may fill the others, and returns None: the features are read once every share is done.
    """
    index, count = share
    own, own_paths = keys, paths
    if count > 1:
        path_of = dict(zip(keys, paths))
        own = share_of(keys, index, count)
        own_paths = [path_of[key] for key in own]
    computed = 0
    if store.missing(own):
        lock = ".lock" if count == 1 else f".lock-{index}of{count}"
        with exclusive(store.folder / lock, f"computing image features into {store.folder}"):
            store.reload()  # what another process added while this one waited
            computed = compute_features(store, own_paths, own, extraction, on_bad_image)
    if count > 1:
        log.info(
            "image features: share %d of %d (0 first): %d images computed, %d were in the store %s",
            index,
            count,
            computed,
            len(own) - computed,
            store.folder,
        )
        return None
    if not computed:
        log.info("image features: all %d images are in the store %s", len(dict.fromkeys(keys)), store.folder)
    return read_features(store, paths, keys, on_bad_image)


def share_of(keys: Sequence[str], index: int, count: int) -> list[str]:
    """Share ``index`` (0 first) of ``count`` of the distinct ``keys``: every ``count``-th one, from the
    ``index``-th, in their first order. The shares of one manifest do not overlap and cover it."""
    return list(dict.fromkeys(keys))[index::count]


def read_features(store: FeatureStore, paths: Sequence[str], keys: Sequence[str], on_bad_image: str) -> StoredFeatures:
    """The features of ``keys`` (every one stored; ``paths`` their images), with one warning naming the
    unreadable images, or, with ``on_bad_image='error'``, an :class:`InputError` naming them."""
    stored = store.view(keys)
    bad = bad_images(paths, stored.ok)
    if len(bad):
        if on_bad_image == "error":
            raise _bad_images_error(bad)
        log.warning("%s\nThese rows are left out, and their probabilities are empty.", _bad_images_message(bad))
    return stored


def compute_features(
    store: FeatureStore, paths: Sequence[str], keys: Sequence[str], extraction: Extraction, on_bad_image: str
) -> int:
    """Run the backbone over the images whose keys the store lacks, through one input pipeline, into the store
    (call it holding the store's lock; see :func:`ensure_features`); return how many it computed.

    Every ``extraction.chunk`` images the shards are flushed and their entries appended.
    The backbone runs in a worker thread, so that Ctrl-C (SIGINT), which
    Python delivers to the main thread only between bytecodes, is not held up
    by a batch that takes seconds inside TensorFlow: the main thread records
    every batch finished so far and re-raises KeyboardInterrupt at once; the
    same command goes on after them.
    """
    from emorec.images import backbone_runner

    store.cut_incomplete_line()
    missing = store.missing(keys)
    if not missing:
        return 0
    backbone = backbone_runner(extraction.extractor, extraction.strategy)
    path_of = dict(zip(keys, paths))
    distinct = len(dict.fromkeys(keys))
    if len(missing) == distinct:
        log.info("image features: computing all %d images into the store %s", distinct, store.folder)
    else:
        log.info(
            "image features: computing %d of %d images (the other %d are in the store %s)",
            len(missing),
            distinct,
            distinct - len(missing),
            store.folder,
        )
    run = _BackgroundExtraction(store, missing, [path_of[key] for key in missing], on_bad_image == "error")
    run.start(backbone, extraction)
    return len(missing)


class _BackgroundExtraction:
    """One extraction of the ``missing`` keys' images (``paths``) into ``store``, the backbone in a worker thread:
    Ctrl-C, which Python delivers to the main thread only between bytecodes, then stops at once, every batch
    finished so far recorded, instead of waiting for a batch that takes seconds inside TensorFlow."""

    def __init__(self, store: FeatureStore, missing: list[str], paths: list[str], bad_image_is_error: bool):
        self.store, self.missing, self.paths, self.bad_image_is_error = store, missing, paths, bad_image_is_error
        self.slots = store.free_slots(len(missing))
        self.lock, self.stop, self.failures, self.pending, self.done = threading.Lock(), threading.Event(), [], [], 0

    def start(self, backbone, extraction: Extraction) -> None:
        """Run the extraction to its end; re-raise a failure or Ctrl-C after recording what was done."""
        worker = threading.Thread(
            target=self.extract, args=(backbone, extraction), name="feature-extraction", daemon=True
        )
        worker.start()
        try:
            while worker.is_alive():
                worker.join(timeout=0.1)
        except KeyboardInterrupt:
            with self.lock:
                self.stop.set()
                self.keep_progress()
                self.store.release()
            log.warning(
                "\nimage features: interrupted; the %d of %d images done are kept in %s. Run the same "
                "command again to go on from there.",
                self.done,
                len(self.missing),
                self.store.folder,
            )
            raise
        if self.failures:
            with self.lock:
                try:  # keep the batches done before the failure, where the disk still allows it
                    self.keep_progress()
                except OSError as error:
                    log.warning("image features: the last batches could not be recorded (%s)", error)
                self.store.release()
            raise self.failures[0]
        self.store.release()
        log.info("image features: %d images computed into %s", len(self.missing), self.store.folder)

    def extract(self, backbone, extraction: Extraction) -> None:
        """The worker thread: every batch through the backbone into the store, recorded every chunk."""
        from emorec.images import image_batches

        bar = keras.utils.Progbar(len(self.missing), unit_name="image")
        bar.update(0)
        try:
            batches = extraction.batches or image_batches
            for pixels, ok in batches(self.paths, extraction.image_size, extraction.batch_size):
                first, ok = self.done, ok.numpy()
                if self.bad_image_is_error and len(bad := bad_images(self.paths[first : first + len(ok)], ok)):
                    raise _bad_images_error(bad.tolist())
                features = backbone(pixels).astype(np.float16)
                with self.lock:
                    if self.stop.is_set():  # interrupted meanwhile: what was recorded stays as it was
                        return
                    for offset, (shard, row) in enumerate(self.slots[first : first + len(ok)]):
                        self.store.writable(shard)[row] = features[offset]
                        self.pending.append((self.missing[first + offset], shard, row, bool(ok[offset])))
                    self.done = first + len(ok)
                    if len(self.pending) >= extraction.chunk:
                        self.keep_progress()
                bar.update(self.done)
            with self.lock:
                self.keep_progress()
        except BaseException as error:  # handed to the main thread, which raises it
            self.failures.append(error)

    def keep_progress(self) -> None:
        """Record the pending rows (with the lock held)."""
        if self.pending:
            self.store.record(self.pending)
            self.pending.clear()


def phase_features(manifest: Manifest, ier_metrics: dict, ier_config: RunConfig) -> StoredFeatures:
    """The features IER.py stored for the images of ``manifest`` (a :class:`~emorec.data.manifest.Manifest` or a
    :class:`~emorec.data.dataset.Dataset`), for a later phase (never computed there).

    ``ier_metrics`` is IER's ``.metrics.json`` and ``ier_config`` its ``.args.json``
    (:func:`emorec.runs.read_run_config`).
    Raises :class:`InputError` (with the command to rerun) when the store is
    missing or damaged, or lacks some of the images as they are now.
    """
    rerun = "Run `python IER.py` again with this --manifest (it computes only the images the store lacks)."
    if "feature_store" not in ier_metrics:
        raise InputError(f"IER's outputs are from a release without the per-image feature store. {rerun}")
    folder = Path(ier_metrics["feature_store"])
    try:
        store = FeatureStore.open(folder)
    except DamagedCache as error:
        raise InputError(f"{error}. {rerun}") from error
    keys = image_keys(manifest.frame["image_path"], manifest.image_root, ier_config.flags.get("cache_key", "stat"))
    missing = store.missing(keys)
    if missing:
        raise InputError(
            f"IER's feature store {folder} lacks {len(missing)} of these {len(keys)} images (the "
            f"manifest or an image changed since IER ran). {rerun}"
        )
    stored = store.view(keys)
    if (~stored.ok).any():
        log.warning(
            "%d row(s) without an image (none given, or IER could not read it); the image models leave them out",
            (~stored.ok).sum(),
        )
    return stored


def image_pooling(requested: str | None, ier_pooling: str) -> str:
    """The pooling of the image features in the fusion network: ``requested`` (--pooling), else IER's
    (``ier_pooling``); refused when IER stored features pooled otherwise, which cannot be undone."""
    if requested is None or requested == ier_pooling:
        return ier_pooling
    if ier_pooling != "flatten":
        raise InputError(
            f"--pooling {requested}: IER.py stored features pooled by {ier_pooling}, from which "
            f"{requested} cannot be had. Run `python IER.py --pooling {requested}` first, or leave "
            "--pooling out."
        )
    return requested


def bad_images(paths: Sequence[str], ok: np.ndarray) -> np.ndarray:
    """The ``paths`` whose image could not be read (``ok`` False); a post without an image (an empty path) has
    no bad image."""
    paths = np.asarray(paths)
    return paths[~np.asarray(ok) & (paths != "")]


def _bad_images_message(paths: Sequence[str]) -> str:
    return (
        f"{len(paths)} image file(s) could not be read (not there, empty, not an image, or damaged): their posts "
        f"count as posts without an image:\n{list_some(paths)}"
    )


def _bad_images_error(paths: Sequence[str]) -> InputError:
    return InputError(_bad_images_message(paths) + "\nFix or remove them, or pass --on-bad-image skip.")
