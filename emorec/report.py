"""Metrics and the probability files that every phase writes and late fusion reads."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, classification_report, f1_score

from emorec.data import SPLITS


def classification_metrics(
    labels: np.ndarray, probabilities: np.ndarray, splits: Sequence[str], class_names: Sequence[str]
) -> dict:
    """Score predictions (the argmax of ``probabilities``) per split, with scikit-learn.

    Returns ``{"splits": {split: {"n", "accuracy", "macro_f1", "majority_accuracy"}},
    "test_per_class": {class: {"precision", "recall", "f1", "support"}}}``; the
    majority rate predicts the most common training class.
    """
    labels, splits = np.asarray(labels), np.asarray(splits)
    predictions = np.asarray(probabilities).argmax(axis=1)
    majority = np.bincount(labels[splits == "train"], minlength=len(class_names)).argmax()
    per_split = {}
    for split in SPLITS:
        rows = splits == split
        if rows.any():
            per_split[split] = {
                "n": int(rows.sum()),
                "accuracy": float(accuracy_score(labels[rows], predictions[rows])),
                "macro_f1": float(
                    f1_score(labels[rows], predictions[rows], average="macro",
                             labels=range(len(class_names)), zero_division=0)
                ),
                "majority_accuracy": float((labels[rows] == majority).mean()),
            }
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
