"""Training glue shared by the phases: seeding, the fit with its standard callbacks, atomic model saving."""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path

import keras
import tensorflow as tf

from emorec.cli import PhaseOutputs
from emorec.fileio import atomic_path

log = logging.getLogger("emorec")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow, and make TensorFlow's ops deterministic, before anything random."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def fit_best(
    model: keras.Model, train: tuple, val: tuple, epochs: int, batch_size: int, outputs: PhaseOutputs
) -> dict:
    """Train ``model`` on ``train`` = (x, y), validating on ``val``; end with the best-validation-loss weights.

    Callbacks: ModelCheckpoint (best val_loss, restored at the end),
    TensorBoard (per-epoch loss and accuracy, train and validation, in
    ``outputs.tensorboard``, cleared first) and CSVLogger (``outputs.epochs_csv``,
    moved into place when training ends). Keras prints its progress bar.
    Returns a summary: epochs run, the best epoch and its validation loss,
    seconds in all and per epoch.
    """
    shutil.rmtree(outputs.tensorboard, ignore_errors=True)
    outputs.best_weights.parent.mkdir(parents=True, exist_ok=True)
    partial_log = outputs.epochs_csv.with_name(f".{outputs.epochs_csv.name}.partial")
    callbacks = [
        keras.callbacks.ModelCheckpoint(
            outputs.best_weights, monitor="val_loss", save_best_only=True, save_weights_only=True
        ),
        keras.callbacks.TensorBoard(log_dir=str(outputs.tensorboard), write_graph=False),
        keras.callbacks.CSVLogger(str(partial_log)),
    ]
    started = time.perf_counter()
    history = model.fit(
        train[0], train[1], validation_data=val, epochs=epochs, batch_size=batch_size, shuffle=True,
        callbacks=callbacks,
    )
    seconds = time.perf_counter() - started
    model.load_weights(outputs.best_weights)
    outputs.best_weights.unlink()
    os.replace(partial_log, outputs.epochs_csv)
    val_losses = history.history["val_loss"]
    best = min(range(len(val_losses)), key=val_losses.__getitem__)
    log.info("best validation loss %.4f at epoch %d of %d; its weights restored", val_losses[best], best + 1, epochs)
    return {
        "epochs_run": len(val_losses),
        "best_epoch": best + 1,
        "best_val_loss": float(val_losses[best]),
        "fit_seconds": round(seconds, 2),
        "seconds_per_epoch": round(seconds / len(val_losses), 2),
    }


def save_model(model: keras.Model, path: Path) -> None:
    """Save a whole model (``.keras``) atomically."""
    with atomic_path(path) as tmp:
        model.save(tmp)
    log.info("saved %s", path)
