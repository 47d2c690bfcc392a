"""A run's outputs: where each phase writes (one folder deeper per --run-name), the lock that keeps two processes
from writing one phase at once, the inputs a phase checks before any work, and the record it writes beside its
model (the user's flags apart from what the run found)."""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from emorec.data.fingerprints import training_ids_file, training_ids_fingerprint
from emorec.data.splits import labelled_training_rows
from emorec.distribute import is_chief
from emorec.errors import InputError
from emorec.fileio import atomic_path, write_csv_atomic, write_json_atomic, write_text_atomic
from emorec.storage import hold_run, require_writable

if TYPE_CHECKING:
    import keras
    import tensorflow as tf

log = logging.getLogger("emorec")


@dataclass(frozen=True)
class PhaseOutputs:
    """Where one phase of one run writes: every path moves one folder deeper with --run-name."""

    model: Path
    args_json: Path
    metrics_json: Path
    epochs_csv: Path
    tensorboard: Path
    prob_dir: Path
    backup: Path  # the training state while training runs (emorec.training.backup.TrainingBackup), removed when the phase ends

    def claim(self) -> None:
        """Take, before the first write, this phase's lock on the run (:func:`emorec.storage.hold_run`): the same
        phase of the same run started in a second process meanwhile is refused with :class:`InputError`."""
        hold_run(self.model.parent, self.model.stem)

    @classmethod
    def of(cls, args: argparse.Namespace, phase: str) -> "PhaseOutputs":
        """The outputs of ``phase`` for the parsed command line ``args``."""
        run = args.run_name or ""
        checkpoints = Path(args.checkpoint_dir) / run
        return cls(
            model=checkpoints / f"{phase}.keras",
            args_json=checkpoints / f"{phase}.args.json",
            metrics_json=checkpoints / f"{phase}.metrics.json",
            epochs_csv=checkpoints / f"{phase}.epochs.csv",
            tensorboard=Path(args.log_dir) / run / phase,
            prob_dir=Path(args.prob_dir) / run,
            backup=checkpoints / f".{phase}.backup",
        )


def writable_outputs(args: argparse.Namespace, phase: str, **more_folders) -> PhaseOutputs:
    """The outputs of ``phase`` for ``args``, once every folder they go to (and ``more_folders``: flag -> folder)
    is known to be writable (:func:`emorec.storage.require_writable`: an :class:`InputError` before any work)."""
    outputs = PhaseOutputs.of(args, phase)
    require_writable({"--checkpoint-dir": outputs.model.parent, "--log-dir": outputs.tensorboard.parent,
                      "--prob-dir": outputs.prob_dir, **more_folders})
    return outputs


def phase_output_fix(phase: str, args: argparse.Namespace) -> str:
    """How to make a file that the phase ``phase`` writes: the command to run first, for this run's outputs."""
    same = " --run-name " + args.run_name if args.run_name else ""
    return f"written by `python {phase}.py`: run that first, with the same --manifest{same} and output folders."


def require_files(needed: dict) -> None:
    """Check that every input file exists before any work; raise one :class:`InputError` listing all that do not.

    ``needed`` maps each path to what makes it (a command, or where to get
    it), which the message gives beside the path.
    """
    missing = [f"{path} is missing: {fix}" for path, fix in needed.items() if not Path(path).is_file()]
    if len(missing) == 1:
        raise InputError(missing[0])
    if missing:
        raise InputError(f"{len(missing)} input files are missing:\n" + "\n".join(f"- {line}" for line in missing))


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
    import keras
    import tensorflow as tf

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
