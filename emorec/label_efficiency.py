"""The label-efficiency study: every (label fraction, seed) setting run through the phases, then the curve.

What ``python sweep.py`` runs (see its docstring): :func:`run_sweep` runs each setting not yet done through the
phases it is handed, an explicit mapping of each phase's name to its ``main`` (this package never imports the
phase scripts), and writes ``results/label_efficiency.csv``, ``.md`` and ``.png``.
"""

from __future__ import annotations

import json
import logging
import shlex
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from emorec.errors import InputError
from emorec.fusion import MEMBERS, METHODS
from emorec.label_efficiency_report import write_label_efficiency
from emorec.runs import RunFolders
from emorec.zero_shot import ZERO_SHOT_NAMES

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger("emorec")
# A phase's entry point: its main(argv), which returns its exit status.
PhaseMain = Callable[[Sequence[str]], int]


# The flags of `python sweep.py` whose value is more flags for one phase, passed through as one string.
PASS_THROUGH = {"TER": "--ter-args", "IER": "--ier-args", "Intermediate_fusion": "--inter-args"}


def run_name(prefix: str, fraction: float, seed: int) -> str:
    """The named run of one setting, for example ``labels-f0.05-s0``."""
    return f"{prefix}-f{fraction:g}-s{seed}"


@dataclass(frozen=True)
class Sweep:
    """What a sweep runs: each (fraction, seed) setting through the phases as the named run
    ``<prefix>-f<fraction>-s<seed>`` under ``folders``, its report in ``results_dir``.

    Each phase's command line is ``leading[phase]``, ``--seed``, (for the training phases) ``--label-fraction``
    and ``training``, the outputs, then ``trailing[phase]``.
    """

    fractions: list[float]
    seeds: list[int]
    prefix: str
    folders: RunFolders
    results_dir: Path
    leading: dict[str, list[str]]
    training: list[str]
    trailing: dict[str, list[str]]

    def settings(self) -> list[tuple[float, int]]:
        """Every (fraction, seed), largest fraction first: its vocabulary holds the smaller subsamples', so its
        GloVe cache serves them all."""
        return [(fraction, seed) for fraction in sorted(set(self.fractions), reverse=True) for seed in self.seeds]

    def argv(self, phase: str, name: str, fraction: float, seed: int) -> list[str]:
        """The command line of ``phase`` in the setting ``name`` (``fraction``, ``seed``)."""
        folders = self.folders
        outputs = [
            "--run-name",
            name,
            "--checkpoint-dir",
            str(folders.checkpoint_dir),
            "--log-dir",
            str(folders.log_dir),
            "--prob-dir",
            str(folders.prob_dir),
        ]
        training = []
        if phase in MEMBERS:
            training = [*(["--label-fraction", f"{fraction:g}"] if fraction < 1 else []), *self.training]
        return [*self.leading[phase], "--seed", str(seed), *training, *outputs, *self.trailing[phase]]


def run_sweep(sweep: Sweep, phases: Mapping[str, PhaseMain]) -> None:
    """Run every setting of ``sweep`` not yet done, through ``phases`` (each phase's name, TER, IER,
    Intermediate_fusion and Late_fusion, to its ``main``), then write the label-efficiency table and figure."""
    settings = sweep.settings()
    results = Path(sweep.results_dir)
    started, durations = time.perf_counter(), []
    for number, (fraction, seed) in enumerate(settings, 1):
        name = run_name(sweep.prefix, fraction, seed)
        if (results / name / "summary.json").exists():
            log.info("[%d/%d] %s: already done, skipped", number, len(settings), name)
            continue
        setting_started = time.perf_counter()
        run_setting(sweep, name, fraction, seed, phases)
        durations.append((fraction, time.perf_counter() - setting_started))
        left = time_left(durations, [f for f, _ in settings[number:]])
        log.info(
            "[%d/%d] %s done in %.0f s: %.0f s so far, about %.0f s left",
            number,
            len(settings),
            name,
            durations[-1][1],
            time.perf_counter() - started,
            left,
        )
    write_label_efficiency(*collect(sweep, settings), results)
    log.info("wrote %s, .md and .png", results / "label_efficiency.csv")


def time_left(durations: list[tuple[float, float]], fractions_left: list[float]) -> float:
    """Seconds the remaining settings should take, from (fraction, seconds) of those done.

    A setting costs a fixed part (start-up, graph building, saving) plus a part
    that grows with its fraction, so once two fractions have run, a line
    through them predicts each remaining one; before that, their mean does.
    """
    import numpy as np

    fractions, seconds = np.array(durations).T
    if len(set(fractions)) < 2:
        return float(seconds.mean() * len(fractions_left))
    slope, intercept = np.polyfit(fractions, seconds, 1)
    return float(np.maximum(intercept + slope * np.array(fractions_left), seconds.min()).sum())


def run_setting(sweep: Sweep, name: str, fraction: float, seed: int, phases: Mapping[str, PhaseMain]) -> None:
    """Run the ``phases`` of one setting in this process, skipping a phase whose probability file already exists."""
    import keras

    for phase, prob_file in MEMBERS.items():
        if (Path(sweep.folders.prob_dir) / name / prob_file).exists():
            log.info("%s: %s already done, skipped", name, phase)
            continue
        _call(phases, phase, sweep.argv(phase, name, fraction, seed))
        keras.backend.clear_session()  # which collects the garbage too (free_memory=True)
    _call(phases, "Late_fusion", sweep.argv("Late_fusion", name, fraction, seed))


def _call(phases: Mapping[str, PhaseMain], phase: str, argv: list[str]) -> None:
    log.info("python %s.py %s", phase, shlex.join(argv))
    status = phases[phase](argv)
    if status:
        raise InputError(f"{phase}.py stopped with status {status}")


def collect(sweep: Sweep, settings) -> tuple[pd.DataFrame, dict, list[str]]:
    """Read every setting's report: one row per (setting, method) with fraction, seed, training labels,
    validation labels, method, test accuracy and macro-F1; each setting's test predictions
    (``results/<run>/test_predictions.csv``), keyed by (fraction, seed); and the class names. The zero-label
    methods, the same in every setting of a seed, are read once per seed, as fraction 0 with no label.

    Raises :class:`InputError` when the settings did not share one manifest and split (their test rows
    would differ), or a setting's report predates the data fingerprints.
    """
    import pandas as pd

    rows, predictions, splits, zero_label_setting = [], {}, {}, {}  # the last: per seed, the setting read at 0 labels
    for fraction, seed in settings:
        name = run_name(sweep.prefix, fraction, seed)
        folder = Path(sweep.results_dir) / name
        summary = json.loads((folder / "summary.json").read_text())
        if "data" not in summary or not (folder / "test_predictions.csv").exists():
            raise InputError(
                f"{folder} was written by an older version (no data fingerprint or test predictions): "
                f"delete {folder} and the run's folders ({name} under the checkpoint, prob and log "
                "folders) and run the sweep again"
            )
        splits[name] = summary["data"]["split_sha256"]
        predictions[fraction, seed] = pd.read_csv(folder / "test_predictions.csv", dtype=str, keep_default_na=False)
        labels = json.loads((Path(sweep.folders.checkpoint_dir) / name / "TER.metrics.json").read_text())[
            "training_labels"
        ]
        for method in (m for m in METHODS if m in summary["methods"]):  # the fusions with baselines are optional
            test = summary["methods"][method]["test"]
            zero = method in ZERO_SHOT_NAMES
            if zero and zero_label_setting.setdefault(seed, name) != name:
                continue  # read from this seed's first setting already
            if zero:
                predictions[0.0, seed] = predictions[fraction, seed]
            rows.append(
                {
                    "fraction": 0.0 if zero else fraction,
                    "seed": seed,
                    "training_labels": 0 if zero else labels,
                    "validation_labels": 0 if zero else summary["labels_used"]["validation"],
                    "method": method,
                    **{metric: test[metric] for metric in ("accuracy", "macro_f1", "weighted_f1")},
                }
            )
    if len(set(splits.values())) > 1:
        raise InputError(
            "the sweep's settings used different manifests or splits, so their test rows differ:\n"
            + "\n".join(f"  {name}: split sha256 {sha[:12]}" for name, sha in splits.items())
            + "\nRerun the settings on one split (delete their outputs and run the sweep again)."
        )
    table = pd.DataFrame(rows).sort_values(["fraction", "seed"], kind="stable", ignore_index=True)
    return table, predictions, summary["class_names"]
