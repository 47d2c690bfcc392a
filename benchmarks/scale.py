"""The four phases at two data sizes 4x apart: wall time per row and peak RSS per phase.

Generates two demo data sets (``emorec.demo.generate`` with pictures shrunk by --image-scale), --rows and a
quarter of them, and runs TER, IER, Intermediate_fusion and Late_fusion on each, at ``--image-size 32`` with
--epochs epochs and a random VGG16, every phase in a fresh process as a user runs it. Prints, per phase and
size, the wall time, the time per row and the peak resident memory, then the ratios larger/smaller: time per
row (target <= 1.2) and peak RSS (target <= 1.5), and the memory each phase adds per extra row (what grows
with the rows: the manifest and its texts, token ids, probabilities, the store's index). For Late_fusion it
names the arrays its baselines must hold for every row (``emorec.baselines``), with their bytes per row measured
on the larger data set, and the peak RSS ratio without them.

    .venv/bin/python benchmarks/scale.py [--rows 50000] [--epochs 2] [--out /tmp/emorec-scale]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PHASES = ("TER", "IER", "Intermediate_fusion", "Late_fusion")


def measured(argv: list[str]) -> tuple[float, float]:
    """Run ``python *argv`` in the repository, in a fresh process; return (seconds, its peak RSS in MB)."""
    code = (
        f"import resource, subprocess, sys, time; start = time.perf_counter(); "
        f"subprocess.run([sys.executable, *{argv!r}], check=True, cwd={str(ROOT)!r}, "
        f"stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); "
        f"print(time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    seconds, peak_kb = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    return float(seconds), float(peak_kb) / 1024


def baseline_bytes_per_row(data: Path, channels: int = 512) -> dict[str, float]:
    """Bytes per row of the arrays Late_fusion's baselines hold for every row, on the demo data set ``data``
    (image features of ``channels`` numbers, VGG16's): the pooled image features (float32), the TF-IDF rows
    (float32 CSR) and, while fitting, the training rows' image features in float64 (``ImageRows``) and the
    both-baseline's training rows in float64 (CSR: 12 bytes a value)."""
    from emorec import baselines, demo
    from emorec.data.dataset import load_dataset

    frame = load_dataset(data / demo.MANIFEST_NAME, data, draw=False).frame  # the split the phases drew
    train = (frame["split"] == "train").to_numpy()
    text_per_row = baselines.text_features(frame["text"].tolist(), train).nnz / len(frame)
    return {
        "pooled image features": 4 * channels,
        "TF-IDF rows": text_per_row * 8 + 4,
        "image training rows in float64": train.mean() * channels * 8,
        "both-baseline training rows": train.mean() * ((channels + text_per_row) * 12 + 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=50_000, help="the larger size; the smaller is a quarter")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--image-scale", type=float, default=0.25)
    parser.add_argument("--out", default="/tmp/emorec-scale")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from emorec import demo

    results = {}
    for rows in (args.rows // 4, args.rows):
        data = Path(args.out) / f"n{rows}"
        if not (data / demo.MANIFEST_NAME).exists():
            started = time.perf_counter()
            demo.generate(data, n=rows, seed=0, corpus_size=20000, image_scale=args.image_scale)
            print(f"generated {rows} rows in {time.perf_counter() - started:.0f} s", flush=True)
        common = [
            "--manifest",
            str(data / demo.MANIFEST_NAME),
            "--image-root",
            str(data),
            "--seed",
            "0",
            "--checkpoint-dir",
            str(data / "ckpt"),
            "--log-dir",
            str(data / "tb"),
            "--prob-dir",
            str(data / "probs"),
        ]
        flags = {
            "TER": [*common, "--glove", str(data / demo.GLOVE_NAME), "--epoch", str(args.epochs)],
            "IER": [
                *common,
                "--image-weights",
                "none",
                "--image-size",
                "32",
                "--epoch",
                str(args.epochs),
                "--cache-dir",
                str(data / "features"),
            ],
            "Intermediate_fusion": [*common, "--epoch", str(args.epochs)],
            "Late_fusion": [
                *common[:2],
                "--checkpoint-dir",
                str(data / "ckpt"),
                "--prob-dir",
                str(data / "probs"),
                "--results-dir",
                str(data / "results"),
            ],
        }
        for phase in PHASES:
            seconds, peak = measured([f"{phase}.py", *flags[phase]])
            results[(phase, rows)] = (seconds, peak)
            print(
                f"{phase:<20} {rows:>7} rows: {seconds:7.1f} s, {seconds / rows * 1e3:6.2f} ms/row, "
                f"peak RSS {peak:6.0f} MB",
                flush=True,
            )
    small, large = args.rows // 4, args.rows
    print(f"\nlarger ({large}) / smaller ({small}):")
    for phase in PHASES:
        (t_small, m_small), (t_large, m_large) = results[(phase, small)], results[(phase, large)]
        per_row = (m_large - m_small) * 2**20 / (large - small)
        print(
            f"{phase:<20} time per row {t_large / large / (t_small / small):.2f}x, peak RSS "
            f"{m_large / m_small:.2f}x (+{per_row / 1024:.1f} KB per extra row)"
        )
    growing = baseline_bytes_per_row(Path(args.out) / f"n{large}")
    (_, m_small), (_, m_large) = results[("Late_fusion", small)], results[("Late_fusion", large)]
    without = m_large - sum(growing.values()) * (large - small) / 2**20
    print(
        "Late_fusion's arrays that grow with the rows: "
        + ", ".join(f"{name} {size / 1024:.1f} KB" for name, size in growing.items())
        + f" per row; peak RSS without them "
        f"{without / m_small:.2f}x"
    )
    (Path(args.out) / "scale.json").write_text(json.dumps({f"{p} {n}": v for (p, n), v in results.items()}))


if __name__ == "__main__":
    main()
