"""Late (score-level) fusion, the paper's fourth phase, and the results report.

    python Late_fusion.py

Arguments -> the three phases' probability files of one run -> the simple baselines on the run's training rows
and, for a CLIP-style backbone, the zero-label rows -> the paper's weight grid and a stacker, chosen on validation
-> every method scored on test with bootstrap intervals -> late_prob.csv, the metrics, results/summary.md and .json,
confusion matrices, and with --explain N the explained examples (docs/phases.md lists every output).
"""

from __future__ import annotations

import json
import logging
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from emorec import fusion
from emorec.cli import at_least, open_unit_fraction, phase_parser, run, run_folders, setup_logging
from emorec.errors import InputError
from emorec.fusion import MEMBERS, METHOD_NAMES
from emorec.probability_files import read_probability_files
from emorec.runs import (
    PhaseOutputs,
    members_manifest,
    phase_output_fix,
    read_run_config,
    require_files,
    writable_outputs,
)
from emorec.zero_shot import DEFAULT_PROMPTS, zero_shot_rows

log = logging.getLogger("emorec")
PHASE = "Late_fusion"
PROB_FILE = "late_prob.csv"
GRID_STEP = 0.1  # the paper's grid
GRID_STEP_WITH_BASELINES = 0.2


def parse_args(argv: Sequence[str] | None = None):
    """Parse the command line: the shared data and output flags plus the weight grid and the results folder."""
    parser = phase_parser(
        PHASE,
        "Fuse the three phases' class probabilities with weights chosen on the validation "
        "split, and write the results report with the simple baselines beside them.",
        training=None,
    )
    group = parser.add_argument_group("late fusion")
    group.add_argument(
        "--grid-step",
        type=open_unit_fraction,
        default=None,
        help="weights per member run over step, 2*step, ... < 1, then are normalised to sum to 1 "
        f"(from 0.5 on, one candidate: equal weights); default {GRID_STEP} for the paper's three "
        f"members, {GRID_STEP_WITH_BASELINES} with --with-baselines (six members: 4^6 candidates "
        "rather than 9^6)",
    )
    group.add_argument(
        "--with-baselines",
        action="store_true",
        help="also fuse the three members together with the three baselines (weight search and "
        "stacker over six members), reported beside the paper's fusion of three; late_prob.csv and "
        "the weights predict.py uses stay the paper's three members'",
    )
    group.add_argument("--results-dir", default="results", help="where the summary table and figures go")
    zero = parser.add_argument_group("zero-label baseline")
    zero.add_argument(
        "--zero-shot",
        default="auto",
        metavar="PRESET",
        help="a CLIP-style KerasHub preset (image and text towers: CLIP, SigLIP) whose towers score each test post "
        "against one prompt per class with no label at all, in every report: image, text and both (auto: IER's "
        "--backbone when it is one; none: no such rows; docs/image_encoders.md)",
    )
    zero.add_argument(
        "--prompts",
        default=None,
        metavar="PATH",
        help="the class prompts of --zero-shot: a JSON object of class name -> prompt or list of "
        "prompts (default: emorec/zero_shot_prompts.json, with the TIER emotions and B-T4SA's "
        "sentiments; copy and edit it)",
    )
    _add_robustness_flag(group)
    group.add_argument(
        "--explain",
        type=at_least(0),
        default=0,
        metavar="N",
        help="also explain N test examples of the late fusion (per class, the most confident right "
        "and the most confident wrong prediction, then the next ones): a picture and JSON each in "
        "<results-dir>/explanations/ and the pictures in TensorBoard's Images tab (loads the "
        "three saved models; see predict.py --explain)",
    )
    return parser.parse_args(argv)


def _add_robustness_flag(group) -> None:
    group.add_argument(
        "--no-robustness",
        dest="robustness",
        action="store_false",
        help="leave out the robustness table, which scores the test posts again with the image or the text "
        "removed or damaged (image noise, JPEG quality 10, blur; words dropped or misspelt: the three models "
        "run again, the damaged images' features stored in IER's feature store; docs/robustness.md)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Fuse, report and write the late-fusion outputs; returns 0."""
    args = parse_args(argv)
    setup_logging()
    phases, recorded = _member_runs(args)
    manifest = members_manifest(recorded, args.manifest)
    outputs = writable_outputs(
        run_folders(args), PHASE, **{"--results-dir": args.results_dir}
    )  # all writable, before any work
    import numpy as np

    from emorec.baselines import baseline_record, phase_weighting, run_baselines
    from emorec.explain.examples import explain_examples
    from emorec.extraction import phase_features
    from emorec.fileio import write_json_atomic
    from emorec.report import Report, absent_class_notes, fusion_notes, log_results_to_tensorboard
    from emorec.runs import RunRecord, write_run_config

    # Data: the manifest and split as they are now, which every member must have used; their probabilities.
    dataset = _members_dataset(recorded)
    record = RunRecord(data=dataset.fingerprint, split_leakage=dataset.split_leakage, manifest=manifest)
    paths = {member: phases[member].prob_dir / file for member, file in MEMBERS.items()}
    rows, class_names, probabilities = read_probability_files(paths)
    labels, splits = rows["label"].to_numpy(), rows["split"].to_numpy()
    if not (splits == "val").any():
        raise InputError(f"{paths['TER']} has no validation rows: the weights are chosen on the val split")
    # IER's stored image features (never computed here), for the baselines and the zero-label rows.
    image_features = phase_features(dataset, json.loads(phases["IER"].metrics_json.read_text()), recorded["IER"])
    # The zero-label baseline: a CLIP-style model's towers against the class prompts, on the test rows (before any
    # output is written: a bad prompts file or preset stops the run with nothing changed).
    prompts = args.prompts or DEFAULT_PROMPTS
    zero_shot, zero_shot_record = zero_shot_rows(args.zero_shot, prompts, dataset, image_features, recorded["IER"])
    outputs.claim()  # the inputs are sound: from here on this process writes the run's fusion, and no other one

    # The simple baselines, on the run's own training rows, scored like the members.
    weighting = phase_weighting(recorded)
    train = _training_rows(dataset, rows, recorded["TER"])
    image = (image_features.features, image_features.ok)
    baselines = run_baselines(dataset.frame, train, len(class_names), image, weighting, recorded["TER"].flags["seed"])

    # The paper's weight grid, searched on validation only, and the stacker; again with the baselines as members.
    paper, extended, methods = _fuse_methods(args, probabilities, labels, splits == "val", baselines, zero_shot)
    # The saved models again: the one-sided weights (with --modality-dropout) and the robustness table need them.
    image_store = (image_features, recorded["IER"].flags.get("cache_key", "stat"), paper["stacker_model"])
    run, one_sided = _one_sided(args, outputs, dataset, recorded, paper, image_store, methods, probabilities)
    tweets = dataset.frame["group"].to_numpy()
    scores = fusion.score_methods(methods, labels, splits, tweets, len(class_names), args.seed)
    fewer = {split: fusion.rows_fused_from_fewer(probabilities, splits == split) for split in ("train", "val", "test")}
    fusion.warn_fewer(fewer, probabilities, rows["id"])

    # Outputs: the fused and the baselines' probabilities, the metrics with the chosen weights, the configuration.
    prob_files = _write_probability_files(outputs.prob_dir, rows, class_names, methods)
    choices = {  # what both metrics.json and summary.json record
        "class_names": class_names,
        "weights": paper["weights"],
        **({"weights_with_baselines": extended["weights"]} if extended else {}),
        **({"one_sided_weights": one_sided} if one_sided else {}),
        "baselines": baseline_record(baselines, weighting, prob_files),
        "zero_shot": zero_shot_record,
        "rows_fused_from_fewer_members": fewer,
    }
    search = _search_record(paths, paper, extended)
    write_json_atomic(outputs.metrics_json, {**search, **choices, "methods": scores["methods"]})
    write_run_config(outputs, vars(args), argv, record)

    # The results report: tables, confusion matrices and examples, and the same in TensorBoard.
    # The labels the run learnt from: the weights, the stacker (and every best epoch) add val's to training's.
    used = {"training": int(train.sum()), "validation": int((splits == "val").sum())}
    facts = {"data": dataset.fingerprint, "split_leakage": dataset.split_leakage, **choices, "labels_used": used}
    facts["absent_classes"] = dataset.absent_classes
    notes = fusion_notes(paper["weights"], baselines, weighting, zero_shot_record, extended.get("weights"), fewer)
    notes += absent_class_notes(dataset.absent_classes, len(class_names))
    if args.robustness:  # the three saved models on the test posts with a side removed or damaged
        facts["robustness"], table = _robustness(run, dataset, image_store, methods, args.seed)
        notes += ["", table]
    commands = _phase_commands(recorded, argv)
    report = Report(manifest, rows, tweets, class_names, methods, scores, commands, facts, notes)
    results = Path(args.results_dir) / (args.run_name or "")
    markdown, pictures = report.write(results, METHOD_NAMES)
    if args.explain:
        late, folder = methods["Late_fusion"], results / "explanations"
        eligible = (splits == "test") & ~np.isnan(probabilities).any(axis=(0, 2))
        checkpoints = outputs.args_json.parent
        pictures |= explain_examples(checkpoints, dataset, labels, late, eligible, args.explain, folder)
    log_results_to_tensorboard(outputs.tensorboard, markdown, pictures)
    log.info("wrote %s, %s and %s", prob_files["Late_fusion"], outputs.metrics_json, results / "summary.md")
    print(markdown)
    return 0


def _robustness(run, dataset, image_store: tuple, methods: dict, seed: int) -> tuple[dict, str]:
    """The robustness table of the test posts (:func:`emorec.robustness.measure_robustness`) and its Markdown."""
    import numpy as np

    from emorec.robustness import measure_robustness, posts, robustness_markdown

    members = np.stack([methods[member] for member in MEMBERS])
    table = measure_robustness(posts(run, dataset, "test", members, *image_store, seed), dataset, methods, seed)
    return table, robustness_markdown(table, METHOD_NAMES)


def _one_sided(args, outputs, dataset, recorded: dict, paper: dict, image_store: tuple, methods, probabilities):
    """The run's saved models (:class:`~emorec.predictor.RunModels`; None when neither the one-sided weights nor
    the robustness table needs them) and, when the fusion model learnt with --modality-dropout, the late fusion's
    weights for posts without an image and without a text, chosen on val posts with that side taken away (then
    ``methods``' late fusion of the members' ``probabilities`` takes them)."""
    from emorec.predictor import RunModels, member_weights
    from emorec.robustness import one_sided_members, posts

    one_sided = recorded["Intermediate_fusion"].flags.get("modality_dropout", 0) > 0
    if not (one_sided or args.robustness):
        return None, {}
    late = {"class_names": dataset.class_names, "weights": paper["weights"]}
    run = RunModels.load(outputs.args_json.parent, late=late)
    if not one_sided:
        return run, {}
    val = (dataset.frame["split"] == "val").to_numpy()
    members = one_sided_members(posts(run, dataset, "val", probabilities, *image_store[:2], None, args.seed))
    late["one_sided_weights"] = fusion.one_sided_weights(members, dataset.frame["label"].to_numpy()[val])
    run.weights = member_weights(late)
    methods["Late_fusion"] = fusion.fuse_by_sides(run.weights, probabilities)
    return run, late["one_sided_weights"]


def _member_runs(args) -> tuple[dict, dict]:
    """The three members' outputs in this run (:class:`PhaseOutputs`) and their recorded ``.args.json``
    (:class:`~emorec.runs.RunConfig`); a missing file stops with the command that makes it."""
    folders = run_folders(args)
    phases = {member: PhaseOutputs.of(folders, member) for member in MEMBERS}
    needed = {phases[member].prob_dir / file: phase_output_fix(member, folders) for member, file in MEMBERS.items()}
    needed |= {files.args_json: phase_output_fix(member, folders) for member, files in phases.items()}
    needed[phases["IER"].metrics_json] = phase_output_fix("IER", folders)
    if args.prompts:
        needed[args.prompts] = f"pass the JSON file of class prompts, or leave --prompts out ({DEFAULT_PROMPTS.name})"
    require_files(needed)
    return phases, {member: read_run_config(files.args_json) for member, files in phases.items()}


def _fuse_methods(args, probabilities, labels, val, baselines: dict, zero_shot: dict) -> tuple[dict, dict, dict]:
    """The paper's fusion of the three members (:func:`emorec.fusion.search_and_stack`) and, with
    ``--with-baselines``, of the members and
    the ``baselines``; returns both (the second empty without the flag) and every method's probabilities."""
    import numpy as np

    paper = fusion.search_and_stack(list(MEMBERS), probabilities, labels, val, args.grid_step or GRID_STEP, args.seed)
    methods = {
        **{member: probabilities[i] for i, member in enumerate(MEMBERS)},
        **{name: baseline.probabilities for name, baseline in baselines.items()},
        **zero_shot,
        "Average": fusion.fuse(np.full(len(MEMBERS), 1 / len(MEMBERS)), probabilities),
        "Late_fusion": paper["late"],
        "Stacker": paper["stacker"],
    }
    if not args.with_baselines:
        return paper, {}, methods
    members = [*MEMBERS, *baselines]
    everything = np.concatenate([probabilities, np.stack([b.probabilities for b in baselines.values()])])
    extended = fusion.search_and_stack(
        members, everything, labels, val, args.grid_step or GRID_STEP_WITH_BASELINES, args.seed
    )
    methods |= {"Late_fusion_with_baselines": extended["late"], "Stacker_with_baselines": extended["stacker"]}
    return paper, extended, methods


def _members_dataset(recorded: dict):
    """The manifest and split as they are now (:class:`~emorec.data.dataset.Dataset`, drawn by TER's recorded
    flags); refused when a member used other data."""
    from emorec.data.dataset import load_dataset
    from emorec.data.fingerprints import check_same_data

    ter = recorded["TER"].flags
    dataset = load_dataset(ter["manifest"], ter["image_root"], class_names=ter["classes"], draw=False)
    check_same_data(
        dataset.fingerprint,
        {member: (config.path, config.run) for member, config in recorded.items()},
        "TER.py, IER.py and Intermediate_fusion.py",
    )
    return dataset


def _training_rows(dataset, rows, ter):
    """Which of ``dataset``'s rows TER (``ter``: its recorded run) learnt from, which the baselines learn from
    too; ``rows`` (the probability files' ids, splits and labels) must match the dataset's."""
    from emorec.data.fingerprints import read_training_ids

    frame = dataset.frame
    if (
        frame["id"].tolist() != rows["id"].tolist()
        or (frame["split"].to_numpy() != rows["split"].to_numpy()).any()
        or (frame["label"].to_numpy() != rows["label"].to_numpy()).any()
    ):
        raise InputError(
            "the probability files hold other ids, splits or labels than the manifest and split their "
            "phases recorded. Rerun TER.py, IER.py and Intermediate_fusion.py."
        )
    training_ids = read_training_ids(ter.path, ter.run)  # None: the whole train split
    return (frame["split"] == "train").to_numpy() if training_ids is None else frame["id"].isin(training_ids).to_numpy()


def _search_record(paths: dict, paper: dict, extended: dict) -> dict:
    """What metrics.json records of the weight search: the members' files, the grid and the chosen candidate's
    validation scores (``paper``), and the grid with the baselines (``extended``, empty without them)."""
    return {
        "phase": PHASE,
        "members": {m: str(p) for m, p in paths.items()},
        **{key: paper[key] for key in ("grid_step", "candidates", "val_accuracy", "val_macro_f1")},
        **({"grid_step_with_baselines": extended["grid_step"]} if extended else {}),
    }


def _write_probability_files(folder: Path, rows, class_names: list[str], methods: dict) -> dict[str, str]:
    """Write the late fusion's, the baselines' and the zero-label rows' probability files to ``folder``;
    returns {method: path}."""
    from emorec.baselines import BASELINE_PROB_FILES
    from emorec.fileio import write_csv_atomic
    from emorec.metrics import probability_table
    from emorec.zero_shot import ZERO_SHOT_PROB_FILES

    files = {"Late_fusion": PROB_FILE, **BASELINE_PROB_FILES, **ZERO_SHOT_PROB_FILES}
    written = {}
    for method, file in files.items():
        if method in methods:
            write_csv_atomic(probability_table(rows, methods[method], class_names), folder / file)
            written[method] = str(folder / file)
    return written


def _phase_commands(recorded: dict, argv) -> list[str]:
    """The command lines of this run's phases (``recorded``: their ``.args.json``, as read), this one last."""
    arguments = {member: config.argv for member, config in recorded.items()}
    arguments[PHASE] = list(sys.argv[1:] if argv is None else argv)
    return [shlex.join(["python", f"{phase}.py", *line]) for phase, line in arguments.items()]


if __name__ == "__main__":
    sys.exit(run(main))
