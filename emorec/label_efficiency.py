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
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

from emorec.baselines import BASELINE_NAMES
from emorec.errors import InputError
from emorec.fusion import FUSIONS, FUSIONS_WITH_BASELINES, MEMBERS, METHOD_NAMES, METHODS
from emorec.zero_shot import ZERO_SHOT_NAMES

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger("emorec")
# A phase's entry point: its main(argv), which returns its exit status.
PhaseMain = Callable[[Sequence[str]], int]


# The report's names, two of them shortened to fit a table column and a legend.
LABELS = {**METHOD_NAMES, "Late_fusion": "Late fusion", "Stacker": "LR stacker", "Baseline_text": "TF-IDF + LR",
          "Baseline_image": "Linear probe", "Baseline_both": "LR text + image",
          "Late_fusion_with_baselines": "Late fusion + baselines", "Stacker_with_baselines": "LR stacker + baselines",
          "ZeroShot_image": "0 labels: image", "ZeroShot_text": "0 labels: text", "ZeroShot_both": "0 labels: both"}


INTERVALS_NOTE = (
    "Each cell is the mean over seeds of a method's test score, with a 95 % interval from a bootstrap that "
    "redraws both the seeds and the test tweets (1,000 resamples: each draws the seeds with replacement and the "
    "test tweets with replacement, and averages the drawn seeds' scores on the drawn tweets), so it holds the "
    "spread between seeds and the sampling of the test set. '+ val labels': the validation labels that chose "
    "every best epoch, the late-fusion weights, the stacker and the baselines' C, besides the training labels. "
    "Fraction 0: the zero-label baseline (a CLIP-style model against class prompts), which uses no label, "
    "training or validation.")


# The flags of `python sweep.py` whose value is more flags for one phase, passed through as one string.
PASS_THROUGH = {"TER": "--ter-args", "IER": "--ier-args", "Intermediate_fusion": "--inter-args"}


def run_name(prefix: str, fraction: float, seed: int) -> str:
    """The named run of one setting, for example ``labels-f0.05-s0``."""
    return f"{prefix}-f{fraction:g}-s{seed}"


def run_sweep(args, phases: Mapping[str, PhaseMain]) -> None:
    """Run every setting of ``args`` (the parsed flags of ``python sweep.py``) not yet done, through ``phases``
    (each phase's name, TER, IER, Intermediate_fusion and Late_fusion, to its ``main``), then write the
    label-efficiency table and figure."""
    # Largest fraction first: its vocabulary holds the smaller subsamples', so its GloVe cache serves them all.
    settings = [(fraction, seed) for fraction in sorted(set(args.fractions), reverse=True) for seed in args.seeds]
    results = Path(args.results_dir)
    started, durations = time.perf_counter(), []
    for number, (fraction, seed) in enumerate(settings, 1):
        name = run_name(args.run_prefix, fraction, seed)
        if (results / name / "summary.json").exists():
            log.info("[%d/%d] %s: already done, skipped", number, len(settings), name)
            continue
        setting_started = time.perf_counter()
        run_setting(args, name, fraction, seed, phases)
        durations.append((fraction, time.perf_counter() - setting_started))
        left = time_left(durations, [f for f, _ in settings[number:]])
        log.info("[%d/%d] %s done in %.0f s: %.0f s so far, about %.0f s left", number, len(settings), name,
                 durations[-1][1], time.perf_counter() - started, left)
    write_label_efficiency(*collect(args, settings), results)
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


def run_setting(args, name: str, fraction: float, seed: int, phases: Mapping[str, PhaseMain]) -> None:
    """Run the ``phases`` of one setting in this process, skipping a phase whose probability file already exists."""
    import keras

    outputs = ["--run-name", name, "--checkpoint-dir", args.checkpoint_dir, "--log-dir", args.log_dir,
               "--prob-dir", args.prob_dir]
    manifest = ["--manifest", args.manifest] if args.manifest else []
    data = [*manifest, *(["--image-root", args.image_root] if args.image_root else []), "--seed", str(seed)]
    training = [*(["--label-fraction", f"{fraction:g}"] if fraction < 1 else []),
                *(["--epoch", str(args.epochs)] if args.epochs else [])]
    extra = {phase: shlex.split(getattr(args, flag[2:].replace("-", "_"))) for phase, flag in PASS_THROUGH.items()}
    if getattr(args, "text_encoder", "paper") != "paper":  # TER's text model, which the fusion follows
        extra["TER"][:0] = ["--text-encoder", args.text_encoder,
                            *(["--freeze-text-encoder"] if args.freeze_text_encoder else [])]
    for phase, prob_file in MEMBERS.items():
        if (Path(args.prob_dir) / name / prob_file).exists():
            log.info("%s: %s already done, skipped", name, phase)
            continue
        _call(phases, phase, [*data, *training, *outputs, *extra[phase]])
        keras.backend.clear_session()  # which collects the garbage too (free_memory=True)
    zero_shot = [*(["--zero-shot", args.zero_shot] if getattr(args, "zero_shot", None) else []),
                 *(["--prompts", args.prompts] if getattr(args, "prompts", None) else [])]
    _call(phases, "Late_fusion", [*manifest, "--seed", str(seed), *outputs, "--results-dir", args.results_dir,
                                  *(["--with-baselines"] if args.with_baselines else []), *zero_shot])


def _call(phases: Mapping[str, PhaseMain], phase: str, argv: list[str]) -> None:
    log.info("python %s.py %s", phase, shlex.join(argv))
    status = phases[phase](argv)
    if status:
        raise InputError(f"{phase}.py stopped with status {status}")


def collect(args, settings) -> tuple["pd.DataFrame", dict, list[str]]:
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
        name = run_name(args.run_prefix, fraction, seed)
        folder = Path(args.results_dir) / name
        summary = json.loads((folder / "summary.json").read_text())
        if "data" not in summary or not (folder / "test_predictions.csv").exists():
            raise InputError(f"{folder} was written by an older version (no data fingerprint or test predictions): "
                             f"delete {folder} and the run's folders ({name} under the checkpoint, prob and log "
                             "folders) and run the sweep again")
        splits[name] = summary["data"]["split_sha256"]
        predictions[fraction, seed] = pd.read_csv(folder / "test_predictions.csv", dtype=str, keep_default_na=False)
        labels = json.loads((Path(args.checkpoint_dir) / name / "TER.metrics.json").read_text())["training_labels"]
        for method in (m for m in METHODS if m in summary["methods"]):  # the fusions with baselines are optional
            test = summary["methods"][method]["test"]
            zero = method in ZERO_SHOT_NAMES
            if zero and zero_label_setting.setdefault(seed, name) != name:
                continue  # read from this seed's first setting already
            if zero:
                predictions[0.0, seed] = predictions[fraction, seed]
            rows.append({"fraction": 0.0 if zero else fraction, "seed": seed, "training_labels": 0 if zero else labels,
                         "validation_labels": 0 if zero else summary["labels_used"]["validation"], "method": method,
                         **{metric: test[metric] for metric in ("accuracy", "macro_f1", "weighted_f1")}})
    if len(set(splits.values())) > 1:
        raise InputError("the sweep's settings used different manifests or splits, so their test rows differ:\n"
                         + "\n".join(f"  {name}: split sha256 {sha[:12]}" for name, sha in splits.items())
                         + "\nRerun the settings on one split (delete their outputs and run the sweep again).")
    table = pd.DataFrame(rows).sort_values(["fraction", "seed"], kind="stable", ignore_index=True)
    return table, predictions, summary["class_names"]


def seed_intervals(table, predictions: dict, class_names: list[str]) -> "pd.DataFrame":
    """Per fraction and method: the mean over seeds of test accuracy, macro-F1 and weighted-F1 with 95 % intervals
    (:func:`emorec.intervals.seeds_and_tweets_interval`: seeds and test tweets redrawn together), and the
    training and validation labels. ``predictions`` are :func:`collect`'s, naming ``class_names``."""
    import pandas as pd

    from emorec.intervals import seeds_and_tweets_interval

    index = {name: i for i, name in enumerate(class_names)} | {"": -1}  # empty: the method scored nothing
    stats = []
    for (fraction, method), rows in table.groupby(["fraction", "method"], sort=False):
        tested = [predictions[fraction, seed] for seed in rows["seed"]]
        predicted = [t[method].map(index).to_numpy() for t in tested]
        labels = tested[0]["label"].map(index).to_numpy()
        bounds = seeds_and_tweets_interval(labels, predicted, tested[0]["tweet"], len(class_names))
        stats.append({"fraction": fraction, "method": method, "labels": rows["training_labels"].mean(),
                      "validation_labels": rows["validation_labels"].iloc[0], "seeds": len(rows),
                      **{metric: rows[metric].mean() for metric in bounds},
                      **{f"{metric}_low": bounds[metric][0] for metric in bounds},
                      **{f"{metric}_high": bounds[metric][1] for metric in bounds}})
    return pd.DataFrame(stats)


def fusion_gains(table, predictions: dict, class_names: list[str]) -> "pd.DataFrame":
    """Per fraction and fusion: its mean test score over seeds minus the better single modality's (TER or IER,
    the higher mean test macro-F1, which favours the modality), with a paired interval over seeds and tweets
    (:func:`emorec.intervals.seeds_and_tweets_difference`), for macro-F1 and accuracy."""
    import pandas as pd

    from emorec.intervals import seeds_and_tweets_difference

    index = {name: i for i, name in enumerate(class_names)} | {"": -1}
    fusions = ("Intermediate_fusion", *FUSIONS, *FUSIONS_WITH_BASELINES)
    gains = []
    for fraction, rows in table[table["fraction"] > 0].groupby("fraction"):
        seeds = sorted(set(rows["seed"]))
        tested = [predictions[fraction, seed] for seed in seeds]
        labels, tweets = tested[0]["label"].map(index).to_numpy(), tested[0]["tweet"]
        means = rows.groupby("method")["macro_f1"].mean()
        modality = max(("TER", "IER"), key=lambda method: means.get(method, -1.0))
        for fusion in (method for method in fusions if method in means):
            difference = seeds_and_tweets_difference(labels, [t[fusion].map(index).to_numpy() for t in tested],
                                                     [t[modality].map(index).to_numpy() for t in tested], tweets,
                                                     len(class_names))
            gains.append({"fraction": fraction, "fusion": fusion, "modality": modality, "seeds": len(seeds),
                          **{key: difference[key] for key in ("macro_f1", "macro_f1_ci", "accuracy", "accuracy_ci")}})
    return pd.DataFrame(gains)


def gains_block(gains) -> str:
    """The Markdown table of :func:`fusion_gains`: one row per fraction, one column per fusion."""
    fusions = list(dict.fromkeys(gains["fusion"]))
    lines = ["**Fusion minus the better single modality** (mean over seeds of the difference, test macro-F1 / "
             "accuracy [paired 95 % interval, seeds and test tweets resampled together]; the better modality is the "
             "one with the higher mean test macro-F1, a choice that favours it)", "",
             "| fraction | better modality | " + " | ".join(LABELS[f] for f in fusions) + " |",
             "|---:|---|" + "---|" * len(fusions)]
    for fraction, rows in gains.groupby("fraction"):
        cells = {row.fusion: " / ".join(f"{getattr(row, m):+.3f} [{getattr(row, m + '_ci')[0]:+.3f}, "
                                        f"{getattr(row, m + '_ci')[1]:+.3f}]" for m in ("macro_f1", "accuracy"))
                 for row in rows.itertuples()}
        lines.append(f"| {fraction:g} | {LABELS[rows['modality'].iloc[0]]} | "
                     + " | ".join(cells.get(f, "") for f in fusions) + " |")
    return "\n".join(lines)


def write_label_efficiency(table, predictions: dict, class_names: list[str], results: Path) -> None:
    """Write the table (:func:`collect`'s, with its ``predictions`` and ``class_names``) as CSV, its mean over
    seeds with 95 % intervals per fraction and method as Markdown (accuracy, macro-F1 and the weighted-F1 MVSA
    papers report), and the curve with the same intervals as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from emorec.fileio import atomic_path, write_csv_atomic, write_text_atomic

    write_csv_atomic(table, results / "label_efficiency.csv")
    methods = [method for method in METHODS if method in set(table["method"])]
    stats = seed_intervals(table, predictions, class_names)
    header = ["| fraction | training labels | + val labels | seeds | " + " | ".join(LABELS[m] for m in methods) + " |",
              "|---:|---:|---:|---:|" + "---:|" * len(methods)]
    blocks = [INTERVALS_NOTE]
    for metric, title in (("accuracy", "Test accuracy"), ("macro_f1", "Test macro-F1"),
                          ("weighted_f1", "Test weighted-F1")):
        block = [f"**{title}**, mean over seeds [95 % interval]", "", *header]
        for fraction, rows in stats.groupby("fraction"):
            cells = {row.method: f"{getattr(row, metric):.3f} [{getattr(row, metric + '_low'):.3f}, "
                                 f"{getattr(row, metric + '_high'):.3f}]" for row in rows.itertuples()}
            block.append(f"| {fraction:g} | {rows['labels'].iloc[0]:,.0f} | {rows['validation_labels'].iloc[0]:,} | "
                         f"{rows['seeds'].iloc[0]} | " + " | ".join(cells.get(method, "") for method in methods) + " |")
        blocks.append("\n".join(block))
    blocks.append(gains_block(fusion_gains(table, predictions, class_names)))
    write_text_atomic(results / "label_efficiency.md", "\n\n".join(blocks) + "\n")

    figure = curve_figure(stats, methods)
    with atomic_path(results / "label_efficiency.png") as tmp:
        figure.savefig(tmp)
    plt.close(figure)


# One marker per method, so that curves which lie on one another stay told apart.
MARKERS = "osD^vP*Xhp<>d"


def curve_figure(stats, methods: list[str]):
    """The curve of :func:`seed_intervals`' ``stats``: test accuracy and macro-F1 against the training labels, one
    line per method with its 95 % intervals, each method's points moved a little sideways (so that equal scores do
    not hide one another) and the legend below the axes, clear of the lines."""
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    figure, axes = plt.subplots(1, 2, figsize=(11, 5.2), dpi=100)
    for axis, (metric, title) in zip(axes, (("accuracy", "test accuracy"), ("macro_f1", "test macro-F1"))):
        for index, method in enumerate(methods):
            rows = stats[stats["method"] == method].sort_values("labels")
            spread = [rows[metric] - rows[metric + "_low"], rows[metric + "_high"] - rows[metric]]
            dodge = 1.03 ** (index - (len(methods) - 1) / 2)  # a few percent on the log axis
            axis.errorbar(rows["labels"] * dodge, rows[metric], yerr=spread, marker=MARKERS[index % len(MARKERS)],
                          capsize=3, label=LABELS[method], linestyle="--" if method in BASELINE_NAMES else "-")
        ticks = sorted(stats["labels"].unique())
        if ticks[0] == 0:  # the zero-label point: linear from 0 to the fewest labels, logarithmic beyond
            axis.set_xscale("symlog", linthresh=ticks[1] if len(ticks) > 1 else 1)
        else:
            axis.set_xscale("log")
        axis.set_xticks(ticks, [f"{tick:,.0f}" for tick in ticks])
        axis.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        axis.set_xlabel("labelled training examples (log scale" + (", linear below the fewest)" if ticks[0] == 0 else ")"))
        axis.set_ylabel(title)
        axis.grid(True, which="both", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    columns = min(len(labels), 5)
    figure.legend(handles, labels, loc="lower center", ncol=columns, fontsize=8, frameon=False)
    figure.suptitle("Label efficiency: mean over seeds, 95 % intervals (seeds and test tweets resampled)")
    rows_of_legend = -(-len(labels) // columns)
    figure.tight_layout(rect=(0, 0.045 * rows_of_legend + 0.02, 1, 1))
    return figure
