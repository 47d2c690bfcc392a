"""A pretrained text encoder's speed on this machine: texts per second encoded, and TER's seconds per epoch
fine-tuning it (``--precision`` float32, and mixed bfloat16 where the CPU runs it natively) against the frozen
store's head.

    .venv/bin/python benchmarks/text_encoder_speed.py --encoder models/all-MiniLM-L6-v2 --tweets tweets.csv

``--tweets`` is a CSV with ``id``, ``label`` and ``text`` (the first ``--texts`` rows are used). Encoding is
timed after one warm-up batch, best of ``--repeats``; the epochs are TER.py's own (``seconds_per_epoch`` of
``TER.metrics.json``: the mean over ``--epoch`` epochs, the first one's tracing included), fine-tuned and frozen
on the same manifest, the store filled before the frozen run (its time is the encoding's). Prints a Markdown
table and writes it to ``OUT/text_encoder_speed.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))


def texts_per_second(preset: str, texts: list[str], seq_len: int, batch: int, repeats: int, policy: str) -> float:
    """Texts per second through the preprocessor and the pooled encoder under ``policy`` (a --precision: float32,
    or mixed bfloat16)."""
    import keras

    from emorec.precision import dtype_policy
    from emorec.text_encoders import build_text_features, load_text_encoder, preprocess

    with dtype_policy(policy):
        encoder = load_text_encoder(preset, seq_len)
        features = build_text_features(encoder)
    features.predict(preprocess(encoder, texts[:batch]), batch_size=batch, verbose=0)  # warm-up: tracing
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        features.predict(preprocess(encoder, texts), batch_size=batch, verbose=0)
        best = min(best, time.perf_counter() - started)
    keras.backend.clear_session()
    return len(texts) / best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", required=True, help="a --text-encoder preset")
    parser.add_argument("--tweets", type=Path, required=True, help="CSV with id, label and text columns")
    parser.add_argument("--texts", type=int, default=1024)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epoch", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("/tmp/text_encoder_speed"))
    args = parser.parse_args()

    import keras
    import pandas as pd
    from text_vs_baseline import write_text_manifest

    import TER
    from emorec.precision import resolve_precision

    tweets = pd.read_csv(args.tweets, dtype=str).head(args.texts)
    texts = tweets["text"].tolist()
    rows = []
    policies = ["float32"] + (["bfloat16"] if resolve_precision("auto") == "bfloat16" else [])
    for policy in policies:
        rate = texts_per_second(args.encoder, texts, args.seq_len, args.batch, args.repeats, policy)
        rows.append((f"encoding, {policy}", f"{rate:.0f} texts/s", ""))

    args.out.mkdir(parents=True, exist_ok=True)
    manifest, _ = write_text_manifest(tweets, args.out)
    epochs = {}
    runs = [(f"fine-tuned, {policy}", ["--precision", policy]) for policy in policies]
    runs.append(("frozen, float32", ["--freeze-text-encoder"]))  # the head alone: a softmax layer on 384 numbers
    for mode, flags in runs:
        name = f"speed-{mode.replace(', ', '-')}"
        TER.main(
            [
                "--manifest",
                str(manifest),
                "--text-encoder",
                args.encoder,
                *flags,
                "--epoch",
                str(args.epoch),
                "--seq-len",
                str(args.seq_len),
                "--run-name",
                name,
                "--cache-dir",
                str(args.out / "features"),
                "--checkpoint-dir",
                str(args.out / "ckpt"),
                "--log-dir",
                str(args.out / "tb"),
                "--prob-dir",
                str(args.out / "probs"),
            ]
        )
        keras.backend.clear_session()
        metrics = json.loads((args.out / "ckpt" / name / "TER.metrics.json").read_text())
        epochs[mode] = metrics["seconds_per_epoch"]
        rows.append((f"TER epoch, {mode}", f"{epochs[mode]:.2f} s", f"{metrics['training_labels']} training texts"))
    for policy in policies:
        rows.append(
            (
                f"fine-tuned epoch, {policy} / frozen head's epoch",
                f"{epochs[f'fine-tuned, {policy}'] / epochs['frozen, float32']:.0f}x",
                "",
            )
        )
    if len(policies) > 1:
        rows.append(
            (
                "fine-tuned epoch, float32 / bfloat16",
                f"{epochs['fine-tuned, float32'] / epochs['fine-tuned, bfloat16']:.2f}x",
                "",
            )
        )
    table = "\n".join(["| measure | value | note |", "|---|---:|---|", *(f"| {a} | {b} | {c} |" for a, b, c in rows)])
    report = f"{args.encoder}, {len(texts)} texts, {args.seq_len} tokens, batch {args.batch}\n\n{table}"
    (args.out / "text_encoder_speed.md").write_text(report + "\n")
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
