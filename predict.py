"""Apply a trained system to new tweets: each model's class probabilities and the late-fused prediction.

    python predict.py --image photo.jpg --text "what a day"
    python predict.py --csv tweets.csv --out predictions.csv     # columns text,image
    python predict.py --image photo.jpg --text "..." --json

Uses only the saved models of a run (``TER.keras``, ``IER.keras``,
``Intermediate_fusion.keras``) and the weights in ``Late_fusion.metrics.json``;
their ``.args.json`` must record one manifest and one split (else exit 2).
A row whose image cannot be read is scored by TER alone (the fused weights are
renormalised over the members that scored it, as in Late_fusion.py).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from pathlib import Path
from typing import Sequence

from emorec.cli import HelpFormatter, positive_int, require_files, run, setup_logging
from emorec.errors import InputError, list_some
from emorec.fusion import MEMBERS
from emorec.storage import require_writable

log = logging.getLogger("emorec")


def parse_args(argv: Sequence[str] | None = None):
    """Parse predict.py's command line: one tweet (--image, --text) or a CSV of them (--csv)."""
    parser = argparse.ArgumentParser(
        prog="python predict.py", formatter_class=HelpFormatter,
        description="Predict the emotion of tweets (text and image) with a trained run's models and late-fusion weights.",
    )
    one = parser.add_argument_group("one tweet")
    one.add_argument("--image", help="the tweet's image file")
    one.add_argument("--text", help="the tweet's text")
    many = parser.add_argument_group("many tweets")
    many.add_argument("--csv", help="CSV with columns text,image (other columns are kept in the output)")
    many.add_argument("--image-root", help="folder the CSV's image paths are relative to (default: the CSV's folder)")
    many.add_argument("--out", help="output CSV (default: <csv stem>.predictions.csv beside the input)")
    many.add_argument("--batch-size", type=positive_int, default=64, help="tweets per model batch")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON instead of a table")
    run_group = parser.add_argument_group("trained run")
    run_group.add_argument("--checkpoint-dir", default="model_checkpoints", help="where the phases saved their models")
    run_group.add_argument("--run-name", default=None, help="the run's name, if the phases were given --run-name")
    args = parser.parse_args(argv)
    if args.csv is None and (args.image is None or args.text is None):
        parser.error("give --image and --text for one tweet, or --csv FILE for many")
    if args.csv is not None and (args.image is not None or args.text is not None):
        parser.error("--csv cannot be combined with --image/--text")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Predict and print (or write) the probabilities; returns 0."""
    args = parse_args(argv)
    setup_logging()
    checkpoints = Path(args.checkpoint_dir) / (args.run_name or "")
    needed = {checkpoints / f"{phase}.keras": phase for phase in MEMBERS}
    needed |= {checkpoints / f"{phase}.args.json": phase for phase in (*MEMBERS, "Late_fusion")}
    needed[checkpoints / "Late_fusion.metrics.json"] = "Late_fusion"
    require_files({path: f"written by `python {phase}.py`: run the phases (TER, IER, Intermediate_fusion, "
                         "Late_fusion) first, or point --checkpoint-dir/--run-name at their run." for path, phase in needed.items()})
    out = (Path(args.out) if args.out else Path(args.csv).with_suffix(".predictions.csv")) if args.csv else None
    if out is not None:
        require_writable({"--out": out.parent})  # before loading any model
    import pandas as pd

    from emorec.data import check_same_data, resolve_image_paths

    # The models and the fusion weights must come from one run: one manifest, one split.
    configs = {phase: checkpoints / f"{phase}.args.json" for phase in (*MEMBERS, "Late_fusion")}
    recorded = {phase: (path, json.loads(path.read_text())) for phase, path in configs.items()}
    late = recorded.pop("Late_fusion")[1]
    if "data" not in late:
        raise InputError(f"{configs['Late_fusion']} recorded no data fingerprint (a run from an older version): "
                         "rerun Late_fusion.py")
    check_same_data(late["data"], recorded, "TER.py, IER.py, Intermediate_fusion.py and Late_fusion.py")

    if args.csv:
        table = _read_tweets(Path(args.csv))
        root = Path(args.image_root) if args.image_root else Path(args.csv).parent
        paths, exists = resolve_image_paths(table["image"].astype(str), root)
        if not exists.all():
            log.warning("%d image file(s) not found; those rows are scored by TER alone:\n%s",
                        (~exists).sum(), list_some(table["image"][~exists].tolist()))
    else:
        if not Path(args.image).is_file():
            raise InputError(f"--image {args.image}: no such file")
        table = pd.DataFrame({"text": [args.text], "image": [args.image]})
        paths = pd.Series([str(Path(args.image).resolve())])

    fused = predict(checkpoints, table["text"].tolist(), paths.tolist(), args.batch_size)
    if not args.csv and not fused["image_ok"][0]:
        raise InputError(f"--image {args.image}: cannot read it as an image")
    output = _output_table(table, fused)
    if args.csv:
        from emorec.fileio import write_csv_atomic

        write_csv_atomic(output, out)
        log.info("wrote %d predictions to %s", len(output), out)
    if args.json:
        print(json.dumps({"class_names": fused["class_names"], "rows": _json_rows(table, fused)}, indent=2))
    elif not args.csv:
        print(_pretty(fused))
    return 0


def predict(checkpoints: Path, texts: list[str], image_paths: list[str], batch_size: int = 64) -> dict:
    """Score tweets with a run's three models and fuse them with its late-fusion weights.

    Returns ``{"class_names", "image_ok" (n,), <member> (n, classes) for each
    of TER, IER and Intermediate_fusion (NaN where the image is unreadable),
    "Late_fusion" (n, classes)}``.
    """
    import keras
    import numpy as np
    import tensorflow as tf

    import emorec.models  # noqa: F401  (registers the custom objects the saved models hold)
    from emorec.fusion import fuse
    from emorec.images import image_batches

    late = json.loads((checkpoints / "Late_fusion.metrics.json").read_text())
    models = {phase: keras.models.load_model(checkpoints / f"{phase}.keras") for phase in MEMBERS}
    image_size = models["IER"].input_shape[1]
    # The backbone runs once per image: IER's and the fusion model's frozen extractors are one (the fusion phase
    # takes IER's), so IER's features feed both heads.
    extractors = [next(layer for layer in models[phase].layers if layer.name.endswith("_extractor"))
                  for phase in ("IER", "Intermediate_fusion")]
    shared = all(np.array_equal(a, b) for a, b in zip(extractors[0].get_weights(), extractors[1].get_weights()))
    ier_head = models["IER"].get_layer("ier_head")
    vectorizer = models["Intermediate_fusion"].get_layer("text_vectorization")
    fusion_network = models["Intermediate_fusion"].get_layer("fusion_network")
    scores = {phase: [] for phase in MEMBERS}
    image_ok = []
    bar = keras.utils.Progbar(len(texts), unit_name="tweet", verbose=1 if len(texts) > batch_size else 0)
    for index, (pixels, ok) in enumerate(image_batches(image_paths, image_size, batch_size)):
        text = tf.constant(texts[index * batch_size : index * batch_size + len(ok)])
        ok = ok.numpy()
        image_ok.append(ok)
        scores["TER"].append(models["TER"].predict_on_batch(text))
        features = extractors[0].predict_on_batch(pixels)
        fusion_features = features if shared else extractors[1].predict_on_batch(pixels)
        for phase, network, inputs in (
                ("IER", ier_head, features),
                ("Intermediate_fusion", fusion_network, {"token_ids": vectorizer(text), "image_features": fusion_features})):
            probabilities = np.asarray(network.predict_on_batch(inputs), dtype=np.float64)
            probabilities[~ok] = np.nan
            scores[phase].append(probabilities)
        bar.add(len(ok))
    members = {phase: np.concatenate(parts).astype(np.float64) for phase, parts in scores.items()}
    weights = np.array([late["weights"][phase] for phase in MEMBERS])
    return {
        "class_names": late["class_names"], "image_ok": np.concatenate(image_ok), **members,
        "Late_fusion": fuse(weights, np.stack([members[phase] for phase in MEMBERS])),
    }


def _read_tweets(path: Path):
    """The tweets of ``--csv`` (columns text,image, any others kept), or :class:`InputError` naming the file."""
    from emorec.fileio import read_csv_table

    if not path.is_file():
        raise InputError(f"--csv {path}: no such file")
    table = read_csv_table(path, "--csv file", lowercase=False)
    missing = [column for column in ("text", "image") if column not in table.columns]
    if missing:
        raise InputError(f"{path}: needs the columns text,image; missing {', '.join(missing)} (has {list(table.columns)})")
    return table


def _output_table(table, fused: dict):
    """The input columns, then image_ok, each model's probabilities (<model>_<class>) and the prediction."""
    output = table.copy()
    output["image_ok"] = fused["image_ok"]
    for phase in (*MEMBERS, "Late_fusion"):
        for column, name in enumerate(fused["class_names"]):
            output[f"{phase}_{name}"] = fused[phase][:, column]
    output["prediction"] = [fused["class_names"][i] for i in fused["Late_fusion"].argmax(axis=1)]
    return output


def _json_rows(table, fused: dict) -> list[dict]:
    names = fused["class_names"]
    rows = []
    for i, (text, image) in enumerate(zip(table["text"], table["image"])):
        row = {"text": text, "image": image, "image_ok": bool(fused["image_ok"][i])}
        for phase in (*MEMBERS, "Late_fusion"):
            scored = not any(map(math.isnan, fused[phase][i]))
            row[phase] = dict(zip(names, map(float, fused[phase][i]))) if scored else None
        row["prediction"] = names[int(fused["Late_fusion"][i].argmax())]
        rows.append(row)
    return rows


def _pretty(fused: dict) -> str:
    names = fused["class_names"]
    lines = [f"{'model':<22}" + "".join(f"{name:>9}" for name in names)]
    for phase in (*MEMBERS, "Late_fusion"):
        lines.append(f"{phase:<22}" + "".join(f"{p:9.3f}" for p in fused[phase][0]))
    lines.append(f"prediction: {names[int(fused['Late_fusion'][0].argmax())]}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(run(main))
