"""User errors exit 2 without a traceback; outputs are written atomically."""

from __future__ import annotations

import importlib
import os
import stat
import subprocess
import sys

import pytest

from emorec.cli import run
from emorec.errors import InputError, list_some
from emorec.fileio import atomic_path, write_text_atomic


def test_run_turns_an_input_error_into_status_2(capsys):
    def main(argv):
        raise InputError("manifest not found: x.csv")

    assert run(main, []) == 2
    assert capsys.readouterr().err == "error: manifest not found: x.csv\n"


def test_run_lets_bugs_keep_their_traceback():
    def main(argv):
        raise KeyError("bug")

    with pytest.raises(KeyError):
        run(main, [])


def test_list_some_shows_ten_and_counts_the_rest():
    text = list_some(range(25))
    assert text.splitlines()[:10] == [f"  {i}" for i in range(10)]
    assert text.splitlines()[10] == "  ... and 15 more (25 in all)"
    assert list_some(["a"]) == "  a"


def test_atomic_write_leaves_the_old_file_when_interrupted(tmp_path):
    target = tmp_path / "out" / "prob.csv"
    write_text_atomic(target, "old\n")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old\n"
    assert os.listdir(target.parent) == ["prob.csv"]


def test_atomic_write_gives_the_usual_permissions(tmp_path):
    target = tmp_path / "file.txt"
    write_text_atomic(target, "x")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask


@pytest.mark.parametrize("module", ["emorec.demo", "emorec.bt4sa", "emorec.mvsa"])
def test_module_help_runs(module):
    result = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, check=True)
    assert "usage: python -m " + module in result.stdout
    assert "(default:" in result.stdout


def test_demo_command_line_reports_a_user_error_without_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "emorec.demo", "--out", str(tmp_path), "--n", "5"], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: --n must be at least 64 (the phases' stratified split needs 5 tweets of every class), got 5"
    )


@pytest.mark.parametrize(
    "script, argv, message",
    [
        ("TER", ["--seq-len", "3"], "--seq-len: must be at least 4"),
        ("TER", ["--max-words", "0"], "--max-words: must be at least 1"),
        ("IER", ["--image-size", "16"], "--image-size must be at least 32 for vgg16"),
        ("IER", ["--backbone", "efficientnetb0", "--image-size", "31"], "at least 32 for efficientnetb0"),
        ("Late_fusion", ["--grid-step", "1"], "--grid-step: must be between 0 and 1"),
        ("TER", ["--epoch", "0"], "--epoch/--epochs: must be at least 1, got 0"),
        ("IER", ["--batch-size", "0"], "--batch-size: must be at least 1, got 0"),
        ("Intermediate_fusion", ["--lr", "-1"], "--lr: must be positive, got -1.0"),
        ("predict", ["--run-name", "x"], "give --image and --text for one tweet (or either alone)"),
    ],
)
def test_flags_out_of_range_are_refused_by_the_parser(script, argv, message, capsys):
    """Values that once reached Keras or numpy and failed there with a traceback (issue 12); the error is the one
    line said, with where to see every flag, not argparse's usage first (issue 28)."""
    module = importlib.import_module(script)
    with pytest.raises(SystemExit) as exit_status:
        module.parse_args(argv)
    error = capsys.readouterr().err
    assert exit_status.value.code == 2 and message in error.splitlines()[0]
    assert error.splitlines()[1:] == [f"(`python {script}.py --help` explains every flag)"] and "usage" not in error


@pytest.mark.parametrize(
    "command",
    [
        ["TER.py"],
        ["IER.py"],
        ["Intermediate_fusion.py"],
        ["Late_fusion.py"],
        ["predict.py"],
        ["sweep.py"],
        ["-m", "emorec.demo"],
        ["-m", "emorec.bt4sa"],
        ["-m", "emorec.mvsa"],
    ],
)
def test_help_never_prints_a_default_of_none(command):
    result = subprocess.run([sys.executable, *command, "--help"], capture_output=True, text=True, check=True)
    assert "(default: None)" not in result.stdout and "(default:" in result.stdout


def test_sweep_passes_a_flag_without_value_through_to_a_phase():
    from sweep import parse_args

    args = parse_args(["--inter-args", "--init-from-unimodal", "--ter-args", "--lr 1e-3 --seed 4", "--seeds", "1"])
    assert (args.inter_args, args.ter_args, args.ier_args, args.seeds) == (
        "--init-from-unimodal",
        "--lr 1e-3 --seed 4",
        "",
        [1],
    )
