"""How a run's text models read a tweet: its text as a network's inputs, and, to explain a prediction, the same
text with each word deleted in turn.

Two kinds, one per text model TER can train:

- :class:`VocabularyReader`, the paper's pipeline: a ``TextVectorization`` layer's token ids, one per normalised
  word. A word is deleted from the ids (the later ones move up one place, padding after).
- :class:`EncoderReader`, a pretrained encoder's KerasHub preprocessor: word pieces, with its start and end
  tokens. A word (a run of the text between blanks, however many pieces it makes) is deleted from the text, which
  is then tokenised again, so that every piece of it goes whatever the tokenizer.

Both give :class:`TextRows` of a fixed number of rows for a given model (the text, the empty text, then one row
per word it reads, padded), so an explanation's graph is traced once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class TextRows:
    """One text as a text model reads it, for occlusion: ``rows`` (an array of token ids, or a dict of the
    preprocessor's arrays) holds the text, the empty text, then the text without each of its first ``len(words)``
    words (the rest padding); ``words`` are those words as shown; ``tokens`` how many tokens the whole text has,
    ``read`` how many the model reads (its ``--seq-len``)."""

    rows: object
    words: list[str]
    tokens: int
    read: int


class VocabularyReader:
    """The paper's text pipeline: ``vectorizer`` (a ``TextVectorization`` layer, TER's or the fusion's)."""

    kind = "paper"

    def __init__(self, vectorizer):
        self.vectorizer = vectorizer
        self.read = int(vectorizer.get_config()["output_sequence_length"])

    @staticmethod
    def token_counts(texts) -> np.ndarray:
        """How many tokens (normalised words) each of ``texts`` has, of which the model reads the first ``read``."""
        from emorec.text import normalise_texts

        return np.array([len(text.split()) for text in normalise_texts(list(texts))], dtype=np.int64)

    def inputs(self, texts) -> np.ndarray:
        """The token ids of ``texts``: int32 (n, sequence length)."""
        import tensorflow as tf

        return np.asarray(self.vectorizer(tf.constant(list(texts))), np.int32)

    @staticmethod
    def fusion_inputs(inputs) -> dict:
        """What a fusion network takes of the text (:meth:`inputs`, or rows of them as tensors)."""
        return {"token_ids": inputs}

    def deletion_rows(self, text: str) -> TextRows:
        """:class:`TextRows` of ``text``: as many rows as 2 + the sequence length."""
        from emorec.text import normalise_texts

        ids = self.inputs([text])[0]
        count = int(np.count_nonzero(ids))
        rows = np.zeros((2 + len(ids), len(ids)), np.int32)
        rows[0] = ids
        for i in range(count):
            rows[2 + i, : len(ids) - 1] = np.delete(ids, i)
        tokens = normalise_texts([text])[0].split()
        words = tokens[:count]
        if len(words) != count:  # the split disagrees with the vectorizer's: show the vocabulary's own words
            vocabulary = self.vectorizer.get_vocabulary()
            words = [vocabulary[i] for i in ids[:count]]
        return TextRows(rows, words, len(tokens), self.read)


class EncoderReader:
    """A pretrained encoder's ``preprocessor`` (KerasHub's text-classifier preprocessor, ``sequence_length``
    tokens per text)."""

    kind = "encoder"

    def __init__(self, preprocessor):
        self.preprocessor = preprocessor
        self.read = int(preprocessor.sequence_length)

    def inputs(self, texts) -> dict:
        """The preprocessor's arrays of ``texts``: ``{name: (n, sequence length)}``."""
        import tensorflow as tf

        return {name: np.asarray(value) for name, value in self.preprocessor(tf.constant(list(texts))).items()}

    @staticmethod
    def fusion_inputs(inputs) -> dict:
        """What a fusion network takes of the text: the preprocessor's arrays themselves."""
        return inputs

    def token_counts(self, texts) -> np.ndarray:
        """How many tokens (word pieces, with the start and end tokens) each of ``texts`` has, of which the
        encoder reads the first ``read``."""
        import tensorflow as tf

        pieces = self.preprocessor.tokenizer(tf.constant([str(text) for text in texts]))
        lengths = pieces.row_lengths() if hasattr(pieces, "row_lengths") else [len(row) for row in pieces]
        return np.asarray(lengths, dtype=np.int64) + 2

    def deletion_rows(self, text: str) -> TextRows:
        """:class:`TextRows` of ``text``: as many rows as 2 + the sequence length (a word past what the encoder
        reads changes nothing, and has no row)."""
        words = str(text).split()[: self.read]
        texts = [text, "", *(" ".join(words[:i] + words[i + 1 :]) for i in range(len(words)))]
        texts += [""] * (2 + self.read - len(texts))
        return TextRows(self.inputs(texts), words, int(self.token_counts([text])[0]), self.read)


def text_reader(model):
    """The reader of a saved text or fusion model (``TER.keras``, ``Intermediate_fusion.keras``, loaded): an
    :class:`EncoderReader` when it holds a pretrained encoder's preprocessor, else a :class:`VocabularyReader`
    on its ``text_vectorization`` layer."""
    preprocessor = getattr(model, "preprocessor", None)
    return (
        EncoderReader(preprocessor)
        if preprocessor is not None
        else VocabularyReader(model.get_layer("text_vectorization"))
    )
