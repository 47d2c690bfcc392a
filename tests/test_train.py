"""Training glue: fit_best ends with the weights of the best validation epoch, not the last."""

from __future__ import annotations

import argparse

import keras
import numpy as np
import pandas as pd

from emorec.cli import PhaseOutputs
from emorec.train import fit_best, seed_everything


def test_fit_best_restores_the_best_validation_epoch(tmp_path):
    seed_everything(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 8)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    # Validation labels are the opposite of the training ones: the better the fit, the worse val_loss,
    # so the best epoch is the first and the last one is clearly worse.
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(0.1), loss="sparse_categorical_crossentropy")
    args = argparse.Namespace(run_name=None, checkpoint_dir=tmp_path / "ckpt", log_dir=tmp_path / "tb",
                              prob_dir=tmp_path / "probs")
    outputs = PhaseOutputs.of(args, "Toy")

    summary = fit_best(model, (x, y), (x, 1 - y), 6, 16, outputs)

    epochs = pd.read_csv(outputs.epochs_csv)
    assert summary["epochs_run"] == 6 and summary["best_epoch"] == 1
    assert epochs["val_loss"].iloc[-1] > summary["best_val_loss"] + 0.1
    restored = model.evaluate(x, 1 - y, batch_size=64, verbose=0)
    assert np.isclose(restored, summary["best_val_loss"], rtol=1e-4)
    assert [path.name for path in outputs.model.parent.iterdir()] == ["Toy.epochs.csv"]  # nothing else left behind
