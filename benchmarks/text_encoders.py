"""Text models on real tweets: the paper's TER, a pretrained encoder fine-tuned and frozen, TF-IDF + LR, fusions.

    .venv/bin/python benchmarks/text_encoders.py --tweets tweets.csv --encoder models/all-MiniLM-L6-v2 \
        --glove glove.6B.50d.txt --seeds 0 1 2 --out /tmp/text_encoders

``--tweets`` is a CSV with ``id``, ``label`` (class names) and ``text``
columns. The script writes a text-only manifest of it into ``--out`` (see
``text_vs_baseline.py``); the first TER run draws the split (stratified, seed
of the first ``--seeds``), which every later run reuses, so every method and
seed is scored on the same test tweets. Per seed it runs TER.py (in this
process, as a user's command line):

- the paper's network with random embeddings (``--glove none``) and with
  ``--glove`` (its ``--embedding-dim`` read from the file), each with the
  defaults (``--class-weight balanced --monitor val_macro_f1``), with the
  paper's settings (``--class-weight none --monitor val_loss``) and with the
  two other pairs of the two flags, for ``--epoch`` epochs, and with
  ``--glove`` for ``--glove-epoch`` (the paper's 100) too;
- ``--text-encoder ENCODER`` fine-tuned (for each of ``--encoder-epoch``, the
  defaults) and frozen (``--freeze-text-encoder``, ``--head-epoch`` epochs,
  with the four settings);

fits the TF-IDF + logistic-regression baseline (:mod:`emorec.baselines`, C
chosen on validation) on the same training rows, and the same regression on
TF-IDF and the frozen encoder's stored features side by side (standardised,
as the image-and-text baseline takes image features), and late-fuses each encoder
run with it (two weights chosen on validation by
:func:`emorec.fusion.choose_weights`, as ``Late_fusion.py`` does). Every row
gives test accuracy and macro-F1, the mean over the seeds with a 95 %
interval that redraws the seeds and the test tweets, and the paired
difference from TF-IDF + LR with its interval
(:mod:`emorec.intervals`). Writes ``OUT/text_encoders.md`` (the table),
``OUT/text_encoders.json`` (everything, with each run's training seconds) and prints
the table. ``--only`` runs a subset of the rows; finished runs are read back,
not trained again.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

PAPER_SETTINGS = ["--class-weight", "none", "--monitor", "val_loss"]
DEFAULT_SETTINGS = ["--class-weight", "balanced", "--monitor", "val_macro_f1"]
# Every --class-weight and --monitor, for the paper's network and the frozen head (seconds to train each).
SETTINGS = {
    "defaults": DEFAULT_SETTINGS,
    "paper settings": PAPER_SETTINGS,
    "none + val_macro_f1": ["--class-weight", "none", "--monitor", "val_macro_f1"],
    "balanced + val_loss": ["--class-weight", "balanced", "--monitor", "val_loss"],
}


def ter_rows(args) -> dict[str, list[str]]:
    """Each TER row of the table and its flags (besides the data, seed and output flags)."""
    rows = {}
    glove = [("random", ["--glove", "none"], args.epoch)]
    if args.glove:
        dim = len(Path(args.glove).open(encoding="utf-8").readline().split()) - 1
        flags = ["--glove", str(args.glove), "--embedding-dim", str(dim)]
        # From fixed pretrained vectors the network learns slower than from random ones: at --epoch it may
        # still be climbing, so also at the paper's epochs.
        glove += [
            (f"GloVe {dim}d", flags, args.epoch),
            (f"GloVe {dim}d, {args.glove_epoch} epochs", flags, args.glove_epoch),
        ]
    for name, flags, epochs in glove:
        for settings, setting_flags in SETTINGS.items():
            rows[f"TER paper, {name}, {settings}"] = [*flags, *setting_flags, "--epoch", str(epochs)]
    if args.encoder:
        encoder = ["--text-encoder", str(args.encoder)]
        # Fine-tuning costs minutes per epoch on a CPU: the defaults alone; the frozen head every way.
        for number, epochs in enumerate(args.encoder_epoch):  # the first unnamed, as --epoch's rows
            named = f", {epochs} epochs" if number else ""
            rows[f"encoder fine-tuned{named}, defaults"] = [*encoder, *DEFAULT_SETTINGS, "--epoch", str(epochs)]
        for settings, setting_flags in SETTINGS.items():
            rows[f"encoder frozen + head, {settings}"] = [
                *encoder,
                "--freeze-text-encoder",
                *setting_flags,
                "--epoch",
                str(args.head_epoch),
                "--cache-dir",
                str(args.out / "features"),
            ]
    return rows


def run_ter(args, manifest: Path, row: str, flags: list[str], seed: int) -> dict:
    """Run TER.py once (unless its metrics exist); return its metrics and probabilities."""
    import keras
    import pandas as pd

    import TER

    name = f"{row.replace(', ', '-').replace(' ', '_').replace('+', 'plus')}-s{seed}"
    metrics_file = args.out / "ckpt" / name / "TER.metrics.json"
    if not metrics_file.exists():
        TER.main(
            [
                "--manifest",
                str(manifest),
                "--seed",
                str(seed),
                "--run-name",
                name,
                *flags,
                "--checkpoint-dir",
                str(args.out / "ckpt"),
                "--log-dir",
                str(args.out / "tb"),
                "--prob-dir",
                str(args.out / "probs"),
            ]
        )
        keras.backend.clear_session()
    metrics = json.loads(metrics_file.read_text())
    probabilities = pd.read_csv(args.out / "probs" / name / TER.PROB_FILE, dtype={"id": str})
    return {"metrics": metrics, "probabilities": probabilities}


def markdown(rows: list[dict]) -> str:
    """A Markdown table of ``rows`` (dicts with the same keys)."""
    lines = [list(rows[0]), ["---"] * len(rows[0]), *[list(row.values()) for row in rows]]
    return "\n".join("| " + " | ".join(str(cell) for cell in line) + " |" for line in lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tweets", type=Path, required=True, help="CSV with id, label and text columns")
    parser.add_argument("--encoder", help="a --text-encoder preset (a local folder, a KerasHub name, hf://...)")
    parser.add_argument("--glove", type=Path, help="a GloVe text file for the paper's network (besides random)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epoch", type=int, default=15, help="epochs of the paper's network")
    parser.add_argument(
        "--glove-epoch",
        type=int,
        default=100,
        help="epochs of the paper's network with --glove, besides --epoch (the paper's 100)",
    )
    parser.add_argument(
        "--encoder-epoch", type=int, nargs="+", default=[4], help="epochs of fine-tuning the encoder (each value a row)"
    )
    parser.add_argument(
        "--head-epoch", type=int, default=100, help="epochs of the frozen encoder's head (TER's default)"
    )
    parser.add_argument("--only", nargs="+", help="run only the TER rows whose names contain one of these")
    parser.add_argument("--out", type=Path, default=Path("/tmp/text_encoders"))
    args = parser.parse_args()

    import numpy as np
    import pandas as pd
    from text_vs_baseline import write_text_manifest

    from emorec.baselines import SideBySide, fit_baseline, image_features, run_baselines, text_features
    from emorec.data.dataset import load_dataset
    from emorec.feature_store import FeatureStore
    from emorec.fusion import choose_weights, fuse, weight_grid
    from emorec.intervals import point_scores, seeds_and_tweets_difference, seeds_and_tweets_interval
    from emorec.text_encoders import text_keys

    args.out.mkdir(parents=True, exist_ok=True)
    manifest, class_names = write_text_manifest(pd.read_csv(args.tweets, dtype=str), args.out)
    rows = ter_rows(args)
    if args.only:
        rows = {row: flags for row, flags in rows.items() if any(part in row for part in args.only)}

    predicted, seconds, seconds_per_epoch = {}, {}, {}
    frame = None
    for seed in args.seeds:
        for row, flags in rows.items():
            print(f"== {row}, seed {seed}", flush=True)
            run = run_ter(args, manifest, row, flags, seed)
            if frame is None:  # the split the first run drew, which every later run reuses
                frame = load_dataset(manifest, seed=args.seeds[0], images_required=False).frame
                splits, labels = frame["split"].to_numpy(), frame["label"].to_numpy()
                test, val = splits == "test", splits == "val"
            probabilities = run["probabilities"].set_index("id").loc[frame["id"], class_names].to_numpy()
            predicted[row, seed] = probabilities
            seconds[row, seed] = run["metrics"]["fit_seconds"]
            seconds_per_epoch[row, seed] = run["metrics"].get("seconds_per_epoch")
        weighting = "balanced"  # the text phase's default, which the reports' baseline follows
        baseline = run_baselines(frame, splits == "train", len(class_names), None, {"Baseline_text": weighting}, seed)[
            "Baseline_text"
        ].probabilities
        predicted["TF-IDF + LR", seed] = baseline
        stores = sorted((args.out / "features").glob("text_*"))
        if stores:  # the frozen encoder's stored features beside TF-IDF, in one logistic regression
            stored = FeatureStore.open(stores[0]).view(text_keys(frame["text"].tolist())).features
            train = splits == "train"
            both = SideBySide(
                text_features(frame["text"].tolist(), train),
                image_features(np.asarray(stored, dtype=np.float32), train),
            )
            predicted["TF-IDF + encoder features, one LR", seed] = fit_baseline(
                both, labels, train, val, np.ones(len(labels), dtype=bool), len(class_names), weighting, seed
            ).probabilities
        for row in [r for r in rows if r.startswith("encoder")]:
            members = np.stack([predicted[row, seed], baseline])
            grid = weight_grid(2)
            best, _, _ = choose_weights(grid, members[:, val], labels[val])
            predicted[f"{row} + TF-IDF + LR, late fusion", seed] = fuse(grid[best], members)

    methods = list(dict.fromkeys(method for method, _ in predicted))
    test_labels = labels[test]
    tweets = frame["id"].to_numpy()[test]
    classes = {m: [predicted[m, s][test].argmax(axis=1) for s in args.seeds] for m in methods}
    table, results = (
        [],
        {
            "tweets": len(frame),
            "test_tweets": int(test.sum()),
            "seeds": args.seeds,
            "class_names": class_names,
            "methods": {},
        },
    )
    for method in methods:
        per_seed = [point_scores(test_labels, c, len(class_names)) for c in classes[method]]
        bounds = seeds_and_tweets_interval(test_labels, classes[method], tweets, len(class_names))
        difference = seeds_and_tweets_difference(
            test_labels, classes[method], classes["TF-IDF + LR"], tweets, len(class_names)
        )
        mean = {m: float(np.mean([s[m] for s in per_seed])) for m in ("accuracy", "macro_f1")}
        timing = [seconds.get((method, s)) for s in args.seeds]
        epoch_seconds = [seconds_per_epoch.get((method, s)) for s in args.seeds]
        results["methods"][method] = {
            "per_seed": per_seed,
            "mean": mean,
            "interval": bounds,
            "minus_tfidf_lr": difference,
            "seconds": timing,
            "seconds_per_epoch": epoch_seconds,
        }
        table.append(
            {
                "method": method,
                "accuracy": f"{mean['accuracy']:.3f} [{bounds['accuracy'][0]:.3f}, {bounds['accuracy'][1]:.3f}]",
                "macro-F1": f"{mean['macro_f1']:.3f} [{bounds['macro_f1'][0]:.3f}, {bounds['macro_f1'][1]:.3f}]",
                "macro-F1 per seed": " / ".join(f"{s['macro_f1']:.3f}" for s in per_seed),
                "macro-F1 minus TF-IDF + LR": (
                    ""
                    if method == "TF-IDF + LR"
                    else f"{difference['macro_f1']:+.3f} [{difference['macro_f1_ci'][0]:+.3f}, "
                    f"{difference['macro_f1_ci'][1]:+.3f}]"
                ),
                "training s per seed": " / ".join(f"{t:.0f}" for t in timing) if timing[0] is not None else "",
            }
        )
    report = (
        f"{len(frame)} tweets, {int(test.sum())} on test; seeds {args.seeds}; mean over seeds with the 95 % "
        "interval of seeds and test tweets redrawn\n\n" + markdown(table)
    )
    (args.out / "text_encoders.md").write_text(report + "\n")
    (args.out / "text_encoders.json").write_text(json.dumps(results, indent=1) + "\n")
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
