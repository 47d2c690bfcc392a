"""The results report of a run: its tables in Markdown and JSON, its confusion matrices and TensorBoard."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from emorec.data.manifest import SPLITS
from emorec.fileio import atomic_path, write_csv_atomic, write_json_atomic, write_text_atomic
from emorec.fusion import listed
from emorec.intervals import predicted_classes


@dataclass
class Report:
    """A run's results: every method's test probabilities and scores, and what the report says beside them.

    ``rows`` holds the probability files' ``id, split, label`` (class index),
    ``tweets`` each row's tweet, ``methods`` each method's probabilities
    (rows, classes), ``scores`` :func:`emorec.fusion.score_methods`' report,
    ``facts`` what summary.json records beside the scores (the data, the
    chosen weights, the baselines, ...) and ``notes`` the lines under the tables.
    """

    dataset: str
    rows: pd.DataFrame
    tweets: np.ndarray
    class_names: list[str]
    methods: dict[str, np.ndarray]
    scores: dict
    commands: list[str]
    facts: dict
    notes: list[str]

    def split_sizes(self) -> dict[str, int]:
        return {split: int((self.rows["split"] == split).sum()) for split in ("train", "val", "test")}

    def markdown(self, names: dict[str, str]) -> str:
        """The report as Markdown (:func:`summary_markdown`), this run's commands last; ``names`` as there."""
        commands = ["", "Commands of this run:", "", *[f"    {c}" for c in self.commands]]
        return summary_markdown(
            self.scores, names, self.dataset, self.split_sizes(), self.commands[-1], self.notes + commands
        )

    def write(self, folder: Path, names: dict[str, str]) -> tuple[str, dict[str, Path]]:
        """Write summary.md, summary.json, test_predictions.csv and a confusion matrix per method to ``folder``.
        Returns the Markdown and {TensorBoard name: picture path}."""
        labels, splits = self.rows["label"].to_numpy(), self.rows["split"].to_numpy()
        pictures = {}
        for method, p in self.methods.items():
            scored = (splits == "test") & ~np.isnan(p).any(axis=1)
            pictures[f"confusion_{method}"] = write_confusion_png(
                folder / f"confusion_{method}.png",
                labels[scored],
                p[scored].argmax(axis=1),
                self.class_names,
                f"{names[method]}: test (n={scored.sum()})",
            )
        markdown = self.markdown(names)
        write_text_atomic(folder / "summary.md", markdown)
        write_csv_atomic(
            test_predictions(self.rows, self.tweets, self.methods, self.class_names), folder / "test_predictions.csv"
        )
        write_json_atomic(
            folder / "summary.json",
            {
                "dataset": self.dataset,
                "class_names": self.class_names,
                "commands": self.commands,
                "split_sizes": self.split_sizes(),
                **self.facts,
                "evaluation": self.scores["evaluation"],
                "fusion_vs_single": self.scores["fusion_vs_single"],
                "methods": self.scores["methods"],
            },
        )
        return markdown, pictures


def fusion_notes(
    weights: dict,
    baselines: dict,
    weighting: dict,
    zero_shot: dict | None,
    weights_with_baselines: dict | None,
    fewer: dict,
) -> list[str]:
    """The lines under the late-fusion report's tables: the chosen ``weights`` (and ``weights_with_baselines``),
    each of the ``baselines``' C and class ``weighting``, the ``zero_shot`` record's prompts, and the rows fused
    from ``fewer`` members."""
    notes = [
        "Late-fusion weights (chosen on val): " + listed(weights) + ".",
        "Baselines: scikit-learn logistic regression on the run's training rows, C chosen on val and "
        "class weighting as the phase of the same modality: "
        + ", ".join(f"{name.removeprefix('Baseline_')} C {b.C:g} ({weighting[name]})" for name, b in baselines.items())
        + ".",
    ]
    if zero_shot:
        notes.append(
            f"Zero labels: {zero_shot['preset']}'s towers against one prompt per class "
            f"({zero_shot['prompts']}), on the test rows: "
            + "; ".join(f'{name} "{"; ".join(p)}"' for name, p in zero_shot["class_prompts"].items())
            + "."
        )
    if weights_with_baselines:
        notes.append("Weights with the baselines as members (chosen on val): " + listed(weights_with_baselines) + ".")
    if any(fewer.values()):
        notes.append(f"Rows fused from fewer members (an image IER could not read): {fewer}.")
    return notes


def absent_class_notes(absent: dict[str, list[str]], n_classes: int) -> list[str]:
    """A line for each split that lacks classes (``{split: [class, ...]}``): its macro-F1 averages the others."""
    return [
        f"The {split} split has no row of {', '.join(names)}: its macro-F1 averages the other "
        f"{n_classes - len(names)} classes (a class without rows has no F1)."
        for split, names in absent.items()
    ]


def test_predictions(rows: pd.DataFrame, tweets, methods: dict, class_names: Sequence[str]) -> pd.DataFrame:
    """Each method's prediction on every test row: ``id, tweet, label``, then one column per method with the
    predicted class name (empty where the method scored nothing). ``rows`` has id, split, label (index);
    ``methods`` maps each method to its probabilities (rows, classes), aligned with ``rows``."""
    test = (rows["split"] == "test").to_numpy()
    names = np.asarray([*class_names, ""])
    table = pd.DataFrame(
        {
            "id": rows["id"].to_numpy()[test],
            "tweet": np.asarray(tweets)[test],
            "label": np.asarray(class_names)[rows["label"].to_numpy()[test]],
        }
    )
    for method, p in methods.items():
        table[method] = names[predicted_classes(p[test])]  # -1, where unscored, names ""
    return table


def write_confusion_png(
    path, labels: np.ndarray, predictions: np.ndarray, class_names: Sequence[str], title: str
) -> Path:
    """Draw the confusion matrix with matplotlib and save it as a PNG at ``path`` (atomically); return the path.

    Rows are the true classes, columns the predicted ones, named on the axes;
    each cell shows its count and its row-normalised rate, which is also its colour.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import confusion_matrix

    counts = confusion_matrix(labels, predictions, labels=range(len(class_names)))
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    figure, axes = plt.subplots(figsize=(1.3 * len(class_names) + 2, 1.1 * len(class_names) + 1.6), dpi=100)
    image = axes.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04, label="share of the true class")
    for (row, column), count in np.ndenumerate(counts):
        axes.text(
            column,
            row,
            f"{count}\n{rates[row, column]:.0%}",
            ha="center",
            va="center",
            color="white" if rates[row, column] > 0.5 else "black",
            fontsize=9,
        )
    axes.set_xticks(range(len(class_names)), class_names, rotation=30, ha="right")
    axes.set_yticks(range(len(class_names)), class_names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title, fontsize=10)
    figure.tight_layout()
    with atomic_path(Path(path)) as tmp:
        figure.savefig(tmp)
    plt.close(figure)
    return Path(path)


def summary_markdown(
    report: dict, names: dict, dataset: str, split_sizes: dict, command: str, notes: Sequence[str] = ()
) -> str:
    """The results report as Markdown, from :func:`emorec.fusion.score_methods`' ``report``.

    Two tables of test scores with their bootstrap intervals: each method on
    every test row it scored (accuracy, macro-F1 and weighted-F1), then every method on the
    same rows and per tweet; then the paired difference of the best fusion
    and the best single modality, and the ``notes``. ``names`` maps each method to its name in the tables.
    """
    evaluation, methods = report["evaluation"], report["methods"]
    bootstrap = evaluation["bootstrap"]
    sizes = ", ".join(f"{split} {split_sizes[split]:,}" for split in SPLITS if split in split_sizes)
    lines = [
        f"# Results: {dataset}",
        "",
        f"Splits: {sizes}. Command: `{command}`",
        "",
        f"Test: {evaluation['rows']:,} rows from {evaluation['tweets']:,} tweets. In brackets, 95 % intervals from a "
        f"bootstrap over the test tweets ({bootstrap['resamples']:,} resamples, seed {bootstrap['seed']}; a tweet's "
        "images are drawn together).",
        "",
        "| method | test rows | accuracy | macro-F1 | weighted-F1 |",
        "|---|---:|---:|---:|---:|",
    ]
    for method, scores in methods.items():
        test = scores["test"]
        lines.append(
            f"| {names[method]} | {test['n']:,} | {_with_interval(test, 'accuracy')} | "
            f"{_with_interval(test, 'macro_f1')} | {_with_interval(test, 'weighted_f1')} |"
        )
    lines += [
        "",
        f"**The same rows for every method, and per tweet.** The {evaluation['same_rows']:,} test rows that every "
        f"method scored ({evaluation['left_out']:,} left out, which some method could not score), and the same rows "
        f"pooled into their {evaluation['same_rows_tweets']:,} tweets (a tweet's prediction is the mean of its "
        "images' probabilities, scored once).",
        "",
        "| method | same rows: accuracy | same rows: macro-F1 | per tweet: accuracy | per tweet: macro-F1 |",
        "|---|---:|---:|---:|---:|",
    ]
    for method, scores in methods.items():
        same, tweet = scores["test_same_rows"], scores["test_per_tweet"]
        lines.append(
            f"| {names[method]} | {_with_interval(same, 'accuracy')} | {_with_interval(same, 'macro_f1')} | "
            f"{_with_interval(tweet, 'accuracy')} | {_with_interval(tweet, 'macro_f1')} |"
        )
    lines += ["", _fusion_vs_single(report["fusion_vs_single"], names)]
    lines += [
        "",
        "Validation scores (in summary.json) are in-sample: val chose each method's best epoch, the fusion weights, "
        "the stacker and the baselines' C.",
        "",
        *notes,
    ]
    return "\n".join(lines).rstrip() + "\n"


def _fusion_vs_single(difference: dict, names: dict) -> str:
    """The report's paragraph on the best fusion minus the best single modality (paired bootstrap)."""

    def verdict(metric):
        return "its interval excludes 0" if difference[f"{metric}_beyond_interval"] else "its interval includes 0"

    return (
        f"**Best fusion against the best single modality** (each the best by validation macro-F1, so the test "
        f"rows choose nothing, though val is in-sample for the fusions it fitted; scored on the same test rows, paired "
        f"bootstrap): {names[difference['better']]} minus {names[difference['than']]}: accuracy "
        f"{_with_interval(difference, 'accuracy', signed=True)}, {verdict('accuracy')}; macro-F1 "
        f"{_with_interval(difference, 'macro_f1', signed=True)}, {verdict('macro_f1')}."
    )


def _with_interval(scores: dict, metric: str, signed: bool = False) -> str:
    low, high = scores[f"{metric}_ci"]
    sign = "+" if signed else ""
    return f"{scores[metric]:{sign}.3f} [{low:{sign}.3f}, {high:{sign}.3f}]"


def log_results_to_tensorboard(log_dir, markdown: str, pictures: dict) -> None:
    """Write the summary table (a text summary) and the pictures (``{name: png path}``) to TensorBoard."""
    import tensorflow as tf

    writer = tf.summary.create_file_writer(str(log_dir))
    with writer.as_default():
        tf.summary.text("summary", markdown, step=0)
        for name, path in pictures.items():
            png = tf.io.decode_png(tf.io.read_file(str(path)), channels=4)
            tf.summary.image(name, png[None], step=0)
    writer.close()
