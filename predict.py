"""Apply a trained system to new tweets: each model's class probabilities and the late-fused prediction.

    python predict.py --image photo.jpg --text "what a day"
    python predict.py --csv tweets.csv --out predictions.csv     # columns text,image
    python predict.py --image photo.jpg --text "..." --json
    python predict.py --image photo.jpg --text "..." --explain   # explanations/photo.png and .json
    python predict.py --csv tweets.csv --explain-dir explained/  # one picture and JSON per row
    python predict.py --serve                                    # a web page on http://127.0.0.1:8000

Uses only the saved models of a run (``TER.keras``, ``IER.keras``,
``Intermediate_fusion.keras``) and the weights in ``Late_fusion.metrics.json``;
their ``.args.json`` must record one manifest and one split (else exit 2).
A tweet may come with its text alone or its image alone (``--text`` or
``--image`` alone, an empty cell in ``--csv``): the models that can score it
do (TER the text, IER the image, the fusion model only both), and the fused
weights are renormalised over them, as in Late_fusion.py; so is a row whose
image cannot be read. Each output says which models it used.
``--explain`` adds why (:mod:`emorec.explain`): each modality's part, each
word's importance (occlusion) and each image model's heat map (Grad-CAM; occlusion of image cells for a
KerasHub backbone, such as a ViT).
``--serve`` runs the page of :mod:`emorec.serve.app` (``pip install -r Requirements-serve.txt``).
"""

from __future__ import annotations

import json
import logging
import math
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from emorec.cli import ArgumentParser, HelpFormatter, positive_int, run, setup_logging
from emorec.errors import InputError, list_some
from emorec.fusion import MEMBERS
from emorec.storage import require_writable

log = logging.getLogger("emorec")
EXPLAIN_DIR = "explanations"


def build_parser() -> ArgumentParser:
    """predict.py's command line: one tweet (--image, --text), a CSV of them (--csv), or --serve."""
    parser = ArgumentParser(
        prog="python predict.py",
        formatter_class=HelpFormatter,
        description="Predict the emotion of tweets (text and image) with a trained run's models and late-fusion "
        "weights; explain the predictions; or serve a web page that does both.",
    )
    one = parser.add_argument_group("one tweet")
    one.add_argument("--image", help="the tweet's image file (alone: IER's prediction)")
    one.add_argument("--text", help="the tweet's text (alone: TER's prediction)")
    many = parser.add_argument_group("many tweets")
    many.add_argument("--csv", help="CSV with columns text,image (other columns are kept in the output)")
    many.add_argument("--image-root", help="folder the CSV's image paths are relative to (default: the CSV's folder)")
    many.add_argument("--out", help="output CSV (default: <csv stem>.predictions.csv beside the input)")
    many.add_argument("--batch-size", type=positive_int, default=64, help="tweets per model batch")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON instead of a table")
    explain = parser.add_argument_group("explanations")
    explain.add_argument(
        "--explain",
        action="store_true",
        help="also explain each prediction: the fused prediction with the text alone, the image "
        "alone and both; word importance (occlusion) for TER and the fusion model; heat maps "
        "(Grad-CAM, or occlusion for a KerasHub backbone) for IER and the fusion model; "
        "written as <explain-dir>/<image stem>.png and .json (for --csv, <row number>-<image stem>)",
    )
    explain.add_argument(
        "--explain-dir", default=None, help=f"where the explanations go (implies --explain; default {EXPLAIN_DIR}/)"
    )
    serve = parser.add_argument_group("web page")
    serve.add_argument(
        "--serve",
        action="store_true",
        help="serve a page to upload an image, type a text and see each model's probabilities "
        "and the explanation (needs `pip install -r Requirements-serve.txt`); stop with Ctrl-C",
    )
    serve.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on; 127.0.0.1 is this machine only, 0.0.0.0 every network (the page "
        "has no login: only on a network you trust)",
    )
    serve.add_argument("--port", type=int, default=8000, help="port to listen on (0: any free one, logged)")
    serve.add_argument("--max-upload-mb", type=float, default=10.0, help="largest upload the page accepts, in MB")
    run_group = parser.add_argument_group("trained run")
    run_group.add_argument("--checkpoint-dir", default="model_checkpoints", help="where the phases saved their models")
    run_group.add_argument("--run-name", default=None, help="the run's name, if the phases were given --run-name")
    return parser


def parse_args(argv: Sequence[str] | None = None):
    """Parse predict.py's command line (:func:`build_parser`), checked; --explain-dir implies --explain."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.explain = args.explain or args.explain_dir is not None
    args.explain_dir = Path(args.explain_dir or EXPLAIN_DIR)
    if args.serve:
        if args.csv is not None or args.image is not None or args.text is not None or args.explain:
            parser.error("--serve takes no --image, --text, --csv or --explain: the page asks for them")
        if not 0 <= args.port <= 65535:
            parser.error(f"--port {args.port}: give 0 to 65535")
        if not args.max_upload_mb > 0:
            parser.error("--max-upload-mb must be above 0")
        return args
    if args.csv is None and args.image is None and args.text is None:
        parser.error(
            "give --image and --text for one tweet (or either alone), --csv FILE for many, or --serve for the page"
        )
    if args.csv is not None and (args.image is not None or args.text is not None):
        parser.error("--csv cannot be combined with --image/--text")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Predict and print (or write) the probabilities, and the explanations when asked; or serve the page.
    Returns 0."""
    args = parse_args(argv)
    setup_logging()
    checkpoints = Path(args.checkpoint_dir) / (args.run_name or "")
    if args.serve:
        from emorec.serve.app import serve

        return serve(Path(args.checkpoint_dir), args.run_name, args.host, args.port, args.max_upload_mb)
    from emorec.predictor import RunModels, require_inputs, require_run

    if not args.csv:
        require_inputs([args.text or ""], [args.image or ""], "--text/--image")  # before anything is loaded
    require_run(checkpoints)
    out = (Path(args.out) if args.out else Path(args.csv).with_suffix(".predictions.csv")) if args.csv else None
    writable = ({"--out": out.parent} if out is not None else {}) | (
        {"--explain-dir": args.explain_dir} if args.explain else {}
    )
    if writable:
        require_writable(writable)  # before loading any model
    import pandas as pd

    from emorec.data.manifest import resolve_image_paths
    from emorec.fileio import record_lines

    lines = None  # the editor line each CSV row starts on, to name rows by
    if args.csv:
        table, lines = _read_tweets(Path(args.csv)), record_lines(args.csv)
        require_inputs(table["text"].tolist(), table["image"].tolist(), f"--csv {args.csv}", lines)
        root = Path(args.image_root) if args.image_root else Path(args.csv).parent
        paths, exists = resolve_image_paths(table["image"].astype(str), root)
        given = table["image"].astype(str) != ""
        paths[~given] = ""  # no image: the text's models alone
        if not exists[given].all():
            log.warning(
                "%d image file(s) not found; those rows are scored by the text's models alone:\n%s",
                (given & ~exists).sum(),
                list_some(table["image"][given & ~exists].tolist()),
            )
    else:
        if args.image is not None and not Path(args.image).is_file():
            raise InputError(f"--image {args.image}: no such file")
        table = pd.DataFrame({"text": [args.text or ""], "image": [args.image or ""]})
        paths = pd.Series([str(Path(args.image).resolve()) if args.image else ""])

    models = RunModels.load(checkpoints)  # one manifest, one split, or exit 2
    fused = models.predict(table["text"].tolist(), paths.tolist(), args.batch_size)
    if not args.csv and args.image is not None and not fused["image_ok"][0]:
        raise InputError(f"--image {args.image}: cannot read it as an image")
    output = _output_table(table, fused)
    explained = (
        _explain_rows(models, table, paths, fused["image_ok"], args.explain_dir, lines, not args.json)
        if args.explain
        else []
    )
    if args.csv:
        from emorec.fileio import write_csv_atomic

        write_csv_atomic(output, out)
        log.info("wrote %d predictions to %s", len(output), out)
    if args.json:
        rows = _json_rows(table, fused)
        for number, data, _, _ in explained:
            rows[number]["explanation"] = data
        print(json.dumps({"class_names": fused["class_names"], "rows": rows}, indent=2))
    elif not args.csv:
        print(_pretty(fused))
        if explained:
            _, _, written, summary = explained[0]
            print("\n".join([*summary, f"explanation: {written[0]} and {written[1]}"]))
    return 0


def _explain_rows(models, table, paths, image_ok, folder: Path, lines: list[int] | None, progress: bool) -> list:
    """Explain every row with a text and a readable image (the others are logged, by their CSV ``lines``, and
    left out: a modality's part is not defined without the other) into ``folder``, the files named by row number
    too for a CSV (``lines`` not None); a progress bar on stdout when ``progress``. Returns, per explained row,
    (row number, the explanation's JSON data, (png, json) paths, its summary lines)."""
    import keras

    from emorec.explain.explainer import Explainer
    from emorec.explain.output import explain_file, summary_lines, to_json
    from emorec.predictor import has_text

    explainer = Explainer(models)
    both = [bool(image_ok[i]) and has_text(table["text"].iloc[i]) for i in range(len(table))]
    numbered = lines is not None
    skipped = [
        (f"line {lines[i]}: " if numbered else "") + (table["image"].iloc[i] or "(no image)")
        for i in range(len(table))
        if not both[i]
    ]
    if skipped:
        log.warning(
            "%d tweet(s) without a text or a readable image are not explained: the modalities' parts, and the "
            "missing modality's words or heat map, are not defined for one modality:\n%s",
            len(skipped),
            list_some(skipped),
        )
    rows = [i for i in range(len(table)) if both[i]]
    bar = keras.utils.Progbar(len(rows), unit_name="explanation", verbose=1 if progress and len(rows) > 1 else 0)
    explained = []
    for i in rows:
        image = str(table["image"].iloc[i])
        stem = _safe_stem(Path(image).stem)
        explanation, written = explain_file(
            explainer,
            str(table["text"].iloc[i]),
            paths.iloc[i],
            folder / (f"{i:05d}-{stem}" if numbered else stem),
            image,
        )
        explained.append((i, to_json(explanation), written, summary_lines(explanation)))  # not the pixels: many rows
        bar.add(1)
    if numbered:
        log.info("wrote %d explanations (PNG and JSON) to %s", len(explained), folder)
    return explained


def _safe_stem(stem: str) -> str:
    """A file-name-safe form of an image's stem (letters, digits, ``-_.`` kept)."""
    return re.sub(r"[^\w.-]+", "_", stem)[:80] or "image"


def _read_tweets(path: Path):
    """The tweets of ``--csv`` (columns text,image, any others kept), or :class:`InputError` naming the file."""
    from emorec.fileio import read_csv_table

    if not path.is_file():
        raise InputError(f"--csv {path}: no such file")
    table = read_csv_table(path, "--csv file", lowercase=False)
    missing = [column for column in ("text", "image") if column not in table.columns]
    if missing:
        raise InputError(
            f"{path}: needs the columns text,image; missing {', '.join(missing)} (has {list(table.columns)})"
        )
    return table


def _output_table(table, fused: dict):
    """The input columns, then image_ok, text_cut, each model's probabilities (<model>_<class>) and the
    prediction."""
    output = table.copy()
    output["image_ok"] = fused["image_ok"]
    output["text_cut"] = fused["text_cut"]
    output["models_used"] = fused["models_used"]
    for phase in (*MEMBERS, "Late_fusion"):
        for column, name in enumerate(fused["class_names"]):
            output[f"{phase}_{name}"] = fused[phase][:, column]
    output["prediction"] = [fused["class_names"][i] for i in fused["Late_fusion"].argmax(axis=1)]
    return output


def _json_rows(table, fused: dict) -> list[dict]:
    names = fused["class_names"]
    rows = []
    for i, (text, image) in enumerate(zip(table["text"], table["image"])):
        row = {
            "text": text,
            "image": image,
            "image_ok": bool(fused["image_ok"][i]),
            "text_cut": bool(fused["text_cut"][i]),
            "models_used": fused["models_used"][i].split("+"),
        }
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
        scored = not any(map(math.isnan, fused[phase][0]))
        lines.append(f"{phase:<22}" + "".join(f"{p:9.3f}" if scored else f"{'-':>9}" for p in fused[phase][0]))
    lines.append(f"prediction: {names[int(fused['Late_fusion'][0].argmax())]} (from {fused['models_used'][0]})")
    if fused["text_cut"][0]:
        lines.append("text_cut: the text is longer than the text models read (--seq-len); only its first tokens count")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(run(main))
