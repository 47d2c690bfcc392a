"""Training glue shared by the phases: seeding, the fit with its standard callbacks, atomic model saving."""

from __future__ import annotations

import logging
import os
import shutil
import sys
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from emorec.cli import PhaseOutputs
from emorec.data import labelled_training_rows
from emorec.fileio import atomic_path, write_csv_atomic, write_json_atomic

log = logging.getLogger("emorec")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow, and make TensorFlow's ops deterministic, before anything random."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


@keras.saving.register_keras_serializable(package="emorec")
class FusedAdam(keras.optimizers.Adam):
    """Keras' Adam, with each dense gradient applied by TensorFlow's fused ``ResourceApplyAdam`` kernel.

    The same update as ``keras.optimizers.Adam`` (same arguments, same
    formula; weights agree to float rounding). Without XLA, which stays off on
    CPU and under op determinism, Keras runs Adam as a dozen elementwise ops
    per weight tensor, each a pass over memory; the fused kernel makes one
    pass. For the image heads' Dense layers at 224 px (25 M and 75 M weights)
    a training step was 3.3x and 2.6x faster on two CPU cores
    (``benchmarks/fused_adam.py``).
    Sparse gradients (the tuned embedding's) and ``amsgrad`` take Keras' path.
    """

    def update_step(self, gradient, variable, learning_rate):
        if self.amsgrad or isinstance(gradient, tf.IndexedSlices):
            return super().update_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        step = tf.cast(self.iterations + 1, dtype)
        index = self._get_variable_index(variable)
        beta_1, beta_2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
        tf.raw_ops.ResourceApplyAdam(
            var=variable.handle, m=self._momentums[index].handle, v=self._velocities[index].handle,
            beta1_power=tf.pow(beta_1, step), beta2_power=tf.pow(beta_2, step), lr=tf.cast(learning_rate, dtype),
            beta1=beta_1, beta2=beta_2, epsilon=tf.cast(self.epsilon, dtype), grad=tf.cast(gradient, dtype),
        )


class ArrayBatches(keras.utils.PyDataset):
    """Batches of ``(inputs[rows], labels[rows])`` read on demand, so a memory-mapped array never loads whole.

    ``inputs`` is an array or a dict of arrays (a multi-input model's); a
    float16 array (the feature cache's memmap) comes out as float32. With
    ``seed``, the rows are reshuffled every epoch by a seeded generator.
    """

    def __init__(self, inputs, labels, rows, batch_size: int, seed: int | None = None):
        super().__init__()
        self.inputs, self.labels, self.batch_size = inputs, labels, batch_size
        self.rows = np.array(rows)
        self.rng = None if seed is None else np.random.default_rng(seed)
        self.on_epoch_end()

    def __len__(self) -> int:
        return -(-len(self.rows) // self.batch_size)

    def __getitem__(self, index: int):
        rows = np.sort(self.order[index * self.batch_size : (index + 1) * self.batch_size])
        if isinstance(self.inputs, dict):
            return {name: _rows_of(array, rows) for name, array in self.inputs.items()}, self.labels[rows]
        return _rows_of(self.inputs, rows), self.labels[rows]

    def on_epoch_end(self) -> None:
        self.order = self.rows if self.rng is None else self.rng.permutation(self.rows)


def _rows_of(array: np.ndarray, rows: np.ndarray) -> np.ndarray:
    return np.asarray(array[rows], dtype=np.float32 if array.dtype == np.float16 else array.dtype)


class MacroF1(keras.metrics.Metric):
    """Macro-averaged F1 of the argmax predictions over every batch since the last reset (not a mean of batches).

    Accumulates the confusion matrix of sparse labels against
    ``argmax(y_pred)``, so an epoch's validation value is scikit-learn's
    ``f1_score(average="macro", labels=range(num_classes), zero_division=0)``
    on the whole validation split: a class neither present nor predicted
    counts 0. Sample weights (from ``class_weight`` during training) weight
    the counts.
    """

    def __init__(self, num_classes: int, name: str = "macro_f1", **kwargs):
        super().__init__(name=name, **kwargs)
        self.num_classes = num_classes
        self.confusion = self.add_variable(shape=(num_classes, num_classes), initializer="zeros", name="confusion")

    def update_state(self, y_true, y_pred, sample_weight=None):
        truth = ops.one_hot(ops.cast(ops.reshape(y_true, (-1,)), "int32"), self.num_classes, dtype=self.dtype)
        predicted = ops.one_hot(ops.argmax(y_pred, axis=-1), self.num_classes, dtype=self.dtype)
        if sample_weight is not None:
            truth = truth * ops.reshape(ops.cast(sample_weight, self.dtype), (-1, 1))
        self.confusion.assign_add(ops.matmul(ops.transpose(truth), predicted))

    def result(self):
        true_positive = ops.diagonal(self.confusion)
        denominator = ops.sum(self.confusion, axis=0) + ops.sum(self.confusion, axis=1)  # 2tp + fp + fn
        f1 = ops.where(denominator > 0, 2 * true_positive / ops.maximum(denominator, 1e-12), 0.0)
        return ops.mean(f1)

    def reset_state(self):
        self.confusion.assign(ops.zeros_like(self.confusion))

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes}


# What picks the best epoch: the validation measure and whether lower or higher is better.
MONITORS = {"val_loss": "min", "val_macro_f1": "max"}


def class_weights(labels: np.ndarray, mode: str) -> dict[int, float] | None:
    """The loss weight of each class for ``--class-weight`` ``mode`` ("none" or "balanced").

    ``labels`` are the training rows' class indices. "balanced" gives each
    class present ``n_rows / (n_present_classes * n_rows_of_class)``, as
    scikit-learn's ``compute_class_weight("balanced")``; "none" returns None
    (every example weighs 1, as in the paper).
    """
    if mode == "none":
        return None
    if mode != "balanced":
        raise ValueError(f"unknown class weighting {mode!r}: none or balanced")
    from sklearn.utils.class_weight import compute_class_weight

    present = np.unique(labels)
    weights = compute_class_weight("balanced", classes=present, y=labels)
    return {int(label): float(weight) for label, weight in zip(present, weights)}


def select_training_rows(frame, args) -> np.ndarray:
    """The training rows of this run: the whole train split, or the subsample that ``--label-fraction`` or
    ``--labels-per-class`` asks for (see :func:`emorec.data.labelled_training_rows`).

    Returns a boolean mask aligned with ``frame``, logs the count and sets
    ``args.training_ids`` (the subsample's ids, or None for the whole split) so
    the run's ``.args.json`` records exactly which examples were used.
    """
    rows = labelled_training_rows(frame, args.label_fraction, args.labels_per_class, args.seed)
    whole = int((frame["split"] == "train").sum())
    subsampled = args.label_fraction is not None or args.labels_per_class is not None
    args.training_ids = frame["id"][rows].tolist() if subsampled else None
    if subsampled:
        per_class = np.bincount(frame["label"][rows], minlength=len(frame.attrs["class_names"]))
        log.info("training on %d of %d labelled training examples (per class: %s)", rows.sum(), whole,
                 ", ".join(f"{name} {n}" for name, n in zip(frame.attrs["class_names"], per_class)))
    return rows


def fit_best(
    model: keras.Model, train, val, epochs: int, batch_size: int | None, lr: float, outputs: PhaseOutputs,
    class_weight: dict[int, float] | None = None, monitor: str = "val_loss",
) -> dict:
    """Train ``model`` on ``train`` (an (x, y) pair or a dataset), validating on ``val``; end with the best weights.

    The paper's Adam (:class:`FusedAdam`, learning rate ``lr``) minimises the
    sparse categorical cross-entropy of a training twin of ``model``: a
    functional model over the same layers and weights, compiled in its place.
    ``model`` itself is never compiled, so the inference model a phase saves
    around it carries no optimizer: no optimizer state in the file (for the
    image heads, twice their weights) and no optimizer class to register before
    loading it. ``class_weight`` (see :func:`class_weights`) weights each
    training example's loss by its class.
    Each epoch logs loss, accuracy and macro-F1 (:class:`MacroF1`), on the
    training batches and on the whole validation split. ``monitor``
    (``val_loss`` or ``val_macro_f1``) picks the best epoch.
    Callbacks: EarlyStopping with ``restore_best_weights`` and a patience of
    every epoch (it never stops early; it keeps the weights of the best
    epoch in memory and restores them at the end), TensorBoard (the per-epoch
    measures, train and validation, in ``outputs.tensorboard``, cleared
    first) and CSVLogger (``outputs.epochs_csv``, moved into place when
    training ends). Keras prints its progress bar.
    Returns a summary: epochs run, the monitor, the best epoch with its
    validation loss and macro-F1, seconds in all and per epoch.
    """
    if monitor not in MONITORS:
        raise ValueError(f"unknown monitor {monitor!r}: one of {', '.join(MONITORS)}")
    shutil.rmtree(outputs.tensorboard, ignore_errors=True)
    outputs.epochs_csv.parent.mkdir(parents=True, exist_ok=True)
    partial_log = outputs.epochs_csv.with_name(f".{outputs.epochs_csv.name}.partial")
    callbacks = [
        # In memory rather than a ModelCheckpoint file: at 224 px the fusion model holds 90 M weights, and
        # writing them at every better epoch and reading them back cost seconds per epoch for nothing kept.
        keras.callbacks.EarlyStopping(monitor=monitor, mode=MONITORS[monitor], patience=epochs, restore_best_weights=True),
        keras.callbacks.TensorBoard(log_dir=str(outputs.tensorboard), write_graph=False),
        keras.callbacks.CSVLogger(str(partial_log)),
    ]
    trainer = keras.Model(model.input, model.output, name=f"{model.name}_training")
    trainer.compile(optimizer=FusedAdam(lr), loss="sparse_categorical_crossentropy",
                    metrics=["accuracy", MacroF1(model.output.shape[-1])])
    if class_weight is not None:
        log.info("class weights: %s", ", ".join(f"{label}: {weight:.3f}" for label, weight in class_weight.items()))
    started = time.perf_counter()
    x, y = train if isinstance(train, tuple) else (train, None)
    history = trainer.fit(
        x, y, validation_data=val, epochs=epochs, batch_size=batch_size, shuffle=True, callbacks=callbacks,
        class_weight=class_weight,
    )
    seconds = time.perf_counter() - started
    os.replace(partial_log, outputs.epochs_csv)
    measures = history.history
    chosen = np.asarray(measures[monitor])
    best = int(chosen.argmin() if MONITORS[monitor] == "min" else chosen.argmax())
    log.info("best %s %.4f at epoch %d of %d (val_loss %.4f, val_macro_f1 %.4f); its weights restored", monitor,
             chosen[best], best + 1, epochs, measures["val_loss"][best], measures["val_macro_f1"][best])
    return {
        "epochs_run": len(chosen),
        "monitor": monitor,
        "best_epoch": best + 1,
        "best_val_loss": float(measures["val_loss"][best]),
        "best_val_macro_f1": float(measures["val_macro_f1"][best]),
        "class_weights": None if class_weight is None else {str(k): v for k, v in class_weight.items()},
        "fit_seconds": round(seconds, 2),
        "seconds_per_epoch": round(seconds / len(chosen), 2),
    }


def save_model(model: keras.Model, path: Path) -> None:
    """Save a whole model (``.keras``) atomically."""
    with atomic_path(path) as tmp:
        model.save(tmp)
    log.info("saved %s", path)


def write_run_config(outputs: PhaseOutputs, args, argv) -> None:
    """Write ``<phase>.args.json``: the command line, every flag and the library versions."""
    write_json_atomic(outputs.args_json, {
        "argv": list(sys.argv[1:] if argv is None else argv), **vars(args),
        "keras": keras.__version__, "tensorflow": tf.__version__, "numpy": np.__version__,
    })


def save_phase(
    outputs: PhaseOutputs, phase: str, model: keras.Model, args, argv, metrics: dict, probabilities, prob_file: str
) -> None:
    """Log a phase's scores and write its outputs, each atomically.

    Writes ``model`` (whole, ``.keras``), ``<phase>.metrics.json`` (``metrics``
    with the phase's name; ``metrics["splits"]`` is logged), ``<phase>.args.json``
    (the command line, every flag and the library versions) and the
    probability table ``probabilities`` as ``prob_file`` in the run's prob folder.
    """
    for split, scores in metrics["splits"].items():
        log.info("%s: accuracy %.3f, macro-F1 %.3f (n=%d)", split, scores["accuracy"], scores["macro_f1"], scores["n"])
    save_model(model, outputs.model)
    write_json_atomic(outputs.metrics_json, {"phase": phase, **metrics})
    write_run_config(outputs, args, argv)
    write_csv_atomic(probabilities, outputs.prob_dir / prob_file)
    log.info("wrote %s, %s and %s", outputs.model, outputs.metrics_json, outputs.prob_dir / prob_file)
