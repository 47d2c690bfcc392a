"""The command line alone: the parser every phase starts from, the flag types, logging, and the exit status."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from emorec.data.manifest import DEFAULT_IMAGE_ROOT, DEFAULT_MANIFEST
from emorec.distribute import STRATEGIES, STRATEGY_HELP
from emorec.errors import InputError
from emorec.runs import RunFolders
from emorec.storage import storage_error
from emorec.training.options import TrainingOptions


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser, but a wrong command line answers with one line: the error, and how to see every flag
    (argparse's own prints the whole usage first, which buries the error under a screen of flags)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.outside_training: set[str] = set()

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n(`{self.prog} --help` explains every flag)\n")

    def add_outside_training(self, group, *flags, **kwargs) -> argparse.Action:
        """Add a flag to ``group`` that says where a run writes or how fast it works, not what it learns: a
        resumed run may change it (:meth:`training_flags` leaves it out)."""
        action = group.add_argument(*flags, **kwargs)
        self.outside_training.add(action.dest)
        return action

    def training_flags(self, args: argparse.Namespace) -> dict:
        """The parsed ``args`` that bear on what a run learns: all but those added by :meth:`add_outside_training`."""
        return {key: value for key, value in vars(args).items() if key not in self.outside_training}


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` with each flag's default, except where it is None: those flags' help says what None means."""

    def _get_help_string(self, action):
        return action.help if action.default is None else super()._get_help_string(action)


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
    integer result), 2 for a user error (an :class:`InputError`, or an OS
    error such as a full disk or a read-only folder, see
    :func:`emorec.storage.storage_error`), 130 after Ctrl-C (KeyboardInterrupt,
    printed as ``interrupted``). Any other exception propagates with its
    traceback, since it is a bug.
    """
    try:
        result = main(argv)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a full disk or a folder that refuses a write: the user's to fix, not a bug
        message = storage_error(error)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130  # the shell's status for a command stopped by Ctrl-C (128 + SIGINT)
    return result if isinstance(result, int) else 0


@dataclass(frozen=True)
class TrainingDefaults:
    """A training phase's defaults for the shared training flags: the paper's where the field's default is; a None
    default is the phase's to resolve, and ``batch_size_help``/``lr_help`` then say how."""

    epochs: int = 100
    batch_size: int | None = 32
    lr: float | None = 1e-4
    class_weight: str = "none"
    monitor: str = "val_loss"
    batch_size_help: str = "examples per training batch"
    lr_help: str = "Adam learning rate"


def phase_parser(
    phase: str, description: str, training: TrainingDefaults | None = TrainingDefaults(), resplit: bool = True
) -> ArgumentParser:
    """Return the parser every phase script starts from, with the phase's own ``training`` defaults.

    Groups: data (--manifest, --image-root, --classes, --seed, --resplit, --strict-split), training (--epoch,
    --batch-size, --lr, --class-weight, --monitor, --patience, --deterministic, --strategy, --label-fraction,
    --labels-per-class) and outputs (--run-name, --checkpoint-dir, --log-dir, --prob-dir). A phase that trains
    nothing (``training=None``) gets neither the training group nor the image and split flags, and its --manifest
    defaults to the one the training phases read. ``resplit=False`` leaves out --resplit (a phase that must use
    the split of the phases before it). A phase adds its own flags to it.
    """
    parser = ArgumentParser(prog=f"python {phase}.py", description=description, formatter_class=HelpFormatter)
    _add_data_flags(parser, training is not None, resplit)
    if training is not None:
        _add_training_flags(parser, training)
    outputs = parser.add_argument_group("outputs")
    parser.add_outside_training(
        outputs,
        "--run-name",
        type=_run_name,
        default=None,
        help="put every output one folder deeper (model_checkpoints/NAME/..., data_files/NAME/..., "
        "tb_logs/NAME/...) so runs do not overwrite each other; later phases read the same run",
    )
    parser.add_outside_training(
        outputs, "--checkpoint-dir", default="model_checkpoints", help="where models and their JSON go"
    )
    parser.add_outside_training(outputs, "--log-dir", default="tb_logs", help="where TensorBoard curves go")
    parser.add_outside_training(outputs, "--prob-dir", default="data_files", help="where the class-probability CSVs go")
    return parser


def _add_data_flags(parser: ArgumentParser, training: bool, resplit: bool) -> None:
    """The data group: which manifest, images, classes, seed and split (see :func:`phase_parser`)."""
    data = parser.add_argument_group("data")
    if not training:
        data.add_argument(
            "--manifest",
            default=None,
            help="the manifest the run's phases read (default: the one their .args.json records); "
            "a different one is refused",
        )
    else:
        data.add_argument(
            "--manifest", default=DEFAULT_MANIFEST, help="manifest CSV: label,text,image[,id][,split][,group]"
        )
        data.add_argument(
            "--image-root", default=DEFAULT_IMAGE_ROOT, help="folder the manifest's image paths are relative to"
        )
        data.add_argument(
            "--classes",
            type=_class_list,
            default=None,
            help="class names in index order, comma-separated (default: <manifest stem>.classes.txt beside the "
            "manifest if it exists, else happy,sad,hate,anger)",
        )
    data.add_argument(
        "--seed",
        type=int,
        default=0,
        help="random seed: "
        + (
            "the split (when first drawn), initialisation and batch order"
            if training and resplit
            else "initialisation and batch order"
            if training
            else "the stacker's fit and the bootstrap's resamples"
        )
        + "; the same seed on the same machine gives the same numbers",
    )
    if training and resplit:
        data.add_argument(
            "--resplit",
            action="store_true",
            help="draw a new train/val/test split with --seed, replacing the one stored beside the manifest",
        )
    if training:
        data.add_argument(
            "--strict-split",
            action="store_true",
            help="refuse a split in which a tweet or a normalised text occurs in more than one split (without "
            "it, such leakage is logged and counted in the metrics JSON); a drawn split never has any",
        )


def _add_training_flags(parser: ArgumentParser, defaults: TrainingDefaults) -> None:
    """The training group, with the phase's ``defaults`` (see :func:`phase_parser`)."""
    group = parser.add_argument_group("training")
    group.add_argument(
        "--epoch", "--epochs", dest="epochs", type=positive_int, default=defaults.epochs, help="training epochs"
    )
    group.add_argument("--batch-size", type=positive_int, default=defaults.batch_size, help=defaults.batch_size_help)
    group.add_argument("--lr", type=_positive_float, default=defaults.lr, help=defaults.lr_help)
    group.add_argument(
        "--class-weight",
        choices=("none", "balanced"),
        default=defaults.class_weight,
        help="weight each training example's loss by its class: balanced (inversely to the class's share of "
        "the training rows, as scikit-learn's compute_class_weight) or none (the paper)",
    )
    group.add_argument(
        "--monitor",
        choices=("val_loss", "val_macro_f1"),
        default=defaults.monitor,
        help="the validation measure whose best epoch is kept: val_macro_f1 (over the whole validation "
        "split) or val_loss (the paper)",
    )
    group.add_argument(
        "--patience",
        type=positive_int,
        default=None,
        metavar="N",
        help="stop once --monitor has not improved for N epochs (default: every epoch runs, as in the paper); "
        "either way the saved model holds the best epoch's weights",
    )
    group.add_argument(
        "--deterministic",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="deterministic TensorFlow ops: the same --seed gives the same numbers; --no-deterministic "
        "allows faster, non-deterministic GPU kernels and compiles the training steps with XLA on a GPU",
    )
    # A global batch is the same update on any number of replicas.
    parser.add_outside_training(group, "--strategy", choices=STRATEGIES, default="auto", help=STRATEGY_HELP)
    fewer = group.add_mutually_exclusive_group()
    fewer.add_argument(
        "--label-fraction",
        type=unit_fraction,
        default=None,
        metavar="F",
        help="train on a stratified, seeded subsample: this fraction of each class's training examples "
        "(at least one per class); val and test are untouched, and the phases of one run use the same examples",
    )
    fewer.add_argument(
        "--labels-per-class",
        type=positive_int,
        default=None,
        metavar="K",
        help="train on a seeded subsample of K training examples per class (all of a smaller class)",
    )


def at_least(minimum: int) -> Callable[[str], int]:
    """Return an argparse type: an integer of at least ``minimum``."""

    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    parse.__name__ = "int"  # argparse names the type in its "invalid int value" message
    return parse


positive_int = at_least(1)  # argparse type: an integer of at least 1


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


def open_unit_fraction(text: str) -> float:
    """argparse type: a number in (0, 1)."""
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (both excluded), got {value}")
    return value


def probability(text: str) -> float:
    """argparse type: a number in [0, 1)."""
    value = float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 0 and below 1, got {value}")
    return value


def _class_list(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(","))


def _run_name(text: str) -> str:
    if not text or "/" in text or "\\" in text or text in (".", ".."):
        raise argparse.ArgumentTypeError(f"a run name is one folder name (no '/'), got {text!r}")
    return text


def training_options(args: argparse.Namespace, lr: float, optimizer: str = "adam") -> TrainingOptions:
    """How a phase trains, from its parsed training flags, at learning rate ``lr`` (the flag's, or the phase's
    default as it resolved it) with ``optimizer``."""
    return TrainingOptions(
        args.epochs, lr, args.class_weight, args.monitor, args.patience, args.deterministic, optimizer
    )


def run_folders(args: argparse.Namespace) -> RunFolders:
    """Where the run of the parsed ``args`` writes: its output flags."""
    return RunFolders(args.checkpoint_dir, args.log_dir, args.prob_dir, args.run_name)
