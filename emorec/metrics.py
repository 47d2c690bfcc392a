"""Metrics, and the probability-file layout that every phase writes and late fusion reads."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, classification_report, f1_score

from emorec.data.manifest import SPLITS


def classification_metrics(
    labels: np.ndarray, probabilities: np.ndarray, splits: Sequence[str], class_names: Sequence[str]
) -> dict:
    """Score predictions (the argmax of ``probabilities``) per split, with scikit-learn.

    Returns ``{"splits": {split: {"n", "accuracy", "macro_f1", "weighted_f1",
    "majority_accuracy"[, "absent_classes"]}}, "test_per_class": {class: {"precision", "recall",
    "f1", "support"}}}`` (per split as :func:`method_scores`); the majority
    rate predicts the most common training class; ``absent_classes`` names the classes a split has no row of
    (its macro-F1 averages the others).
    """
    labels, splits = np.asarray(labels), np.asarray(splits)
    predictions = np.asarray(probabilities).argmax(axis=1)
    majority = np.bincount(labels[splits == "train"], minlength=len(class_names)).argmax()
    per_split = method_scores(labels, probabilities, splits)
    for split, scores in per_split.items():
        scores["majority_accuracy"] = float((labels[splits == split] == majority).mean())
        absent = sorted(set(range(len(class_names))) - set(labels[splits == split]))
        if absent:  # macro-F1 leaves them out: say which
            scores["absent_classes"] = [class_names[c] for c in absent]
    test = splits == "test"
    report = classification_report(
        labels[test],
        predictions[test],
        labels=range(len(class_names)),
        target_names=list(class_names),
        output_dict=True,
        zero_division=0,
    )
    per_class = {
        name: {
            "precision": report[name]["precision"],
            "recall": report[name]["recall"],
            "f1": report[name]["f1-score"],
            "support": int(report[name]["support"]),
        }
        for name in class_names
    }
    return {"splits": per_split, "test_per_class": per_class}


def probability_table(frame: pd.DataFrame, probabilities: np.ndarray, class_names: Sequence[str]) -> pd.DataFrame:
    """The shared probability-file layout: ``id, split, label`` (class name), then one column per class."""
    table = pd.DataFrame(
        {
            "id": frame["id"].to_numpy(),
            "split": frame["split"].to_numpy(),
            "label": np.asarray(class_names)[frame["label"].to_numpy()],
        }
    )
    for column, name in enumerate(class_names):
        table[name] = probabilities[:, column]
    return table


def class_probabilities(model, x, n_classes: int) -> np.ndarray:
    """A fitted scikit-learn classifier's probabilities for the rows of ``x`` over all ``n_classes`` classes
    (rows, n_classes); classes absent from its training data get 0."""
    full = np.zeros((x.shape[0], n_classes))
    full[:, model.classes_] = model.predict_proba(x)
    return full


def method_scores(labels: np.ndarray, probabilities: np.ndarray, splits: Sequence[str]) -> dict:
    """Accuracy, macro-F1 and weighted-F1 (scikit-learn) per split, on the rows this method scored (no NaN).

    Macro-F1 averages the classes present in that split's rows (a class without rows there has no F1, and
    counting it as 0 would lower the mean for a reason that is not the method's). Returns ``{split: {"n",
    "accuracy", "macro_f1", "weighted_f1"}}``.
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
                "macro_f1": float(
                    f1_score(truth, predicted, average="macro", labels=np.unique(truth), zero_division=0)
                ),
                "weighted_f1": float(
                    f1_score(truth, predicted, average="weighted", labels=range(n_classes), zero_division=0)
                ),
            }
    return scores
