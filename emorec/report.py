"""Metrics and the probability files that every phase writes and late fusion reads."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, classification_report, f1_score

from emorec.data.manifest import SPLITS
from emorec.fileio import atomic_path
from emorec.intervals import predicted_classes


def classification_metrics(
    labels: np.ndarray, probabilities: np.ndarray, splits: Sequence[str], class_names: Sequence[str]
) -> dict:
    """Score predictions (the argmax of ``probabilities``) per split, with scikit-learn.

    Returns ``{"splits": {split: {"n", "accuracy", "macro_f1", "weighted_f1",
    "majority_accuracy"}}, "test_per_class": {class: {"precision", "recall",
    "f1", "support"}}}`` (per split as :func:`method_scores`); the majority
    rate predicts the most common training class.
    """
    labels, splits = np.asarray(labels), np.asarray(splits)
    predictions = np.asarray(probabilities).argmax(axis=1)
    majority = np.bincount(labels[splits == "train"], minlength=len(class_names)).argmax()
    per_split = method_scores(labels, probabilities, splits)
    for split, scores in per_split.items():
        scores["majority_accuracy"] = float((labels[splits == split] == majority).mean())
    test = splits == "test"
    report = classification_report(
        labels[test], predictions[test], labels=range(len(class_names)), target_names=list(class_names),
        output_dict=True, zero_division=0,
    )
    per_class = {
        name: {"precision": report[name]["precision"], "recall": report[name]["recall"],
               "f1": report[name]["f1-score"], "support": int(report[name]["support"])}
        for name in class_names
    }
    return {"splits": per_split, "test_per_class": per_class}


def probability_table(frame: pd.DataFrame, probabilities: np.ndarray, class_names: Sequence[str]) -> pd.DataFrame:
    """The shared probability-file layout: ``id, split, label`` (class name), then one column per class."""
    table = pd.DataFrame(
        {"id": frame["id"].to_numpy(), "split": frame["split"].to_numpy(),
         "label": np.asarray(class_names)[frame["label"].to_numpy()]}
    )
    for column, name in enumerate(class_names):
        table[name] = probabilities[:, column]
    return table


def test_predictions(rows: pd.DataFrame, tweets, methods: dict, class_names: Sequence[str]) -> pd.DataFrame:
    """Each method's prediction on every test row: ``id, tweet, label``, then one column per method with the
    predicted class name (empty where the method scored nothing). ``rows`` has id, split, label (index);
    ``methods`` maps each method to its probabilities (rows, classes), aligned with ``rows``."""
    test = (rows["split"] == "test").to_numpy()
    names = np.asarray([*class_names, ""])
    table = pd.DataFrame({"id": rows["id"].to_numpy()[test], "tweet": np.asarray(tweets)[test],
                          "label": np.asarray(class_names)[rows["label"].to_numpy()[test]]})
    for method, p in methods.items():
        table[method] = names[predicted_classes(p[test])]  # -1, where unscored, names ""
    return table


def class_probabilities(model, x, n_classes: int) -> np.ndarray:
    """A fitted scikit-learn classifier's probabilities for the rows of ``x`` over all ``n_classes`` classes
    (rows, n_classes); classes absent from its training data get 0."""
    full = np.zeros((x.shape[0], n_classes))
    full[:, model.classes_] = model.predict_proba(x)
    return full


def method_scores(labels: np.ndarray, probabilities: np.ndarray, splits: Sequence[str]) -> dict:
    """Accuracy, macro-F1 and weighted-F1 (scikit-learn) per split, on the rows this method scored (no NaN).

    Returns ``{split: {"n", "accuracy", "macro_f1", "weighted_f1"}}``.
    """
    labels, splits, probabilities = np.asarray(labels), np.asarray(splits), np.asarray(probabilities)
    scored = ~np.isnan(probabilities).any(axis=1)
    n_classes = probabilities.shape[1]
    scores = {}
    for split in SPLITS:
        rows = (splits == split) & scored
        if rows.any():
            truth, predicted = labels[rows], probabilities[rows].argmax(axis=1)
            scores[split] = {
                "n": int(rows.sum()),
                "accuracy": float(accuracy_score(truth, predicted)),
                "macro_f1": float(f1_score(truth, predicted, average="macro", labels=range(n_classes), zero_division=0)),
                "weighted_f1": float(f1_score(truth, predicted, average="weighted", labels=range(n_classes), zero_division=0)),
            }
    return scores


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
        axes.text(column, row, f"{count}\n{rates[row, column]:.0%}", ha="center", va="center",
                  color="white" if rates[row, column] > 0.5 else "black", fontsize=9)
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


def summary_markdown(report: dict, names: dict, dataset: str, split_sizes: dict, command: str,
                     notes: Sequence[str] = ()) -> str:
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
        f"# Results: {dataset}", "",
        f"Splits: {sizes}. Command: `{command}`", "",
        f"Test: {evaluation['rows']:,} rows from {evaluation['tweets']:,} tweets. In brackets, 95 % intervals from a "
        f"bootstrap over the test tweets ({bootstrap['resamples']:,} resamples, seed {bootstrap['seed']}; a tweet's "
        "images are drawn together).", "",
        "| method | test rows | accuracy | macro-F1 | weighted-F1 |",
        "|---|---:|---:|---:|---:|",
    ]
    for method, scores in methods.items():
        test = scores["test"]
        lines.append(f"| {names[method]} | {test['n']:,} | {_with_interval(test, 'accuracy')} | "
                     f"{_with_interval(test, 'macro_f1')} | {_with_interval(test, 'weighted_f1')} |")
    lines += [
        "", f"**The same rows for every method, and per tweet.** The {evaluation['same_rows']:,} test rows that every "
        f"method scored ({evaluation['left_out']:,} left out, which some method could not score), and the same rows "
        f"pooled into their {evaluation['same_rows_tweets']:,} tweets (a tweet's prediction is the mean of its "
        "images' probabilities, scored once).", "",
        "| method | same rows: accuracy | same rows: macro-F1 | per tweet: accuracy | per tweet: macro-F1 |",
        "|---|---:|---:|---:|---:|",
    ]
    for method, scores in methods.items():
        same, tweet = scores["test_same_rows"], scores["test_per_tweet"]
        lines.append(f"| {names[method]} | {_with_interval(same, 'accuracy')} | {_with_interval(same, 'macro_f1')} | "
                     f"{_with_interval(tweet, 'accuracy')} | {_with_interval(tweet, 'macro_f1')} |")
    difference = report["fusion_vs_single"]

    def verdict(metric):
        return "its interval excludes 0" if difference[f"{metric}_beyond_interval"] else "its interval includes 0"

    lines += [
        "", f"**Best fusion against the best single modality** (each the best by validation macro-F1, so the test "
        f"rows choose nothing, though val is in-sample for the fusions it fitted; scored on the same test rows, paired "
        f"bootstrap): {names[difference['better']]} minus {names[difference['than']]}: accuracy "
        f"{_with_interval(difference, 'accuracy', signed=True)}, {verdict('accuracy')}; macro-F1 "
        f"{_with_interval(difference, 'macro_f1', signed=True)}, {verdict('macro_f1')}.", "",
        "Validation scores (in summary.json) are in-sample: val chose each method's best epoch, the fusion weights, "
        "the stacker and the baselines' C.",
        "", *notes,
    ]
    return "\n".join(lines).rstrip() + "\n"


def _with_interval(scores: dict, metric: str, signed: bool = False) -> str:
    low, high = scores[f"{metric}_ci"]
    sign = "+" if signed else ""
    return f"{scores[metric]:{sign}.3f} [{low:{sign}.3f}, {high:{sign}.3f}]"


def log_results_to_tensorboard(log_dir, markdown: str, pictures: dict) -> None:
    """Write the summary table (a text summary) and the pictures (``{name: png path}``, image summaries) to TensorBoard."""
    import tensorflow as tf

    writer = tf.summary.create_file_writer(str(log_dir))
    with writer.as_default():
        tf.summary.text("summary", markdown, step=0)
        for name, path in pictures.items():
            png = tf.io.decode_png(tf.io.read_file(str(path)), channels=4)
            tf.summary.image(name, png[None], step=0)
    writer.close()
