"""Scores on the same rows, per tweet, with bootstrap intervals (issue 14, points 3 and 4)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score

from emorec.intervals import (
    bootstrap_scores,
    evaluate_test,
    interval,
    paired_difference,
    point_scores,
    seeds_and_tweets_difference,
    seeds_and_tweets_interval,
)

NAN = [np.nan] * 3


def probabilities_of(*classes):
    """One row per entry: a class index (that class at 0.8) or None (not scored: NaN)."""
    return np.array([NAN if c is None else np.eye(3)[c] * 0.7 + 0.1 for c in classes])


def test_same_rows_and_per_tweet_scores_match_a_hand_computation():
    # Six test rows of four tweets (t1 and t3 have two images); B could not score row 4.
    labels = np.array([0, 0, 1, 2, 2, 1])
    tweets = np.array(["t1", "t1", "t2", "t3", "t3", "t4"])
    methods = {
        "A": probabilities_of(0, 1, 1, 2, 0, 0),
        "B": probabilities_of(0, 0, 2, 2, None, 1),
    }
    result = evaluate_test(methods, labels, tweets, 3, resamples=200, seed=0)
    scores = result["scores"]
    assert (result["rows"], result["tweets"], result["same_rows"], result["left_out"]) == (6, 4, 5, 1)
    # Every row each method scored.
    assert scores["A"]["test"]["n"] == 6 and scores["A"]["test"]["accuracy"] == pytest.approx(3 / 6)
    assert scores["B"]["test"]["n"] == 5 and scores["B"]["test"]["accuracy"] == pytest.approx(4 / 5)
    # The same five rows for both: A is right on rows 0, 2, 3 of 0, 1, 2, 3, 5.
    assert scores["A"]["test_same_rows"]["n"] == 5
    assert scores["A"]["test_same_rows"]["accuracy"] == pytest.approx(3 / 5)
    assert scores["A"]["test_same_rows"]["macro_f1"] == pytest.approx(
        f1_score([0, 0, 1, 2, 1], [0, 1, 1, 2, 0], average="macro", labels=range(3), zero_division=0)
    )
    # Per tweet on those rows: t1 is A's rows 0 and 1 averaged (0.8/0.1 and 0.1/0.8: a tie, argmax takes class 0),
    # t2 is right, t3 (row 3 only) right, t4 wrong: 3 of 4; B: t1 right, t2 wrong, t3 right, t4 right.
    assert result["same_rows_tweets"] == 4
    assert scores["A"]["test_per_tweet"]["accuracy"] == pytest.approx(3 / 4)
    assert scores["B"]["test_per_tweet"]["accuracy"] == pytest.approx(3 / 4)
    assert scores["B"]["test_per_tweet"]["macro_f1"] == pytest.approx(
        f1_score([0, 1, 2, 1], [0, 2, 2, 1], average="macro", labels=range(3), zero_division=0)
    )


def synthetic(n_tweets, seed=0, accuracy=0.7):
    rng = np.random.default_rng(seed)
    tweets = np.repeat(np.arange(n_tweets), rng.integers(1, 3, n_tweets))
    labels = rng.integers(0, 3, n_tweets)[tweets]
    predicted = np.where(rng.random(len(tweets)) < accuracy, labels, rng.integers(0, 3, len(tweets)))
    return labels, predicted, tweets


def test_point_scores_are_scikit_learns():
    labels, predicted, _ = synthetic(300)
    scores = point_scores(labels, predicted, 3)
    assert scores["accuracy"] == pytest.approx(accuracy_score(labels, predicted))
    assert scores["macro_f1"] == pytest.approx(f1_score(labels, predicted, average="macro"))
    assert scores["weighted_f1"] == pytest.approx(f1_score(labels, predicted, average="weighted"))
    # A class never true but predicted: scikit-learn weighs it by its support, 0, as the confusion matrix does.
    skewed = np.where(labels == 2, 0, labels)
    assert point_scores(skewed, predicted, 3)["weighted_f1"] == pytest.approx(
        f1_score(skewed, predicted, average="weighted", labels=range(3), zero_division=0)
    )


def test_every_macro_f1_averages_the_classes_with_true_rows():
    """Issue 45: class 2 has no true row but is predicted once; the report's, the bootstrap's and the training
    log's macro-F1 are all scikit-learn's over classes 0 and 1 (not a mean over three with a 0 for class 2)."""
    from emorec.metrics import method_scores
    from emorec.training.metrics import MacroF1

    labels, predicted = np.array([0, 0, 1, 1, 1, 0]), np.array([0, 2, 1, 0, 1, 0])
    expected = f1_score(labels, predicted, average="macro", labels=[0, 1])
    assert expected != pytest.approx(f1_score(labels, predicted, average="macro", labels=range(3), zero_division=0))
    assert point_scores(labels, predicted, 3)["macro_f1"] == pytest.approx(expected)
    assert method_scores(labels, np.eye(3)[predicted], ["test"] * 6)["test"]["macro_f1"] == pytest.approx(expected)
    metric = MacroF1(3)
    metric.update_state(labels, np.eye(3)[predicted])
    assert float(metric.result()) == pytest.approx(expected, abs=1e-6)


def test_intervals_contain_the_estimate_shrink_with_more_tweets_and_repeat_with_the_seed():
    widths = []
    for n_tweets in (100, 1600):
        labels, predicted, tweets = synthetic(n_tweets)
        replicates = bootstrap_scores(labels, {"m": predicted}, tweets, 3, resamples=1000, seed=0)["m"]
        point = point_scores(labels, predicted, 3)
        for metric in ("accuracy", "macro_f1", "weighted_f1"):
            low, high = interval(replicates[metric])
            assert low < point[metric] < high, (n_tweets, metric)
        widths.append(np.subtract(*interval(replicates["accuracy"])[::-1]))
        again = bootstrap_scores(labels, {"m": predicted}, tweets, 3, resamples=1000, seed=0)["m"]
        other = bootstrap_scores(labels, {"m": predicted}, tweets, 3, resamples=1000, seed=1)["m"]
        np.testing.assert_array_equal(again["accuracy"], replicates["accuracy"])
        assert not np.array_equal(other["accuracy"], replicates["accuracy"])
    assert widths[1] < widths[0] / 2.5  # 16x the tweets: about a quarter of the width


def test_a_tweets_images_are_drawn_together():
    # Every tweet has two images, both right or both wrong: resampling tweets gives a wider interval than
    # resampling the rows as if independent.
    rng = np.random.default_rng(0)
    right = rng.random(200) < 0.7
    labels = np.zeros(400, dtype=int)
    predicted = np.where(np.repeat(right, 2), 0, 1)
    by_tweet = bootstrap_scores(labels, {"m": predicted}, np.repeat(np.arange(200), 2), 2, seed=0)["m"]
    by_row = bootstrap_scores(labels, {"m": predicted}, np.arange(400), 2, seed=0)["m"]
    assert by_tweet["accuracy"].std() > 1.2 * by_row["accuracy"].std()


def test_paired_difference_of_the_best_fusion_and_the_best_single_modality():
    labels, predicted, tweets = synthetic(400, accuracy=0.6)
    rng = np.random.default_rng(5)
    better = np.where(rng.random(len(labels)) < 0.5, labels, predicted)  # right more often than predicted
    methods = {
        "text": np.eye(3)[predicted],
        "image": np.eye(3)[rng.integers(0, 3, len(labels))],
        "fusion": np.eye(3)[better],
    }
    result = evaluate_test(methods, labels, tweets, 3, seed=0)
    difference = paired_difference(
        result, ["fusion"], ["text", "image"], chosen_by={"fusion": 0.5, "text": 0.4, "image": 0.3}
    )
    assert (difference["better"], difference["than"]) == ("fusion", "text")
    # The choice is chosen_by's (validation's), whatever the test rows say: image against fusion, though text
    # scores higher.
    chosen = paired_difference(
        result, ["fusion"], ["text", "image"], chosen_by={"fusion": 0.5, "text": 0.3, "image": 0.4}
    )
    assert chosen["than"] == "image" and chosen["accuracy"] > difference["accuracy"]
    scores = result["scores"]
    assert difference["accuracy"] == pytest.approx(
        scores["fusion"]["test_same_rows"]["accuracy"] - scores["text"]["test_same_rows"]["accuracy"]
    )
    low, high = difference["accuracy_ci"]
    assert 0 < low < difference["accuracy"] < high and difference["accuracy_beyond_interval"]
    # Paired: narrower than the two methods' own intervals would suggest if they were independent.
    own = [np.subtract(*scores[m]["test_same_rows"]["accuracy_ci"][::-1]) for m in ("fusion", "text")]
    assert high - low < np.hypot(*own)


def test_seed_and_tweet_interval_widens_with_the_spread_between_seeds():
    labels, predicted, tweets = synthetic(400)
    same = seeds_and_tweets_interval(labels, [predicted, predicted], tweets, 3, seed=0)
    rng = np.random.default_rng(1)
    worse = np.where(rng.random(len(labels)) < 0.5, rng.integers(0, 3, len(labels)), predicted)
    spread = seeds_and_tweets_interval(labels, [predicted, worse], tweets, 3, seed=0)
    alone = interval(bootstrap_scores(labels, {"m": predicted}, tweets, 3, seed=0)["m"]["accuracy"])
    assert same["accuracy"] == pytest.approx(alone)  # identical seeds: the tweets' interval alone
    assert spread["accuracy"][1] - spread["accuracy"][0] > 1.5 * (alone[1] - alone[0])


def test_a_paired_difference_over_seeds_cancels_what_the_methods_share():
    labels, predicted, tweets = synthetic(400)
    rng = np.random.default_rng(2)

    # B is A with a tenth of its rows turned wrong: worse by about a tenth of A's accuracy, on every seed.
    def spoilt(p):
        wrong = rng.random(len(labels)) < 0.1
        return np.where(wrong, (labels + 1) % 3, p)

    a = [predicted, spoilt(predicted)]
    b = [spoilt(p) for p in a]
    difference = seeds_and_tweets_difference(labels, a, b, tweets, 3, seed=0)
    means = [
        np.mean([point_scores(labels, p, 3)[m] for p in a]) - np.mean([point_scores(labels, p, 3)[m] for p in b])
        for m in ("accuracy", "macro_f1")
    ]
    assert difference["accuracy"] == pytest.approx(means[0]) and difference["macro_f1"] == pytest.approx(means[1])
    assert difference["accuracy"] > 0 and difference["accuracy_beyond_interval"]
    low, high = difference["accuracy_ci"]
    assert low < difference["accuracy"] < high
    # Pairing: the difference's interval is narrower than either method's own interval over seeds and tweets.
    own = seeds_and_tweets_interval(labels, a, tweets, 3, seed=0)["accuracy"]
    assert high - low < own[1] - own[0]
    same = seeds_and_tweets_difference(labels, a, a, tweets, 3, seed=0)
    assert same["accuracy_ci"] == [0.0, 0.0] and not same["accuracy_beyond_interval"]
    with pytest.raises(ValueError, match="pairs seeds"):
        seeds_and_tweets_difference(labels, a, b[:1], tweets, 3)
