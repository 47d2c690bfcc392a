"""Late (score-level) fusion, the paper's fourth phase, and the results report.

    python Late_fusion.py

Arguments -> the three phases' probability files of the same run (joined on
``id``; files that disagree are refused) -> the simple baselines on the run's
own training rows (:mod:`emorec.baselines`: TF-IDF + logistic regression,
a linear probe on IER's cached image features, both together) and, when IER's
backbone (or ``--zero-shot PRESET``) is a CLIP-style model, the zero-label
baseline (:mod:`emorec.zero_shot`: its towers against one prompt per class) -> weight search
(the paper's grid w in {0.1..0.9}^3 normalised to sum to 1, chosen on the
validation split by accuracy, then macro-F1, then the most even weights) and,
beyond the paper, a logistic-regression stacker fitted on validation
probabilities; with ``--with-baselines`` both again over the three members
and the three baselines -> evaluation of every method on test -> outputs:
``data_files/late_prob.csv`` (the paper's fusion of three), the baselines'
``data_files/baseline_{text,image,both}_prob.csv`` (and ``zero_shot_{image,text,both}_prob.csv``),
``model_checkpoints/Late_fusion.metrics.json`` (the chosen weights and C) and
``.args.json``, ``results/summary.md`` and ``summary.json`` (every method's
scores with bootstrap intervals over the test tweets, on its own rows, on the
rows every method scored and per tweet, and the best fusion against the best
single modality), ``results/test_predictions.csv`` (each method's test
predictions) and a confusion-matrix PNG per method, and the same table and
pictures in ``tb_logs/Late_fusion/``. With ``--explain N``, N test tweets'
explanations (:mod:`emorec.explain`; per class the most confident right and
wrong predictions) in ``results/explanations/`` and TensorBoard's Images tab.
Refused (exit 2) when the phases used another manifest or split than the one
stored now.
"""

from __future__ import annotations

import json
import logging
import re
import shlex
import sys
from pathlib import Path
from typing import Sequence

from emorec import fusion
from emorec.cli import at_least, open_unit_fraction, phase_parser, run, setup_logging
from emorec.errors import InputError
from emorec.fusion import MEMBERS, METHOD_NAMES
from emorec.runs import PhaseOutputs, phase_output_fix, read_run_config, require_files, writable_outputs
from emorec.zero_shot import DEFAULT_PROMPTS, zero_shot_rows

log = logging.getLogger("emorec")
PHASE = "Late_fusion"
PROB_FILE = "late_prob.csv"
GRID_STEP = 0.1  # the paper's grid
GRID_STEP_WITH_BASELINES = 0.2


def parse_args(argv: Sequence[str] | None = None):
    """Parse the command line: the shared data and output flags plus the weight grid and the results folder."""
    parser = phase_parser(PHASE, "Fuse the three phases' class probabilities with weights chosen on the validation "
                          "split, and write the results report with the simple baselines beside them.", training=False)
    group = parser.add_argument_group("late fusion")
    group.add_argument("--grid-step", type=open_unit_fraction, default=None,
                        help="weights per member run over step, 2*step, ... < 1, then are normalised to sum to 1 "
                        f"(from 0.5 on, one candidate: equal weights); default {GRID_STEP} for the paper's three "
                        f"members, {GRID_STEP_WITH_BASELINES} with --with-baselines (six members: 4^6 candidates "
                        "rather than 9^6)")
    group.add_argument("--with-baselines", action="store_true",
                        help="also fuse the three members together with the three baselines (weight search and "
                        "stacker over six members), reported beside the paper's fusion of three; late_prob.csv and "
                        "the weights predict.py uses stay the paper's three members'")
    group.add_argument("--results-dir", default="results", help="where the summary table and figures go")
    zero = parser.add_argument_group("zero-label baseline")
    zero.add_argument(
        "--zero-shot", default="auto", metavar="PRESET",
        help="a CLIP-style KerasHub preset (image and text towers: CLIP, SigLIP) whose towers score each test post "
        "against one prompt per class with no label at all, in every report: image, text and both (auto: IER's "
        "--backbone when it is one; none: no such rows; docs/image_encoders.md)")
    zero.add_argument("--prompts", default=None, metavar="PATH",
                      help="the class prompts of --zero-shot: a JSON object of class name -> prompt or list of "
                      "prompts (default: emorec/zero_shot_prompts.json, with the TIER emotions and B-T4SA's "
                      "sentiments; copy and edit it)")
    group.add_argument("--explain", type=at_least(0), default=0, metavar="N",
                        help="also explain N test examples of the late fusion (per class, the most confident right "
                        "and the most confident wrong prediction, then the next ones): a picture and JSON each in "
                        "<results-dir>/explanations/ and the pictures in TensorBoard's Images tab (loads the "
                        "three saved models; see predict.py --explain)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Fuse, report and write the late-fusion outputs; returns 0."""
    args = parse_args(argv)
    setup_logging()
    phases = {member: PhaseOutputs.of(args, member) for member in MEMBERS}
    paths = {member: phases[member].prob_dir / file for member, file in MEMBERS.items()}
    configs = {member: files.args_json for member, files in phases.items()}
    require_files({path: phase_output_fix(member, args) for table in (paths, configs) for member, path in table.items()}
                  | {phases["IER"].metrics_json: phase_output_fix("IER", args)}
                  | ({args.prompts: f"pass the JSON file of class prompts, or leave --prompts out ({DEFAULT_PROMPTS.name})"}
                     if args.prompts else {}))
    recorded = {member: read_run_config(path) for member, path in configs.items()}  # each phase's flags and facts
    manifest = _phases_manifest(recorded, args.manifest)
    outputs = writable_outputs(args, PHASE, **{"--results-dir": args.results_dir})  # all writable, before any work
    import numpy as np

    from emorec.baselines import BASELINE_PROB_FILES
    from emorec.data.dataset import load_dataset
    from emorec.data.fingerprints import check_same_data, read_training_ids
    from emorec.extraction import phase_features
    from emorec.fileio import write_csv_atomic, write_json_atomic, write_text_atomic
    from emorec.report import (log_results_to_tensorboard, probability_table, summary_markdown, test_predictions,
                               write_confusion_png)
    from emorec.runs import RunRecord, write_run_config
    from emorec.zero_shot import ZERO_SHOT_PROB_FILES

    # Data: the manifest and split as they are now, which every member must have used; their probabilities.
    ter = recorded["TER"].flags
    dataset = load_dataset(ter["manifest"], ter["image_root"], class_names=ter["classes"], draw=False)
    frame = dataset.frame
    check_same_data(dataset.fingerprint, {member: (config.path, config.run) for member, config in recorded.items()},
                    "TER.py, IER.py and Intermediate_fusion.py")
    record = RunRecord(data=dataset.fingerprint, split_leakage=dataset.split_leakage, manifest=manifest)
    rows, class_names, probabilities = fusion.read_probability_files(paths)
    labels, splits = rows["label"].to_numpy(), rows["split"].to_numpy()
    val = splits == "val"
    if not val.any():
        raise InputError(f"{paths['TER']} has no validation rows: the weights are chosen on the val split")
    # IER's stored image features (never computed here), for the baselines and the zero-label rows.
    ier_features = phase_features(dataset, json.loads(phases["IER"].metrics_json.read_text()), recorded["IER"])
    # The zero-label baseline: a CLIP-style model's towers against the class prompts, on the test rows (before any
    # output is written: a bad prompts file or preset stops the run with nothing changed).
    zero_shot, zero_shot_record = zero_shot_rows(args.zero_shot, args.prompts or DEFAULT_PROMPTS, dataset,
                                                 ier_features, recorded["IER"])
    outputs.claim()  # the inputs are sound: from here on this process writes the run's fusion, and no other one

    # The simple baselines, on the run's own training rows, scored like the members.
    weighting = _class_weights(recorded)
    training_ids = read_training_ids(configs["TER"], recorded["TER"].run)  # None: the whole train split
    baselines = _fit_baselines(dataset, training_ids, ier_features, rows, weighting, ter["seed"])
    for name, baseline in baselines.items():
        write_csv_atomic(probability_table(rows, baseline.probabilities, class_names), outputs.prob_dir / BASELINE_PROB_FILES[name])
    for name, scores in zero_shot.items():
        write_csv_atomic(probability_table(rows, scores, class_names), outputs.prob_dir / ZERO_SHOT_PROB_FILES[name])

    # The paper's weight grid, searched on validation only, and the stacker; again with the baselines as members.
    paper = _fuse(list(MEMBERS), probabilities, labels, val, args.grid_step or GRID_STEP, args.seed)
    methods = {
        **{member: probabilities[i] for i, member in enumerate(MEMBERS)},
        **{name: baseline.probabilities for name, baseline in baselines.items()}, **zero_shot,
        "Average": fusion.fuse(np.full(len(MEMBERS), 1 / len(MEMBERS)), probabilities),
        "Late_fusion": paper["late"], "Stacker": paper["stacker"],
    }
    if args.with_baselines:
        members = [*MEMBERS, *baselines]
        everything = np.concatenate([probabilities, np.stack([b.probabilities for b in baselines.values()])])
        extended = _fuse(members, everything, labels, val, args.grid_step or GRID_STEP_WITH_BASELINES, args.seed)
        methods |= {"Late_fusion_with_baselines": extended["late"], "Stacker_with_baselines": extended["stacker"]}
    tweets = frame["group"].to_numpy()
    report = fusion.score_methods(methods, labels, splits, tweets, len(class_names), args.seed)
    scores = report["methods"]
    fewer = {split: fusion.rows_fused_from_fewer(probabilities, splits == split) for split in ("train", "val", "test")}
    if any(fewer.values()):
        log.warning("rows fused from fewer than all three members (a member could not score them): %s", fewer)

    # Outputs: the fused probabilities, the metrics with the chosen weights, the run's configuration.
    write_csv_atomic(probability_table(rows, methods["Late_fusion"], class_names), outputs.prob_dir / PROB_FILE)
    weights = paper["weights"]
    baseline_choices = {name: {"C": b.C, "val_macro_f1": b.val_macro_f1, "training_rows": b.training_rows,
                               "class_weight": weighting[name],
                               "prob_file": str(outputs.prob_dir / BASELINE_PROB_FILES[name])}
                        for name, b in baselines.items()}
    metrics = {
        "phase": PHASE, "class_names": class_names, "weights": weights, "members": {m: str(p) for m, p in paths.items()},
        "grid_step": paper["grid_step"], "candidates": paper["candidates"],
        "val_accuracy": paper["val_accuracy"], "val_macro_f1": paper["val_macro_f1"],
        "baselines": baseline_choices, "zero_shot": zero_shot_record,
        **({"weights_with_baselines": extended["weights"], "grid_step_with_baselines": extended["grid_step"]}
           if args.with_baselines else {}),
        "rows_fused_from_fewer_members": fewer, "methods": scores,
    }
    write_json_atomic(outputs.metrics_json, metrics)
    write_run_config(outputs, args, argv, record)

    # The results report: table, confusion matrices, and the same in TensorBoard.
    results = Path(args.results_dir) / (args.run_name or "")
    pictures = {}
    for method, p in methods.items():
        scored = (splits == "test") & ~np.isnan(p).any(axis=1)
        pictures[f"confusion_{method}"] = write_confusion_png(
            results / f"confusion_{method}.png", labels[scored], p[scored].argmax(axis=1), class_names,
            f"{METHOD_NAMES[method]}: test (n={scored.sum()})",
        )
    commands = _phase_commands(recorded, argv)
    notes = ["Late-fusion weights (chosen on val): " + _listed(weights) + ".",
             "Baselines: scikit-learn logistic regression on the run's training rows, C chosen on val and "
             "class weighting as the phase of the same modality: "
             + ", ".join(f"{name.removeprefix('Baseline_')} C {b.C:g} ({weighting[name]})" for name, b in baselines.items())
             + "."]
    if zero_shot_record:
        notes.append(f"Zero labels: {zero_shot_record['preset']}'s towers against one prompt per class "
                     f"({zero_shot_record['prompts']}), on the test rows: "
                     + "; ".join(f"{name} \"{'; '.join(p)}\"" for name, p in zero_shot_record["class_prompts"].items())
                     + ".")
    if args.with_baselines:
        notes.append("Weights with the baselines as members (chosen on val): " + _listed(extended["weights"]) + ".")
    if any(fewer.values()):
        notes.append(f"Rows fused from fewer members (an image IER could not read): {fewer}.")
    split_sizes = {split: int((splits == split).sum()) for split in ("train", "val", "test")}
    markdown = summary_markdown(report, METHOD_NAMES, manifest, split_sizes, commands[-1],
                                notes + ["", "Commands of this run:", "", *[f"    {c}" for c in commands]])
    write_text_atomic(results / "summary.md", markdown)
    write_csv_atomic(test_predictions(rows, tweets, methods, class_names), results / "test_predictions.csv")
    write_json_atomic(results / "summary.json", {
        "dataset": manifest, "data": dataset.fingerprint, "split_leakage": dataset.split_leakage,
        "class_names": class_names, "commands": commands, "weights": weights,
        **({"weights_with_baselines": extended["weights"]} if args.with_baselines else {}),
        "baselines": baseline_choices, "zero_shot": zero_shot_record, "split_sizes": split_sizes,
        # The labels the run learnt from: the weights, the stacker (and every best epoch) add val's to training's.
        "labels_used": {"training": split_sizes["train"] if training_ids is None else len(training_ids),
                        "validation": split_sizes["val"]},
        "rows_fused_from_fewer_members": fewer, "evaluation": report["evaluation"],
        "fusion_vs_single": report["fusion_vs_single"], "methods": scores,
    })
    if args.explain:
        pictures |= _explain_examples(outputs.args_json.parent, dataset, labels, methods["Late_fusion"],
                                      (splits == "test") & ~np.isnan(probabilities).any(axis=(0, 2)),
                                      args.explain, results / "explanations")
    log_results_to_tensorboard(outputs.tensorboard, markdown, pictures)
    log.info("wrote %s, %s and %s", outputs.prob_dir / PROB_FILE, outputs.metrics_json, results / "summary.md")
    print(markdown)
    return 0


def _explain_examples(checkpoints: Path, dataset, labels, late, eligible, count: int, folder: Path) -> dict:
    """Explain ``count`` test rows of ``dataset`` (chosen by :func:`emorec.explain.choose_examples` from the
    ``eligible`` rows by their true ``labels`` and the ``late`` fused probabilities) with the run's saved models
    in ``checkpoints``; write each picture and JSON to ``folder``. Returns {TensorBoard name: picture path}."""
    from emorec.explain.examples import choose_examples
    from emorec.explain.explainer import Explainer
    from emorec.explain.output import explain_file
    from emorec.predictor import RunModels

    chosen = choose_examples(labels, late, eligible, count)
    if len(chosen) < count:
        log.warning("--explain %d: only %d test rows to explain", count, len(chosen))
    explainer = Explainer(RunModels.load(checkpoints))
    for stale in folder.glob("[0-9][0-9]-*"):  # an earlier --explain's examples: not this run's choice
        if re.fullmatch(r"\d\d-(right|wrong)-.+\.(png|json)", stale.name):
            stale.unlink()
    frame, names = dataset.frame, dataset.class_names
    pictures = {}
    for number, (row, kind) in enumerate(chosen, start=1):
        name = f"{number:02d}-{kind}-{names[labels[row]]}-{frame['id'].iloc[row]}"
        _, (png, _) = explain_file(explainer, str(frame["text"].iloc[row]), frame["image_path"].iloc[row],
                                   folder / name, str(frame["id"].iloc[row]), names[labels[row]])
        pictures[f"explanation/{name}"] = png
    log.info("wrote %d explanations to %s", len(chosen), folder)
    return pictures


def _fuse(members: list[str], probabilities, labels, val, step: float, seed: int) -> dict:
    """The weight search on validation and the stacker fitted there, over ``members`` (their probabilities stacked
    as members x rows x classes). Returns the chosen weights, the fused and stacked probabilities of every row,
    the grid and the chosen candidate's validation scores."""
    from emorec.report import class_probabilities

    grid = fusion.weight_grid(len(members), step)
    best, val_accuracy, val_macro_f1 = fusion.choose_weights(grid, probabilities[:, val], labels[val])
    weights = dict(zip(members, map(float, grid[best])))
    log.info("late fusion of %d members: %d weight candidates; chosen on val (accuracy %.3f, macro-F1 %.3f): %s",
             len(members), len(grid), val_accuracy[best], val_macro_f1[best], _listed(weights))
    features = fusion.stacking_features(probabilities)
    stacker = fusion.fit_stacker(features[val], labels[val], seed)
    return {
        "weights": weights, "late": fusion.fuse(grid[best], probabilities),
        "stacker": class_probabilities(stacker, features, probabilities.shape[2]),
        "grid_step": step, "candidates": len(grid),
        "val_accuracy": float(val_accuracy[best]), "val_macro_f1": float(val_macro_f1[best]),
    }


def _fit_baselines(dataset, training_ids, cache, rows, weighting: dict[str, str], seed: int) -> dict:
    """The baselines (:mod:`emorec.baselines`) on this run's data: ``dataset`` (the manifest and split the
    members used), the training rows TER recorded (``training_ids``, None for the whole train split), and IER's
    stored features of its rows (``cache``, :func:`emorec.extraction.phase_features`'); ``rows`` (the probability
    files' ids, splits and labels) must match its rows. ``weighting`` is each baseline's class weighting
    (:func:`_class_weights`)."""
    from emorec.baselines import run_baselines

    frame = dataset.frame
    if (frame["id"].tolist() != rows["id"].tolist() or (frame["split"].to_numpy() != rows["split"].to_numpy()).any()
            or (frame["label"].to_numpy() != rows["label"].to_numpy()).any()):
        raise InputError("the probability files hold other ids, splits or labels than the manifest and split their "
                         "phases recorded. Rerun TER.py, IER.py and Intermediate_fusion.py.")
    train = (frame["split"] == "train").to_numpy() if training_ids is None else frame["id"].isin(training_ids).to_numpy()
    return run_baselines(frame["text"].tolist(), frame["label"].to_numpy(), frame["split"].to_numpy(), train,
                         len(dataset.class_names), cache.features, cache.ok, weighting, seed)


def _class_weights(recorded: dict) -> dict[str, str]:
    """Each baseline's class weighting: the --class-weight of the phase it is compared with, from that phase's
    ``.args.json`` in ``recorded`` ("none" for runs from before the flag)."""
    from emorec.baselines import COMPARED_PHASE

    return {name: recorded[phase].flags.get("class_weight", "none") for name, phase in COMPARED_PHASE.items()}


def _listed(weights: dict) -> str:
    return ", ".join(f"{member} {weight:.3f}" for member, weight in weights.items())


def _phases_manifest(recorded: dict, given: str | None) -> str:
    """The manifest the members' phases read (``recorded``: their ``.args.json``, as
    :class:`~emorec.runs.RunConfig`); ``given``, if any, must be that one.

    Raises :class:`InputError` when the phases read different manifests, or
    ``given`` is missing or another file, saying which phases to rerun.
    """
    used = {member: config.flags["manifest"] for member, config in recorded.items()}
    if len({Path(manifest).resolve() for manifest in used.values()}) > 1:
        raise InputError("the phases of this run read different manifests: "
                         + ", ".join(f"{member} {manifest}" for member, manifest in used.items())
                         + ". Rerun them with one --manifest (TER.py, IER.py, then Intermediate_fusion.py).")
    manifest = used["TER"]
    if given is not None:
        if not Path(given).is_file():
            raise InputError(f"--manifest {given}: no such file. Leave --manifest out to use the phases' own ({manifest}).")
        if Path(given).resolve() != Path(manifest).resolve():
            raise InputError(
                f"--manifest {given} is not the manifest the phases of this run read ({manifest}, recorded in "
                f"{recorded['TER'].path}). Leave --manifest out, or rerun TER.py, IER.py and Intermediate_fusion.py "
                f"with --manifest {given} first."
            )
    return manifest


def _phase_commands(recorded: dict, argv) -> list[str]:
    """The command lines of this run's phases (``recorded``: their ``.args.json``, as read), this one last."""
    arguments = {member: config.argv for member, config in recorded.items()}
    arguments[PHASE] = list(sys.argv[1:] if argv is None else argv)
    return [shlex.join(["python", f"{phase}.py", *line]) for phase, line in arguments.items()]


if __name__ == "__main__":
    sys.exit(run(main))
