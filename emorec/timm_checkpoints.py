"""timm checkpoints as image backbones: a folder or ``hf://timm/...`` handle with ``config.json`` (its
``architecture`` and ``pretrained_cfg``) and ``model.safetensors``, converted by KerasHub, the TF-ported ones exactly.

KerasHub 0.32 converts timm's ResNets, CSPNets, DenseNets, MobileNets, VGGs,
EfficientNets and HGNetV2s by their PyTorch-trained names. timm's
TensorFlow-ported checkpoints (``tf_efficientnet_b0`` ... ``b5``,
``tf_efficientnet_lite0``: weights trained in TensorFlow) it refuses by name,
and under the PyTorch name they compute something else: they expect
TensorFlow's "SAME" padding (at a stride-2 convolution, one pixel less before
than after on an even side) and batch-norm epsilon 1e-3, where the PyTorch
architecture pads symmetrically and uses 1e-5. So a ``tf_`` checkpoint is
converted under its PyTorch name, then its network is built again with those
two set (:func:`tensorflow_same_padding`), as a plain Keras functional model of
standard layers, which saves and loads as it is.

The image preprocessing is the checkpoint's ``pretrained_cfg``: ``input_size``
(channels, height, width), ``mean`` and ``std`` of pixels scaled to 0-1.
"""

from __future__ import annotations

import json
from pathlib import Path

import keras

from emorec.errors import InputError
from emorec.presets import load_failure

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
TF_PORTED = "tf_"
# The architectures KerasHub 0.32's timm converter takes, by the start of their name (keras_hub's TimmPresetLoader).
FAMILIES = ("resnet", "csp", "dark", "densenet", "mobilenet", "vgg", "efficientnet", "hgnetv2")
# The TF-ported ones converted exactly here: KerasHub's EfficientNet converter's variants with TensorFlow weights.
TF_PORTED_VARIANTS = ("b0", "b1", "b2", "b3", "b4", "b5", "lite0")
TF_BATCH_NORM_EPSILON = 1e-3


def timm_config(location: str) -> dict | None:
    """The preset's timm ``config.json`` (one with an ``architecture``), or None where it has none (a KerasHub or
    Hugging Face transformers preset)."""
    try:
        from keras_hub.src.utils.preset_utils import get_file

        config = json.loads(Path(get_file(location, CONFIG)).read_text(encoding="utf-8"))
    except Exception:  # no config.json (a KerasHub name is resolved later, by from_preset), or not JSON
        return None
    return config if isinstance(config, dict) and isinstance(config.get("architecture"), str) else None


def load_timm_backbone(location: str, config: dict, preset: str, policy: str) -> keras.Model:
    """The timm checkpoint at ``location`` (its ``config``) as a KerasHub backbone in the dtype ``policy``; a
    TF-ported one converted exactly (see the module's notes). Raises :class:`InputError` naming the preset for an
    architecture no converter knows, a folder without weights, or weights that do not fit the architecture."""
    from keras_hub.src.utils.preset_utils import check_file_exists
    from keras_hub.src.utils.timm.preset_loader import TimmPresetLoader

    architecture = config["architecture"]
    ported = architecture.startswith(TF_PORTED)
    base = architecture.removeprefix(TF_PORTED)
    supported = (
        f"KerasHub converts timm's {', '.join(FAMILIES)} architectures, and this project timm's "
        f"TF-ported {', '.join(f'{TF_PORTED}efficientnet_{v}' for v in TF_PORTED_VARIANTS)}"
    )
    if (ported and base.removeprefix("efficientnet_") not in TF_PORTED_VARIANTS) or not base.startswith(FAMILIES):
        raise InputError(f"--backbone {preset!r}: no converter for timm's architecture {architecture!r}; {supported}.")
    if not check_file_exists(location, WEIGHTS):
        raise InputError(
            f"--backbone {preset!r}: the timm checkpoint has {CONFIG} but no {WEIGHTS} (its weights, "
            "as timm's save or the Hugging Face hub give them)"
        )
    try:
        loader = TimmPresetLoader(location, {**config, "architecture": base})
        backbone = loader.load_backbone(loader.check_backbone_class(), load_weights=True, dtype=policy)
    except Exception as error:  # KerasHub's ValueError for a variant, KeyError or shape errors for other weights
        raise load_failure(f"timm's {architecture} as the image backbone", preset, error, supported) from error
    return tensorflow_same_padding(backbone, architecture) if ported else backbone


def tensorflow_same_padding(backbone: keras.Model, name: str) -> keras.Model:
    """``backbone`` built again as a plain functional model (named ``name``) with TensorFlow's "SAME" padding at
    every strided convolution (its explicit symmetric padding removed) and batch-norm epsilon 1e-3, with the same
    weights."""
    plain = keras.Model(backbone.input, backbone.output)
    strided, paddings = set(), set()
    for layer in plain.layers:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)) and max(layer.strides) > 1:
            source = layer.input._keras_history.operation
            if isinstance(source, keras.layers.ZeroPadding2D):
                strided.add(layer.name)
                paddings.add(source.name)

    def rebuilt(layer):
        config = layer.get_config()
        if layer.name in strided:
            config["padding"] = "same"
        elif layer.name in paddings:
            config["padding"] = ((0, 0), (0, 0))
        elif isinstance(layer, keras.layers.BatchNormalization):
            config["epsilon"] = TF_BATCH_NORM_EPSILON
        return type(layer).from_config(config)

    exact = keras.models.clone_model(plain, clone_function=rebuilt)
    exact.set_weights(plain.get_weights())
    return keras.Model(exact.input, exact.output, name=name)


def timm_preprocessing(config: dict, preset: str) -> tuple[int, int, list[float], list[float]]:
    """(height, width, scale, offset) from the checkpoint's ``pretrained_cfg``: pixels 0-255 become
    ``(pixels / 255 - mean) / std``. Raises :class:`InputError` where it lacks the input size, mean or std (no
    guess at the normalisation a network was trained with)."""
    settings = config.get("pretrained_cfg") or {}
    missing = [key for key in ("input_size", "mean", "std") if key not in settings]
    if missing:
        raise InputError(
            f"--backbone {preset!r}: the timm checkpoint's {CONFIG} has no pretrained_cfg "
            f"{', '.join(missing)}, so the size and normalisation its network expects are unknown; add "
            "them (timm writes pretrained_cfg: input_size [3, H, W], mean and std of 0-1 pixels)"
        )
    _, height, width = settings["input_size"]
    mean, std = [float(m) for m in settings["mean"]], [float(s) for s in settings["std"]]
    return int(height), int(width), [1 / 255 / s for s in std], [-m / s for m, s in zip(mean, std)]
