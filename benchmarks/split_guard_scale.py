"""Time what issue 14 added to every run, at real size: B-T4SA's ~470,000 rows by default.

    .venv/bin/python benchmarks/split_guard_scale.py --rows 470000

Rows are the demo generator's tweets (``emorec.demo_content.generate_tweet``), one in
ten with a second image, and one in twenty a copy of an earlier tweet's text
(a retweet), so the split has tweets and texts to keep whole. Times, in
seconds: TER's normalisation of every text, drawing the split (tweets and
texts linked into units), the leakage count, the fingerprints, and the test
report's scoring with bootstrap intervals (11 methods on the 20 % test rows,
three ways, 1,000 resamples), each the steps a phase or Late_fusion runs.
"""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=470_000)
    parser.add_argument("--methods", type=int, default=11, help="methods in the test report")
    args = parser.parse_args()

    import numpy as np
    import pandas as pd

    from emorec.data.fingerprints import data_fingerprint
    from emorec.data.splits import draw_split, normalised_texts, split_leakage
    from emorec.demo_content import generate_tweet, sample_labels
    from emorec.intervals import evaluate_test

    rng = np.random.default_rng(0)
    n_tweets = int(args.rows / 1.1)
    labels = sample_labels(rng, n_tweets)
    texts = [generate_tweet(rng, int(label)).text for label in labels]
    for tweet in range(20, n_tweets, 20):  # a retweet of an earlier tweet
        copied = int(rng.integers(0, tweet))
        texts[tweet], labels[tweet] = "RT @someone: " + texts[copied], labels[copied]
    tweet_of_row = np.repeat(np.arange(n_tweets), np.where(np.arange(n_tweets) % 10 == 0, 2, 1))[: args.rows]
    frame = pd.DataFrame(
        {
            "id": [f"{t}-{i}" for i, t in enumerate(tweet_of_row)],
            "label": labels[tweet_of_row],
            "text": np.asarray(texts, dtype=object)[tweet_of_row],
            "group": tweet_of_row.astype(str),
            "image_path": [f"/data/{t}.jpg" for t in tweet_of_row],
        }
    )
    print(f"{len(frame):,} rows, {n_tweets:,} tweets")

    normalised_texts(frame["text"][:10])  # TensorFlow's start-up, which a phase has paid already
    timings = {}

    @contextmanager
    def timed(step):
        started = time.perf_counter()
        yield
        timings[step] = time.perf_counter() - started

    with timed("normalising every text (TER's standardisation)"):
        normalised_texts(frame["text"])
    with timed("drawing the split (units of tweets and texts)"):
        frame["split"] = draw_split(frame, seed=0).to_numpy()
    with timed("counting the leakage"):
        leakage = split_leakage(frame)
    with timed("fingerprints"):
        data_fingerprint(frame)

    test = (frame["split"] == "test").to_numpy()
    truth = frame["label"].to_numpy()[test]
    methods = {
        f"m{m}": np.eye(4)[np.where(rng.random(test.sum()) < 0.6 + 0.02 * m, truth, rng.integers(0, 4, test.sum()))]
        for m in range(args.methods)
    }
    with timed(f"test report: {args.methods} methods x 3 ways x 1,000 resamples on {test.sum():,} rows"):
        evaluate_test(methods, truth, frame["group"].to_numpy()[test], 4, seed=0)

    print("\n".join(f"{seconds:8.2f} s  {step}" for step, seconds in timings.items()))
    print(f"leakage of the drawn split: {leakage['straddling_tweets']} tweets, {leakage['straddling_texts']} texts")
    return 0


if __name__ == "__main__":
    sys.exit(main())
