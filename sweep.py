"""The label-efficiency study: the four phases for every (label fraction, seed), then the curve.

    python sweep.py --fractions 0.05 0.1 0.25 0.5 1.0 --seeds 0 1 2 --epoch 20

Every setting is its own named run (``--run-name <prefix>-f<fraction>-s<seed>``:
each output one folder deeper) that trains TER, IER and Intermediate_fusion on the same stratified,
seeded subsample of the training split (``--label-fraction``) and fuses them
with Late_fusion; val and test are the same for all. The image feature cache and
the GloVe cache are shared, so no setting runs the backbone again, and the
largest fraction runs first so that its GloVe cache (the largest vocabulary)
serves the smaller ones without parsing the file again. A phase or
setting that already finished is skipped, so an interrupted sweep resumes.
Writes ``results/label_efficiency.csv``, ``.md`` and ``.png`` (:mod:`emorec.label_efficiency`). The phases are
called through :data:`PHASES`, each one's ``main`` in this process.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

import IER
import Intermediate_fusion
import Late_fusion
import TER
from emorec.cli import ArgumentParser, HelpFormatter, positive_int, run, setup_logging, unit_fraction
from emorec.label_efficiency import PASS_THROUGH, Sweep, run_sweep
from emorec.presets import require_local_preset
from emorec.runs import RunFolders

# What every setting runs, in order: each phase's name and its entry point.
PHASES = {
    "TER": TER.main,
    "IER": IER.main,
    "Intermediate_fusion": Intermediate_fusion.main,
    "Late_fusion": Late_fusion.main,
}


def parse_args(argv: Sequence[str] | None = None):
    """Parse the sweep's command line: the settings, the data, the outputs and flags passed through to the phases."""
    parser = ArgumentParser(
        prog="python sweep.py",
        formatter_class=HelpFormatter,
        description="Run the four phases for every label fraction and seed, and draw accuracy against labels.",
    )
    parser.add_argument(
        "--fractions",
        type=unit_fraction,
        nargs="+",
        default=[0.05, 0.1, 0.25, 0.5, 1.0],
        help="fractions of the training split's labels (per class) to train on",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="one run per seed and fraction")
    parser.add_argument("--manifest", default=None, help="passed to every phase (default: the phases' own)")
    parser.add_argument("--image-root", default=None, help="passed to the training phases (default: theirs)")
    parser.add_argument(
        "--epoch",
        "--epochs",
        dest="epochs",
        type=positive_int,
        default=None,
        help="epochs for TER, IER and Intermediate_fusion (default: the phases' own)",
    )
    _add_phase_flags(parser)
    parser.add_argument("--run-prefix", default="labels", help="settings run as <prefix>-f<fraction>-s<seed>")
    parser.add_argument("--checkpoint-dir", default="model_checkpoints", help="passed to every phase")
    parser.add_argument("--log-dir", default="tb_logs", help="passed to every phase")
    parser.add_argument("--prob-dir", default="data_files", help="passed to every phase")
    parser.add_argument("--results-dir", default="results", help="where each setting's report and the curve go")
    args = parser.parse_args(_attach_pass_through(sys.argv[1:] if argv is None else argv))
    if args.freeze_text_encoder and args.text_encoder == "paper":
        parser.error("--freeze-text-encoder needs --text-encoder PRESET")
    return args


def _add_phase_flags(parser: ArgumentParser) -> None:
    """The flags passed through to the phases: more flags for each, TER's text model, late fusion's options."""
    for phase, flag in PASS_THROUGH.items():
        parser.add_argument(
            flag,
            default="",
            help=f"more flags for {phase}.py, as one quoted string "
            f'("--init-from-unimodal" or "--lr 1e-3 --batch-size 64")',
        )
    parser.add_argument(
        "--text-encoder",
        default="paper",
        metavar="PRESET",
        help="passed to TER.py (and so followed by Intermediate_fusion.py): 'paper', the paper's "
        "GloVe network, or a pretrained KerasHub text encoder's preset (docs/text_encoders.md)",
    )
    parser.add_argument(
        "--freeze-text-encoder",
        action="store_true",
        help="passed to TER.py: keep the encoder frozen, its features computed once for every "
        "setting, and train the heads alone",
    )
    parser.add_argument(
        "--with-baselines",
        action="store_true",
        help="passed to Late_fusion.py: also fuse the baselines with the three members",
    )
    parser.add_argument(
        "--zero-shot",
        default=None,
        metavar="PRESET",
        help="passed to Late_fusion.py: the CLIP-style preset of the zero-label rows, the curve's "
        "point at 0 labels (default: Late_fusion's auto, IER's --backbone when it is one; none: "
        "no such rows; docs/image_encoders.md)",
    )
    parser.add_argument(
        "--prompts",
        default=None,
        metavar="PATH",
        help="passed to Late_fusion.py: the class prompts of the zero-label rows (a JSON file)",
    )
    parser.add_argument(
        "--robustness",
        action="store_true",
        help="passed to Late_fusion.py: keep each setting's robustness table (off by default: it runs the three "
        "models again on the damaged test posts, and a sweep reports its curve)",
    )


def _attach_pass_through(argv: Sequence[str]) -> list[str]:
    """Join each pass-through flag with the string after it (``--inter-args=--init-from-unimodal``).

    argparse would otherwise take a value that starts with ``-`` for a flag of the sweep's own.
    """
    joined, tokens = [], iter(argv)
    for token in tokens:
        value = next(tokens, None) if token in PASS_THROUGH.values() else None
        joined.append(token if value is None else f"{token}={value}")
    return joined


def main(argv: Sequence[str] | None = None) -> int:
    """Run every setting not yet done, then write the label-efficiency table and figure; returns 0."""
    args = parse_args(argv)
    setup_logging()
    if args.text_encoder != "paper":
        require_local_preset(args.text_encoder, "--text-encoder")  # a missing folder stops it before any setting
    run_sweep(sweep_plan(args), PHASES)
    return 0


def sweep_plan(args) -> Sweep:
    """What the parsed ``args`` ask each setting to run: the phases' flags, passed through."""
    manifest = ["--manifest", args.manifest] if args.manifest else []
    data = [*manifest, *(["--image-root", args.image_root] if args.image_root else [])]
    extra = {phase: shlex.split(getattr(args, flag[2:].replace("-", "_"))) for phase, flag in PASS_THROUGH.items()}
    if args.text_encoder != "paper":  # TER's text model, which the fusion follows
        frozen = ["--freeze-text-encoder"] if args.freeze_text_encoder else []
        extra["TER"][:0] = ["--text-encoder", args.text_encoder, *frozen]
    late = [
        "--results-dir",
        args.results_dir,
        *(["--with-baselines"] if args.with_baselines else []),
        *(["--zero-shot", args.zero_shot] if args.zero_shot else []),
        *(["--prompts", args.prompts] if args.prompts else []),
        *([] if args.robustness else ["--no-robustness"]),
    ]
    return Sweep(
        args.fractions,
        args.seeds,
        args.run_prefix,
        RunFolders(args.checkpoint_dir, args.log_dir, args.prob_dir),
        Path(args.results_dir),
        leading={**{phase: data for phase in PASS_THROUGH}, "Late_fusion": manifest},
        training=["--epoch", str(args.epochs)] if args.epochs else [],
        trailing={**extra, "Late_fusion": late},
    )


if __name__ == "__main__":
    sys.exit(run(main))
