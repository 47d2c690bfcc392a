"""Training glue: fit_best ends with the weights of the best validation epoch, not the last."""

from __future__ import annotations

import argparse

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from emorec.cli import PhaseOutputs
from emorec.train import FusedAdam, fit_best, seed_everything


def test_fit_best_restores_the_best_validation_epoch(tmp_path):
    seed_everything(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 8)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    # Validation labels are the opposite of the training ones: the better the fit, the worse val_loss,
    # so the best epoch is the first and the last one is clearly worse.
    inputs = keras.Input((8,))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(inputs))
    args = argparse.Namespace(run_name=None, checkpoint_dir=tmp_path / "ckpt", log_dir=tmp_path / "tb",
                              prob_dir=tmp_path / "probs")
    outputs = PhaseOutputs.of(args, "Toy")

    summary = fit_best(model, (x, y), (x, 1 - y), 6, 16, 0.1, outputs)

    epochs = pd.read_csv(outputs.epochs_csv)
    assert summary["epochs_run"] == 6 and summary["best_epoch"] == 1
    assert epochs["val_loss"].iloc[-1] > summary["best_val_loss"] + 0.1
    restored = keras.losses.sparse_categorical_crossentropy(1 - y, model.predict(x, verbose=0))
    assert np.isclose(float(np.mean(restored)), summary["best_val_loss"], rtol=1e-4)
    assert not model.compiled  # the optimizer stays with the training twin, out of the model a phase saves
    assert [path.name for path in outputs.model.parent.iterdir()] == ["Toy.epochs.csv"]  # nothing else left behind


def test_fused_adam_makes_keras_adams_updates(monkeypatch):
    """Dense gradients go through the fused kernel, the embedding's sparse ones through Keras' path; the weights
    after a few steps match keras.optimizers.Adam's, and a second run repeats the first exactly."""
    fused_calls = []
    kernel = tf.raw_ops.ResourceApplyAdam
    monkeypatch.setattr(tf.raw_ops, "ResourceApplyAdam", lambda **kw: fused_calls.append(tuple(kw["grad"].shape)) or kernel(**kw))
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 50, size=(40, 6))
    labels = rng.integers(0, 3, size=40)

    def trained(optimizer):
        seed_everything(0)
        model = keras.Sequential([keras.Input((6,), dtype="int32"), keras.layers.Embedding(50, 8),
                                  keras.layers.Flatten(), keras.layers.Dense(16, activation="relu"),
                                  keras.layers.Dense(3, activation="softmax")])
        model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
        model.fit(tokens, labels, batch_size=8, epochs=2, shuffle=False, verbose=0)
        return model.get_weights()

    reference = trained(keras.optimizers.Adam(1e-2))
    assert fused_calls == []
    fused = trained(FusedAdam(1e-2))
    assert set(fused_calls) == {(48, 16), (16,), (16, 3), (3,)}  # the dense layers', not the embedding's (50, 8)
    for expected, got in zip(reference, fused):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
    for first, second in zip(fused, trained(FusedAdam(1e-2))):
        np.testing.assert_array_equal(first, second)
