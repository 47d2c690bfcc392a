"""Training glue shared by the phases: seeding, the fit with its standard callbacks and its backup, atomic saving."""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import shutil
import sys
import threading
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from emorec.cli import PhaseOutputs
from emorec.data import labelled_training_rows, training_ids_file, training_ids_fingerprint
from emorec.distribute import is_chief
from emorec.fileio import atomic_path, write_csv_atomic, write_json_atomic, write_text_atomic

log = logging.getLogger("emorec")


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed Python, NumPy and TensorFlow before anything random; with ``deterministic``, make TensorFlow's ops
    deterministic too (the same seed then gives the same numbers; without it, Keras may use XLA and faster,
    non-deterministic GPU kernels)."""
    keras.utils.set_random_seed(seed)
    if deterministic:
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
        momentums, velocities = (getattr(self, name) for name in ADAM_STATE)
        tf.raw_ops.ResourceApplyAdam(
            var=variable.handle, m=momentums[index].handle, v=velocities[index].handle,
            beta1_power=tf.pow(beta_1, step), beta2_power=tf.pow(beta_2, step), lr=tf.cast(learning_rate, dtype),
            beta1=beta_1, beta2=beta_2, epsilon=tf.cast(self.epsilon, dtype), grad=tf.cast(gradient, dtype),
        )


# Where Keras 3 keeps Adam's first and second moments (private attributes of keras.optimizers.Adam): what
# FusedAdam.update_step hands to the fused kernel.
ADAM_STATE = ("_momentums", "_velocities")


def adam(lr: float) -> keras.optimizers.Adam:
    """The optimizer of every phase: :class:`FusedAdam` with learning rate ``lr``, or ``keras.optimizers.Adam``
    on a Keras release that keeps Adam's state elsewhere than FusedAdam reads it (:data:`ADAM_STATE`); one log
    line says which."""
    probe, variable = FusedAdam(lr), keras.Variable(np.zeros(1, np.float32))
    try:
        probe.build([variable])
        index = probe._get_variable_index(variable)
        for name in ADAM_STATE:
            getattr(probe, name)[index]
    except (AttributeError, IndexError, KeyError, TypeError) as error:
        log.info("optimizer: keras.optimizers.Adam, the same update unfused (Keras %s keeps Adam's state elsewhere "
                 "than FusedAdam reads it: %s: %s)", keras.__version__, type(error).__name__, error)
        return keras.optimizers.Adam(lr)
    log.info("optimizer: FusedAdam (Keras %s's Adam, each dense update by TensorFlow's fused kernel)",
             keras.__version__)
    return FusedAdam(lr)


class ArrayBatches(keras.utils.PyDataset):
    """Batches of ``(inputs[rows], labels[rows])`` read on demand, so a memory-mapped array never loads whole.

    ``inputs`` is an array or a dict of arrays (a multi-input model's); a
    float16 array (the feature store's) comes out as float32. With ``seed``,
    epoch ``e`` takes the rows in an order drawn from ``(seed, e)`` alone, so
    a run resumed at epoch ``e`` sees the batches an uninterrupted one would.
    :func:`fit_best` trains on :meth:`dataset`, which reads batches in
    parallel ahead of the training step; indexing (``batches[i]``, as Keras'
    ``predict`` does) gives epoch 0's batches.
    """

    def __init__(self, inputs, labels, rows, batch_size: int, seed: int | None = None):
        super().__init__()
        self.inputs, self.labels, self.batch_size, self.seed = inputs, labels, batch_size, seed
        self.rows = np.array(rows)
        self._orders: dict[int, np.ndarray] = {}
        self._orders_lock = threading.Lock()

    def __len__(self) -> int:
        return -(-len(self.rows) // self.batch_size)

    def __getitem__(self, index: int):
        return self.batch(0, index)

    def batch(self, epoch: int, index: int):
        """Batch ``index`` of epoch ``epoch``: (inputs, labels) of its rows, in the store's order within it."""
        rows = np.sort(self.order_of(epoch)[index * self.batch_size : (index + 1) * self.batch_size])
        if isinstance(self.inputs, dict):
            return {name: _rows_of(array, rows) for name, array in self.inputs.items()}, self.labels[rows]
        return _rows_of(self.inputs, rows), self.labels[rows]

    def order_of(self, epoch: int) -> np.ndarray:
        """The rows in epoch ``epoch``'s order (as given without ``seed``); the last few epochs' are kept."""
        if self.seed is None:
            return self.rows
        with self._orders_lock:  # parallel reads of two neighbouring epochs share the cache
            if epoch not in self._orders:
                self._orders = {e: order for e, order in self._orders.items() if e >= epoch - 1}
                self._orders[epoch] = np.random.default_rng([self.seed, epoch]).permutation(self.rows)
            return self._orders[epoch]

    def dataset(self, first_epoch: int = 0, epochs: int = 1, class_weight: dict[int, float] | None = None,
                strategy: tf.distribute.Strategy | None = None):
        """Epochs ``first_epoch`` to ``epochs - 1`` of these batches, one after another, as a ``tf.data``
        pipeline: each batch read by a ``tf.numpy_function`` in parallel map calls and prefetched, so reading
        (a gather from memory-mapped shards, float16 to float32) overlaps the training steps instead of
        running between them. Train with ``fit(..., steps_per_epoch=len(self))``, whose one iterator then runs
        through every epoch, each in its (seed, epoch) order whatever the prefetching.

        With ``class_weight`` (class -> weight) each batch carries its rows' weights, as Keras' ``fit(...,
        class_weight=...)`` would make them. With a ``strategy`` of R > 1 replicas, it is that strategy's
        distributed dataset: each batch (the global batch) is cut into R nearly equal parts in row order, and
        each worker's pipeline reads only the parts of its own replicas.
        """
        replicas = 1 if strategy is None else strategy.num_replicas_in_sync
        weights = None if class_weight is None else np.array(
            [class_weight.get(c, 1.0) for c in range(max(class_weight) + 1)], np.float32)
        if replicas == 1:
            return self._pipeline(first_epoch, epochs, weights, 1, range(1))

        def pipeline(context: tf.distribute.InputContext) -> tf.data.Dataset:
            local = replicas // context.num_input_pipelines
            return self._pipeline(first_epoch, epochs, weights, replicas,
                                  range(context.input_pipeline_id * local, (context.input_pipeline_id + 1) * local))

        return strategy.distribute_datasets_from_function(pipeline)

    def _pipeline(self, first_epoch: int, epochs: int, weights: np.ndarray | None, parts: int,
                  own_parts: range) -> tf.data.Dataset:
        """The batches of epochs ``first_epoch`` to ``epochs - 1``, each cut into ``parts`` parts of which the
        ``own_parts`` come out in turn; with per-class ``weights``, each with its rows' weights."""
        def read(epoch, index, part):
            inputs, labels = self.batch(int(epoch), int(index))
            if parts > 1:
                cut = np.array_split(np.arange(len(labels)), parts)[int(part)]
                inputs = {name: array[cut] for name, array in inputs.items()} if names else inputs[cut]
                labels = labels[cut]
            out = [*(inputs.values() if names else [inputs]), labels]
            return out if weights is None else [*out, weights[labels]]

        example_inputs, example_labels = self.batch(first_epoch, 0)
        names = list(example_inputs) if isinstance(example_inputs, dict) else None
        examples = [*(example_inputs.values() if names else [example_inputs]), example_labels]
        if weights is not None:
            examples.append(weights[example_labels])

        def load(epoch, index, part):
            arrays = tf.numpy_function(read, [epoch, index, part], [tf.as_dtype(array.dtype) for array in examples])
            for array, example in zip(arrays, examples):
                array.set_shape((None, *example.shape[1:]))
            inputs_count = len(names) if names else 1
            inputs = dict(zip(names, arrays[:inputs_count])) if names else arrays[0]
            return (inputs, *arrays[inputs_count:])

        steps, first_part, own = len(self), own_parts.start, len(own_parts)
        batches = tf.data.Dataset.range(first_epoch, epochs).flat_map(
            lambda epoch: tf.data.Dataset.range(steps * own).map(
                lambda i: (epoch, i // own, first_part + i % own)))
        return (batches.apply(tf.data.experimental.assert_cardinality((epochs - first_epoch) * steps * own))
                .map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(tf.data.AUTOTUNE))


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


class Trainer(keras.Model):
    """The training twin of a phase's network (see :func:`fit_best`): a functional model whose logged measures
    are over the whole batch and split, also under a distribution strategy.

    Keras computes each replica's measures from its own part of the data and averages them across replicas: a
    macro-F1 averaged over parts is not the macro-F1 of the whole, and under MultiWorkerMirroredStrategy Keras 3
    cannot average them at all (tensorflow/tensorflow#72388). Here every replica sums the metrics' variables
    (totals, counts, the confusion matrix) across replicas first, so each holds the measures of the whole,
    identical on every worker: the best epoch is then the same everywhere, and so are the weights restored.
    """

    def get_metrics_result(self):
        context = tf.distribute.get_replica_context()
        if context is None or context.num_replicas_in_sync == 1:
            return super().get_metrics_result()
        results = {}
        for metric in self.metrics:
            totals = [context.all_reduce("SUM", tf.identity(variable.value)) for variable in metric.variables]
            result = metric.stateless_result(totals)
            results.update(result if isinstance(result, dict) else {metric.name: result})
        if isinstance(tf.distribute.get_strategy(), tf.distribute.MultiWorkerMirroredStrategy):
            # Keras averages the replicas' logs along axis 0 there, which a scalar lacks: one value, one axis.
            results = {name: tf.reshape(value, (1,)) for name, value in results.items()}
        return results


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
    ``args.training_ids`` (the subsample's :func:`emorec.data.training_ids_fingerprint`, or None for the whole
    split) and ``args.training_id_list`` (the ids), which :func:`write_run_config` writes beside the run's
    ``.args.json``: it records exactly which examples were used.
    """
    rows = labelled_training_rows(frame, args.label_fraction, args.labels_per_class, args.seed)
    whole = int((frame["split"] == "train").sum())
    subsampled = args.label_fraction is not None or args.labels_per_class is not None
    args.training_id_list = frame["id"][rows].tolist() if subsampled else None
    args.training_ids = training_ids_fingerprint(args.training_id_list) if subsampled else None
    if subsampled:
        per_class = np.bincount(frame["label"][rows], minlength=len(frame.attrs["class_names"]))
        log.info("training on %d of %d labelled training examples (per class: %s)", rows.sum(), whole,
                 ", ".join(f"{name} {n}" for name, n in zip(frame.attrs["class_names"], per_class)))
    return rows


# Flags that say where a run writes or how fast it extracts, not what it learns: a resumed run may change them.
NOT_TRAINING = ("run_name", "checkpoint_dir", "log_dir", "prob_dir", "cache_dir", "extract_batch_size", "cache_key",
                "training_id_list",  # its fingerprint, training_ids, stays
                "strategy", "distribution")  # a global batch is the same update on any number of replicas


def training_config(args) -> dict:
    """What a run learns from and how, from its parsed flags ``args``: a backup resumes only under the same config.

    Every flag except :data:`NOT_TRAINING`, with the data fingerprint and the subsample's (``training_ids``).
    """
    config = {key: value for key, value in vars(args).items() if key not in NOT_TRAINING}
    if config.get("data") is not None:  # the first run draws the split, the resumed one reads it: the same split
        config["data"] = {key: value for key, value in config["data"].items() if key != "split_source"}
    return json.loads(json.dumps(config, default=str))  # as the backup's JSON will give it back


def _backup_variables(trainer: keras.Model) -> list:
    """Every variable a training step changes: the weights, the dropout layers' random states, the optimizer's."""
    return [*trainer.variables, *trainer.optimizer.variables]


def _variable_shapes(trainer: keras.Model) -> list:
    """Each backed-up variable's dtype and shape (not its path: Keras numbers the names of repeated models)."""
    return [[str(variable.dtype), list(variable.shape)] for variable in _backup_variables(trainer)]


def _save_arrays(path: Path, arrays) -> None:
    with atomic_path(path) as tmp:
        np.savez(tmp, *arrays)


def _load_arrays(path: Path) -> list[np.ndarray]:
    with np.load(path) as stored:
        return [stored[f"arr_{i}"] for i in range(len(stored.files))]


class TrainingBackup(keras.callbacks.Callback):
    """The training state on disk after every epoch, so that the same command resumes after a kill.

    ``folder`` holds ``state-<epoch>.npz`` (every variable of the training
    model, the dropout layers' random states included, and the optimizer's),
    ``best-<epoch>.npz`` (the best epoch's weights so far) and ``state.json``,
    written last and atomically, which names them and records the epochs
    done, every epoch's measures, ``stopper``'s state and ``config``: a kill
    at any moment leaves the last completed epoch readable. ``state`` is a
    resumed run's ``state.json`` (None for a fresh run); ``stopper`` (the
    EarlyStopping placed before this callback) gets its state back when
    training begins, after it has reset itself.
    """

    def __init__(self, folder: Path, config: dict, stopper: keras.callbacks.EarlyStopping, state: dict | None):
        super().__init__()
        self.folder, self.stopper = folder, stopper
        self.state = state or {"config": config, "epochs_done": 0, "finished": False, "history": {}}

    def on_train_begin(self, logs=None):
        if self.state["epochs_done"]:
            stopper = self.state["stopper"]
            self.stopper.best, self.stopper.best_epoch, self.stopper.wait = (stopper["best"], stopper["best_epoch"],
                                                                             stopper["wait"])
            self.stopper.best_weights = _load_arrays(self.folder / self.state["best_file"])

    def on_epoch_end(self, epoch, logs=None):
        for name, value in (logs or {}).items():
            self.state["history"].setdefault(name, []).append(float(value))
        self.folder.mkdir(parents=True, exist_ok=True)
        written = {"state_file": f"state-{epoch + 1}.npz"}
        _save_arrays(self.folder / written["state_file"], [variable.numpy() for variable in _backup_variables(self.model)])
        if self.stopper.best_epoch == epoch:
            written["best_file"] = f"best-{epoch + 1}.npz"
            _save_arrays(self.folder / written["best_file"], self.stopper.best_weights)
        replaced = {self.state.get(key) for key in written} - {None}
        self.state.update(written, epochs_done=epoch + 1,
                          finished=bool(self.model.stop_training) or epoch + 1 >= self.params["epochs"],
                          stopper={"best": float(self.stopper.best), "best_epoch": int(self.stopper.best_epoch),
                                   "wait": int(self.stopper.wait)},
                          variables=_variable_shapes(self.model))
        write_json_atomic(self.folder / "state.json", self.state)
        for name in replaced:
            (self.folder / name).unlink(missing_ok=True)


def resumable_state(folder: Path, config: dict, trainer: keras.Model) -> dict | None:
    """Load the backup in ``folder`` into ``trainer`` (compiled) and return its ``state.json``, or clear the folder
    and return None (a fresh start) when there is none, or it was made under another ``config`` (said in the
    log, with the flags that differ) or for another model, or cannot be read."""
    state_file = folder / "state.json"
    if not state_file.exists():
        shutil.rmtree(folder, ignore_errors=True)  # files of a first epoch killed before its state.json
        return None
    why = None
    try:
        state = json.loads(state_file.read_text(encoding="utf-8"))
        trainer.optimizer.build(trainer.trainable_variables)
        variables = _backup_variables(trainer)
        if state["config"] != config:
            old = state["config"]
            why = "it was made by another command (" + "; ".join(
                "other data (the manifest's rows or the split changed)" if key == "data" else
                f"--{key.replace('_', '-')} {old.get(key)!r} then, {config.get(key)!r} now"
                for key in sorted(set(old) | set(config)) if old.get(key) != config.get(key)) + ")"
        elif state["variables"] != _variable_shapes(trainer):
            why = "it holds another model's variables"
        else:
            for variable, value in zip(variables, _load_arrays(folder / state["state_file"]), strict=True):
                variable.assign(value)
    except (OSError, ValueError, KeyError, TypeError) as error:
        why = f"it cannot be read ({type(error).__name__}: {error})"
    if why is not None:
        log.warning("the training backup %s is not resumed: %s. Training starts fresh.", folder, why)
        shutil.rmtree(folder, ignore_errors=True)
        return None
    return state


def _write_epochs_csv(path: Path, history: dict, first: int = 0) -> None:
    """Write the epochs of ``history`` (measure -> one value per epoch) as Keras' CSVLogger writes them, the
    epochs numbered from ``first`` (CSVLogger's 0 while training; 1 in the CSV a phase leaves, as in the log)."""
    names = sorted(history)
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=["epoch", *names])
        writer.writeheader()
        for epoch in range(len(history[names[0]]) if names else 0):
            writer.writerow({"epoch": epoch + first, **{name: history[name][epoch] for name in names}})


def fit_best(
    model: keras.Model, train: ArrayBatches, val, epochs: int, lr: float, outputs: PhaseOutputs,
    class_weight: dict[int, float] | None = None, monitor: str = "val_loss", patience: int | None = None,
    config: dict | None = None, strategy: tf.distribute.Strategy | None = None, jit_compile: bool = False,
) -> dict:
    """Train ``model`` on the batches ``train``, validating on ``val``; end with the best epoch's weights.

    The paper's Adam (:func:`adam`, learning rate ``lr``) minimises the
    sparse categorical cross-entropy of a training twin of ``model``: a
    functional model over the same layers and weights, compiled in its place.
    ``model`` itself is never compiled, so the inference model a phase saves
    around it carries no optimizer: no optimizer state in the file (for the
    image heads, twice their weights) and no optimizer class to register before
    loading it. ``class_weight`` (see :func:`class_weights`) weights each
    training example's loss by its class.
    Each epoch logs loss, accuracy and macro-F1 (:class:`MacroF1`), on the
    training batches and on the whole validation split. ``monitor``
    (``val_loss`` or ``val_macro_f1``) picks the best epoch; with
    ``patience``, training stops once it has not improved for that many
    epochs (None: every epoch runs, as in the paper).
    ``strategy`` (from :func:`emorec.distribute.choose_strategy`; None: the default) is where the steps run: the
    training twin (a :class:`Trainer`) is compiled and built in its scope (``model`` must have been built
    there), each global batch of ``train`` is cut over its replicas, and the validation's too.
    ``jit_compile`` asks Keras to compile the steps with XLA.
    First takes the run's lock for the phase (:meth:`PhaseOutputs.claim`).
    Callbacks: EarlyStopping with ``restore_best_weights`` (the best epoch's
    weights, restored at the end however training ends), the backup
    (:class:`TrainingBackup` in ``outputs.backup``; a backup made under the same
    ``config`` is resumed at the epoch after its last one, else training
    starts fresh), TensorBoard (the per-epoch measures, train and validation,
    in ``outputs.tensorboard``, cleared on a fresh start, continued on a
    resumed one) and CSVLogger (its epochs written to ``outputs.epochs_csv``,
    counted from 1, when training ends). Keras prints its progress bar. The backup stays until
    :func:`save_phase` has written the phase's outputs, so a kill while saving
    resumes without training again.
    Returns a summary: epochs run, the monitor, the patience, the best epoch
    with its validation loss and macro-F1, the epoch a resumed run started at,
    seconds in all and per epoch (of this process's epochs).
    """
    if monitor not in MONITORS:
        raise ValueError(f"unknown monitor {monitor!r}: one of {', '.join(MONITORS)}")
    outputs.claim()  # from here on this process writes the phase's outputs, and no other one may
    config = config or {}
    strategy = strategy or tf.distribute.get_strategy()
    # The twin is made outside the strategy's scope, compiled, built and trained in it. Made in the scope, Keras
    # would build it at fit() from the mean of the first batch's parts, which fails when the global batch does
    # not divide evenly over the replicas; here it is built from one whole batch, the variables of its metrics
    # and optimizer mirrored as the weights are. Built before fit() under the default strategy too: Keras would
    # create the optimizer's and the metrics' variables inside the first training step, and TensorFlow traces a
    # step that creates variables twice (TER's twice cost 4 s of every run's start).
    trainer = Trainer(model.input, model.output, name=f"{model.name}_training")
    with strategy.scope():
        trainer.compile(optimizer=adam(lr), loss="sparse_categorical_crossentropy",
                        metrics=["accuracy", MacroF1(model.output.shape[-1])], jit_compile=jit_compile)
        if hasattr(trainer, "_symbolic_build"):
            example_inputs, example_labels = train.batch(0, 0)
            trainer._symbolic_build(data_batch=(example_inputs, example_labels))  # what Keras' fit() calls in a scope
        state = resumable_state(outputs.backup, config, trainer)
    outputs.epochs_csv.parent.mkdir(parents=True, exist_ok=True)
    partial_log = outputs.epochs_csv.with_name(f".{outputs.epochs_csv.name}.partial")
    done = 0 if state is None else state["epochs_done"]
    if state is None:
        shutil.rmtree(outputs.tensorboard, ignore_errors=True)
        partial_log.unlink(missing_ok=True)
    else:
        _write_epochs_csv(partial_log, state["history"])  # exactly the epochs backed up, whatever the kill left
        best = state["stopper"]
        log.info("resuming from the training backup %s: %d of %d epochs done%s; best %s so far %.4f at epoch %d",
                 outputs.backup, done, epochs, " (training had ended)" if state["finished"] else "", monitor,
                 best["best"], best["best_epoch"] + 1)
    stopper = keras.callbacks.EarlyStopping(monitor=monitor, mode=MONITORS[monitor], patience=patience or epochs,
                                            restore_best_weights=True)
    backup = TrainingBackup(outputs.backup, config, stopper, state)
    if jit_compile:  # Keras may have refused it (a layer without XLA support, or op determinism on)
        log.info("training steps %s", "compiled with XLA" if trainer.jit_compile else
                 "without XLA: Keras cannot compile this model with it")
    if class_weight is not None:
        log.info("class weights: %s", ", ".join(f"{label}: {weight:.3f}" for label, weight in class_weight.items()))
    started = time.perf_counter()
    if state is not None and state["finished"]:
        trainer.set_weights(_load_arrays(outputs.backup / state["best_file"]))
    else:
        # shuffle=False: train orders its rows itself, each epoch's from (seed, epoch) (Keras' shuffle of the
        # batches draws from a global generator that a resumed run could not restore). TensorBoard before the
        # backup: a kill between them repeats an identical point, never loses one.
        # The class weights travel with the batches (as Keras would put them there): a distributed dataset
        # takes no class_weight.
        with strategy.scope():
            trainer.fit(train.dataset(done, epochs, class_weight, strategy), steps_per_epoch=len(train),
                        validation_data=val.dataset(strategy=strategy) if isinstance(val, ArrayBatches) else val,
                        epochs=epochs, initial_epoch=done, shuffle=False, callbacks=[
                            stopper, keras.callbacks.TensorBoard(log_dir=str(outputs.tensorboard), write_graph=False),
                            backup, keras.callbacks.CSVLogger(str(partial_log), append=done > 0)])
    seconds = time.perf_counter() - started
    measures = backup.state["history"]
    # Epochs counted from 1, as Keras' progress bar, the log and the metrics' best_epoch count them.
    _write_epochs_csv(outputs.epochs_csv, measures, first=1)
    partial_log.unlink(missing_ok=True)
    best, run = backup.state["stopper"]["best_epoch"], len(measures[monitor])  # the epoch whose weights were restored
    stopped = run < epochs
    log.info("best %s %.4f at epoch %d of %d%s (val_loss %.4f, val_macro_f1 %.4f); its weights restored", monitor,
             measures[monitor][best], best + 1, run, f", stopped early (patience {patience})" if stopped else "",
             measures["val_loss"][best], measures["val_macro_f1"][best])
    ran = run - done
    fingerprint = weights_fingerprint(model)
    log.info("weights fingerprint %s", fingerprint)
    return {
        "epochs_run": run,
        "monitor": monitor,
        "patience": patience,
        "stopped_early": stopped,
        "best_epoch": best + 1,
        "best_val_loss": float(measures["val_loss"][best]),
        "best_val_macro_f1": float(measures["val_macro_f1"][best]),
        "class_weights": None if class_weight is None else {str(k): v for k, v in class_weight.items()},
        "resumed_at_epoch": None if state is None else done + 1,
        "fit_seconds": round(seconds, 2),
        "seconds_per_epoch": round(seconds / ran, 2) if ran else None,
        "weights_sha256": fingerprint,
        "xla": bool(trainer.jit_compile),
    }


def weights_fingerprint(model: keras.Model) -> str:
    """The sha256 of ``model``'s weights (their bytes, in order): equal for equal weights, as every worker of a
    multiworker run ends with."""
    digest = hashlib.sha256()
    for weights in model.get_weights():
        digest.update(np.ascontiguousarray(weights).tobytes())
    return digest.hexdigest()


# On CPU (benchmarks/xla_step.py, two cores) XLA paid only for a small network without recurrent layers: IER's head
# on 512 pooled features 1.12x faster in float32, 2.12x in bfloat16; on VGG16's 25,088 flattened features 0.49x and
# 0.77x (FusedAdam's one pass over the 25 M weights beats XLA's); TER's BiLSTM network 0.67x (5,000 words) and
# 0.44x (40,000 words).
XLA_CPU_MAX_WEIGHTS = 5_000_000


def use_xla(args, network: keras.Model) -> bool:
    """Whether a phase's training steps compile with XLA (``jit_compile``): under ``--no-deterministic``, on a
    machine with a GPU; on CPU for a ``network`` without recurrent layers of at most :data:`XLA_CPU_MAX_WEIGHTS`
    trainable weights. Never under ``--deterministic``: TensorFlow's op determinism and XLA do not go together."""
    if args.deterministic:
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


def worker_outputs(outputs: PhaseOutputs, strategy: tf.distribute.Strategy) -> PhaseOutputs:
    """Where this process writes a phase's outputs: ``outputs`` for the chief (every process but the
    non-chief workers of ``--strategy multiworker``); for another worker, the same names in a temporary folder
    removed when it exits, its training backup starting as a copy of the chief's (so that every worker resumes
    from the same epoch and weights: the workers share a file system)."""
    if is_chief(strategy):
        return outputs
    import atexit
    import dataclasses
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="emorec-worker-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    moved = PhaseOutputs(**{field.name: folder / field.name / getattr(outputs, field.name).name
                            for field in dataclasses.fields(outputs)})
    if (outputs.backup / "state.json").exists():
        shutil.copytree(outputs.backup, moved.backup, dirs_exist_ok=True)
    log.info("not the chief: this worker's outputs go to %s, removed when it ends", folder)
    return moved


def save_model(model: keras.Model, path: Path) -> None:
    """Save a whole model (``.keras``) atomically."""
    with atomic_path(path) as tmp:
        model.save(tmp)
    log.info("saved %s", path)


def write_run_config(outputs: PhaseOutputs, args, argv) -> None:
    """Write ``<phase>.args.json``: the command line, every flag and the library versions; a subsample's training
    ids go beside it, one per line (:func:`emorec.data.training_ids_file`), the JSON keeping their fingerprint."""
    flags = {key: value for key, value in vars(args).items() if key != "training_id_list"}
    ids = getattr(args, "training_id_list", None)
    if ids is not None:
        write_text_atomic(training_ids_file(outputs.args_json), "".join(f"{id_}\n" for id_ in ids))
    write_json_atomic(outputs.args_json, {
        "argv": list(sys.argv[1:] if argv is None else argv), **flags,
        "keras": keras.__version__, "tensorflow": tf.__version__, "numpy": np.__version__,
    })


def save_phase(
    outputs: PhaseOutputs, phase: str, model: keras.Model, args, argv, metrics: dict, probabilities, prob_file: str
) -> None:
    """Log a phase's scores and write its outputs, each atomically, then remove the phase's training backup.

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
    shutil.rmtree(outputs.backup, ignore_errors=True)  # the phase is done: nothing left to resume
    log.info("wrote %s, %s and %s", outputs.model, outputs.metrics_json, outputs.prob_dir / prob_file)
