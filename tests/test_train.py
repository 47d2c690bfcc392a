"""Training glue: fit_best ends with the weights of the best validation epoch, not the last."""

from __future__ import annotations

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from emorec.runs import PhaseOutputs, RunFolders
from emorec.training.batches import ArrayBatches
from emorec.training.fit import class_weights, fit_best, seed_everything
from emorec.training.optimizer import FusedAdam
from emorec.training.options import TrainingOptions


def test_fit_best_restores_the_best_validation_epoch(tmp_path):
    seed_everything(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 8)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    # Validation labels are the opposite of the training ones: the better the fit, the worse val_loss,
    # so the best epoch is the first and the last one is clearly worse.
    inputs = keras.Input((8,))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(inputs))
    args = RunFolders(
        run_name=None, checkpoint_dir=tmp_path / "ckpt", log_dir=tmp_path / "tb", prob_dir=tmp_path / "probs"
    )
    outputs = PhaseOutputs.of(args, "Toy")

    summary = fit_best(
        model, ArrayBatches(x, y, np.arange(64), 16, seed=0), (x, 1 - y), TrainingOptions(6, 0.1), outputs
    )

    epochs = pd.read_csv(outputs.epochs_csv)
    assert summary["epochs_run"] == 6 and summary["best_epoch"] == 1
    assert epochs["val_loss"].iloc[-1] > summary["best_val_loss"] + 0.1
    restored = keras.losses.sparse_categorical_crossentropy(1 - y, model.predict(x, verbose=0))
    assert np.isclose(float(np.mean(restored)), summary["best_val_loss"], rtol=1e-4)
    assert not model.compiled  # the optimizer stays with the training twin, out of the model a phase saves
    # Nothing else left behind but the run's lock file and the training backup, which the phase removes once its
    # outputs are written.
    assert sorted(path.name for path in outputs.model.parent.iterdir()) == [
        ".Toy.backup",
        ".Toy.lock",
        "Toy.epochs.csv",
    ]


def test_fused_adam_makes_keras_adams_updates(monkeypatch):
    """Dense gradients go through the fused kernel, the embedding's sparse ones through Keras' path; the weights
    after a few steps match keras.optimizers.Adam's, and a second run repeats the first exactly."""
    fused_calls = []
    kernel = tf.raw_ops.ResourceApplyAdam
    monkeypatch.setattr(
        tf.raw_ops, "ResourceApplyAdam", lambda **kw: fused_calls.append(tuple(kw["grad"].shape)) or kernel(**kw)
    )
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 50, size=(40, 6))
    labels = rng.integers(0, 3, size=40)

    def trained(optimizer):
        seed_everything(0)
        model = keras.Sequential(
            [
                keras.Input((6,), dtype="int32"),
                keras.layers.Embedding(50, 8),
                keras.layers.Flatten(),
                keras.layers.Dense(16, activation="relu"),
                keras.layers.Dense(3, activation="softmax"),
            ]
        )
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


def test_balanced_class_weights_are_scikit_learns():
    from sklearn.utils.class_weight import compute_class_weight

    labels = np.array([0] * 50 + [1] * 7 + [3] * 3)  # class 2 absent from the training rows
    weights = class_weights(labels, "balanced")
    expected = compute_class_weight("balanced", classes=np.array([0, 1, 3]), y=labels)
    assert list(weights) == [0, 1, 3]
    np.testing.assert_allclose(list(weights.values()), expected)
    assert class_weights(labels, "none") is None


def test_validation_macro_f1_of_each_epoch_is_scikit_learns_on_that_epochs_weights(tmp_path, monkeypatch):
    """The logged val_macro_f1 is computed over the whole validation split, not averaged over batches: a callback
    predicts the validation rows with each epoch's weights, and scikit-learn's macro-F1 on them equals the log."""
    from sklearn.metrics import f1_score

    seed_everything(0)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(120, 6)).astype(np.float32)
    y = (x[:, :3].argmax(axis=1) + (x[:, 3] > 1.2)).astype(np.int64)  # four classes, the last one rare
    x_val, y_val = x[80:], y[80:]
    inputs = keras.Input((6,))
    model = keras.Model(inputs, keras.layers.Dense(4, activation="softmax")(inputs))
    outputs = PhaseOutputs.of(
        RunFolders(
            run_name=None, checkpoint_dir=tmp_path / "ckpt", log_dir=tmp_path / "tb", prob_dir=tmp_path / "probs"
        ),
        "Toy",
    )
    expected = []

    class ScoreWithScikitLearn(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            predicted = model.predict(x_val, batch_size=7, verbose=0).argmax(axis=1)  # the weights of this epoch
            expected.append(f1_score(y_val, predicted, average="macro", labels=np.unique(y_val), zero_division=0))

    original_fit = keras.Model.fit

    def fit_with_callback(self, *args, **kwargs):
        kwargs["callbacks"] = [*kwargs["callbacks"], ScoreWithScikitLearn()]
        return original_fit(self, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "fit", fit_with_callback)
    # Validation batches of 7 rows: a mean over batches would differ from the whole split's value.
    summary = fit_best(
        model,
        ArrayBatches(x, y, np.arange(80), 16, seed=0),
        keras_batches(x_val, y_val, 7),
        TrainingOptions(5, 0.05, class_weight="balanced", monitor="val_macro_f1"),
        outputs,
    )
    logged = pd.read_csv(outputs.epochs_csv)["val_macro_f1"].to_numpy()
    np.testing.assert_allclose(logged, expected, atol=1e-6)
    assert len(set(np.round(expected, 6))) > 1  # the measure moved between epochs, so the check has teeth
    best = int(np.argmax(expected))
    assert summary["monitor"] == "val_macro_f1" and summary["best_epoch"] == best + 1
    assert np.isclose(summary["best_val_macro_f1"], expected[best], atol=1e-6)
    restored = model.predict(x_val, verbose=0).argmax(axis=1)  # the best epoch's weights are the ones kept
    assert np.isclose(
        f1_score(y_val, restored, average="macro", labels=np.unique(y_val), zero_division=0), expected[best]
    )
    assert summary["class_weights"] == {str(k): v for k, v in class_weights(y[:80], "balanced").items()}


def keras_batches(x, y, batch_size):
    """A validation dataset of fixed small batches."""
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)
