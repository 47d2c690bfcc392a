"""The paper's networks, built from named pieces that the phases share.

Shapes below are for the paper's settings: sequences of 30 token ids and
200-dimensional embeddings. Every Conv1D uses 'same' padding and ReLU, so the
paths keep the sequence length and can be concatenated feature-wise. Layer
names start with ``text_`` so a fusion model can warm-start them from TER.

Importing this module registers every custom object that the saved models
(``TER.keras``, ``IER.keras``, ``Intermediate_fusion.keras``) hold: the tweet
normalisation, the backbones' preprocessing, a KerasHub image backbone and a pretrained text encoder's
model (which imports KerasHub when one is loaded). ``import emorec.models`` is
the one import needed before ``keras.models.load_model`` on any of them; the
saved models carry no optimizer (see :func:`emorec.training.fit.fit_best`).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, regularizers

import emorec.image_encoders  # noqa: F401  (registers HubVisionModel: IER.keras with a KerasHub backbone; KerasHub on load)
import emorec.images  # noqa: F401  (registers BackbonePreprocess, held by IER.keras and Intermediate_fusion.keras)
import emorec.text  # noqa: F401  (registers tweet_standardize, held by TER.keras and Intermediate_fusion.keras)
import emorec.text_encoders  # noqa: F401  (registers EncodedTextModel: TER.keras with --text-encoder; KerasHub on load)

L2 = 1e-4


def text_channels(token_ids, embedding_matrix: np.ndarray, prefix: str = "text"):
    """The two embedding channels, both initialised from ``embedding_matrix`` (vocabulary x dim).

    Returns (frozen, tuned): the first is never trained, the second is; each
    is (batch, seq_len, dim).
    """
    vocab_size, dim = embedding_matrix.shape
    frozen = layers.Embedding(
        vocab_size, dim, weights=[embedding_matrix], trainable=False, name=f"{prefix}_embedding_frozen"
    )
    tuned = layers.Embedding(vocab_size, dim, weights=[embedding_matrix], name=f"{prefix}_embedding_tuned")
    return frozen(token_ids), tuned(token_ids)


def first_text_path(frozen, tuned, prefix: str = "text"):
    """The paper's first text path: BiLSTM per channel, then a bank of wide convolutions.

    Each channel -> Bidirectional(LSTM(6), sequences) (seq, 12); the two
    concatenated (seq, 24) -> Conv1D with 24 filters of widths 2, 3, 5, and 6
    and 8 with L2(1e-4), concatenated (seq, 120) -> Dropout(0.3).
    """
    recurrent = [
        layers.Bidirectional(layers.LSTM(6, return_sequences=True), name=f"{prefix}_bilstm6_{channel}")(sequence)
        for channel, sequence in (("frozen", frozen), ("tuned", tuned))
    ]
    joined = layers.Concatenate(name=f"{prefix}_bilstm6_joined")(recurrent)
    convolutions = [
        layers.Conv1D(
            24,
            width,
            padding="same",
            activation="relu",
            kernel_regularizer=regularizers.L2(L2) if width in (6, 8) else None,
            name=f"{prefix}_conv24_w{width}",
        )(joined)
        for width in (2, 3, 5, 6, 8)
    ]
    bank = layers.Concatenate(name=f"{prefix}_conv24_bank")(convolutions)
    return layers.Dropout(0.3, name=f"{prefix}_conv24_dropout")(bank)


def second_text_path(frozen, tuned, prefix: str = "text"):
    """The paper's second text path: convolutions per channel, then a BiLSTM.

    On each channel Conv1D with 12 filters of widths 4 (with L2(1e-4)), 3 and
    2; the six concatenated (seq, 72) -> Bidirectional(LSTM(12), sequences) (seq, 24).
    """
    convolutions = [
        layers.Conv1D(
            12,
            width,
            padding="same",
            activation="relu",
            kernel_regularizer=regularizers.L2(L2) if width == 4 else None,
            name=f"{prefix}_conv12_w{width}_{channel}",
        )(sequence)
        for channel, sequence in (("frozen", frozen), ("tuned", tuned))
        for width in (4, 3, 2)
    ]
    joined = layers.Concatenate(name=f"{prefix}_conv12_joined")(convolutions)
    return layers.Bidirectional(layers.LSTM(12, return_sequences=True), name=f"{prefix}_bilstm12")(joined)


def build_ter_network(embedding_matrix: np.ndarray, seq_len: int, n_classes: int) -> keras.Model:
    """The paper's text emotion recognition network: token ids (batch, seq_len) in, class probabilities out.

    Both text paths (:func:`first_text_path`, :func:`second_text_path`) on the
    two GloVe channels, concatenated (seq, 144) -> MaxPooling1D(4) (seq/4, 144)
    -> Dropout(0.5) -> Flatten -> Dense(26, relu) -> Dense(n_classes, softmax).
    """
    token_ids = keras.Input(shape=(seq_len,), dtype="int32", name="token_ids")
    frozen, tuned = text_channels(token_ids, embedding_matrix)
    paths = layers.Concatenate(name="text_paths")([first_text_path(frozen, tuned), second_text_path(frozen, tuned)])
    x = layers.MaxPooling1D(4, name="text_pool")(paths)
    x = layers.Dropout(0.5, name="text_pool_dropout")(x)
    x = layers.Flatten(name="text_flatten")(x)
    x = layers.Dense(26, activation="relu", name="text_dense26")(x)
    # float32 under a mixed policy too (TER --precision), as Keras advises for a model's output.
    probabilities = layers.Dense(n_classes, activation="softmax", name="probabilities", dtype="float32")(x)
    return keras.Model(token_ids, probabilities, name="ter_network")


def text_model(vectorizer: layers.TextVectorization, network: keras.Model, name: str = "TER") -> keras.Model:
    """Wrap a token-id network with its vectorizer: raw strings (batch,) in, class probabilities out."""
    texts = keras.Input(shape=(), dtype="string", name="text")
    return keras.Model(texts, network(vectorizer(texts)), name=name)


def build_ier_head(feature_shape: tuple[int, ...], n_classes: int) -> keras.Model:
    """The paper's image head on frozen backbone features (VGG16: 7x7x512).

    Flatten -> Dense(1000, relu) -> Dense(n_classes, softmax). Pooled
    features (512,) pass the Flatten unchanged. Under a mixed-precision policy
    the softmax stays float32, as Keras advises for a model's output.
    """
    features = keras.Input(shape=feature_shape, name="image_features")
    x = layers.Flatten(name="image_flatten")(features)
    x = layers.Dense(1000, activation="relu", name="image_dense1000")(x)
    probabilities = layers.Dense(n_classes, activation="softmax", name="probabilities", dtype="float32")(x)
    return keras.Model(features, probabilities, name="ier_head")


def image_model(extractor: keras.Model, head: keras.Model, name: str = "IER") -> keras.Model:
    """Join the frozen extractor and a head: RGB pixels (size, size, 3), 0-255, in; class probabilities out."""
    pixels = keras.Input(shape=extractor.input_shape[1:], name="image")
    return keras.Model(pixels, head(extractor(pixels)), name=name)


IMAGE_POOLING = {"flatten": layers.Flatten, "avg": layers.GlobalAveragePooling2D, "max": layers.GlobalMaxPooling2D}


def build_fusion_network(
    embedding_matrix: np.ndarray,
    seq_len: int,
    feature_shape: tuple[int, ...],
    n_classes: int,
    pooling: str = "flatten",
) -> keras.Model:
    """The paper's intermediate (feature-level) fusion network.

    Inputs ``{"token_ids": (batch, seq_len), "image_features": (batch, *feature_shape)}``.
    Image: Flatten (or, with ``pooling`` avg or max, a global pooling of a
    feature map; features pooled already pass a Flatten unchanged) ->
    Dense(3000, relu) -> Dense(500, relu). Text: the two
    GloVe channels, :func:`first_text_path` flattened and
    :func:`second_text_path` flattened. All three concatenated ->
    Dense(1000, relu) -> Dense(n_classes, softmax). Text layers keep TER's
    names, so :func:`warm_start` can copy them.
    """
    token_ids = keras.Input(shape=(seq_len,), dtype="int32", name="token_ids")
    features = keras.Input(shape=feature_shape, name="image_features")
    image = image_branch(features, pooling)  # built first: the layers' initial weights follow their order
    frozen, tuned = text_channels(token_ids, embedding_matrix)
    first = layers.Flatten(name="text_first_flatten")(first_text_path(frozen, tuned))
    second = layers.Flatten(name="text_second_flatten")(second_text_path(frozen, tuned))
    probabilities = fusion_top([image, first, second], n_classes)
    return keras.Model({"token_ids": token_ids, "image_features": features}, probabilities, name="fusion_network")


def image_branch(features, pooling: str = "flatten"):
    """The fusion network's image side: Flatten (or a global pooling of a feature map, by ``pooling``; features
    pooled already pass a Flatten unchanged) -> Dense(3000, relu) -> Dense(500, relu)."""
    pool = IMAGE_POOLING[pooling if len(features.shape) == 4 else "flatten"]
    image = pool(name="image_flatten" if pool is layers.Flatten else f"image_{pooling}_pool")(features)
    image = layers.Dense(3000, activation="relu", name="image_dense3000")(image)
    return layers.Dense(500, activation="relu", name="image_dense500")(image)


def fusion_top(parts: list, n_classes: int):
    """The modalities' parts concatenated -> Dense(1000, relu) -> Dense(n_classes, softmax, float32)."""
    x = layers.Concatenate(name="fusion_joined")(parts)
    x = layers.Dense(1000, activation="relu", name="fusion_dense1000")(x)
    return layers.Dense(n_classes, activation="softmax", name="probabilities", dtype="float32")(x)


def build_encoded_fusion_head(
    text_dim: int, feature_shape: tuple[int, ...], n_classes: int, pooling: str = "flatten"
) -> keras.Model:
    """The intermediate fusion on a pretrained text encoder's pooled features, in place of the GloVe paths.

    Inputs ``{"text_features": (batch, text_dim), "image_features": (batch, *feature_shape)}``. Image:
    :func:`image_branch`; text: Dropout(0.1) (TER's head's) on the features; both -> :func:`fusion_top`.
    """
    text = keras.Input(shape=(text_dim,), name="text_features")
    features = keras.Input(shape=feature_shape, name="image_features")
    image = image_branch(features, pooling)
    dropped = layers.Dropout(0.1, name="text_features_dropout")(text)
    probabilities = fusion_top([image, dropped], n_classes)
    return keras.Model({"text_features": text, "image_features": features}, probabilities, name="fusion_head")


def join_encoded_fusion(text_features: keras.Model, head: keras.Model) -> keras.Model:
    """A text encoder's features model (token arrays in) and :func:`build_encoded_fusion_head` as one network:
    ``{<the token arrays>, "image_features"}`` in, probabilities out."""
    image = keras.Input(shape=head.input["image_features"].shape[1:], name="image_features")
    tokens = dict(text_features.input)
    probabilities = head({"text_features": text_features(tokens), "image_features": image})
    return keras.Model({**tokens, "image_features": image}, probabilities, name="fusion_network")


def warm_start(fusion: keras.Model, ter_network: keras.Model, ier_head: keras.Model) -> list[str]:
    """Copy trained unimodal weights into a fusion network; return the names of the layers changed.

    Every ``text_*`` layer of the fusion network takes the weights of TER's
    layer of the same name. The image Dense(3000) takes IER's Dense(1000) as
    its first 1000 units (the rest keep their initialisation), since the
    paper's fusion layer is wider than IER's.
    """
    changed = []
    ter_layers = {layer.name: layer for layer in ter_network.layers}
    for layer in fusion.layers:
        if layer.name.startswith("text_") and layer.weights and layer.name in ter_layers:
            layer.set_weights(ter_layers[layer.name].get_weights())
            changed.append(layer.name)
    return changed + warm_start_image(fusion, ier_head)


def warm_start_image(fusion: keras.Model, ier_head: keras.Model) -> list[str]:
    """Copy IER's Dense(1000) into the first 1000 units of the fusion network's image Dense(3000) (the rest keep
    their initialisation); return the names of the layers changed."""
    dense = fusion.get_layer("image_dense3000")
    kernel, bias = dense.get_weights()
    ier_kernel, ier_bias = ier_head.get_layer("image_dense1000").get_weights()
    if ier_kernel.shape[0] != kernel.shape[0]:
        raise ValueError(f"IER's head reads {ier_kernel.shape[0]} features, the fusion network {kernel.shape[0]}")
    kernel[:, : ier_kernel.shape[1]], bias[: ier_bias.shape[0]] = ier_kernel, ier_bias
    dense.set_weights([kernel, bias])
    return ["image_dense3000"]


def fusion_model(
    vectorizer: layers.TextVectorization,
    extractor: keras.Model,
    network: keras.Model,
    name: str = "Intermediate_fusion",
) -> keras.Model:
    """Wrap a fusion network with its vectorizer and frozen extractor.

    Inputs ``{"text": strings (batch,), "image": RGB pixels (batch, size, size, 3), 0-255}``; class probabilities out.
    """
    texts = keras.Input(shape=(), dtype="string", name="text")
    pixels = keras.Input(shape=extractor.input_shape[1:], name="image")
    probabilities = network({"token_ids": vectorizer(texts), "image_features": extractor(pixels)})
    return keras.Model({"text": texts, "image": pixels}, probabilities, name=name)
