"""The paper's networks: output shapes and parameter counts, layer by layer."""

from __future__ import annotations

import numpy as np

from emorec.models import build_fusion_network, build_ier_head, build_ter_network, warm_start


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


def test_fusion_network_shapes_and_warm_start():
    vocab, dim, seq_len, classes = 60, 8, 12, 4
    rng = np.random.default_rng(0)
    matrix = rng.normal(size=(vocab, dim)).astype(np.float32)
    ter = build_ter_network(matrix, seq_len, classes)
    head = build_ier_head((2, 2, 16), classes)
    network = build_fusion_network(matrix, seq_len, (2, 2, 16), classes)
    inputs = {"token_ids": np.zeros((3, seq_len), np.int32), "image_features": np.zeros((3, 2, 2, 16), np.float32)}
    assert network.predict(inputs, verbose=0).shape == (3, classes)
    assert network.get_layer("image_dense3000").get_weights()[0].shape == (64, 3000)
    assert network.get_layer("image_dense500").get_weights()[0].shape == (3000, 500)
    joined = 500 + seq_len * 5 * 24 + seq_len * 24  # image, first text path, second text path (flattened)
    assert network.get_layer("fusion_dense1000").get_weights()[0].shape == (joined, 1000)

    for layer in ter.layers + head.layers:  # make the unimodal weights recognisable
        layer.set_weights([w + rng.normal(size=w.shape).astype(w.dtype) for w in layer.get_weights()])
    before = network.get_layer("image_dense3000").get_weights()[0].copy()
    changed = warm_start(network, ter, head)
    assert "text_bilstm12" in changed and "text_conv24_w8" in changed and "image_dense3000" in changed
    for name in changed[:-1]:
        for fused, unimodal in zip(network.get_layer(name).get_weights(), ter.get_layer(name).get_weights()):
            np.testing.assert_array_equal(fused, unimodal)
    kernel = network.get_layer("image_dense3000").get_weights()[0]
    np.testing.assert_array_equal(kernel[:, :1000], head.get_layer("image_dense1000").get_weights()[0])
    np.testing.assert_array_equal(kernel[:, 1000:], before[:, 1000:])


def test_the_fusion_network_pools_a_whole_feature_map_when_asked_and_passes_pooled_features():
    glove = np.zeros((10, 4), np.float32)
    pooled_in_network = build_fusion_network(glove, 6, (2, 2, 8), 3, pooling="max")
    assert type(pooled_in_network.get_layer("image_max_pool")).__name__ == "GlobalMaxPooling2D"
    assert pooled_in_network.get_layer("image_dense3000").get_weights()[0].shape[0] == 8
    stored_pooled = build_fusion_network(glove, 6, (8,), 3, pooling="avg")  # IER pooled them already
    assert stored_pooled.get_layer("image_dense3000").get_weights()[0].shape[0] == 8
    features = np.random.default_rng(0).normal(size=(2, 2, 2, 8)).astype(np.float32)
    token_ids = np.ones((2, 6), np.int32)
    probabilities = pooled_in_network.predict({"token_ids": token_ids, "image_features": features}, verbose=0)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_fusion_pooling_follows_ier_and_refuses_what_a_pooled_store_cannot_give():
    import pytest

    from emorec.errors import InputError
    from emorec.extraction import image_pooling

    assert image_pooling(None, "max") == "max" and image_pooling("avg", "flatten") == "avg"
    with pytest.raises(InputError, match="stored features pooled by max.*python IER.py --pooling avg"):
        image_pooling("avg", "max")


def test_auto_precision_says_what_it_chose_and_why(monkeypatch, caplog):
    from emorec import precision

    caplog.set_level("INFO", logger="emorec")
    monkeypatch.setattr(precision, "native_support", lambda: {"bfloat16": None, "float16": None})
    assert precision.resolve_precision("auto") == "float32"
    assert "float32 (--precision auto: no bfloat16 support found" in caplog.text
    assert precision.resolve_precision("bfloat16") == "bfloat16" and "bfloat16 is emulated" in caplog.text
    monkeypatch.setattr(precision, "native_support", lambda: {"bfloat16": "this CPU (AVX512_BF16)", "float16": None})
    assert precision.resolve_precision("auto") == "bfloat16"
    assert "bfloat16 (--precision auto: native on this CPU (AVX512_BF16))" in caplog.text


def test_a_head_built_in_bfloat16_computes_in_bfloat16_and_answers_in_float32():
    from emorec.precision import dtype_policy

    with dtype_policy("bfloat16"):
        head = build_ier_head((8,), 3)
    import keras

    assert keras.config.dtype_policy().name == "float32"  # restored after the block
    assert head.get_layer("image_dense1000").compute_dtype == "bfloat16"
    assert head.get_layer("image_dense1000").kernel.dtype == "float32"
    assert str(head.predict(np.ones((2, 8), np.float32), verbose=0).dtype) == "float32"


def test_auto_precision_takes_no_bfloat16_where_onednn_is_capped_below_it(monkeypatch):
    """ONEDNN_MAX_CPU_ISA=AVX2 runs oneDNN as on a CPU without AVX-512: there a bfloat16 convolution finds no
    kernel, so --precision auto must not pick it from the CPU's flags."""
    from emorec import precision

    monkeypatch.setattr(precision, "cpu_flags", lambda: {"avx2", "avx512f", "avx512_bf16"})
    for cap, native in (("AVX2", False), ("avx512_core", False), ("AVX512_CORE_BF16", True), ("ALL", True)):
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
        assert (precision.native_support()["bfloat16"] is not None) == native, cap
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    assert precision.native_support()["bfloat16"] == "this CPU (AVX512_BF16)"
