"""Test scores with their uncertainty: per row, on the rows every method scored, per tweet, with bootstrap intervals.

A test split of a few hundred tweets gives accuracies that move by points
from one draw of tweets to another, so every score here comes with a 95 %
percentile interval from a seeded bootstrap over the test *tweets* (the
images of one tweet are drawn together: they share a text and a label, so
they are not independent). Differences between two methods are paired: both
are scored on the same resamples, and the interval is that of the difference.

Accuracy, macro-F1 and weighted-F1 (the F1 of each class weighted by its true
rows, what MVSA papers report) are computed from (weighted) confusion matrices,
which gives exactly scikit-learn's ``accuracy_score`` and ``f1_score(average=
"macro"`` or ``"weighted", labels=<the classes present>, zero_division=0)`` when
every weight is 1: macro-F1 averages the classes that have true rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import sparse

RESAMPLES = 1000
LEVEL = 0.95
CHUNK = 100  # resamples drawn at once: CHUNK x test rows weights in memory
METRICS = ("accuracy", "macro_f1", "weighted_f1")


def confusion_scores(confusions: np.ndarray) -> dict[str, np.ndarray]:
    """Accuracy, macro-F1 and weighted-F1 of confusion matrices (..., classes, classes; rows true, columns predicted).

    Macro-F1 averages the classes with true rows (a class without any has no F1; one predicted but never
    true still costs the others their precision). Returns ``{"accuracy", "macro_f1", "weighted_f1"}``, arrays of
    shape ``...``.
    """
    confusions = np.asarray(confusions, dtype=np.float64)
    hits = np.diagonal(confusions, axis1=-2, axis2=-1)
    total = confusions.sum(axis=(-2, -1))
    true, predicted = confusions.sum(axis=-1), confusions.sum(axis=-2)
    denominator = true + predicted
    f1 = np.divide(2 * hits, denominator, out=np.zeros_like(hits), where=denominator > 0)
    present = true > 0
    return {
        "accuracy": hits.sum(axis=-1) / np.maximum(total, 1e-300),
        "macro_f1": (f1 * present).sum(axis=-1) / np.maximum(present.sum(axis=-1), 1),
        "weighted_f1": (f1 * true).sum(axis=-1) / np.maximum(total, 1e-300),
    }


def predicted_classes(probabilities: np.ndarray) -> np.ndarray:
    """Each row's predicted class (the argmax of its probabilities, rows x classes), -1 where it has no score (NaN)."""
    probabilities = np.asarray(probabilities)
    return np.where(np.isnan(probabilities).any(axis=1), -1, np.nan_to_num(probabilities).argmax(axis=1))


def tweet_resamples(n_tweets: int, resamples: int = RESAMPLES, seed: int = 0, chunk: int = CHUNK):
    """Yield the bootstrap's draws in chunks: arrays (≤ chunk, n_tweets) of how often each tweet is drawn.

    Each resample draws ``n_tweets`` tweets with replacement; the same
    ``seed`` and ``n_tweets`` give the same draws, so methods scored in
    separate calls are still paired.
    """
    rng = np.random.default_rng(seed)
    uniform = np.full(n_tweets, 1.0 / n_tweets)
    for start in range(0, resamples, chunk):
        yield rng.multinomial(n_tweets, uniform, size=min(chunk, resamples - start))


def bootstrap_scores(
    labels: np.ndarray,
    predictions: Mapping[str, np.ndarray],
    tweets: Sequence,
    n_classes: int,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> dict[str, dict[str, np.ndarray]]:
    """Each method's accuracy, macro-F1 and weighted-F1 on every bootstrap resample of the tweets.

    ``labels`` (rows,) are the true classes, ``predictions`` maps each method to
    its predicted classes (rows,), -1 where it scored no prediction (that row
    is left out of its scores); ``tweets`` (rows,) names each row's tweet.
    Every method sees the same resamples. Returns ``{method: {metric:
    (resamples,)}}`` for each of :data:`METRICS`.
    """
    labels = np.asarray(labels)
    tweet_index, tweet_names = pd.factorize(pd.Series(np.asarray(tweets)))
    cells = {}
    for method, predicted in predictions.items():
        predicted = np.asarray(predicted)
        scored = np.flatnonzero(predicted >= 0)
        # Rows x confusion cells, one 1 per scored row: weights @ onehot sums the weights into each cell.
        cells[method] = sparse.csr_matrix(
            (np.ones(len(scored)), (scored, labels[scored] * n_classes + predicted[scored])),
            shape=(len(labels), n_classes * n_classes),
        )
    parts = {method: [] for method in predictions}
    for counts in tweet_resamples(len(tweet_names), resamples, seed):
        weights = counts[:, tweet_index].astype(np.float64)
        for method, onehot in cells.items():
            confusions = (onehot.T @ weights.T).T.reshape(-1, n_classes, n_classes)
            parts[method].append(confusions)
    return {method: confusion_scores(np.concatenate(chunks)) for method, chunks in parts.items()}


def interval(values: np.ndarray, level: float = LEVEL) -> list[float]:
    """The percentile interval holding ``level`` of the bootstrap ``values``: [low, high]."""
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(values, [tail, 100 - tail])
    return [float(low), float(high)]


def point_scores(labels: np.ndarray, predicted: np.ndarray, n_classes: int) -> dict[str, float]:
    """Accuracy, macro-F1 and weighted-F1 of the rows with a prediction (``predicted`` >= 0), from their
    confusion matrix."""
    scored = predicted >= 0
    confusion = np.zeros((n_classes, n_classes))
    np.add.at(confusion, (labels[scored], predicted[scored]), 1)
    return {metric: float(value) for metric, value in confusion_scores(confusion).items()}


def per_tweet(
    probabilities: np.ndarray, labels: np.ndarray, tweets: Sequence
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pool rows (rows, classes) into tweets: a tweet's probabilities are the mean of its rows', its label
    its first row's. Returns ``(probabilities, labels, names)`` per tweet, in order of first appearance."""
    index, names = pd.factorize(pd.Series(np.asarray(tweets)))
    sums = np.zeros((len(names), probabilities.shape[1]))
    np.add.at(sums, index, probabilities)
    first_row = np.unique(index, return_index=True)[1]
    return sums / np.bincount(index)[:, None], np.asarray(labels)[first_row], np.asarray(names)


def evaluate_test(
    methods: Mapping[str, np.ndarray],
    labels: np.ndarray,
    tweets: Sequence,
    n_classes: int,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> dict:
    """Score every method on the test rows three ways, each with bootstrap intervals over the test tweets.

    ``methods`` maps each method to its probabilities on the test rows (rows,
    classes; NaN where it scored nothing), ``labels`` and ``tweets`` are the
    rows' classes and tweets. The three ways: ``test`` (every row the method
    scored), ``test_same_rows`` (the rows that every method scored) and
    ``test_per_tweet`` (those rows pooled per tweet, :func:`per_tweet`).
    Returns ``{"rows", "tweets", "same_rows", "left_out", "same_rows_tweets",
    "bootstrap": {...}, "scores": {method: {way: {"n", "accuracy",
    "accuracy_ci", "macro_f1", "macro_f1_ci", "weighted_f1", "weighted_f1_ci"}}}, "replicates": {way: {method:
    {metric: (resamples,)}}}}``; the replicates are paired across methods.
    """
    labels, tweets = np.asarray(labels), np.asarray(tweets)
    predicted = {method: predicted_classes(p) for method, p in methods.items()}
    same = np.logical_and.reduce([p >= 0 for p in predicted.values()])
    pooled = {method: per_tweet(p[same], labels[same], tweets[same]) for method, p in methods.items()}
    tweet_labels, tweet_names = next(iter(pooled.values()))[1:]
    ways = {
        "test": (labels, predicted, tweets),
        "test_same_rows": (labels, {m: np.where(same, p, -1) for m, p in predicted.items()}, tweets),
        "test_per_tweet": (tweet_labels, {m: p.argmax(axis=1) for m, (p, _, _) in pooled.items()}, tweet_names),
    }
    scores = {method: {} for method in methods}
    replicates = {}
    for way, (truth, predictions, units) in ways.items():
        replicates[way] = bootstrap_scores(truth, predictions, units, n_classes, resamples, seed)
        for method, p in predictions.items():
            point = point_scores(truth, p, n_classes)
            scores[method][way] = {"n": int((p >= 0).sum())}
            for metric in METRICS:
                scores[method][way] |= {
                    metric: point[metric],
                    f"{metric}_ci": interval(replicates[way][method][metric]),
                }
    return {
        "rows": len(labels),
        "tweets": len(set(tweets)),
        "same_rows": int(same.sum()),
        "left_out": int((~same).sum()),
        "same_rows_tweets": len(tweet_names),
        "bootstrap": {"resamples": resamples, "seed": seed, "level": LEVEL, "unit": "test tweet"},
        "scores": scores,
        "replicates": replicates,
    }


def paired_difference(
    evaluation: dict,
    first: Sequence[str],
    second: Sequence[str],
    chosen_by: Mapping[str, float],
    way: str = "test_same_rows",
) -> dict:
    """The difference between the best method of ``first`` and the best of ``second``, each the highest by
    ``chosen_by`` (a score per method from outside the test rows, such as its validation macro-F1, so that
    the test set chooses nothing), scored under ``way`` (an :func:`evaluate_test` result's way of scoring),
    with paired bootstrap intervals.

    Returns ``{"better", "than", "way", metric: difference, f"{metric}_ci": [low, high],
    f"{metric}_beyond_interval": whether the interval excludes 0}`` for each of :data:`METRICS`.
    """
    scores = evaluation["scores"]

    def best(methods):
        return max((m for m in methods if m in scores and m in chosen_by), key=lambda m: chosen_by[m])

    better, than = best(first), best(second)
    result = {"better": better, "than": than, "way": way}
    for metric in METRICS:
        difference = evaluation["replicates"][way][better][metric] - evaluation["replicates"][way][than][metric]
        low, high = interval(difference)
        result |= {
            metric: scores[better][way][metric] - scores[than][way][metric],
            f"{metric}_ci": [low, high],
            f"{metric}_beyond_interval": bool(low > 0 or high < 0),
        }
    return result


def seeds_and_tweets_interval(
    labels: np.ndarray,
    predictions: Sequence[np.ndarray],
    tweets: Sequence,
    n_classes: int,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> dict[str, list[float]]:
    """The interval of a mean over seeds: a bootstrap that redraws both the seeds and the test tweets.

    ``predictions`` holds one array of predicted classes per seed (-1 where
    unscored), all on the same test rows (``labels``, ``tweets``). Each
    resample draws the seeds with replacement and the tweets with
    replacement, scores each drawn seed's predictions on the drawn tweets
    and averages them, so the interval carries both the spread between
    seeds and the sampling of the test set. Returns ``{metric: [low, high]}``.
    """
    per_seed = bootstrap_scores(labels, dict(enumerate(predictions)), tweets, n_classes, resamples, seed)
    drawn = np.random.default_rng(seed).integers(0, len(predictions), size=(resamples, len(predictions)))
    columns = np.arange(resamples)[:, None]
    return {
        metric: interval(np.stack([per_seed[s][metric] for s in range(len(predictions))])[drawn, columns].mean(axis=1))
        for metric in METRICS
    }


def seeds_and_tweets_difference(
    labels: np.ndarray,
    first: Sequence[np.ndarray],
    second: Sequence[np.ndarray],
    tweets: Sequence,
    n_classes: int,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> dict:
    """The difference of two methods' means over seeds (``first`` minus ``second``), with a paired interval.

    ``first`` and ``second`` hold one array of predicted classes per seed (the same seeds, in the same order),
    all on the same test rows (``labels``, ``tweets``). Each resample draws the seeds and the test tweets with
    replacement, as :func:`seeds_and_tweets_interval` does, and scores both methods on the same draw, so what
    the two share (the tweets drawn, a seed's split of luck) cancels. Returns ``{metric: difference of the
    means, f"{metric}_ci": [low, high], f"{metric}_beyond_interval": whether the interval excludes 0}``.
    """
    if len(first) != len(second):
        raise ValueError(f"{len(first)} seeds against {len(second)}: the difference pairs seeds")
    n = len(first)
    predictions = {("first", s): p for s, p in enumerate(first)} | {("second", s): p for s, p in enumerate(second)}
    replicates = bootstrap_scores(labels, predictions, tweets, n_classes, resamples, seed)
    drawn = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    columns = np.arange(resamples)[:, None]
    labels = np.asarray(labels)
    result = {}
    for metric in METRICS:

        def mean_over_seeds(method, metric=metric):
            stacked = np.stack([replicates[method, s][metric] for s in range(n)])
            return stacked[drawn, columns].mean(axis=1)

        def point(predicted, metric=metric):
            return np.mean([point_scores(labels, np.asarray(p), n_classes)[metric] for p in predicted])

        low, high = interval(mean_over_seeds("first") - mean_over_seeds("second"))
        result |= {
            metric: float(point(first) - point(second)),
            f"{metric}_ci": [low, high],
            f"{metric}_beyond_interval": bool(low > 0 or high < 0),
        }
    return result
