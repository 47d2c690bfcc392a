"""Measure --class-weight and --monitor against the simple baselines, on demo data sets of several seeds.

    .venv/bin/python benchmarks/class_weight_monitor.py --seeds 0 1 2 --out /tmp/cwm

For each seed, generates the demo (``python -m emorec.demo --seed S``) into
``OUT/demo-sS`` and runs the four phases (through ``python sweep.py``
with one fraction, 1.0, and that seed) once per setting of --class-weight x
--monitor, as runs named ``<weighting>-<monitor>-f1-sS``; every setting of a
seed shares the image feature cache. Late fusion adds the baselines' rows.
Prints and writes ``OUT/class_weight_monitor.md``: test macro-F1 (and
accuracy) of TER, IER and intermediate fusion per setting and seed, beside
the baseline of the same modality on the same split. A finished run is
skipped, so the script resumes; delete ``OUT/seedS/results/<run>/summary.json``
to redo only Late_fusion's report. The demo's epochs and float32 precision are the Makefile's.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

WEIGHTINGS = ("none", "balanced")
MONITORS = ("val_loss", "val_macro_f1")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path("/tmp/class_weight_monitor"))
    parser.add_argument("--n", type=int, default=2000, help="demo rows")
    parser.add_argument("--image-size", type=int, default=112)
    parser.add_argument("--epochs", type=int, nargs=3, default=[20, 30, 10], metavar=("TER", "IER", "INTER"))
    parser.add_argument(
        "--class-weights",
        nargs="+",
        choices=WEIGHTINGS,
        default=list(WEIGHTINGS),
        help="the --class-weight settings to run (default: both)",
    )
    parser.add_argument(
        "--monitors",
        nargs="+",
        choices=MONITORS,
        default=list(MONITORS),
        help="the --monitor settings to run (default: both)",
    )
    args = parser.parse_args()

    import sweep
    from emorec import demo, label_efficiency
    from emorec.baselines import COMPARED_PHASE

    pairs = {phase: baseline for baseline, phase in COMPARED_PHASE.items()}  # each phase against its baseline

    rows = []
    for seed in args.seeds:
        data = args.out / f"demo-s{seed}"
        if not (data / "image_labels.csv").exists():
            demo.main(["--out", str(data), "--n", str(args.n), "--seed", str(seed), "--no-baselines"])
        work = args.out / f"seed{seed}"
        for weighting, monitor in itertools.product(args.class_weights, args.monitors):
            prefix = f"{weighting}-{monitor}"
            chosen = f"--class-weight {weighting} --monitor {monitor}"
            sweep.main(
                [
                    "--fractions",
                    "1.0",
                    "--seeds",
                    str(seed),
                    "--run-prefix",
                    prefix,
                    "--manifest",
                    str(data / "image_labels.csv"),
                    "--image-root",
                    str(data),
                    "--ter-args",
                    f"--glove {data / 'glove.demo.200d.txt'} --epoch {args.epochs[0]} {chosen}",
                    "--ier-args",
                    f"--image-weights none --image-size {args.image_size} --cache-dir {work / 'features'} "
                    f"--precision float32 --epoch {args.epochs[1]} {chosen}",
                    "--inter-args",
                    f"--precision float32 --epoch {args.epochs[2]} {chosen}",
                    "--checkpoint-dir",
                    str(work / "model_checkpoints"),
                    "--log-dir",
                    str(work / "tb_logs"),
                    "--prob-dir",
                    str(work / "data_files"),
                    "--results-dir",
                    str(work / "results"),
                ]
            )
            summary = json.loads(
                (work / "results" / label_efficiency.run_name(prefix, 1.0, seed) / "summary.json").read_text()
            )
            for method, scores in summary["methods"].items():
                rows.append(
                    {
                        "seed": seed,
                        "class_weight": weighting,
                        "monitor": monitor,
                        "method": method,
                        "accuracy": scores["test"]["accuracy"],
                        "macro_f1": scores["test"]["macro_f1"],
                    }
                )

    import pandas as pd

    table = pd.DataFrame(rows)
    lines = [
        "| phase | --class-weight | --monitor | "
        + " | ".join(f"seed {s}" for s in args.seeds)
        + " | mean | baseline (mean) | phase >= baseline on every seed |",
        "|---|---|---|" + "---:|" * (len(args.seeds) + 2) + "---|",
    ]
    for phase, baseline in pairs.items():
        for weighting, monitor in itertools.product(args.class_weights, args.monitors):
            setting = table[(table["class_weight"] == weighting) & (table["monitor"] == monitor)]
            ours = setting[setting["method"] == phase].set_index("seed")["macro_f1"]
            theirs = (
                setting[setting["method"] == baseline].set_index("seed")["macro_f1"]
                if baseline in set(setting["method"])
                else None
            )
            cells = [f"{ours[s]:.3f}" + ("" if theirs is None else f" ({theirs[s]:.3f})") for s in args.seeds]
            verdict = "" if theirs is None else ("yes" if (ours >= theirs).all() else "no")
            lines.append(
                f"| {phase} | {weighting} | {monitor} | "
                + " | ".join(cells)
                + f" | {ours.mean():.3f} | "
                + ("" if theirs is None else f"{theirs.mean():.3f}")
                + f" | {verdict} |"
            )
    report = "Test macro-F1 per demo seed (the modality's baseline on the same split in brackets)\n\n" + "\n".join(
        lines
    )
    (args.out / "class_weight_monitor.md").write_text(report + "\n")
    table.to_csv(args.out / "class_weight_monitor.csv", index=False)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
