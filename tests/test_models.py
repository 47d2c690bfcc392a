"""The paper's networks: output shapes and parameter counts, layer by layer."""

from __future__ import annotations

import numpy as np

from emorec.models import build_ter_network


def lstm(units, inputs):
    """Parameters of one LSTM direction."""
    return 4 * (units * (inputs + units) + units)


def conv(width, inputs, filters):
    return width * inputs * filters + filters


def test_ter_network_shape_and_parameter_count():
    vocab, dim, seq_len, classes = 500, 200, 30, 4
    network = build_ter_network(np.zeros((vocab, dim), np.float32), seq_len, classes)
    assert network.output_shape == (None, classes)
    assert network.predict(np.zeros((3, seq_len), np.int32), verbose=0).shape == (3, classes)

    first_path = 2 * 2 * lstm(6, dim) + sum(conv(w, 24, 24) for w in (2, 3, 5, 6, 8))
    second_path = 2 * sum(conv(w, dim, 12) for w in (4, 3, 2)) + 2 * lstm(12, 72)
    pooled = (seq_len // 4) * (5 * 24 + 2 * 12)
    head = pooled * 26 + 26 + 26 * classes + classes
    trainable = vocab * dim + first_path + second_path + head
    assert sum(int(np.prod(w.shape)) for w in network.trainable_weights) == trainable
    assert network.count_params() == trainable + vocab * dim  # plus the frozen channel
    assert network.get_layer("text_embedding_frozen").trainable is False


def test_embeddings_start_from_the_matrix_given():
    matrix = np.random.default_rng(0).normal(size=(50, 8)).astype(np.float32)
    network = build_ter_network(matrix, seq_len=8, n_classes=3)
    for name in ("text_embedding_frozen", "text_embedding_tuned"):
        np.testing.assert_array_equal(network.get_layer(name).get_weights()[0], matrix)
