"""The text pipeline: tweet normalisation in TensorFlow ops, the vocabulary, GloVe reading and its cache."""

from __future__ import annotations

import os

import numpy as np
import pytest
import tensorflow as tf

from emorec import glove, text
from emorec.errors import InputError


def normalise(sentence: str) -> list[str]:
    return text.tweet_standardize(tf.constant([sentence])).numpy()[0].decode("utf-8").split()


def test_tweet_normalisation():
    assert normalise("@JustSports Shame on the #Election2020 😡😡 https://t.co/Hci6fukfw7 in 2020, 3.5 can't...") == [
        "<user>",
        "shame",
        "on",
        "the",
        "election2020",
        "😡",
        "😡",
        "<url>",
        "in",
        "<number>",
        "<number>",
        "can't",
    ]
    assert normalise("I ❤️ NY!!! www.example.com #café") == ["i", "❤", "ny", "<url>", "café"]


def test_vectorizer_vocabulary_comes_from_the_texts_given():
    vectorizer = text.build_vectorizer(max_words=5, seq_len=4)
    vocabulary = text.adapt_vectorizer(vectorizer, ["good good day", "bad day @you", "good"])
    assert vocabulary[:2] == [glove.PAD, glove.OOV]
    assert vocabulary[2] == "good" and set(vocabulary[2:]) == {"good", "day", "bad", "<user>"}
    ids = text.vectorize(vectorizer, ["good unseen", "bad day day day day"])
    assert ids.shape == (2, 4) and ids.dtype == np.int32
    assert ids[0].tolist() == [vocabulary.index("good"), 1, 0, 0]
    assert ids[1].tolist() == [vocabulary.index("bad")] + [vocabulary.index("day")] * 3


def write_glove(path, rows, dim=3):
    path.write_text("".join(f"{word} " + " ".join(f"{v:.4f}" for v in vector) + "\n" for word, vector in rows))
    return path


@pytest.fixture
def glove_file(tmp_path):
    rows = [("<user>", [0.1, 0.2, 0.3]), ("good", [1.0, -1.0, 0.5]), ("bad", [-1.0, 1.0, -0.5]), ("😡", [0, 0, 1])]
    return write_glove(tmp_path / "glove.txt", rows)


def test_reads_only_the_vocabulary_words(glove_file):
    vectors = glove.read_glove(glove_file, ["good", "😡", "absent"], dim=3)
    assert set(vectors) == {"good", "😡"}
    np.testing.assert_allclose(vectors["good"], [1.0, -1.0, 0.5])
    assert set(glove.read_glove(glove_file, None, dim=3)) == {"<user>", "good", "bad", "😡"}


def test_hits_misses_and_the_cache(glove_file, monkeypatch, caplog):
    vocabulary = ["", "[UNK]", "good", "bad", "missing"]
    caplog.set_level("INFO", logger="emorec")
    vectors, found = glove.load_glove_vectors(glove_file, vocabulary, dim=3)
    assert found.tolist() == [False, False, True, True, False]
    np.testing.assert_allclose(vectors[3], [-1.0, 1.0, -0.5])
    assert "found 2 of 3 words" in caplog.text
    assert glove.glove_cache_path(glove_file, vocabulary, 3).exists()

    def no_parsing(*args, **kwargs):
        raise AssertionError("the GloVe file was parsed again")

    monkeypatch.setattr(glove, "read_glove", no_parsing)
    cached, cached_found = glove.load_glove_vectors(glove_file, vocabulary, dim=3)
    np.testing.assert_array_equal(cached, vectors)
    np.testing.assert_array_equal(cached_found, found)
    # Another vocabulary, or a changed file, is another cache entry.
    assert glove.glove_cache_path(glove_file, vocabulary[:-1], 3) != glove.glove_cache_path(glove_file, vocabulary, 3)
    before = glove.glove_cache_path(glove_file, vocabulary, 3)
    os.utime(glove_file, ns=(1, 1))
    assert glove.glove_cache_path(glove_file, vocabulary, 3) != before


def test_a_cache_of_a_larger_vocabulary_serves_its_parts(glove_file, monkeypatch):
    whole = ["", "[UNK]", "good", "bad", "😡", "missing"]
    vectors, found = glove.load_glove_vectors(glove_file, whole, dim=3)
    parses = []
    monkeypatch.setattr(glove, "read_glove", lambda *args: parses.append(args) or {})

    part = ["", "[UNK]", "😡", "missing", "good"]  # a subsample's vocabulary, in its own order
    part_vectors, part_found = glove.load_glove_vectors(glove_file, part, dim=3)
    rows = [whole.index(word) for word in part]
    np.testing.assert_array_equal(part_vectors, vectors[rows])
    np.testing.assert_array_equal(part_found, found[rows])
    assert parses == [] and not glove.glove_cache_path(glove_file, part, 3).exists()

    glove.load_glove_vectors(glove_file, ["", "[UNK]", "good", "new"], dim=3)  # "new" is in no cache
    assert len(parses) == 1
    glove.load_glove_vectors(glove_file, part, dim=4)  # another dimension is another file's cache
    assert len(parses) == 2


def test_missing_file_says_where_to_get_it(tmp_path):
    with pytest.raises(InputError) as error:
        glove.load_glove_vectors(tmp_path / "glove.twitter.27B.200d.txt", ["a"], dim=200)
    message = str(error.value)
    assert "glove.twitter.27B.zip" in message and "--glove none" in message
    assert str(tmp_path / "glove.twitter.27B.200d.txt") in message


def test_wrong_dimension_names_line_one(glove_file):
    with pytest.raises(InputError, match=r"line 1: 3 values per word, but the model uses 200"):
        glove.read_glove(glove_file, ["good"], dim=200)


def test_malformed_line_is_named(tmp_path):
    path = tmp_path / "g.txt"
    path.write_text("a 1 2 3\nb 1 2\nc 1 2 3\n")
    with pytest.raises(InputError, match=r"line 2: 2 values instead of 3"):
        glove.read_glove(path, ["c"], dim=3)
    path.write_text("a 1 2 3\nb 1 x 3\n")
    with pytest.raises(InputError, match=r"line 2: cannot be parsed"):
        glove.read_glove(path, ["b"], dim=3)


def test_embedding_matrix_uses_glove_rows_and_seeded_random_rows(glove_file):
    vocabulary = ["", "[UNK]", "good", "unseen"]
    matrix = glove.embedding_matrix(str(glove_file), vocabulary, dim=3, seed=1)
    assert matrix.shape == (4, 3) and matrix.dtype == np.float32
    assert not matrix[0].any()
    np.testing.assert_allclose(matrix[2], [1.0, -1.0, 0.5])
    np.testing.assert_array_equal(matrix, glove.embedding_matrix(str(glove_file), vocabulary, dim=3, seed=1))
    assert not np.array_equal(matrix[3], glove.embedding_matrix(str(glove_file), vocabulary, dim=3, seed=2)[3])
    random_only = glove.embedding_matrix(None, vocabulary, dim=3, seed=1)
    assert random_only.shape == (4, 3) and random_only[1:].std() < 0.2
