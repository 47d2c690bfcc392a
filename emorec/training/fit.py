"""The fit every training phase runs: seeding, class weights, the best epoch kept, the XLA rule, prediction after."""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from emorec.runs import PhaseOutputs, weights_fingerprint, worker_outputs
from emorec.training.backup import TrainingBackup, load_arrays, resumable_state, write_epochs_csv
from emorec.training.batches import ArrayBatches
from emorec.training.metrics import MacroF1, Trainer
from emorec.training.optimizer import make_optimizer
from emorec.training.options import MONITORS, TrainingOptions

log = logging.getLogger("emorec")


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed Python, NumPy and TensorFlow before anything random; with ``deterministic``, make TensorFlow's ops
    deterministic too (the same seed then gives the same numbers; without it, Keras may use XLA and faster,
    non-deterministic GPU kernels)."""
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()


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


def fit_best(
    model: keras.Model,
    train: ArrayBatches,
    val,
    options: TrainingOptions,
    outputs: PhaseOutputs,
    config: dict | None = None,
    strategy: tf.distribute.Strategy | None = None,
) -> dict:
    """Train ``model`` on the batches ``train``, validating on ``val``, as ``options`` say; end with the best epoch's.

    The optimizer (:func:`make_optimizer`) minimises the sparse categorical cross-entropy of a training twin of
    ``model`` (:class:`Trainer`: the same layers and weights, compiled in its place), so the saved model carries no
    optimizer. Each epoch logs loss, accuracy and macro-F1 on the training batches and the whole validation split.
    ``strategy`` (None: the default) is where the steps run; ``model`` must have been built in its scope. A backup
    in ``outputs.backup`` made under the same ``config`` is resumed at the epoch after its last one; it stays until
    :func:`save_phase` has written the phase's outputs. TensorBoard and the epochs' CSV go to ``outputs``.
    Returns a summary: epochs run, the best epoch with its validation scores, the class weights, seconds, ...
    """
    outputs.claim()  # from here on this process writes the phase's outputs, and no other one may
    config, strategy = config or {}, strategy or tf.distribute.get_strategy()
    class_weight = class_weights(train.labels[train.rows], options.class_weight)
    trainer, state = _compiled_trainer(model, train, options, strategy, outputs, config)
    done, partial_log = _prepare_logs(outputs, state, options)
    stopper = _early_stopping(options)
    backup = TrainingBackup(outputs.backup, config, stopper, state)
    if class_weight is not None:
        log.info("class weights: %s", ", ".join(f"{label}: {weight:.3f}" for label, weight in class_weight.items()))
    started = time.perf_counter()
    if state is not None and state["finished"]:
        trainer.set_weights(load_arrays(outputs.backup / state["best_file"]))
    else:
        # shuffle=False: train orders its rows itself, each epoch's from (seed, epoch) (Keras' shuffle of the
        # batches draws from a global generator that a resumed run could not restore). TensorBoard before the
        # backup: a kill between them repeats an identical point, never loses one.
        # The class weights travel with the batches (as Keras would put them there): a distributed dataset
        # takes no class_weight.
        with strategy.scope():
            trainer.fit(
                train.dataset(done, options.epochs, class_weight, strategy),
                steps_per_epoch=len(train),
                validation_data=val.dataset(strategy=strategy) if isinstance(val, ArrayBatches) else val,
                epochs=options.epochs,
                initial_epoch=done,
                shuffle=False,
                callbacks=[stopper, _tensorboard(outputs), backup, _csv_logger(partial_log, done)],
            )
    seconds = time.perf_counter() - started
    # Epochs counted from 1, as Keras' progress bar, the log and the metrics' best_epoch count them.
    write_epochs_csv(outputs.epochs_csv, backup.state["history"], first=1)
    partial_log.unlink(missing_ok=True)
    summary = _training_summary(backup.state, options, done, seconds)
    fingerprint = weights_fingerprint(model)
    log.info("weights fingerprint %s", fingerprint)
    return summary | {
        "class_weights": None if class_weight is None else {str(k): v for k, v in class_weight.items()},
        "resumed_at_epoch": None if state is None else done + 1,
        "weights_sha256": fingerprint,
        "xla": bool(trainer.jit_compile),
    }


def _prepare_logs(outputs: PhaseOutputs, state: dict | None, options: TrainingOptions) -> tuple[int, Path]:
    """The epochs already done and the epochs' partial CSV: a fresh start (``state`` None) clears TensorBoard's
    and the CSV's; a resumed one writes exactly the backed-up epochs to the CSV, whatever the kill left."""
    outputs.epochs_csv.parent.mkdir(parents=True, exist_ok=True)
    partial_log = outputs.epochs_csv.with_name(f".{outputs.epochs_csv.name}.partial")
    if state is None:
        shutil.rmtree(outputs.tensorboard, ignore_errors=True)
        partial_log.unlink(missing_ok=True)
        return 0, partial_log
    write_epochs_csv(partial_log, state["history"])
    done, best = state["epochs_done"], state["stopper"]
    log.info(
        "resuming from the training backup %s: %d of %d epochs done%s; best %s so far %.4f at epoch %d",
        outputs.backup,
        done,
        options.epochs,
        " (training had ended)" if state["finished"] else "",
        options.monitor,
        best["best"],
        best["best_epoch"] + 1,
    )
    return done, partial_log


def _early_stopping(options: TrainingOptions) -> keras.callbacks.EarlyStopping:
    """Keeps the best epoch by ``options.monitor`` (its weights restored at the end), stopping after
    ``options.patience`` epochs without a better one."""
    mode, patience = MONITORS[options.monitor], options.patience or options.epochs
    return keras.callbacks.EarlyStopping(options.monitor, mode=mode, patience=patience, restore_best_weights=True)


def _tensorboard(outputs: PhaseOutputs) -> keras.callbacks.TensorBoard:
    return keras.callbacks.TensorBoard(log_dir=str(outputs.tensorboard), write_graph=False)


def _csv_logger(partial_log: Path, done: int) -> keras.callbacks.CSVLogger:
    return keras.callbacks.CSVLogger(str(partial_log), append=done > 0)


def _compiled_trainer(
    model: keras.Model,
    train: ArrayBatches,
    options: TrainingOptions,
    strategy: tf.distribute.Strategy,
    outputs: PhaseOutputs,
    config: dict,
):
    """``model``'s training twin, compiled and built in ``strategy``'s scope, and the backup's state to resume
    from (None: a fresh start)."""
    # The twin is made outside the strategy's scope, compiled, built and trained in it. Made in the scope, Keras
    # would build it at fit() from the mean of the first batch's parts, which fails when the global batch does
    # not divide evenly over the replicas; here it is built from one whole batch, the variables of its metrics
    # and optimizer mirrored as the weights are. Built before fit() under the default strategy too: Keras would
    # create the optimizer's and the metrics' variables inside the first training step, and TensorFlow traces a
    # step that creates variables twice.
    trainer = Trainer(model.input, model.output, name=f"{model.name}_training")
    jit_compile = use_xla(options.deterministic, model)
    with strategy.scope():
        trainer.compile(
            optimizer=make_optimizer(options.optimizer, options.lr, options.epochs * len(train)),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy", MacroF1(model.output.shape[-1])],
            jit_compile=jit_compile,
        )
        if hasattr(trainer, "_symbolic_build"):
            example_inputs, example_labels = train.batch(0, 0)
            trainer._symbolic_build(data_batch=(example_inputs, example_labels))  # what Keras' fit() calls in a scope
        state = resumable_state(outputs.backup, config, trainer)
    if jit_compile:  # Keras may have refused it (a layer without XLA support, or op determinism on)
        log.info(
            "training steps %s",
            "compiled with XLA" if trainer.jit_compile else "without XLA: Keras cannot compile this model with it",
        )
    return trainer, state


def _training_summary(state: dict, options: TrainingOptions, done: int, seconds: float) -> dict:
    """The fit's epochs as the metrics record them, from the backup's final ``state``; ``done`` epochs had run
    before this process, which took ``seconds``."""
    measures, monitor = state["history"], options.monitor
    best, run = state["stopper"]["best_epoch"], len(measures[monitor])  # the epoch whose weights were restored
    stopped = run < options.epochs
    log.info(
        "best %s %.4f at epoch %d of %d%s (val_loss %.4f, val_macro_f1 %.4f); its weights restored",
        monitor,
        measures[monitor][best],
        best + 1,
        run,
        f", stopped early (patience {options.patience})" if stopped else "",
        measures["val_loss"][best],
        measures["val_macro_f1"][best],
    )
    ran = run - done
    return {
        "epochs_run": run,
        "monitor": monitor,
        "patience": options.patience,
        "stopped_early": stopped,
        "best_epoch": best + 1,
        "best_val_loss": float(measures["val_loss"][best]),
        "best_val_macro_f1": float(measures["val_macro_f1"][best]),
        "fit_seconds": round(seconds, 2),
        "seconds_per_epoch": round(seconds / ran, 2) if ran else None,
    }


# On CPU XLA pays only for a small network without recurrent layers: over a big Dense layer FusedAdam's one pass
# beats it, and recurrent layers slow it (benchmarks/xla_step.py; figures in docs/long_runs.md).
XLA_CPU_MAX_WEIGHTS = 5_000_000


def use_xla(deterministic: bool, network: keras.Model) -> bool:
    """Whether a phase's training steps compile with XLA (``jit_compile``): under ``--no-deterministic``, on a
    machine with a GPU; on CPU for a ``network`` without recurrent layers of at most :data:`XLA_CPU_MAX_WEIGHTS`
    trainable weights. Never under ``--deterministic``: TensorFlow's op determinism and XLA do not go together."""
    if deterministic:
        return False
    if tf.config.list_physical_devices("GPU"):
        return True
    recurrent = any(isinstance(layer, (keras.layers.RNN, keras.layers.Bidirectional)) for layer in network.layers)
    return not recurrent and sum(int(np.prod(w.shape)) for w in network.trainable_weights) <= XLA_CPU_MAX_WEIGHTS


def local_model(model: keras.Model) -> keras.Model:
    """``model`` to predict with on this process's first device alone: itself, or, when it was built in a
    distribution strategy's scope, a twin over the same layers and weights made outside it (Keras' predict would
    otherwise cut each batch over the strategy's replicas, and under multiworker over the other machines)."""
    if model.distribute_strategy is tf.distribute.get_strategy():
        return model
    return keras.Model(model.input, model.output, name=model.name)


def start_training(
    strategy_name: str, seed: int, deterministic: bool, outputs: PhaseOutputs
) -> tuple[tf.distribute.Strategy, PhaseOutputs, dict]:
    """What every training phase does first: choose the strategy of ``--strategy`` (before TensorFlow's first
    operation), find where this process writes (:func:`emorec.runs.worker_outputs`) and seed everything.
    Returns the strategy, this process's outputs and the strategy as it runs
    (:func:`emorec.distribute.describe`, for the run record)."""
    from emorec.distribute import choose_strategy, describe

    strategy = choose_strategy(strategy_name)
    outputs = worker_outputs(outputs, strategy)
    distribution = describe(strategy)
    seed_everything(seed, deterministic)
    return strategy, outputs, distribution


def evaluate_readable(network: keras.Model, inputs, dataset, readable: np.ndarray) -> tuple[np.ndarray, dict]:
    """``network``'s probabilities on every row of ``dataset`` (an :class:`emorec.data.dataset.Dataset`) whose
    image could be read (the boolean mask ``readable``), from ``inputs`` (an array or dict of arrays, one row per
    dataset row), on this process's device, with their scores (:func:`emorec.metrics.classification_metrics`).
    The other rows' probabilities are NaN: empty in the probability file."""
    from emorec.metrics import classification_metrics

    labels, rows = dataset.frame["label"].to_numpy(), np.flatnonzero(readable)
    probabilities = np.full((len(labels), len(dataset.class_names)), np.nan, dtype=np.float32)
    probabilities[rows] = local_model(network).predict(ArrayBatches(inputs, labels, rows, 256), verbose=0)
    scores = classification_metrics(
        labels[rows], probabilities[rows], dataset.frame["split"].to_numpy()[rows], dataset.class_names
    )
    return probabilities, scores
