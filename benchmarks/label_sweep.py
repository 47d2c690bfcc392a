"""The label-efficiency sweep against cold runs: what the feature and GloVe caches save.

A cold run is one four-phase run (TER, IER, Intermediate_fusion, Late_fusion)
with empty caches: the GloVe file is parsed and the backbone reads every image.
The sweep then runs every (fraction, seed) setting with the caches that run
left, as a user's sweep after a first run would. Prints the seconds and the
ratio  sweep / (settings x cold run)  (issue 7's target: at most 0.2 on the
demo at 224 px):

    .venv/bin/python benchmarks/label_sweep.py --n 2000 --image-size 224 \
        --fractions 0.05 0.1 0.25 0.5 1.0 --seeds 0 --ter-epochs 20 --ier-epochs 30 --inter-epochs 10
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import sweep  # noqa: E402
from emorec import demo  # noqa: E402


def sweep_argv(data: Path, out: Path, args, fractions, seeds, prefix) -> list[str]:
    return [
        "--fractions",
        *map(str, fractions),
        "--seeds",
        *map(str, seeds),
        "--run-prefix",
        prefix,
        "--manifest",
        str(data / demo.MANIFEST_NAME),
        "--image-root",
        str(data),
        "--ter-args",
        f"--glove {data / demo.GLOVE_NAME} --epoch {args.ter_epochs}",
        "--ier-args",
        f"--image-weights none --image-size {args.image_size} --epoch {args.ier_epochs} --cache-dir {out / 'features'}",
        "--inter-args",
        f"--epoch {args.inter_epochs}",
        "--checkpoint-dir",
        str(out / "ckpt"),
        "--log-dir",
        str(out / "tb"),
        "--prob-dir",
        str(out / "probs"),
        "--results-dir",
        str(out / "results"),
    ]


def timed_sweep(argv) -> float:
    started = time.perf_counter()
    assert sweep.main(argv) == 0
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000, help="demo images")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.05, 0.1, 0.25, 0.5, 1.0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--ter-epochs", type=int, default=20)
    parser.add_argument("--ier-epochs", type=int, default=30)
    parser.add_argument("--inter-epochs", type=int, default=10)
    parser.add_argument("--workdir", default=None, help="keep everything here (default: a temporary folder)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    with tempfile.TemporaryDirectory() as temporary:
        out = Path(args.workdir or temporary)
        data = demo.generate(out / "demo", n=args.n, seed=0).parent
        for cache in data.glob("*.cache.npz"):
            cache.unlink()
        cold = timed_sweep(sweep_argv(data, out, args, [1.0], [0], "cold"))
        warm = timed_sweep(sweep_argv(data, out, args, args.fractions, args.seeds, "warm"))
        settings = len(set(args.fractions)) * len(args.seeds)
        print(
            f"demo n={args.n}, {args.image_size} px, epochs TER {args.ter_epochs} / IER {args.ier_epochs} / "
            f"fusion {args.inter_epochs}"
        )
        print(f"cold run (empty caches), four phases: {cold:8.1f} s")
        print(
            f"sweep of {settings} settings (fractions {args.fractions}, seeds {args.seeds}), warm caches: "
            f"{warm:8.1f} s  = {warm / settings:.1f} s per setting"
        )
        print(f"ratio sweep / (settings x cold run): {warm / (settings * cold):.3f}   (target <= 0.2)")


if __name__ == "__main__":
    main()
