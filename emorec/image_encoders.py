"""Pretrained image backbones by KerasHub preset: IER's alternative to the three keras.applications CNNs.

A preset is what ``keras_hub.models.Backbone.from_preset`` takes (see
:data:`emorec.presets.IMAGE_PRESET_FORMS`): a KerasHub name such as
``clip_vit_base_patch16``, ``siglip_base_patch16_224``, ``vit_base_patch16_224_imagenet``, ``dinov2_base``
or a CNN's (``resnet_50_imagenet``), an ``hf://`` or ``kaggle://`` handle, or a local folder in KerasHub's layout
(``save_to_preset``), Hugging Face's (``config.json``, ``model.safetensors``
and ``preprocessor_config.json``, for the architectures KerasHub converts:
ViT, DINOv2) or timm's (:mod:`emorec.timm_checkpoints`).

The preset's own image preprocessing goes with it: its image size, and the
scale and offset of its image converter (``image_converter.json``; for a
Hugging Face folder, the mean, standard deviation and rescale factor of its
``preprocessor_config.json``; for a timm checkpoint, its ``pretrained_cfg``). Images are resized to that size without a
crop, as for the CNNs, then scaled in float32.

Each image becomes one vector (``--pooling``):

- ``embedding`` (the default): the model's own image embedding: for CLIP the
  projected class token and for SigLIP the attention-pooled output (both in
  the space the model compares with its text tower); for ViT and DINOv2 the
  class token; for a convolutional backbone the average over space;
- ``avg`` / ``max``: the average or maximum over the patch tokens (the class
  token left out) or over space;
- ``flatten`` (a CNN's): the whole last feature map, which IER's head flattens.

The frozen network is :class:`HubVisionModel`, so that a saved ``IER.keras``
loads after ``import emorec.models`` alone (which registers it; it imports
KerasHub, optional: ``Requirements-hub.txt``, when such a model is loaded).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import keras
import numpy as np

from emorec.errors import InputError
from emorec.feature_store import backbone_name
from emorec.presets import IMAGE_PRESET_FORMS, import_keras_hub, load_failure, preset_location, require_local_preset
from emorec.timm_checkpoints import load_timm_backbone, timm_config, timm_preprocessing

log = logging.getLogger("emorec")

HUB_POOLINGS = ("embedding", "avg", "max", "flatten")
HF_PREPROCESSOR = "preprocessor_config.json"  # a Hugging Face image processor's settings


@keras.saving.register_keras_serializable(package="emorec")
class TokenPool(keras.layers.Layer):
    """One vector per image from a backbone's output: ``first`` (the class token of ``(batch, tokens, dim)``),
    ``avg`` or ``max`` over the tokens after the first (``skip_first``) or over space (``(batch, h, w, dim)``)."""

    def __init__(self, mode: str, skip_first: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.mode, self.skip_first = mode, skip_first

    def call(self, x):
        if self.mode == "first":
            return x[:, 0]
        if len(x.shape) == 3 and self.skip_first:
            x = x[:, 1:]
        axes = tuple(range(1, len(x.shape) - 1))
        return keras.ops.mean(x, axis=axes) if self.mode == "avg" else keras.ops.max(x, axis=axes)

    def get_config(self):
        return {**super().get_config(), "mode": self.mode, "skip_first": self.skip_first}


@keras.saving.register_keras_serializable(package="emorec")
class HubVisionModel(keras.Model):
    """A KerasHub image network (``network``: scaled pixels in, one vector per image out), frozen. A class of its
    own so that loading a saved model imports KerasHub first, whose layers ``network`` holds."""

    def __init__(self, network: keras.Model, **kwargs):
        super().__init__(**kwargs)
        self.network = network
        self.built = True

    def build(self, input_shape=None):
        self.built = True

    def call(self, images, training=False):
        return self.network(images, training=training)

    def compute_output_spec(self, images, training=False):
        return self.network.compute_output_spec(images)

    def get_config(self):
        return {**super().get_config(), "network": keras.saving.serialize_keras_object(self.network)}

    @classmethod
    def from_config(cls, config):
        import_keras_hub()
        config = dict(config)
        return cls(keras.saving.deserialize_keras_object(config.pop("network")), **config)


@dataclass
class ImageEncoder:
    """A preset loaded for images: its ``backbone`` (the whole KerasHub model: for CLIP and SigLIP with the text
    tower), the vision network on one vector per image (``vision``, in the policy it was loaded in), the image
    preprocessing (``image_size``, ``scale``, ``offset``: pixels 0-255 times scale plus offset, per channel) and
    ``weights_sha256`` (of ``vision``'s weights as loaded: with the preset and the pooling it keys a store)."""

    preset: str
    backbone: keras.Model
    vision: keras.Model
    pooling: str
    image_size: int
    scale: list[float]
    offset: list[float]
    weights_sha256: str
    architecture: str  # KerasHub's backbone class, or a timm checkpoint's architecture

    @property
    def name(self) -> str:
        """The preset's last part, safe in a file name (a store's folder, a layer's name)."""
        return backbone_name(self.preset)

    def describe(self) -> dict:
        """The encoder as a run and a store record it."""
        return {
            "preset": self.preset,
            "architecture": self.architecture,
            "pooling": self.pooling,
            "image_size": self.image_size,
            "dim": int(np.prod(self.vision.network.output_shape[1:])),
            "weights": int(self.vision.count_params()),
            "weights_sha256": self.weights_sha256,
        }


def load_image_encoder(preset: str, pooling: str = "embedding") -> ImageEncoder:
    """Load ``preset``'s backbone and image preprocessing (see the module's documentation), its vision network in
    the Keras dtype policy of the block it is loaded in (:func:`emorec.precision.dtype_policy`) whatever the
    preset's configuration names, ending in ``pooling`` (one of :data:`HUB_POOLINGS`).

    Raises :class:`InputError` naming the preset when KerasHub is missing, the folder is missing, the preset cannot
    be loaded or has no image preprocessing, or it is not an image model."""
    if pooling not in HUB_POOLINGS:
        raise InputError(
            f"--pooling {pooling}: a KerasHub image backbone gives one vector per image by one of "
            f"{', '.join(HUB_POOLINGS)} (flatten: a convolutional backbone's whole feature map)"
        )
    hub = import_keras_hub()
    require_local_preset(preset, "--backbone", IMAGE_PRESET_FORMS)
    location = preset_location(preset)
    policy = keras.config.dtype_policy().name
    timm = timm_config(location)
    if timm:
        backbone = load_timm_backbone(location, timm, preset, policy)
    else:
        try:
            backbone = hub.models.Backbone.from_preset(location, dtype=policy)
        except Exception as error:  # KerasHub raises many kinds (ValueError, FileNotFoundError, HTTP errors, ...)
            raise load_failure("image backbone", preset, error, IMAGE_PRESET_FORMS) from error
    tower = _image_tower(backbone, policy, preset)
    image_size, scale, offset = _image_preprocessing(hub, preset, location, timm)
    vision = HubVisionModel(
        _vision_network(backbone, tower, pooling, image_size), name=f"{backbone_name(preset)}_vision"
    )
    vision.trainable = False
    from emorec.runs import weights_fingerprint

    architecture = timm["architecture"] if timm else type(backbone).__name__
    return ImageEncoder(
        preset, backbone, vision, pooling, image_size, scale, offset, weights_fingerprint(vision), architecture
    )


def build_hub_extractor(encoder: ImageEncoder) -> keras.Model:
    """The frozen extractor: RGB pixels (size, size, 3), 0-255, in -> the preset's scale and offset (float32,
    the layer ``preprocess``) -> the vision network -> one vector per image."""
    shape = (encoder.image_size, encoder.image_size, 3)
    pixels = keras.Input(shape=shape, name="image")
    scaled = keras.layers.Rescaling(encoder.scale, encoder.offset, name="preprocess", dtype="float32")(pixels)
    return keras.Model(pixels, encoder.vision(scaled, training=False), name=f"{encoder.name}_extractor")


def convolutional_maps(vision: HubVisionModel) -> tuple[str, keras.Model] | None:
    """For Grad-CAM on a convolutional backbone: (what the maps are, a model from scaled images to [its last feature
    map, the features]); None where the vision network is not a CNN's feature map, pooled by one layer or kept
    whole (a ViT, CLIP's tower)."""
    network = vision.network
    inner = [layer for layer in network.layers if not isinstance(layer, keras.layers.InputLayer)]
    if len(inner) not in (1, 2) or not isinstance(inner[0], keras.Model) or len(inner[0].output.shape) != 4:
        return None
    images = keras.Input(shape=network.input.shape[1:], name="images")
    maps = inner[0](images)
    features = inner[1](maps) if len(inner) == 2 else maps  # pooled, or the whole map (--pooling flatten)
    return f"{inner[0].name}'s last feature map", keras.Model(images, [maps, features])


def _image_tower(backbone: keras.Model, policy: str, preset: str) -> keras.Model:
    """The part of ``backbone`` that takes images (CLIP's and SigLIP's vision tower, else the backbone), in
    ``policy``; an :class:`InputError` where it takes none."""
    encoder = getattr(backbone, "vision_encoder", None)
    if encoder is not None and encoder.dtype_policy.name != policy:
        # CLIP's and SigLIP's presets name their towers' dtype apart from the backbone's, which from_preset's
        # dtype does not reach: the vision tower is built again in the policy, with the same weights.
        rebuilt = type(encoder).from_config({**encoder.get_config(), "dtype": policy})
        rebuilt.set_weights(encoder.get_weights())
        encoder = rebuilt
    source = encoder if encoder is not None else backbone
    image_input = source.input.get("images") if isinstance(source.input, dict) else source.input
    if image_input is None or isinstance(image_input, (list, tuple)) or len(image_input.shape) != 4:
        raise InputError(
            f"--backbone {preset!r}: {type(backbone).__name__} is not an image backbone; choose an "
            "image preset (CLIP, SigLIP, ViT, DINOv2, a CNN such as ResNet or EfficientNet, ...)"
        )
    return source


def _vision_network(backbone: keras.Model, source: keras.Model, pooling: str, image_size: int) -> keras.Model:
    """Scaled images (``image_size`` square, where the backbone takes any) in, one vector per image out, built of
    ``backbone``'s image tower ``source`` (:func:`_image_tower`)."""
    architecture = type(backbone).__name__
    named = isinstance(source.input, dict)  # CLIP's and SigLIP's towers take {"images": ...}
    image_input = source.input["images"] if named else source.input
    height, width, channels = image_input.shape[1:]
    images = keras.Input(shape=(height or image_size, width or image_size, channels), name="images")
    output = source({"images": images} if named else images)
    if architecture == "CLIPBackbone" and pooling == "embedding":
        features = backbone.vision_projection(backbone.vision_pooler(output))
    elif pooling == "flatten":
        if len(output.shape) != 4:
            raise InputError(
                f"--pooling flatten: {architecture} gives tokens, not a convolutional feature map; use "
                f"--pooling {', '.join(p for p in HUB_POOLINGS if p != 'flatten')}"
            )
        features = output  # the whole map, as a keras.applications CNN's: IER's head flattens it
    elif len(output.shape) == 2:
        if pooling != "embedding":
            raise InputError(
                f"--pooling {pooling}: {architecture}'s image tower gives a pooled vector only; use --pooling embedding"
            )
        features = output
    else:
        class_token = len(output.shape) == 3 and getattr(backbone, "use_class_token", True)
        mode = ("first" if class_token else "avg") if pooling == "embedding" else pooling
        features = TokenPool(mode, skip_first=class_token, name=f"image_{mode}_pool")(output)
    return keras.Model(images, features, name="vision_network")


def _image_preprocessing(hub, preset: str, location: str, timm: dict | None) -> tuple[int, list[float], list[float]]:
    """(image size, scale, offset per channel) from a timm checkpoint's ``pretrained_cfg``, else the preset's image
    converter, else its Hugging Face ``preprocessor_config.json``; an :class:`InputError` when it has none (no
    silent guess at the normalisation a network was trained with)."""
    if timm is not None:
        height, width, scale, offset = timm_preprocessing(timm, preset)
    elif (converter := _image_converter(hub, location)) is not None and converter.image_size is not None:
        height, width = converter.image_size
        scale, offset = converter.scale, converter.offset
    else:
        settings = _hugging_face_preprocessing(location)
        if settings is None:
            raise InputError(
                f"--backbone {preset!r}: the preset has no image preprocessing (KerasHub's "
                f"image_converter.json, or Hugging Face's {HF_PREPROCESSOR}), so the size and "
                "normalisation its network expects are unknown; add one to the folder"
            )
        height, width, scale, offset = settings
    if height != width:
        raise InputError(f"--backbone {preset!r}: images of {height}x{width} pixels; IER feeds square images")
    return int(height), _per_channel(scale, 1.0), _per_channel(offset, 0.0)


def _image_converter(hub, location: str):
    """The preset's KerasHub image converter, or None (an architecture without a converter class, or a preset
    without its file)."""
    try:
        return hub.layers.ImageConverter.from_preset(location)
    except Exception:
        return None


def _hugging_face_preprocessing(location: str):
    """(height, width, scale, offset) from a Hugging Face image processor's settings, or None without them:
    the network's input is the crop (``crop_size``, where the processor crops) or else ``size``; pixels are
    rescaled by ``rescale_factor`` then normalised by ``image_mean`` and ``image_std``."""
    try:
        from keras_hub.src.utils.preset_utils import get_file

        settings = json.loads(open(get_file(location, HF_PREPROCESSOR), encoding="utf-8").read())
    except Exception:  # no such file in the preset
        return None
    size = settings.get("crop_size") if settings.get("do_center_crop") else None
    size = size or settings.get("size", 224)
    if isinstance(size, dict):
        size = (size["height"], size["width"]) if "height" in size else (size.get("shortest_edge"),) * 2
    height, width = size if isinstance(size, (list, tuple)) else (size, size)
    if not isinstance(height, int) or not isinstance(width, int):
        raise InputError(f"{HF_PREPROCESSOR} in {location}: no image size that IER can read ({settings.get('size')})")
    rescale = settings.get("rescale_factor", 1 / 255) if settings.get("do_rescale", True) else 1.0
    mean = np.asarray(settings.get("image_mean", [0.0] * 3), np.float64)
    std = np.asarray(settings.get("image_std", [1.0] * 3), np.float64)
    if not settings.get("do_normalize", True):
        mean, std = np.zeros(3), np.ones(3)
    return int(height), int(width), list(rescale / std), list(-mean / std)


def _per_channel(value, default: float) -> list[float]:
    if value is None:
        return [default] * 3
    values = np.broadcast_to(np.asarray(value, np.float64).reshape(-1), (3,))
    return [float(v) for v in values]
