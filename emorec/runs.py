"""A run's outputs: where each phase writes (one folder deeper per --run-name), the lock that keeps two processes
from writing one phase at once, the inputs a phase checks before any work, and the record it writes beside its
model (the user's flags apart from what the run found)."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from emorec.data.fingerprints import training_ids_file, training_ids_fingerprint
from emorec.distribute import is_chief
from emorec.errors import InputError
from emorec.fileio import atomic_path, write_csv_atomic, write_json_atomic, write_text_atomic
from emorec.storage import hold_run, require_writable

if TYPE_CHECKING:
    import keras
    import tensorflow as tf

log = logging.getLogger("emorec")


@dataclass(frozen=True)
class RunFolders:
    """Where a run writes: its models and JSON, its TensorBoard logs, its probability files, each one folder deeper
    under ``run_name`` when given (the flags of the "outputs" group)."""

    checkpoint_dir: Path | str
    log_dir: Path | str
    prob_dir: Path | str
    run_name: str | None = None


@dataclass(frozen=True)
class PhaseOutputs:
    """Where one phase of one run writes: every path moves one folder deeper with --run-name."""

    model: Path
    args_json: Path
    metrics_json: Path
    epochs_csv: Path
    tensorboard: Path
    prob_dir: Path
    backup: Path  # the training state while training runs (training.backup.TrainingBackup), gone when it ends

    def claim(self) -> None:
        """Take, before the first write, this phase's lock on the run (:func:`emorec.storage.hold_run`): the same
        phase of the same run started in a second process meanwhile is refused with :class:`InputError`."""
        hold_run(self.model.parent, self.model.stem)

    @classmethod
    def of(cls, folders: RunFolders, phase: str) -> PhaseOutputs:
        """The outputs of ``phase`` in the run's ``folders``."""
        run = folders.run_name or ""
        checkpoints = Path(folders.checkpoint_dir) / run
        return cls(
            model=checkpoints / f"{phase}.keras",
            args_json=checkpoints / f"{phase}.args.json",
            metrics_json=checkpoints / f"{phase}.metrics.json",
            epochs_csv=checkpoints / f"{phase}.epochs.csv",
            tensorboard=Path(folders.log_dir) / run / phase,
            prob_dir=Path(folders.prob_dir) / run,
            backup=checkpoints / f".{phase}.backup",
        )


def writable_outputs(folders: RunFolders, phase: str, **more_folders) -> PhaseOutputs:
    """The outputs of ``phase`` in ``folders``, once every folder they go to (and ``more_folders``: flag -> folder)
    is known to be writable (:func:`emorec.storage.require_writable`: an :class:`InputError` before any work)."""
    outputs = PhaseOutputs.of(folders, phase)
    require_writable(
        {
            "--checkpoint-dir": outputs.model.parent,
            "--log-dir": outputs.tensorboard.parent,
            "--prob-dir": outputs.prob_dir,
            **more_folders,
        }
    )
    return outputs


def phase_output_fix(phase: str, folders: RunFolders) -> str:
    """How to make a file that the phase ``phase`` writes: the command to run first, for the run in ``folders``."""
    same = " --run-name " + folders.run_name if folders.run_name else ""
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
    moved = PhaseOutputs(
        **{field.name: folder / field.name / getattr(outputs, field.name).name for field in dataclasses.fields(outputs)}
    )
    if (outputs.backup / "state.json").exists():
        shutil.copytree(outputs.backup, moved.backup, dirs_exist_ok=True)
    log.info("not the chief: this worker's outputs go to %s, removed when it ends", folder)
    return moved


def weights_fingerprint(model: keras.Model) -> str:
    """The sha256 of ``model``'s weights (their bytes, in order): equal for equal weights, as every worker of a
    multiworker run ends with."""
    digest = hashlib.sha256()
    for weights in model.get_weights():
        digest.update(np.ascontiguousarray(weights).tobytes())
    return digest.hexdigest()


def save_model(model: keras.Model, path: Path) -> None:
    """Save a whole model (``.keras``) atomically."""
    with atomic_path(path) as tmp:
        model.save(tmp)
    log.info("saved %s", path)


@dataclass
class RunRecord:
    """What a run found, as against what its flags asked for: written to ``<phase>.args.json`` under "run",
    apart from the flags, for later phases to check and for a reader to see what ran.

    ``data`` is the data fingerprint (:func:`emorec.data.fingerprints.data_fingerprint`), ``split_leakage`` the
    leakage counts; ``training_ids`` a subsample's training ids (None: the whole train split), recorded by
    their fingerprint, the ids themselves one per line beside the JSON; ``distribution`` the strategy as it
    ran (:func:`emorec.distribute.describe`); ``precision`` and ``pooling`` as resolved (``--precision auto``,
    the fusion's ``--pooling`` left to IER's), and ``manifest`` the one the phases read, where a phase leaves
    it to them; ``text_model`` the text model as resolved by TER and the fusion (paper, fine-tuned or frozen,
    the learning rate, batch size, TER's tokens per text, and a pretrained encoder's
    :meth:`~emorec.text_encoders.TextEncoder.describe`). None: not a fact of this phase.
    """

    data: dict
    split_leakage: dict
    training_ids: list[str] | None = None
    distribution: dict | None = None
    precision: str | None = None
    pooling: str | None = None
    manifest: str | None = None
    text_model: dict | None = None

    def training_ids_fingerprint(self) -> dict | None:
        """The subsample's :func:`~emorec.data.fingerprints.training_ids_fingerprint`, or None."""
        return None if self.training_ids is None else training_ids_fingerprint(self.training_ids)

    def facts(self) -> dict:
        """The record as ``.args.json`` holds it under "run" (the facts that apply to this phase)."""
        facts = {
            "data": self.data,
            "split_leakage": self.split_leakage,
            "training_ids": self.training_ids_fingerprint(),
            "distribution": self.distribution,
            "precision": self.precision,
            "pooling": self.pooling,
            "manifest": self.manifest,
            "text_model": self.text_model,
        }
        return {key: value for key, value in facts.items() if value is not None or key == "training_ids"}


@dataclass(frozen=True)
class RunConfig:
    """A phase's ``.args.json`` as read back (:func:`read_run_config`): the command line, the user's flags and
    what the run found (its :meth:`RunRecord.facts`, with the library versions)."""

    path: Path
    argv: list[str]
    flags: dict
    run: dict


# What releases before the run record wrote among the flags of a flat .args.json, and where it goes now.
FLAT_FACTS = ("data", "training_ids", "distribution", "keras", "tensorflow", "numpy")


def read_run_config(path: Path) -> RunConfig:
    """Read a phase's ``.args.json``; a file written before the run record (one flat object, the resolved
    precision and pooling in the flags' place) reads as the same :class:`RunConfig`."""
    written = json.loads(Path(path).read_text(encoding="utf-8"))
    if "flags" in written and "run" in written:
        return RunConfig(Path(path), written.get("argv", []), written["flags"], written["run"])
    flags = {key: value for key, value in written.items() if key not in ("argv", *FLAT_FACTS)}
    run = {key: written[key] for key in FLAT_FACTS if key in written}
    run |= {key: written[key] for key in ("precision", "pooling") if written.get(key) is not None}
    return RunConfig(Path(path), written.get("argv", []), flags, run)


def write_run_config(outputs: PhaseOutputs, flags: dict, argv, record: RunRecord) -> None:
    """Write ``<phase>.args.json``: the command line, the user's ``flags`` (as parsed) and, apart from them,
    what the run found (``record``) with the library versions; a subsample's training ids go beside it, one per
    line (:func:`emorec.data.fingerprints.training_ids_file`), the JSON keeping their fingerprint."""
    import keras
    import tensorflow as tf

    if record.training_ids is not None:
        write_text_atomic(training_ids_file(outputs.args_json), "".join(f"{id_}\n" for id_ in record.training_ids))
    write_json_atomic(
        outputs.args_json,
        {
            "argv": list(sys.argv[1:] if argv is None else argv),
            "flags": dict(flags),
            "run": {
                **record.facts(),
                "versions": {"keras": keras.__version__, "tensorflow": tf.__version__, "numpy": np.__version__},
            },
        },
    )


def save_phase(
    outputs: PhaseOutputs,
    model: keras.Model,
    *,
    flags: dict,
    argv,
    record: RunRecord,
    metrics: dict,
    probabilities,
    prob_file: str,
) -> None:
    """Log a phase's scores and write its outputs, each atomically, then remove the phase's training backup.

    Writes ``model`` (whole, ``.keras``), ``<phase>.metrics.json`` (``metrics``,
    its "phase" first; ``metrics["splits"]`` is logged), ``<phase>.args.json``
    (:func:`write_run_config`: the ``flags``, apart from what the run found, ``record``) and the
    probability table ``probabilities`` as ``prob_file`` in the run's prob folder.
    """
    for split, scores in metrics["splits"].items():
        log.info("%s: accuracy %.3f, macro-F1 %.3f (n=%d)", split, scores["accuracy"], scores["macro_f1"], scores["n"])
    save_model(model, outputs.model)
    write_json_atomic(outputs.metrics_json, metrics)
    write_run_config(outputs, flags, argv, record)
    write_csv_atomic(probabilities, outputs.prob_dir / prob_file)
    shutil.rmtree(outputs.backup, ignore_errors=True)  # the phase is done: nothing left to resume
    log.info("wrote %s, %s and %s", outputs.model, outputs.metrics_json, outputs.prob_dir / prob_file)


def members_manifest(recorded: dict, given: str | None) -> str:
    """The manifest the members' phases read (``recorded``: their ``.args.json``, as
    :class:`~emorec.runs.RunConfig`); ``given``, if any, must be that one.

    Raises :class:`InputError` when the phases read different manifests, or
    ``given`` is missing or another file, saying which phases to rerun.
    """
    used = {member: config.flags["manifest"] for member, config in recorded.items()}
    if len({Path(manifest).resolve() for manifest in used.values()}) > 1:
        raise InputError(
            "the phases of this run read different manifests: "
            + ", ".join(f"{member} {manifest}" for member, manifest in used.items())
            + ". Rerun them with one --manifest (TER.py, IER.py, then Intermediate_fusion.py)."
        )
    manifest = used["TER"]
    if given is not None:
        if not Path(given).is_file():
            raise InputError(
                f"--manifest {given}: no such file. Leave --manifest out to use the phases' own ({manifest})."
            )
        if Path(given).resolve() != Path(manifest).resolve():
            raise InputError(
                f"--manifest {given} is not the manifest the phases of this run read ({manifest}, recorded in "
                f"{recorded['TER'].path}). Leave --manifest out, or rerun TER.py, IER.py and Intermediate_fusion.py "
                f"with --manifest {given} first."
            )
    return manifest


def check_same_training_rows(training_ids, configs: dict) -> None:
    """Refuse to fuse unimodal runs that learnt from other training examples than this command would
    (``training_ids``: this command's subsample fingerprint; ``configs``: each phase's
    :class:`~emorec.runs.RunConfig`)."""

    def count(ids):
        if ids is None:
            return "the whole train split"
        return f"{ids['count']} subsampled examples" if isinstance(ids, dict) else f"{len(ids)} listed inline"

    for config in configs.values():
        theirs = config.run.get("training_ids")
        if theirs != training_ids:
            raise InputError(
                f"{config.path} trained on other examples ({count(theirs)}) than this command would "
                f"({count(training_ids)}). Give every phase of a run the same --label-fraction or "
                "--labels-per-class and --seed."
            )
