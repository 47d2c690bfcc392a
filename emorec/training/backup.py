"""The training state on disk after every epoch, and resuming from it: the same command continues after a kill."""

from __future__ import annotations

import csv
import json
import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import keras
import numpy as np

from emorec.fileio import atomic_path, write_json_atomic

if TYPE_CHECKING:
    from emorec.runs import RunRecord

log = logging.getLogger("emorec")


def training_config(flags: dict, record: RunRecord) -> dict:
    """What a run learns from and how: a backup resumes only under the same config.

    The ``flags`` that bear on learning (:meth:`emorec.cli.ArgumentParser.training_flags`), with what the run
    found that does too (``record``): the data fingerprint, the subsample's (``training_ids``), and the precision,
    pooling and text model as resolved.
    """
    config = dict(flags)
    # The first run draws the split, the resumed one reads it: the same split.
    config["data"] = {key: value for key, value in record.data.items() if key != "split_source"}
    config["training_ids"] = record.training_ids_fingerprint()
    config |= {
        key: value for key, value in (("precision", record.precision), ("pooling", record.pooling)) if value is not None
    }
    if record.text_model is not None:  # defaults as resolved in the flags' place, and an encoder's identity
        config |= {
            key: record.text_model[key]
            for key in ("lr", "batch_size", "seq_len")
            if key in record.text_model and config.get(key) is None
        }
        if record.text_model["model"] != "paper":
            config |= {"text_model": record.text_model["model"], "text_encoder": record.text_model["encoder"]}
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


def load_arrays(path: Path) -> list[np.ndarray]:
    """The arrays of an ``.npz`` file written by the backup, in order."""
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
            self.stopper.best, self.stopper.best_epoch, self.stopper.wait = (
                stopper["best"],
                stopper["best_epoch"],
                stopper["wait"],
            )
            self.stopper.best_weights = load_arrays(self.folder / self.state["best_file"])

    def on_epoch_end(self, epoch, logs=None):
        for name, value in (logs or {}).items():
            self.state["history"].setdefault(name, []).append(float(value))
        self.folder.mkdir(parents=True, exist_ok=True)
        written = {"state_file": f"state-{epoch + 1}.npz"}
        _save_arrays(
            self.folder / written["state_file"], [variable.numpy() for variable in _backup_variables(self.model)]
        )
        if self.stopper.best_epoch == epoch:
            written["best_file"] = f"best-{epoch + 1}.npz"
            _save_arrays(self.folder / written["best_file"], self.stopper.best_weights)
        replaced = {self.state.get(key) for key in written} - {None}
        self.state.update(
            written,
            epochs_done=epoch + 1,
            finished=bool(self.model.stop_training) or epoch + 1 >= self.params["epochs"],
            stopper={
                "best": float(self.stopper.best),
                "best_epoch": int(self.stopper.best_epoch),
                "wait": int(self.stopper.wait),
            },
            variables=_variable_shapes(self.model),
        )
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
            why = (
                "it was made by another command ("
                + "; ".join(
                    "other data (the manifest's rows or the split changed)"
                    if key == "data"
                    else f"--{key.replace('_', '-')} {old.get(key)!r} then, {config.get(key)!r} now"
                    for key in sorted(set(old) | set(config))
                    if old.get(key) != config.get(key)
                )
                + ")"
            )
        elif state["variables"] != _variable_shapes(trainer):
            why = "it holds another model's variables"
        else:
            for variable, value in zip(variables, load_arrays(folder / state["state_file"]), strict=True):
                variable.assign(value)
    except (OSError, ValueError, KeyError, TypeError) as error:
        why = f"it cannot be read ({type(error).__name__}: {error})"
    if why is not None:
        log.warning("the training backup %s is not resumed: %s. Training starts fresh.", folder, why)
        shutil.rmtree(folder, ignore_errors=True)
        return None
    return state


def write_epochs_csv(path: Path, history: dict, first: int = 0) -> None:
    """Write the epochs of ``history`` (measure -> one value per epoch) as Keras' CSVLogger writes them, the
    epochs numbered from ``first`` (CSVLogger's 0 while training; 1 in the CSV a phase leaves, as in the log)."""
    names = sorted(history)
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=["epoch", *names])
        writer.writeheader()
        for epoch in range(len(history[names[0]]) if names else 0):
            writer.writerow({"epoch": epoch + first, **{name: history[name][epoch] for name in names}})
