"""Time the three baselines of ``emorec.baselines`` at real size: 100,000 rows by default.

    .venv/bin/python benchmarks/baselines_scale.py --rows 100000 --out /tmp/baselines_scale

The texts are the demo generator's tweets (``emorec.demo_content.generate_tweet``, its
class balance), the image features a float16 memory-mapped array shaped as
VGG16's at 224 px (rows x 7 x 7 x 512, 49 KB a row, 4.9 GB at 100,000 rows)
of random values (the timing of a fit hardly depends on the values). Split
70/10/20. Prints seconds for each step, the baselines' validation macro-F1 and the process's peak RSS.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--shape", type=int, nargs=3, default=[7, 7, 512], help="feature shape of one image")
    parser.add_argument("--out", type=Path, default=Path("/tmp/baselines_scale"))
    args = parser.parse_args()

    import numpy as np

    from emorec import baselines
    from emorec.demo_content import generate_tweet, sample_labels

    rng = np.random.default_rng(0)
    labels = sample_labels(rng, args.rows)
    texts = [generate_tweet(rng, int(label)).text for label in labels]
    splits = rng.choice(["train", "val", "test"], size=args.rows, p=[0.7, 0.1, 0.2])
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "features.npy"
    shape = (args.rows, *args.shape)
    if not path.exists() or np.load(path, mmap_mode="r").shape != shape:
        features = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=shape)
        for start in range(0, args.rows, 4096):
            block = features[start : start + 4096]
            block[:] = rng.random(block.shape, dtype=np.float32) + labels[start : start + 4096, None, None, None] * 0.01
        features.flush()
        del features
    features = np.load(path, mmap_mode="r")
    train, val = splits == "train", splits == "val"

    timings = {}
    started = time.perf_counter()
    text = baselines.text_features(texts, train)
    timings["TF-IDF features"] = time.perf_counter() - started
    started = time.perf_counter()
    image = baselines.image_features(baselines.pooled_features(features), train)
    timings["pooling the cache + standardising"] = time.perf_counter() - started
    everything = np.ones(args.rows, dtype=bool)
    for name, x in (
        ("Baseline_text", text),
        ("Baseline_image", image),
        ("Baseline_both", baselines.SideBySide(text, image)),
    ):
        started = time.perf_counter()
        fitted = baselines.fit_baseline(x, labels, train, val, everything, int(labels.max()) + 1, "none", 0)
        timings[f"{name} ({len(baselines.C_GRID)} fits, C {fitted.C:g}, val macro-F1 {fitted.val_macro_f1:.3f})"] = (
            time.perf_counter() - started
        )
    print(f"{args.rows:,} rows, text features {text.shape[1]:,} terms, image features {args.shape} -> {image.shape[1]}")
    for step, seconds in timings.items():
        print(f"{seconds:8.1f} s  {step}")
    print(f"{sum(timings.values()):8.1f} s  in all")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
