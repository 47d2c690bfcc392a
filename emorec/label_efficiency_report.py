"""The label-efficiency study's outputs: its table with intervals over seeds and test tweets, the fusions' gains
over the better modality, and its curve (``results/label_efficiency.md`` and ``.png``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from emorec.baselines import BASELINE_NAMES
from emorec.fusion import FUSIONS, FUSIONS_WITH_BASELINES, METHODS, SHORT_METHOD_NAMES

if TYPE_CHECKING:
    import pandas as pd


INTERVALS_NOTE = (
    "Each cell is the mean over seeds of a method's test score, with a 95 % interval from a bootstrap that "
    "redraws both the seeds and the test tweets (1,000 resamples: each draws the seeds with replacement and the "
    "test tweets with replacement, and averages the drawn seeds' scores on the drawn tweets), so it holds the "
    "spread between seeds and the sampling of the test set. '+ val labels': the validation labels that chose "
    "every best epoch, the late-fusion weights, the stacker and the baselines' C, besides the training labels. "
    "Fraction 0: the zero-label baseline (a CLIP-style model against class prompts), which uses no label, "
    "training or validation."
)


def seed_intervals(table, predictions: dict, class_names: list[str]) -> pd.DataFrame:
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
        stats.append(
            {
                "fraction": fraction,
                "method": method,
                "labels": rows["training_labels"].mean(),
                "validation_labels": rows["validation_labels"].iloc[0],
                "seeds": len(rows),
                **{metric: rows[metric].mean() for metric in bounds},
                **{f"{metric}_low": bounds[metric][0] for metric in bounds},
                **{f"{metric}_high": bounds[metric][1] for metric in bounds},
            }
        )
    return pd.DataFrame(stats)


def fusion_gains(table, predictions: dict, class_names: list[str]) -> pd.DataFrame:
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
            difference = seeds_and_tweets_difference(
                labels,
                [t[fusion].map(index).to_numpy() for t in tested],
                [t[modality].map(index).to_numpy() for t in tested],
                tweets,
                len(class_names),
            )
            gains.append(
                {
                    "fraction": fraction,
                    "fusion": fusion,
                    "modality": modality,
                    "seeds": len(seeds),
                    **{key: difference[key] for key in ("macro_f1", "macro_f1_ci", "accuracy", "accuracy_ci")},
                }
            )
    return pd.DataFrame(gains)


def gains_block(gains) -> str:
    """The Markdown table of :func:`fusion_gains`: one row per fraction, one column per fusion."""
    fusions = list(dict.fromkeys(gains["fusion"]))
    lines = [
        "**Fusion minus the better single modality** (mean over seeds of the difference, test macro-F1 / "
        "accuracy [paired 95 % interval, seeds and test tweets resampled together]; the better modality is the "
        "one with the higher mean test macro-F1, a choice that favours it)",
        "",
        "| fraction | better modality | " + " | ".join(SHORT_METHOD_NAMES[f] for f in fusions) + " |",
        "|---:|---|" + "---|" * len(fusions),
    ]
    for fraction, rows in gains.groupby("fraction"):
        cells = {
            row.fusion: " / ".join(
                f"{getattr(row, m):+.3f} [{getattr(row, m + '_ci')[0]:+.3f}, {getattr(row, m + '_ci')[1]:+.3f}]"
                for m in ("macro_f1", "accuracy")
            )
            for row in rows.itertuples()
        }
        lines.append(
            f"| {fraction:g} | {SHORT_METHOD_NAMES[rows['modality'].iloc[0]]} | "
            + " | ".join(cells.get(f, "") for f in fusions)
            + " |"
        )
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
    header = [
        "| fraction | training labels | + val labels | seeds | "
        + " | ".join(SHORT_METHOD_NAMES[m] for m in methods)
        + " |",
        "|---:|---:|---:|---:|" + "---:|" * len(methods),
    ]
    blocks = [INTERVALS_NOTE]
    for metric, title in (
        ("accuracy", "Test accuracy"),
        ("macro_f1", "Test macro-F1"),
        ("weighted_f1", "Test weighted-F1"),
    ):
        block = [f"**{title}**, mean over seeds [95 % interval]", "", *header]
        for fraction, rows in stats.groupby("fraction"):
            cells = {
                row.method: f"{getattr(row, metric):.3f} [{getattr(row, metric + '_low'):.3f}, "
                f"{getattr(row, metric + '_high'):.3f}]"
                for row in rows.itertuples()
            }
            block.append(
                f"| {fraction:g} | {rows['labels'].iloc[0]:,.0f} | {rows['validation_labels'].iloc[0]:,} | "
                f"{rows['seeds'].iloc[0]} | " + " | ".join(cells.get(method, "") for method in methods) + " |"
            )
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
            axis.errorbar(
                rows["labels"] * dodge,
                rows[metric],
                yerr=spread,
                marker=MARKERS[index % len(MARKERS)],
                capsize=3,
                label=SHORT_METHOD_NAMES[method],
                linestyle="--" if method in BASELINE_NAMES else "-",
            )
        ticks = sorted(stats["labels"].unique())
        if ticks[0] == 0:  # the zero-label point: linear from 0 to the fewest labels, logarithmic beyond
            axis.set_xscale("symlog", linthresh=ticks[1] if len(ticks) > 1 else 1)
        else:
            axis.set_xscale("log")
        axis.set_xticks(ticks, [f"{tick:,.0f}" for tick in ticks])
        axis.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        axis.set_xlabel(
            "labelled training examples (log scale" + (", linear below the fewest)" if ticks[0] == 0 else ")")
        )
        axis.set_ylabel(title)
        axis.grid(True, which="both", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    columns = min(len(labels), 5)
    figure.legend(handles, labels, loc="lower center", ncol=columns, fontsize=8, frameon=False)
    figure.suptitle("Label efficiency: mean over seeds, 95 % intervals (seeds and test tweets resampled)")
    rows_of_legend = -(-len(labels) // columns)
    figure.tight_layout(rect=(0, 0.045 * rows_of_legend + 0.02, 1, 1))
    return figure
