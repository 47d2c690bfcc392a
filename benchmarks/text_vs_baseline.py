"""TER on a text-only corpus, per --class-weight and --monitor, against the TF-IDF baseline on the same split.

    .venv/bin/python benchmarks/text_vs_baseline.py --tweets tweets.csv --seeds 0 1 2 --out /tmp/text_vs_baseline

``--tweets`` is a CSV with ``id``, ``label`` (class names) and ``text``
columns, for example a set of real tweets; the script writes a text-only
manifest of it (empty image column, a classes file with its labels sorted)
into ``--out``, and for each seed draws the split (``--seed``, stratified),
trains TER once per setting with ``--glove`` (default none: random
embeddings) and fits :mod:`emorec.baselines`' text baseline on the same
training rows (with the setting's class weighting). Prints a Markdown table of
test accuracy and macro-F1 and writes it to ``OUT/text_vs_baseline.md``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def write_text_manifest(tweets, out: Path) -> tuple[Path, list[str]]:
    """Write ``tweets`` (a frame with id, label and text) as a text-only manifest ``out/tweets.csv`` (empty
    image column) with its classes file (the labels sorted); return the manifest's path and the classes."""
    import pandas as pd

    manifest = out / "tweets.csv"
    pd.DataFrame({"id": tweets["id"], "label": tweets["label"], "text": tweets["text"], "image": ""}).to_csv(
        manifest, index=False
    )
    classes = sorted(tweets["label"].unique())
    (out / "tweets.classes.txt").write_text("\n".join(classes) + "\n")
    return manifest, classes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tweets", type=Path, required=True, help="CSV with id, label and text columns")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epoch", type=int, default=15)
    parser.add_argument("--glove", default="none")
    parser.add_argument("--out", type=Path, default=Path("/tmp/text_vs_baseline"))
    args = parser.parse_args()

    import keras
    import pandas as pd

    import TER
    from emorec.baselines import run_baselines
    from emorec.data.dataset import load_dataset

    tweets = pd.read_csv(args.tweets, dtype=str)
    args.out.mkdir(parents=True, exist_ok=True)
    manifest, classes = write_text_manifest(tweets, args.out)

    rows = []
    for seed in args.seeds:
        for weighting, monitor in itertools.product(("none", "balanced"), ("val_loss", "val_macro_f1")):
            name = f"{weighting}-{monitor}-s{seed}"
            TER.main(
                [
                    "--manifest",
                    str(manifest),
                    "--glove",
                    args.glove,
                    "--epoch",
                    str(args.epoch),
                    "--seed",
                    str(seed),
                    "--class-weight",
                    weighting,
                    "--monitor",
                    monitor,
                    "--run-name",
                    name,
                    *(["--resplit"] if (weighting, monitor) == ("none", "val_loss") else []),
                    "--checkpoint-dir",
                    str(args.out / "ckpt"),
                    "--log-dir",
                    str(args.out / "tb"),
                    "--prob-dir",
                    str(args.out / "probs"),
                ]
            )
            keras.backend.clear_session()
            test = json.loads((args.out / "ckpt" / name / "TER.metrics.json").read_text())["splits"]["test"]
            rows.append(
                {
                    "seed": seed,
                    "class_weight": weighting,
                    "monitor": monitor,
                    "method": "TER",
                    "accuracy": test["accuracy"],
                    "macro_f1": test["macro_f1"],
                }
            )
            if monitor == "val_loss":  # the baseline depends on the class weighting, not on the monitor
                frame = load_dataset(manifest, seed=seed, images_required=False).frame
                splits, labels = frame["split"].to_numpy(), frame["label"].to_numpy()
                baseline = run_baselines(
                    frame, splits == "train", len(classes), None, {"Baseline_text": weighting}, seed
                )["Baseline_text"]
                predicted = baseline.probabilities.argmax(axis=1)
                from sklearn.metrics import accuracy_score, f1_score

                test_rows = splits == "test"
                rows.append(
                    {
                        "seed": seed,
                        "class_weight": weighting,
                        "monitor": "-",
                        "method": "TF-IDF + LR",
                        "accuracy": accuracy_score(labels[test_rows], predicted[test_rows]),
                        "macro_f1": f1_score(labels[test_rows], predicted[test_rows], average="macro"),
                    }
                )
    table = pd.DataFrame(rows)
    summary = table.groupby(["method", "class_weight", "monitor"], sort=False).agg(
        accuracy=("accuracy", "mean"),
        macro_f1=("macro_f1", "mean"),
        macro_f1_min=("macro_f1", "min"),
        macro_f1_max=("macro_f1", "max"),
    )
    per_seed = table.pivot_table(
        index=["method", "class_weight", "monitor"], columns="seed", values="macro_f1", sort=False
    )
    report = (
        f"Test macro-F1 per seed ({len(tweets)} texts, TER --glove {args.glove} --epoch {args.epoch})\n\n"
        + per_seed.round(3).to_string()
        + "\n\nMeans over seeds\n\n"
        + summary.round(3).to_string()
    )
    (args.out / "text_vs_baseline.md").write_text(report + "\n")
    table.to_csv(args.out / "text_vs_baseline.csv", index=False)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
