"""Images: decoding, and the frozen backbones whose features :mod:`emorec.feature_store` keeps."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from PIL import Image, ImageFile, ImageOps

from emorec.errors import InputError

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
        keras.applications.VGG16,
        keras.applications.vgg16.preprocess_input,
        "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
    ),
    "resnet50": Backbone(
        keras.applications.ResNet50,
        keras.applications.resnet50.preprocess_input,
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


def build_extractor(
    backbone: str, weights: str, image_size: int | None, seed: int, pooling: str = "flatten", precision: str = "float32"
) -> tuple[keras.Model, str]:
    """Build the frozen feature extractor: RGB pixels (size, size, 3), 0-255 -> preprocess -> backbone without top.

    ``backbone`` is one of :data:`BACKBONES` (keras.applications CNNs) or a
    KerasHub preset (:mod:`emorec.image_encoders`). For a CNN, ``weights`` is
    ``imagenet`` (Keras' download and cache), ``none`` (random, from ``seed``)
    or the path of a weights file, and ``pooling`` ``flatten`` keeps the
    backbone's whole last feature map (VGG16 at 224 px: 7x7x512, the paper's)
    while ``avg`` and ``max`` pool it over space (512 numbers per image). A
    preset carries its weights and its image size (``image_size`` None, or
    that size), and pools by one of :data:`emorec.image_encoders.HUB_POOLINGS`.
    ``precision`` is one of :data:`emorec.precision.POLICIES`. Returns the
    model (its input shape gives the image size) and the weights' identity (a
    hash of the weights, or ``none-seed<seed>``) for the feature store's key.
    Raises :class:`InputError` when the weights cannot be had, saying where to
    put them: never falls back silently.
    """
    from emorec.precision import dtype_policy

    with dtype_policy(precision):
        if backbone not in BACKBONES:
            return _hub_extractor(backbone, image_size, pooling)
        return _build_extractor(
            BACKBONES[backbone], backbone, weights, image_size or 224, seed, None if pooling == "flatten" else pooling
        )


def _hub_extractor(preset: str, image_size: int | None, pooling: str) -> tuple[keras.Model, str]:
    from emorec.image_encoders import build_hub_extractor, load_image_encoder

    encoder = load_image_encoder(preset, pooling)
    if image_size not in (None, encoder.image_size):
        raise InputError(
            f"--image-size {image_size}: {preset} takes images of {encoder.image_size} pixels; leave --image-size out"
        )
    described = encoder.describe()
    log.info(
        "image backbone %s: %s, %s weights, %d px, %d numbers per image (--pooling %s)",
        preset,
        described["architecture"],
        f"{described['weights']:,}",
        described["image_size"],
        described["dim"],
        pooling,
    )
    return build_hub_extractor(encoder), "hub-" + encoder.weights_sha256[:16]


def _build_extractor(spec: Backbone, backbone: str, weights: str, image_size: int, seed: int, pooling: str | None):
    shape = (image_size, image_size, 3)
    if weights == "none":
        keras.utils.set_random_seed(seed)  # the random backbone is a function of the seed alone
        network = spec.build(include_top=False, weights=None, input_shape=shape, pooling=pooling)
        identity = f"none-seed{seed}"
    elif weights == "imagenet":
        try:
            network = spec.build(include_top=False, weights="imagenet", input_shape=shape, pooling=pooling)
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
            network = spec.build(include_top=False, weights=str(path), input_shape=shape, pooling=pooling)
        except (ValueError, OSError) as error:
            raise InputError(f"--image-weights {path}: not weights for {backbone} without its top ({error})") from error
        identity = "file-" + _file_hash(path)
    network.trainable = False
    pixels = keras.Input(shape=shape, name="image")
    # The mean subtraction in float32: pixel values need more digits than bfloat16's 8 bits.
    features = network(BackbonePreprocess(backbone, name="preprocess", dtype="float32")(pixels), training=False)
    return keras.Model(pixels, features, name=f"{backbone}_extractor"), identity


ORIENTATION = 0x0112  # the EXIF tag of how a stored image is turned


def upright(image: Image.Image) -> Image.Image:
    """``image`` turned as its EXIF orientation says (a phone photo stored sideways, shown upright); itself when it
    has none (``ImageOps.exif_transpose`` would copy it)."""
    return image if image.getexif().get(ORIENTATION, 1) == 1 else ImageOps.exif_transpose(image)


def load_image(path: str | bytes, image_size: int) -> tuple[np.ndarray, bool]:
    """Decode one image file to RGB pixels (image_size, image_size, 3) uint8; return them and whether it worked.

    JPEG, PNG, GIF (first frame) and whatever else Pillow reads; grayscale,
    palette, CMYK become RGB, transparent images are laid on white; truncated
    JPEGs are read as far as they go; an EXIF orientation (a phone photo
    stored sideways) is applied, so the pixels are upright as the photo was
    taken. An unreadable file gives zeros and False.
    """
    path = path.decode() if isinstance(path, bytes) else path
    try:
        with Image.open(path) as image:
            image.seek(0)
            image = upright(image)
            if "A" in image.getbands() or "transparency" in image.info:
                rgba = image.convert("RGBA")
                image = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba)
            rgb = image.convert("RGB").resize((image_size, image_size), Image.Resampling.BILINEAR)
            return np.asarray(rgb, dtype=np.uint8), True
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return np.zeros((image_size, image_size, 3), np.uint8), False


def backbone_runner(extractor: keras.Model, strategy=None) -> Callable:
    """A function from a batch of pixels to its features as a NumPy array: ``extractor.predict_on_batch`` on one
    device; with a ``strategy`` of R > 1 replicas on this machine (``--strategy mirrored``; ``extractor`` built
    in its scope), each batch cut into R nearly equal parts in order, one per replica, and the features gathered
    back in the batch's order."""
    if strategy is None or strategy.num_replicas_in_sync == 1:
        return extractor.predict_on_batch
    replicas = strategy.num_replicas_in_sync

    @tf.function
    def step(parts):
        return strategy.gather(strategy.run(lambda x: extractor(x, training=False), args=(parts,)), axis=0)

    def run(pixels):
        parts = tf.split(pixels, [len(part) for part in np.array_split(np.arange(len(pixels)), replicas)])
        return step(
            strategy.experimental_distribute_values_from_function(
                lambda context: parts[context.replica_id_in_sync_group]
            )
        ).numpy()

    return run


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


def _file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as data:
        for block in iter(lambda: data.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]
