"""Time reading and splitting a manifest the size of IIT-R TIER (97,170 rows).

Writes empty image files (only their existence is checked) in a temporary
folder, then times read_manifest and draw_split. Usage:

    .venv/bin/python benchmarks/bench_manifest.py [--rows 97170]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from emorec.data.manifest import DEFAULT_CLASS_NAMES, read_manifest
from emorec.data.splits import draw_split  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=97170, help="manifest rows")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        images = []
        for row in range(args.rows):
            tweet = 768_000_000_000_000_000 + row // 2 * 7919
            image = f"data/{str(tweet)[:5]}/{tweet}-{row % 2 + 1}.jpg"
            images.append(image)
        for directory in {str(Path(image).parent) for image in images}:
            (root / directory).mkdir(parents=True, exist_ok=True)
        for image in images:
            (root / image).touch()
        labels = rng.choice(DEFAULT_CLASS_NAMES, size=args.rows)
        pairs = np.repeat(labels[::2], 2)[: args.rows]  # both images of a tweet share its label
        pd.DataFrame({"label": pairs, "text": "some tweet text #tag", "image": images}).to_csv(
            root / "manifest.csv", index=False
        )
        started = time.perf_counter()
        frame = read_manifest(root / "manifest.csv", root).frame
        read_s = time.perf_counter() - started
        started = time.perf_counter()
        draw_split(frame, seed=0)
        split_s = time.perf_counter() - started
    print(f"{args.rows} rows: read_manifest {read_s:.2f} s, draw_split {split_s:.2f} s")


if __name__ == "__main__":
    main()
