"""Text: tweet-aware normalisation inside the model and the vocabulary (GloVe vectors: :mod:`emorec.glove`).

The normalisation is written in TensorFlow string ops and registered with
Keras, so it travels inside the saved model: ``keras.models.load_model`` on a
TER checkpoint maps raw strings to probabilities once this module is imported
(``import emorec.text``), with no tokenizer pickle beside it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

log = logging.getLogger("emorec")


# Emoji and pictographs (kept as tokens of their own); variation selectors and joiners are dropped.
_EMOJI = r"[\x{1F000}-\x{1FAFF}\x{2600}-\x{27BF}\x{2B00}-\x{2BFF}\x{3030}\x{303D}]"
_PUNCTUATION = r"[!\"$%&()*+,\-./:;=?\[\\\]^_`{|}~…“”‘’«»¡¿]+"


@keras.saving.register_keras_serializable(package="emorec")
def tweet_standardize(texts: tf.Tensor) -> tf.Tensor:
    """Normalise tweets the way GloVe-twitter's tokens are written; string tensor in, string tensor out.

    Lower case; links become ``<url>``, @mentions ``<user>``, numbers standing
    alone ``<number>``; '#' is stripped from hashtags; each emoji becomes a token of
    its own; other punctuation (not apostrophes) becomes a space.
    """
    texts = tf.strings.lower(texts, encoding="utf-8")
    texts = tf.strings.regex_replace(texts, r"(?:https?://|www\.)\S+", " <url> ")
    texts = tf.strings.regex_replace(texts, r"@[\pL\pN_]+", " <user> ")
    texts = tf.strings.regex_replace(texts, r"#([\pL\pN_]+)", r" \1 ")
    texts = tf.strings.regex_replace(texts, r"\b\d+(?:[.,:/]\d+)*\b", " <number> ")
    texts = tf.strings.regex_replace(texts, r"[\x{FE0E}\x{FE0F}\x{200D}]", "")
    texts = tf.strings.regex_replace(texts, _EMOJI, r" \0 ")
    return tf.strings.regex_replace(texts, _PUNCTUATION, " ")


def normalise_texts(texts: Sequence[str], batch_size: int = 65536) -> list[str]:
    """The texts as TER's vectorizer sees them: :func:`tweet_standardize`, then its tokens joined by one space.

    Two texts with the same result are the same input to TER (before the
    vocabulary cut). Returns one string per text.
    """
    texts = list(texts)
    normalised = []
    for start in range(0, len(texts), batch_size):
        for text in tweet_standardize(tf.constant(texts[start : start + batch_size])).numpy():
            normalised.append(" ".join(text.decode("utf-8").split()))
    return normalised


def build_vectorizer(max_words: int, seq_len: int) -> keras.layers.TextVectorization:
    """Return an unadapted TextVectorization: :func:`tweet_standardize`, whitespace split,
    the ``max_words`` most frequent words (plus padding and out-of-vocabulary), ``seq_len`` ids per text.
    """
    return keras.layers.TextVectorization(
        max_tokens=max_words + 2,
        standardize=tweet_standardize,
        split="whitespace",
        output_mode="int",
        output_sequence_length=seq_len,
        name="text_vectorization",
    )


def adapt_vectorizer(vectorizer: keras.layers.TextVectorization, texts: Sequence[str]) -> list[str]:
    """Learn the vocabulary from ``texts`` (the training split only); return it, padding and OOV first."""
    vectorizer.adapt(tf.constant(list(texts)), batch_size=1024)
    return [str(word) for word in vectorizer.get_vocabulary()]


def vectorize(vectorizer: keras.layers.TextVectorization, texts: Sequence[str], batch_size: int = 4096) -> np.ndarray:
    """Map texts to padded token-id sequences, shape (len(texts), seq_len), int32."""
    texts = list(texts)
    parts = [vectorizer(tf.constant(texts[i : i + batch_size])).numpy() for i in range(0, len(texts), batch_size)]
    return np.concatenate(parts).astype(np.int32)
