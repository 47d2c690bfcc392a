"""Which test tweets a report explains: per class, the most confident right and wrong predictions first."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

log = logging.getLogger("emorec")


def choose_examples(
    labels: np.ndarray, probabilities: np.ndarray, eligible: np.ndarray, count: int
) -> list[tuple[int, str]]:
    """The ``count`` rows to explain in a report: per true class, the most confident right prediction and the
    most confident wrong one, then the second most confident of each, and so on, classes in order.

    ``labels`` (n,) true classes, ``probabilities`` (n, classes) a method's, ``eligible`` (n,) the rows to draw
    from (the test rows every model scored). Returns (row index, "right" or "wrong") pairs, at most ``count``.
    """
    predictions, confidence = probabilities.argmax(axis=1), probabilities.max(axis=1)
    queues = []
    for c in range(probabilities.shape[1]):
        for kind, chosen in (("right", predictions == c), ("wrong", predictions != c)):
            rows = np.flatnonzero(eligible & (labels == c) & chosen)
            queues.append([(int(row), kind) for row in rows[np.argsort(-confidence[rows], kind="stable")]])
    picked = []
    for rank in range(max(map(len, queues), default=0)):
        picked += [queue[rank] for queue in queues if rank < len(queue)]
    return picked[:count]


def explain_examples(checkpoints: Path, dataset, labels, late, eligible, count: int, folder: Path) -> dict:
    """Explain ``count`` test rows of ``dataset`` (chosen by :func:`emorec.explain.choose_examples` from the
    ``eligible`` rows by their true ``labels`` and the ``late`` fused probabilities) with the run's saved models
    in ``checkpoints``; write each picture and JSON to ``folder``. Returns {TensorBoard name: picture path}."""
    from emorec.explain.explainer import Explainer
    from emorec.explain.output import explain_file
    from emorec.predictor import RunModels

    chosen = choose_examples(labels, late, eligible, count)
    if len(chosen) < count:
        log.warning("--explain %d: only %d test rows to explain", count, len(chosen))
    explainer = Explainer(RunModels.load(checkpoints))
    for stale in folder.glob("[0-9][0-9]-*"):  # an earlier --explain's examples: not this run's choice
        if re.fullmatch(r"\d\d-(right|wrong)-.+\.(png|json)", stale.name):
            stale.unlink()
    frame, names = dataset.frame, dataset.class_names
    pictures = {}
    for number, (row, kind) in enumerate(chosen, start=1):
        name = f"{number:02d}-{kind}-{names[labels[row]]}-{frame['id'].iloc[row]}"
        _, (png, _) = explain_file(
            explainer,
            str(frame["text"].iloc[row]),
            frame["image_path"].iloc[row],
            folder / name,
            str(frame["id"].iloc[row]),
            names[labels[row]],
        )
        pictures[f"explanation/{name}"] = png
    log.info("wrote %d explanations to %s", len(chosen), folder)
    return pictures
