"""The B-T4SA converter at B-T4SA's size: wall time and peak RSS on a generated fixture in the official format.

Writes ``b-t4sa_{train,val,test}.txt`` (``data/<5 digits>/<tweet id>-<n>.jpg <label>`` per line, as
distributed) and ``raw_tweets_text.csv`` (quoted "id","text") for --rows image rows (1 to 3 images per
tweet, 80/10/10 split) and for a quarter of them, then runs ``python -m emorec.bt4sa`` on each in a fresh
process (the converter reads no image, only the lists) and prints its wall time, time per row and peak RSS.

    .venv/bin/python benchmarks/bt4sa_scale.py [--rows 470000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.scale import measured  # noqa: E402


def write_fixture(root: Path, rows: int, seed: int = 0) -> None:
    """B-T4SA's files for about ``rows`` image rows under ``root``."""
    rng = np.random.default_rng(seed)
    images_per_tweet = rng.choice([1, 2, 3], size=rows, p=[0.8, 0.15, 0.05])
    tweets = int(np.searchsorted(np.cumsum(images_per_tweet), rows)) + 1
    ids = (768_000_000_000_000_000 + np.sort(rng.choice(10**15, size=tweets, replace=False))).astype(str)
    counts = images_per_tweet[:tweets]
    tweet_of_row = np.repeat(ids, counts)[:rows]
    number = (np.arange(rows) - np.repeat(np.cumsum(counts) - counts, counts)[:rows]) + 1
    labels = np.repeat(rng.integers(0, 3, tweets), counts)[:rows]
    split = np.repeat(rng.choice(["train", "val", "test"], size=tweets, p=[0.8, 0.1, 0.1]), counts)[:rows]
    lines = pd.Series([f"data/{t[:5]}/{t}-{n}.jpg {label}" for t, n, label in zip(tweet_of_row, number, labels)])
    for name in ("train", "val", "test"):
        (root / f"b-t4sa_{name}.txt").write_text("\n".join(lines[split == name]) + "\n")
    words = np.array(["happy", "sad", "rain", "sun", "love", "hate", "news", "game", "today", "#mood"])
    texts = [" ".join(words[rng.integers(0, len(words), 12)]) for _ in range(tweets)]
    pd.DataFrame({"id": ids, "text": texts}).to_csv(root / "raw_tweets_text.csv", index=False, quoting=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=470_000)
    args = parser.parse_args()
    for rows in (args.rows // 4, args.rows):
        with tempfile.TemporaryDirectory() as folder:
            root = Path(folder)
            write_fixture(root, rows)
            seconds, peak = measured(["-m", "emorec.bt4sa", "--root", str(root), "--out", str(root / "bt4sa.csv")])
            converted = sum(1 for _ in open(root / "bt4sa.csv", encoding="utf-8")) - 1
            print(
                f"{converted:>8} rows: {seconds:6.1f} s ({seconds / converted * 1e6:5.1f} us/row), "
                f"peak RSS {peak:6.0f} MB ({peak * 1e6 / converted / 1024:.2f} KB/row)",
                flush=True,
            )


if __name__ == "__main__":
    main()
