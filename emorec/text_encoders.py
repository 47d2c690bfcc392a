"""Pretrained text encoders by KerasHub preset: TER's alternative to the paper's GloVe network.

A preset is what ``keras_hub.models.Backbone.from_preset`` takes: a KerasHub
name (``bert_base_en_uncased``, ``distil_bert_base_en_uncased``,
``roberta_base_en``, ``deberta_v3_base_en``, ...), a Hugging Face handle of an
architecture KerasHub converts (``hf://sentence-transformers/all-MiniLM-L6-v2``),
a Kaggle handle, or a local folder in KerasHub's layout (``save_to_preset``)
or Hugging Face's (``config.json``, ``model.safetensors`` and the tokenizer's
files; KerasHub converts it on load). The preset's own tokenizer and
preprocessor go with it.

A text is the masked mean of the backbone's last hidden states over its tokens
(padding left out): every architecture has them, where the pooled [CLS] output
is BERT's alone, and sentence encoders such as all-MiniLM-L6-v2 were trained
for the mean. TER either fine-tunes the backbone with a softmax head, or keeps
it frozen: then each text's features are computed once into a store, as the
image features are, and only the head trains.

The saved model (:class:`EncodedTextModel`) takes raw strings: the preset's
preprocessor, then the network. ``import emorec.models`` registers it (with
KerasHub's classes) before ``keras.models.load_model``.

KerasHub is optional (``Requirements-hub.txt``, see :mod:`emorec.presets`): it is
imported only when an encoder is loaded.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
from keras import layers

from emorec.errors import InputError
from emorec.presets import import_keras_hub, load_failure, preset_location, require_local_preset

log = logging.getLogger("emorec")


@keras.saving.register_keras_serializable(package="emorec")
class MaskedMeanPool(layers.Layer):
    """The mean of a sequence's vectors over its real tokens: ``(batch, seq, dim)`` and a ``(batch, seq)``
    padding mask (True for a token) in, ``(batch, dim)`` out, in float32."""

    def call(self, sequence, padding_mask):
        mask = keras.ops.expand_dims(keras.ops.cast(padding_mask, "float32"), -1)
        total = keras.ops.sum(keras.ops.cast(sequence, "float32") * mask, axis=1)
        return total / keras.ops.maximum(keras.ops.sum(mask, axis=1), 1.0)


@keras.saving.register_keras_serializable(package="emorec")
class EncodedTextModel(keras.Model):
    """Raw strings (batch,) in, class probabilities out: a KerasHub preprocessor, then ``network``.

    A subclassed model rather than a functional one: Keras rebuilds a
    functional model by calling each layer before it loads the layers'
    assets, and a KerasHub tokenizer called before its vocabulary is loaded
    fails (keras-team/keras-hub#1522). Here the two parts are rebuilt from
    their configurations, then the vocabulary and the weights are loaded.
    """

    def __init__(self, preprocessor, network: keras.Model, **kwargs):
        super().__init__(**kwargs)
        self.preprocessor, self.network = preprocessor, network
        self.built = True  # both parts are; building by a symbolic call would need the vocabulary before its load

    def build(self, input_shape=None):
        self.built = True

    def call(self, texts):
        return self.network(self.preprocessor(texts))

    def get_config(self):
        return {
            **super().get_config(),
            "preprocessor": keras.saving.serialize_keras_object(self.preprocessor),
            "network": keras.saving.serialize_keras_object(self.network),
        }

    @classmethod
    def from_config(cls, config):
        import_keras_hub()  # registers KerasHub's classes, which the two parts hold
        config = dict(config)
        preprocessor = keras.saving.deserialize_keras_object(config.pop("preprocessor"))
        network = keras.saving.deserialize_keras_object(config.pop("network"))
        return cls(preprocessor, network, **config)


@keras.saving.register_keras_serializable(package="emorec")
class EncodedFusionModel(keras.Model):
    """``{"text": strings (batch,), "image": RGB pixels (batch, size, size, 3), 0-255}`` in, class
    probabilities out: a KerasHub preprocessor and a frozen image extractor, then the fusion ``network``
    (:func:`emorec.models.join_encoded_fusion`). Subclassed for the reason :class:`EncodedTextModel` is."""

    def __init__(self, preprocessor, extractor: keras.Model, network: keras.Model, **kwargs):
        super().__init__(**kwargs)
        self.preprocessor, self.extractor, self.network = preprocessor, extractor, network
        self.built = True

    def build(self, input_shape=None):
        self.built = True

    def call(self, inputs):
        tokens = self.preprocessor(inputs["text"])
        return self.network({**tokens, "image_features": self.extractor(inputs["image"])})

    def get_config(self):
        return {
            **super().get_config(),
            **{
                part: keras.saving.serialize_keras_object(getattr(self, part))
                for part in ("preprocessor", "extractor", "network")
            },
        }

    @classmethod
    def from_config(cls, config):
        import_keras_hub()
        config = dict(config)
        parts = [
            keras.saving.deserialize_keras_object(config.pop(part)) for part in ("preprocessor", "extractor", "network")
        ]
        return cls(*parts, **config)


@dataclass
class TextEncoder:
    """A preset loaded: its ``backbone``, its ``preprocessor`` (``seq_len`` tokens per text) and what names
    it (``preset``, ``architecture``, ``dim``: the width of a text's features, ``precision``: the arithmetic it
    runs in, ``weights_sha256``: the preset's weights as loaded, before any fine-tuning; the two key a store of
    its features)."""

    preset: str
    backbone: keras.Model
    preprocessor: object
    seq_len: int
    weights_sha256: str

    @property
    def architecture(self) -> str:
        return type(self.backbone).__name__

    @property
    def dim(self) -> int:
        return int(self.backbone.hidden_dim)

    @property
    def precision(self) -> str:
        """The backbone's dtype policy as a ``--precision``: float32, bfloat16 or float16."""
        from emorec.precision import POLICIES

        return {policy: name for name, policy in POLICIES.items()}[self.backbone.dtype_policy.name]

    def describe(self) -> dict:
        """The encoder as a run records it."""
        return {
            "preset": self.preset,
            "architecture": self.architecture,
            "dim": self.dim,
            "seq_len": self.seq_len,
            "weights": int(self.backbone.count_params()),
            "weights_sha256": self.weights_sha256,
            "precision": self.precision,
        }


def load_text_encoder(preset: str, seq_len: int) -> TextEncoder:
    """Load the backbone and the text-classifier preprocessor of ``preset`` (see the module's documentation),
    the preprocessor cutting or padding each text to ``seq_len`` tokens, the backbone in the Keras dtype policy
    of the block it is loaded in (:func:`emorec.precision.dtype_policy`; float32 outside one), whatever the
    preset's own configuration names.

    Raises :class:`InputError` naming the preset when KerasHub is missing, the folder is missing, or the
    preset cannot be loaded (not found, no network, an architecture without a text preprocessor)."""
    hub = import_keras_hub()
    require_local_preset(preset, "text encoder")
    location = preset_location(preset)
    try:
        backbone = hub.models.Backbone.from_preset(location, dtype=keras.config.dtype_policy().name)
        preprocessor = hub.models.TextClassifierPreprocessor.from_preset(location, sequence_length=seq_len)
    except Exception as error:  # KerasHub raises many kinds (ValueError, FileNotFoundError, HTTP errors, ...)
        raise load_failure("text encoder", preset, error) from error
    if not hasattr(backbone, "hidden_dim"):
        raise InputError(
            f"text encoder {preset!r}: {type(backbone).__name__} is not a text encoder with hidden "
            "states; choose a BERT-class preset"
        )
    from emorec.runs import weights_fingerprint

    return TextEncoder(preset, backbone, preprocessor, seq_len, weights_fingerprint(backbone))


def saved_text_encoder(model: EncodedTextModel, described: dict) -> tuple[TextEncoder, keras.Model]:
    """The encoder inside a saved TER model (``model``, loaded), as TER ``described`` it
    (:meth:`TextEncoder.describe`, from its run record), and its features model (token arrays in, pooled features
    out): fine-tuned or frozen, as TER left it. The ``weights_sha256`` stays the preset's (what keys its store)."""
    network = model.network  # join_text_network's: the features model's layers, then the head
    features = keras.Model(network.input, network.get_layer("text_mean_pool").output, name="text_encoder")
    backbone = next(layer for layer in features.layers if hasattr(layer, "hidden_dim"))
    encoder = TextEncoder(
        described["preset"], backbone, model.preprocessor, int(described["seq_len"]), described["weights_sha256"]
    )
    return encoder, features


def open_text_store(folder: Path, encoder: TextEncoder):
    """The :class:`~emorec.feature_store.FeatureStore` of ``encoder``'s frozen features in ``folder`` (created
    when missing; refused, as a damaged store, when it holds another encoder's)."""
    from emorec.feature_store import FeatureStore

    return FeatureStore.open(
        folder, {"kind": "text", **encoder.describe(), "pooling": "mean", "feature_shape": [encoder.dim]}
    )


def token_inputs(encoder: TextEncoder) -> dict:
    """Symbolic inputs for the backbone's token arrays (token ids, padding mask, ...), ``seq_len`` long."""
    return {
        name: keras.Input(shape=(encoder.seq_len,), dtype=tensor.dtype, name=name)
        for name, tensor in encoder.backbone.input.items()
    }


def build_text_features(encoder: TextEncoder) -> keras.Model:
    """The backbone and :class:`MaskedMeanPool`: the preprocessor's token arrays in, ``(batch, dim)`` out."""
    inputs = token_inputs(encoder)
    for layer in encoder.backbone.layers:
        if layer.name == "pooled_dense":  # BERT's pooled [CLS] output, which the mean pooling leaves unused
            layer.trainable = False
    outputs = encoder.backbone(inputs)
    sequence = outputs["sequence_output"] if isinstance(outputs, dict) else outputs
    pooled = MaskedMeanPool(name="text_mean_pool")(sequence, inputs["padding_mask"])
    return keras.Model(inputs, pooled, name="text_encoder")


def build_text_head(dim: int, n_classes: int, dropout: float = 0.1) -> keras.Model:
    """A text's features ``(batch, dim)`` -> Dropout -> Dense(n_classes, softmax, float32)."""
    features = keras.Input(shape=(dim,), name="text_features")
    x = layers.Dropout(dropout, name="text_head_dropout")(features)
    probabilities = layers.Dense(n_classes, activation="softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(features, probabilities, name="text_head")


def join_text_network(features: keras.Model, head: keras.Model) -> keras.Model:
    """The features model and the head as one network: token arrays in, probabilities out."""
    return keras.Model(features.input, head(features.output), name="text_encoder_network")


def preprocess(encoder: TextEncoder, texts: Sequence[str], batch_size: int = 1024) -> dict[str, np.ndarray]:
    """The preprocessor's token arrays for ``texts``, as NumPy: ``{name: (n, seq_len)}``."""
    import tensorflow as tf

    texts = [str(text) for text in texts]
    parts = [
        encoder.preprocessor(tf.constant(texts[start : start + batch_size]))
        for start in range(0, len(texts), batch_size)
    ]
    return {name: np.concatenate([np.asarray(part[name]) for part in parts]) for name in parts[0]}


def text_keys(texts: Sequence[str]) -> list[str]:
    """A text's key in a feature store: the sha256 of its UTF-8 bytes."""
    return ["text:" + hashlib.sha256(str(text).encode("utf-8")).hexdigest() for text in texts]


def text_store_folder(cache_dir: str | os.PathLike, encoder: TextEncoder) -> Path:
    """The store folder of this encoder's features under ``cache_dir``: named by the preset, the tokens per
    text, the precision and the weights' hash."""
    from emorec.feature_store import backbone_name

    name = f"{backbone_name(encoder.preset)}_{encoder.seq_len}tok_mean_{encoder.precision}"
    return Path(cache_dir) / f"text_{name}_{encoder.weights_sha256[:12]}"


def ensure_text_features(
    store, encoder: TextEncoder, texts: Sequence[str], batch_size: int = 128, chunk: int = 1024
) -> np.ndarray:
    """Each text's features ``(n, dim)`` float32, from the store (a :class:`emorec.feature_store.FeatureStore`),
    computing the texts it lacks first (holding its lock; every ``chunk`` texts recorded, so a killed run goes
    on from there)."""
    from emorec.storage import exclusive

    keys = text_keys(texts)
    if store.missing(keys):
        with exclusive(store.folder / ".lock", f"computing text features into {store.folder}"):
            store.reload()
            store.cut_incomplete_line()
            missing = store.missing(keys)
            text_of = dict(zip(keys, texts))
            if missing:
                log.info(
                    "text features: computing %d of %d texts into the store %s",
                    len(missing),
                    len(dict.fromkeys(keys)),
                    store.folder,
                )
                features_model = build_text_features(encoder)
                slots = store.free_slots(len(missing))
                bar = keras.utils.Progbar(len(missing), unit_name="text")
                try:
                    for start in range(0, len(missing), chunk):
                        part = missing[start : start + chunk]
                        tokens = preprocess(encoder, [text_of[key] for key in part])
                        features = features_model.predict(tokens, batch_size=batch_size, verbose=0)
                        for offset, (shard, row) in enumerate(slots[start : start + len(part)]):
                            store.writable(shard)[row] = features[offset].astype(np.float16)
                        store.record(
                            [
                                (key, shard, row, True)
                                for key, (shard, row) in zip(part, slots[start : start + len(part)])
                            ]
                        )
                        bar.update(start + len(part))
                finally:
                    store.release()
    else:
        log.info("text features: all %d texts are in the store %s", len(dict.fromkeys(keys)), store.folder)
    return np.asarray(store.view(keys).features, np.float32)
