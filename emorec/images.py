"""Images: decoding, the frozen backbones, and the feature cache they are computed into once.

A frozen backbone's output for an image never changes, so it is computed once
per image, streamed through a ``tf.data`` pipeline in chunks, and stored as a
float16 memory-mapped array keyed by backbone, weights, image size and the
manifest's image list. Training heads then reads the cache, never the images.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import keras
import numpy as np
import pandas as pd
import tensorflow as tf
from PIL import Image, ImageFile

from emorec.errors import InputError, list_some
from emorec.fileio import write_csv_atomic, write_json_atomic
from emorec.storage import exclusive

log = logging.getLogger("emorec")

# B-T4SA holds many truncated JPEGs: read them as far as they go (the rest is grey).
ImageFile.LOAD_TRUNCATED_IMAGES = True


@dataclass(frozen=True)
class Backbone:
    """A keras.applications backbone: its constructor, its own preprocess_input, its ImageNet weights file."""

    build: Callable
    preprocess: Callable
    imagenet_file: str


BACKBONES = {
    "vgg16": Backbone(
        keras.applications.VGG16, keras.applications.vgg16.preprocess_input,
        "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
    ),
    "resnet50": Backbone(
        keras.applications.ResNet50, keras.applications.resnet50.preprocess_input,
        "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
    ),
    "efficientnetb0": Backbone(
        keras.applications.EfficientNetB0, keras.applications.efficientnet.preprocess_input, "efficientnetb0_notop.h5"
    ),
}


@keras.saving.register_keras_serializable(package="emorec")
class BackbonePreprocess(keras.layers.Layer):
    """The backbone's own ``preprocess_input`` as a layer, so a saved model takes plain RGB pixels (0-255)."""

    def __init__(self, backbone: str, **kwargs):
        super().__init__(**kwargs)
        self.backbone = backbone

    def call(self, images):
        return BACKBONES[self.backbone].preprocess(images)

    def get_config(self):
        return {**super().get_config(), "backbone": self.backbone}


def keras_models_dir() -> Path:
    """Where Keras keeps downloaded weights (``$KERAS_HOME/models``, by default ``~/.keras/models``)."""
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"


def build_extractor(backbone: str, weights: str, image_size: int, seed: int) -> tuple[keras.Model, str]:
    """Build the frozen feature extractor: RGB pixels (size, size, 3) -> preprocess -> backbone without top.

    ``weights`` is ``imagenet`` (Keras' download and cache), ``none`` (random,
    from ``seed``) or the path of a weights file. Returns the model and the
    weights' identity (a hash of the weights file, or ``none-seed<seed>``) for
    the feature cache's key. Raises :class:`InputError` when the ImageNet
    weights cannot be had, saying where to put them: never falls back silently.
    """
    spec = BACKBONES[backbone]
    if weights == "none":
        keras.utils.set_random_seed(seed)  # the random backbone is a function of the seed alone
        network, identity = spec.build(include_top=False, weights=None, input_shape=(image_size, image_size, 3)), f"none-seed{seed}"
    elif weights == "imagenet":
        try:
            network = spec.build(include_top=False, weights="imagenet", input_shape=(image_size, image_size, 3))
        except Exception as error:  # Keras raises a bare Exception when the download fails
            raise InputError(
                f"cannot load the ImageNet weights of {backbone} ({error}).\n"
                f"Keras looks for {spec.imagenet_file} in {keras_models_dir()}/ and downloads it when missing. "
                f"Without network: copy that file there, or pass --image-weights PATH (a weights file for "
                f"{backbone} without its top), or --image-weights none (random weights)."
            ) from error
        identity = "imagenet-" + _file_hash(keras_models_dir() / spec.imagenet_file)
    else:
        path = Path(weights)
        if not path.is_file():
            raise InputError(f"--image-weights: no such file {path} (use imagenet, none, or a weights file)")
        try:
            network = spec.build(include_top=False, weights=str(path), input_shape=(image_size, image_size, 3))
        except (ValueError, OSError) as error:
            raise InputError(f"--image-weights {path}: not weights for {backbone} without its top ({error})") from error
        identity = "file-" + _file_hash(path)
    network.trainable = False
    pixels = keras.Input(shape=(image_size, image_size, 3), name="image")
    features = network(BackbonePreprocess(backbone, name="preprocess")(pixels), training=False)
    return keras.Model(pixels, features, name=f"{backbone}_extractor"), identity


def load_image(path: str | bytes, image_size: int) -> tuple[np.ndarray, bool]:
    """Decode one image file to RGB pixels (image_size, image_size, 3) uint8; return them and whether it worked.

    JPEG, PNG, GIF (first frame) and whatever else Pillow reads; grayscale,
    palette, CMYK become RGB, transparent images are laid on white; truncated
    JPEGs are read as far as they go. An unreadable file gives zeros and False.
    """
    path = path.decode() if isinstance(path, bytes) else path
    try:
        with Image.open(path) as image:
            image.seek(0)
            if "A" in image.getbands() or "transparency" in image.info:
                rgba = image.convert("RGBA")
                image = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba)
            rgb = image.convert("RGB").resize((image_size, image_size), Image.Resampling.BILINEAR)
            return np.asarray(rgb, dtype=np.uint8), True
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return np.zeros((image_size, image_size, 3), np.uint8), False


def image_batches(paths: Sequence[str], image_size: int, batch_size: int) -> tf.data.Dataset:
    """A streaming pipeline: parallel decode and resize, batch, prefetch; yields (pixels float32, ok) batches."""

    def decode(path):
        pixels, ok = tf.numpy_function(lambda p: load_image(p, image_size), [path], [tf.uint8, tf.bool])
        pixels.set_shape((image_size, image_size, 3))
        ok.set_shape(())
        return tf.cast(pixels, tf.float32), ok

    return (
        tf.data.Dataset.from_tensor_slices(list(paths))
        .map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .batch(batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )


@dataclass
class FeatureCache:
    """Cached backbone features: ``features`` (float16, memory-mapped, one row per id), ``ids``, ``ok`` and its folder."""

    folder: Path
    ids: np.ndarray
    ok: np.ndarray
    features: np.ndarray

    @classmethod
    def open(cls, folder: Path) -> "FeatureCache":
        """Open a complete cache folder read-only; raise :class:`DamagedCache` when its index or features cannot be
        read whole (a truncated or corrupt file) or disagree in length."""
        try:
            index = pd.read_csv(folder / "index.csv", dtype={"id": str, "ok": str}, keep_default_na=False)
            features = np.load(folder / "features.npy", mmap_mode="r")
        except (OSError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
            raise DamagedCache(f"the image feature cache {folder} is damaged ({type(error).__name__}: {error})") from error
        if list(index.columns) != ["id", "ok"] or not index["ok"].isin(["True", "False"]).all() \
                or len(index) != len(features):
            raise DamagedCache(f"the image feature cache {folder} is damaged (its index.csv lists {len(index)} rows "
                               f"for {len(features)} feature rows, or has other columns or values)")
        return cls(folder, index["id"].to_numpy(), (index["ok"] == "True").to_numpy(), features)


class DamagedCache(InputError):
    """A feature cache folder whose files cannot be read whole: IER computes it again, the fusion phase refuses it."""


def cache_folder(cache_dir: str | os.PathLike, backbone: str, identity: str, image_size: int, paths: Sequence[str]) -> Path:
    """The cache folder for these features: keyed by backbone, weights identity, image size and the image list.

    The image list enters with each file's path, size and modification time,
    so an edited, added or removed image means another cache.
    """
    listing = [[path, *_size_and_mtime(path)] for path in paths]
    key = hashlib.sha256(json.dumps([backbone, identity, image_size, listing]).encode()).hexdigest()[:16]
    return Path(cache_dir) / f"{backbone}_{image_size}px_{key}"


def cached_features(
    folder: Path,
    frame: pd.DataFrame,
    extractor: keras.Model,
    image_size: int,
    batch_size: int,
    on_bad_image: str,
    chunk: int = 512,
) -> FeatureCache:
    """Return the feature cache in ``folder``, computing what is missing first.

    ``frame`` gives ``id`` and ``image_path``; ``extractor`` (from
    :func:`build_extractor`) runs only on images not yet computed. Extraction goes in chunks into a hidden
    partial folder, resumes there after a kill, and is renamed into place when
    complete. Unreadable images are skipped (``ok`` False) with one warning,
    or, with ``on_bad_image='error'``, stop the run naming the files.
    """
    cache = _open_if_sound(folder)
    if cache is None:
        # One process computes; another one asking for the same features waits for it, then reuses its cache.
        with exclusive(folder.with_name(f".{folder.name}.lock"), f"computing the same image features into {folder}"):
            cache = _open_if_sound(folder)
            if cache is None:
                compute_features(folder, frame, extractor, image_size, batch_size, on_bad_image, chunk)
                cache = FeatureCache.open(folder)
    bad = frame["image_path"].to_numpy()[~cache.ok]
    if len(bad):
        if on_bad_image == "error":
            raise _bad_images_error(bad)
        log.warning("%s\nThese rows are left out, and their probabilities are empty.", _bad_images_message(bad))
    return cache


def _open_if_sound(folder: Path) -> FeatureCache | None:
    """The complete cache in ``folder`` (logged as reused), or None when there is none; a damaged one is removed,
    with a warning naming it, so that it is computed again."""
    if not folder.exists():
        return None
    try:
        cache = FeatureCache.open(folder)
    except DamagedCache as error:
        log.warning("%s: computing it again", error)
        shutil.rmtree(folder)
        return None
    log.info("image features: reusing the cache %s", folder)
    return cache


def phase_feature_cache(frame, ier_metrics: dict, ier_args: dict):
    """Open the feature cache that IER.py computed, after checking that it belongs to ``frame``'s images as they are now.

    ``ier_metrics`` and ``ier_args`` are IER's ``.metrics.json`` and
    ``.args.json``. Returns the :class:`FeatureCache`; raises
    :class:`InputError` (with the command to rerun) when the cache is missing
    or was computed for other images or ids.
    """
    folder = Path(ier_metrics["feature_cache"])
    rerun = "Run `python IER.py` again with this --manifest (it reuses a cache that is still valid, else recomputes it)."
    expected = cache_folder(folder.parent, ier_args["backbone"], ier_metrics["weights_identity"], ier_args["image_size"],
                            frame["image_path"])
    if expected != folder:
        raise InputError(f"IER's feature cache {folder} was computed for other images (the manifest or an image "
                         f"changed since IER ran). {rerun}")
    if not folder.is_dir():
        raise InputError(f"IER's feature cache {folder} is missing. {rerun}")
    try:
        cache = FeatureCache.open(folder)
    except DamagedCache as error:
        raise InputError(f"{error}. {rerun}") from error
    if list(cache.ids) != frame["id"].tolist():
        raise InputError(f"IER's feature cache {folder} lists other ids than the manifest. {rerun}")
    if (~cache.ok).any():
        log.warning("%d row(s) whose image IER could not read are left out; their probabilities are empty", (~cache.ok).sum())
    return cache


def compute_features(
    folder: Path,
    frame: pd.DataFrame,
    extractor: keras.Model,
    image_size: int,
    batch_size: int,
    on_bad_image: str,
    chunk: int = 512,
) -> None:
    """Run the backbone over every image not yet done and complete the cache folder (see :func:`cached_features`).

    The backbone runs in a worker thread, so that Ctrl-C (SIGINT), which
    Python delivers to the main thread only between bytecodes, is not held up
    by a batch that takes seconds inside TensorFlow: the main thread keeps
    every batch finished so far (progress written, features flushed) and
    re-raises KeyboardInterrupt at once; the same command resumes after them.
    """
    partial = folder.with_name(f".{folder.name}.partial")
    partial.mkdir(parents=True, exist_ok=True)
    paths = frame["image_path"].tolist()
    shape = (len(paths), *extractor.output_shape[1:])
    features_file, progress_file = partial / "features.npy", partial / "progress.json"
    features, progress = _resumable_partial(features_file, progress_file, shape)
    if features is not None:
        log.info("image features: resuming at %d of %d images", progress["done"], len(paths))
    else:
        features, progress = _allocate(features_file, shape), {"done": 0, "ok": []}
    bar = keras.utils.Progbar(len(paths), unit_name="image")
    bar.update(progress["done"])
    lock, stop, failures = threading.Lock(), threading.Event(), []

    def keep_progress() -> None:  # with the lock held
        features.flush()
        write_json_atomic(progress_file, progress)

    def extract() -> None:
        try:
            for start in range(progress["done"], len(paths), chunk):
                stop_at = min(start + chunk, len(paths))
                for offset, (pixels, ok) in enumerate(image_batches(paths[start:stop_at], image_size, batch_size)):
                    first, ok = start + offset * batch_size, ok.numpy()
                    if on_bad_image == "error" and not ok.all():
                        raise _bad_images_error(np.asarray(paths[first : first + len(ok)])[~ok])
                    batch = extractor.predict_on_batch(pixels).astype(np.float16)
                    with lock:
                        if stop.is_set():  # interrupted meanwhile: what was kept stays as it was
                            return
                        features[first : first + len(ok)] = batch
                        progress["ok"].extend(bool(flag) for flag in ok)
                        progress["done"] = first + len(ok)
                    bar.update(progress["done"])
                with lock:
                    keep_progress()
        except BaseException as error:  # handed to the main thread, which raises it
            failures.append(error)

    worker = threading.Thread(target=extract, name="feature-extraction", daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            worker.join(timeout=0.1)
    except KeyboardInterrupt:
        with lock:
            stop.set()
            keep_progress()
        log.warning("\nimage features: interrupted; the %d of %d images done are kept in %s. Run the same command "
                    "again to resume there.", progress["done"], len(paths), partial)
        raise
    if failures:
        raise failures[0]
    del features
    write_csv_atomic(pd.DataFrame({"id": frame["id"], "ok": progress["ok"]}), partial / "index.csv")
    progress_file.unlink()
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(partial, folder)
    log.info("image features: %d images into %s", len(paths), folder)


def _resumable_partial(features_file: Path, progress_file: Path, shape: tuple) -> tuple[np.ndarray | None, dict]:
    """The partial features (writable memmap) and progress a killed extraction left, or (None, {}) when there are
    none or they cannot be trusted (unreadable progress, a features file of another shape or cut short: warned)."""
    if not progress_file.exists() or not features_file.exists():
        return None, {}
    try:
        progress = json.loads(progress_file.read_text())
        # Read-only first: mode r+ would silently extend a file cut short with zeros, taken for features.
        found = np.load(features_file, mmap_mode="r").shape
        if found == shape and 0 < progress["done"] == len(progress["ok"]) <= shape[0]:
            return np.load(features_file, mmap_mode="r+"), progress
        why = f"{found} features and {progress['done']} images done, for {shape}"
    except (OSError, ValueError, KeyError, TypeError) as error:
        why = f"{type(error).__name__}: {error}"
    log.warning("image features: the partial extraction in %s cannot be resumed (%s); starting it again",
                progress_file.parent, why)
    return None, {}


def _allocate(path: Path, shape: tuple) -> np.ndarray:
    """A float16 array of ``shape`` memory-mapped to ``path``, with its disk space reserved at once where the system
    can (``posix_fallocate``): a disk without room fails here, with ENOSPC, rather than killing the process with
    SIGBUS on a later write into the mapping."""
    features = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=shape)
    if hasattr(os, "posix_fallocate"):
        with open(path, "r+b") as file:
            try:
                os.posix_fallocate(file.fileno(), 0, os.fstat(file.fileno()).st_size)
            except OSError as error:
                if error.errno in (errno.EOPNOTSUPP, errno.EINVAL):  # a file system without it: go on
                    return features
                if error.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise InputError(
                        f"no space left on the device of {path.parent} for the image features: they need "
                        f"{_size(features.nbytes)}. Free some space or choose another --cache-dir, and run the "
                        "same command again.") from error
                raise OSError(error.errno, os.strerror(error.errno), str(path)) from error
    return features


def _size(nbytes: int) -> str:
    return f"{nbytes / 1e9:.1f} GB" if nbytes >= 1e9 else f"{nbytes / 1e6:.1f} MB"


def _bad_images_message(paths: Sequence[str]) -> str:
    return f"{len(paths)} image file(s) could not be read (empty, not an image, or damaged):\n{list_some(paths)}"


def _bad_images_error(paths: Sequence[str]) -> InputError:
    return InputError(_bad_images_message(paths) + "\nFix or remove them, or pass --on-bad-image skip.")


def _size_and_mtime(path: str) -> tuple[int, int]:
    try:
        stat = os.stat(path)
        return stat.st_size, stat.st_mtime_ns
    except OSError:
        return -1, -1


def _file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as data:
        for block in iter(lambda: data.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]
