"""Pooling and precision of the image features on the demo: store size, test accuracy and time per setting.

In one run, on the demo data set (``make data``) at the demo's image size, each as its own named run
(``--run-name``) in a scratch folder: TER once, then for each ``--pooling`` (flatten, avg, max) IER and
Intermediate_fusion (the paper's unweighted loss, ``--class-weight none``) in ``--precision`` bfloat16 where this
machine runs it natively (else float32), and IER with ``--pooling flatten`` in float32 (the precision comparison).
Prints a Markdown table: per setting the feature store's size on disk, IER's and the fusion's test accuracy and
macro-F1, and each phase's wall time (IER's includes its feature extraction).

    .venv/bin/python benchmarks/pooling.py [--demo data_t4sa/demo] [--image-size 112] [--out /tmp/pooling]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo", default=str(ROOT / "data_t4sa" / "demo"))
    parser.add_argument("--image-size", type=int, default=112)
    parser.add_argument("--ter-epochs", type=int, default=20)
    parser.add_argument("--ier-epochs", type=int, default=30)
    parser.add_argument("--inter-epochs", type=int, default=10)
    parser.add_argument("--out", default="/tmp/emorec-pooling", help="scratch folder for every output")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from emorec.precision import native_support

    demo, out = Path(args.demo), Path(args.out)
    low = "bfloat16" if native_support()["bfloat16"] else "float32"
    common = [
        "--manifest",
        str(demo / "image_labels.csv"),
        "--image-root",
        str(demo),
        "--seed",
        "0",
        "--checkpoint-dir",
        str(out / "ckpt"),
        "--log-dir",
        str(out / "tb"),
        "--prob-dir",
        str(out / "probs"),
    ]
    image = ["--image-weights", "none", "--image-size", str(args.image_size), "--cache-dir", str(out / "features")]

    def phase(script: str, run: str, *flags: str) -> tuple[float, dict]:
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, script, *common, "--run-name", run, *flags],
            cwd=ROOT,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        seconds = time.perf_counter() - start
        metrics = json.loads((out / "ckpt" / run / f"{Path(script).stem}.metrics.json").read_text())
        return seconds, metrics

    def test(metrics: dict) -> str:
        scores = metrics["splits"]["test"]
        return f"{scores['accuracy']:.3f} / {scores['macro_f1']:.3f}"

    def size(folder: str) -> str:
        nbytes = sum(path.stat().st_blocks * 512 for path in Path(folder).iterdir())
        return f"{nbytes / 1e6:.1f} MB"

    settings = [(pooling, low) for pooling in ("flatten", "avg", "max")]
    if low != "float32":
        settings.append(("flatten", "float32"))
    print(
        f"demo {demo} at {args.image_size} px; TER {args.ter_epochs}, IER {args.ier_epochs}, "
        f"Intermediate_fusion {args.inter_epochs} epochs; random VGG16 (--image-weights none)",
        flush=True,
    )
    rows = []
    for pooling, precision in settings:
        run = f"{pooling}-{precision}"
        phase("TER.py", run, "--glove", str(demo / "glove.demo.200d.txt"), "--epoch", str(args.ter_epochs))
        ier_seconds, ier = phase(
            "IER.py",
            run,
            *image,
            "--pooling",
            pooling,
            "--precision",
            precision,
            "--class-weight",
            "none",
            "--epoch",
            str(args.ier_epochs),
        )
        if precision == low:
            inter_seconds, inter = phase(
                "Intermediate_fusion.py",
                run,
                "--precision",
                precision,
                "--class-weight",
                "none",
                "--epoch",
                str(args.inter_epochs),
            )
            fusion = f"{test(inter)} | {inter_seconds:.0f} s"
        else:
            fusion = "- | -"
        rows.append(
            f"| {pooling} | {precision} | {size(ier['feature_store'])} | {test(ier)} | {ier_seconds:.0f} s | {fusion} |"
        )
        print(rows[-1], flush=True)
    print(
        "\n| --pooling | --precision | feature store | IER test acc / macro-F1 | IER time | "
        "fusion test acc / macro-F1 | fusion time |\n|---|---|---|---|---|---|---|"
    )
    print("\n".join(rows))


if __name__ == "__main__":
    main()
