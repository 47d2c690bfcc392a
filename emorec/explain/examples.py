"""Which test tweets a report explains: per class, the most confident right and wrong predictions first."""

from __future__ import annotations

import numpy as np


def choose_examples(labels: np.ndarray, probabilities: np.ndarray, eligible: np.ndarray, count: int) -> list[tuple[int, str]]:
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
