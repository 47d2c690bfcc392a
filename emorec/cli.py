"""Command-line glue shared by the phase scripts and the package's tools."""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from emorec.data import DEFAULT_IMAGE_ROOT, DEFAULT_MANIFEST
from emorec.errors import InputError


def setup_logging() -> None:
    """Send the package's log lines (INFO and above) to stderr as ``[emorec] message``."""
    logging.basicConfig(
        level=logging.INFO,
        format="[%(name)s] %(message)s",
        stream=sys.stderr,
        force=True,
    )


def run(main: Callable[[Sequence[str] | None], object], argv: Sequence[str] | None = None) -> int:
    """Call ``main(argv)`` and turn an :class:`InputError` into ``error: ...`` on stderr and status 2.

    Returns the exit status for ``sys.exit``: 0 on success (or ``main``'s own
    integer result), 2 for a user error. Any other exception propagates with
    its traceback, since it is a bug.
    """
    try:
        result = main(argv)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return result if isinstance(result, int) else 0


def phase_parser(
    phase: str, description: str, *, epochs: int = 100, batch_size: int = 32, lr: float = 1e-4, training: bool = True
) -> argparse.ArgumentParser:
    """Return the parser every phase script starts from, with the phase's own training defaults.

    Groups: data (--manifest, --image-root, --classes, --seed, --resplit),
    training (--epoch/--epochs, --batch-size, --lr, --label-fraction,
    --labels-per-class) and outputs (--run-name,
    --checkpoint-dir, --log-dir, --prob-dir). A phase that trains nothing
    (``training=False``) gets neither the training group nor the image and
    split flags. A phase adds its own flags to it.
    """
    parser = argparse.ArgumentParser(
        prog=f"python {phase}.py", description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    data = parser.add_argument_group("data")
    data.add_argument("--manifest", default=DEFAULT_MANIFEST, help="manifest CSV: label,text,image[,id][,split][,group]")
    if training:
        data.add_argument(
            "--image-root", default=DEFAULT_IMAGE_ROOT, help="folder the manifest's image paths are relative to"
        )
        data.add_argument(
            "--classes", type=_class_list, default=None,
            help="class names in index order, comma-separated (default: <manifest stem>.classes.txt beside the "
            "manifest if it exists, else happy,sad,hate,anger)",
        )
    data.add_argument(
        "--seed", type=int, default=0,
        help="random seed: the split (when first drawn), initialisation and batch order; "
        "the same seed on the same machine gives the same numbers",
    )
    if training:
        data.add_argument(
            "--resplit", action="store_true",
            help="draw a new train/val/test split with --seed, replacing the one stored beside the manifest",
        )
        group = parser.add_argument_group("training")
        group.add_argument("--epoch", "--epochs", dest="epochs", type=positive_int, default=epochs, help="training epochs")
        group.add_argument("--batch-size", type=positive_int, default=batch_size, help="examples per training batch")
        group.add_argument("--lr", type=_positive_float, default=lr, help="Adam learning rate")
        fewer = group.add_mutually_exclusive_group()
        fewer.add_argument(
            "--label-fraction", type=unit_fraction, default=None, metavar="F",
            help="train on a stratified, seeded subsample: this fraction of each class's training examples "
            "(at least one per class); val and test are untouched, and the phases of one run use the same examples",
        )
        fewer.add_argument(
            "--labels-per-class", type=positive_int, default=None, metavar="K",
            help="train on a seeded subsample of K training examples per class (all of a smaller class)",
        )
    outputs = parser.add_argument_group("outputs")
    outputs.add_argument(
        "--run-name", type=_run_name, default=None,
        help="put every output one folder deeper (model_checkpoints/NAME/..., data_files/NAME/..., "
        "tb_logs/NAME/...) so runs do not overwrite each other; later phases read the same run",
    )
    outputs.add_argument("--checkpoint-dir", default="model_checkpoints", help="where models and their JSON go")
    outputs.add_argument("--log-dir", default="tb_logs", help="where TensorBoard curves go")
    outputs.add_argument("--prob-dir", default="data_files", help="where the class-probability CSVs go")
    return parser


@dataclass(frozen=True)
class PhaseOutputs:
    """Where one phase of one run writes (see design §2): every path moves one folder deeper with --run-name."""

    model: Path
    args_json: Path
    metrics_json: Path
    epochs_csv: Path
    tensorboard: Path
    prob_dir: Path

    @classmethod
    def of(cls, args: argparse.Namespace, phase: str) -> "PhaseOutputs":
        """The outputs of ``phase`` for the parsed command line ``args``."""
        run = args.run_name or ""
        checkpoints = Path(args.checkpoint_dir) / run
        return cls(
            model=checkpoints / f"{phase}.keras",
            args_json=checkpoints / f"{phase}.args.json",
            metrics_json=checkpoints / f"{phase}.metrics.json",
            epochs_csv=checkpoints / f"{phase}.epochs.csv",
            tensorboard=Path(args.log_dir) / run / phase,
            prob_dir=Path(args.prob_dir) / run,
        )


def require_output(path: Path, phase: str, args: argparse.Namespace) -> Path:
    """Return ``path`` (a file an earlier phase writes), or raise :class:`InputError` naming the command that makes it."""
    if not Path(path).exists():
        same = " --run-name " + args.run_name if args.run_name else ""
        raise InputError(
            f"{path} is missing. It is written by `python {phase}.py`: run that first, with the same "
            f"--manifest{same} and output folders as this command."
        )
    return Path(path)


def positive_int(text: str) -> int:
    """argparse type: an integer of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def unit_fraction(text: str) -> float:
    """argparse type: a number in (0, 1]."""
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {value}")
    return value


def _class_list(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(","))


def _run_name(text: str) -> str:
    if not text or "/" in text or "\\" in text or text in (".", ".."):
        raise argparse.ArgumentTypeError(f"a run name is one folder name (no '/'), got {text!r}")
    return text
