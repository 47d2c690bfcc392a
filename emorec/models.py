"""The paper's networks, built from named pieces that the phases share.

Shapes below are for the paper's settings: sequences of 30 token ids and
200-dimensional embeddings. Every Conv1D uses 'same' padding and ReLU, so the
paths keep the sequence length and can be concatenated feature-wise. Layer
names start with ``text_`` so a fusion model can warm-start them from TER.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, regularizers

L2 = 1e-4


def text_channels(token_ids, embedding_matrix: np.ndarray, prefix: str = "text"):
    """The two embedding channels, both initialised from ``embedding_matrix`` (vocabulary x dim).

    Returns (frozen, tuned): the first is never trained, the second is; each
    is (batch, seq_len, dim).
    """
    vocab_size, dim = embedding_matrix.shape
    frozen = layers.Embedding(vocab_size, dim, weights=[embedding_matrix], trainable=False, name=f"{prefix}_embedding_frozen")
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
            24, width, padding="same", activation="relu",
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
            12, width, padding="same", activation="relu",
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
    paths = layers.Concatenate(name="text_paths")(
        [first_text_path(frozen, tuned), second_text_path(frozen, tuned)]
    )
    x = layers.MaxPooling1D(4, name="text_pool")(paths)
    x = layers.Dropout(0.5, name="text_pool_dropout")(x)
    x = layers.Flatten(name="text_flatten")(x)
    x = layers.Dense(26, activation="relu", name="text_dense26")(x)
    probabilities = layers.Dense(n_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(token_ids, probabilities, name="ter_network")


def text_model(vectorizer: layers.TextVectorization, network: keras.Model, name: str = "TER") -> keras.Model:
    """Wrap a token-id network with its vectorizer: raw strings (batch,) in, class probabilities out."""
    texts = keras.Input(shape=(), dtype="string", name="text")
    return keras.Model(texts, network(vectorizer(texts)), name=name)


def build_ier_head(feature_shape: tuple[int, ...], n_classes: int) -> keras.Model:
    """The paper's image head on frozen backbone features (VGG16: 7x7x512).

    Flatten -> Dense(1000, relu) -> Dense(n_classes, softmax).
    """
    features = keras.Input(shape=feature_shape, name="image_features")
    x = layers.Flatten(name="image_flatten")(features)
    x = layers.Dense(1000, activation="relu", name="image_dense1000")(x)
    probabilities = layers.Dense(n_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(features, probabilities, name="ier_head")


def image_model(extractor: keras.Model, head: keras.Model, name: str = "IER") -> keras.Model:
    """Join the frozen extractor and a head: RGB pixels (size, size, 3), 0-255, in; class probabilities out."""
    pixels = keras.Input(shape=extractor.input_shape[1:], name="image")
    return keras.Model(pixels, head(extractor(pixels)), name=name)
