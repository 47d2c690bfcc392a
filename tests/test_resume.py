"""Long runs that survive: a phase killed in the middle of training resumes at the next epoch and ends exactly as an
uninterrupted run; --patience; a changed command starts fresh; the fused Adam's fallback (issue 15)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import interrupt_after_epoch

import TER

REPO = Path(__file__).resolve().parents[1]
TIMING = ("fit_seconds", "seconds_per_epoch", "resumed_at_epoch")


def tiny_ter(tiny_dataset, out: Path, *flags: str) -> list[str]:
    """TER's flags for the tiny data set, without GloVe, writing under ``out``; then ``flags``."""
    manifest, root = tiny_dataset
    return [
        "--manifest",
        str(manifest),
        "--image-root",
        str(root),
        "--glove",
        "none",
        "--batch-size",
        "8",
        "--checkpoint-dir",
        str(out / "ckpt"),
        "--log-dir",
        str(out / "tb"),
        "--prob-dir",
        str(out / "probs"),
        *flags,
    ]


def without_timing(metrics: dict) -> dict:
    return {key: value for key, value in metrics.items() if key not in TIMING}


def epoch_steps(log_dir: Path, tag: str = "epoch_loss") -> list[int]:
    """The steps at which TensorBoard holds ``tag``, over every event file in ``log_dir``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir), size_guidance={"tensors": 0, "scalars": 0})
    events.Reload()
    return sorted(event.step for event in events.Tensors(tag))


def test_ter_killed_mid_training_resumes_at_the_next_epoch_and_ends_as_an_uninterrupted_run(tiny_dataset, tmp_path):
    """Three real processes: an uninterrupted TER run; one killed with SIGKILL once two epochs are backed up; the
    same command again, which resumes. The probability file and epoch CSV are byte for byte the same, the metrics
    JSON too but for timing, and the TensorBoard curve holds every epoch once."""
    epochs = 12
    whole, killed = tmp_path / "whole", tmp_path / "killed"

    def command(out):
        return [sys.executable, "TER.py", *tiny_ter(tiny_dataset, out, "--epoch", str(epochs))]

    whole_log = tmp_path / "whole.log"
    with open(whole_log, "w") as log:  # the uninterrupted run goes beside the killed one: they share nothing
        uninterrupted = subprocess.Popen(command(whole), cwd=REPO, stdout=log, stderr=subprocess.STDOUT)

    state = killed / "ckpt" / ".TER.backup" / "state.json"
    process = subprocess.Popen(command(killed), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if state.exists() and json.loads(state.read_text())["epochs_done"] >= 2:
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    assert process.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    done = json.loads(state.read_text())["epochs_done"]
    assert 2 <= done < epochs and not (killed / "probs" / "text_prob.csv").exists()

    resumed = subprocess.run(command(killed), cwd=REPO, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert uninterrupted.wait(timeout=300) == 0, whole_log.read_text()
    assert f"resuming from the training backup {state.parent}: {done} of {epochs} epochs done" in resumed.stderr
    assert f"Epoch {done + 1}/{epochs}" in resumed.stdout and "Epoch 1/" not in resumed.stdout
    if not Path("/dev/nvidiactl").exists():  # no NVIDIA driver: TensorFlow's CUDA start-up error is not shown
        assert "cuInit" not in resumed.stderr and "CUDA error" not in resumed.stderr

    for name in ("probs/text_prob.csv", "ckpt/TER.epochs.csv"):
        assert (killed / name).read_bytes() == (whole / name).read_bytes(), name
    metrics = {run: json.loads((run / "ckpt" / "TER.metrics.json").read_text()) for run in (whole, killed)}
    assert metrics[killed]["resumed_at_epoch"] == done + 1 and metrics[whole]["resumed_at_epoch"] is None
    assert without_timing(metrics[killed]) == without_timing(metrics[whole])
    assert len(metrics[killed]["splits"]) == 3 and metrics[killed]["epochs_run"] == epochs
    assert epoch_steps(killed / "tb" / "TER" / "train") == list(range(epochs))  # continued, not restarted
    assert not state.parent.exists()  # a finished phase leaves no backup behind
    assert sorted(path.name for path in (killed / "ckpt").iterdir()) == sorted(
        path.name for path in (whole / "ckpt").iterdir()
    )


def test_a_changed_command_line_starts_fresh_and_says_why(tiny_dataset, tmp_path, monkeypatch, capsys):
    with monkeypatch.context() as patch:
        interrupt_after_epoch(patch, 2)
        with pytest.raises(KeyboardInterrupt):
            TER.main(tiny_ter(tiny_dataset, tmp_path, "--epoch", "4"))
    assert (tmp_path / "ckpt" / ".TER.backup" / "state.json").exists()

    assert TER.main(tiny_ter(tiny_dataset, tmp_path, "--epoch", "5", "--lr", "2e-3", "--no-deterministic")) == 0
    assert (
        "is not resumed: it was made by another command (--deterministic True then, False now; --epochs 4 then, "
        "5 now; --lr 0.001 then, 0.002 now). Training starts fresh."
    ) in capsys.readouterr().err
    metrics = json.loads((tmp_path / "ckpt" / "TER.metrics.json").read_text())
    assert metrics["resumed_at_epoch"] is None and metrics["epochs_run"] == 5
    assert json.loads((tmp_path / "ckpt" / "TER.args.json").read_text())["flags"]["deterministic"] is False


def test_a_kill_after_training_but_before_saving_resumes_without_training_again(
    tiny_dataset, tmp_path, monkeypatch, capsys
):
    import emorec.runs

    def killed_while_saving(*args):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(emorec.runs, "save_model", killed_while_saving)
        with pytest.raises(KeyboardInterrupt):
            TER.main(tiny_ter(tiny_dataset, tmp_path, "--epoch", "3"))
    backed_up = json.loads((tmp_path / "ckpt" / ".TER.backup" / "state.json").read_text())
    trained = capsys.readouterr()
    assert "Epoch 3/3" in trained.out and backed_up["finished"]

    assert TER.main(tiny_ter(tiny_dataset, tmp_path, "--epoch", "3")) == 0
    resumed = capsys.readouterr()
    assert "3 of 3 epochs done (training had ended)" in resumed.err and "Epoch " not in resumed.out
    metrics = json.loads((tmp_path / "ckpt" / "TER.metrics.json").read_text())
    assert metrics["best_epoch"] == backed_up["stopper"]["best_epoch"] + 1 and metrics["resumed_at_epoch"] == 4
    assert metrics["splits"]["val"]["macro_f1"] == pytest.approx(
        backed_up["history"]["val_macro_f1"][metrics["best_epoch"] - 1]
    )


def test_patience_stops_training_and_keeps_the_best_epoch(tmp_path):
    """Validation labels opposite to the training ones: val_loss is best at epoch 1 and worsens after, so
    --patience 2 stops after epoch 3 and the model holds epoch 1's weights."""

    import pandas as pd

    from emorec.runs import PhaseOutputs, RunFolders
    from emorec.training.batches import ArrayBatches
    from emorec.training.fit import fit_best, seed_everything
    from emorec.training.options import TrainingOptions

    seed_everything(0)
    x = np.random.default_rng(0).normal(size=(64, 8)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    inputs = keras.Input((8,))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(inputs))
    outputs = PhaseOutputs.of(
        RunFolders(run_name=None, checkpoint_dir=tmp_path, log_dir=tmp_path / "tb", prob_dir=tmp_path), "Toy"
    )

    summary = fit_best(
        model, ArrayBatches(x, y, np.arange(64), 16, seed=0), (x, 1 - y), TrainingOptions(20, 0.1, patience=2), outputs
    )

    assert summary["epochs_run"] == 3 and summary["stopped_early"] and summary["best_epoch"] == 1
    assert len(pd.read_csv(outputs.epochs_csv)) == 3
    restored = keras.losses.sparse_categorical_crossentropy(1 - y, model.predict(x, verbose=0))
    assert np.isclose(float(np.mean(restored)), summary["best_val_loss"], rtol=1e-4)


def test_adam_falls_back_to_keras_adam_when_its_state_is_elsewhere_and_trains_with_it(tmp_path, monkeypatch, caplog):
    """A Keras release that keeps Adam's moments under other names: training takes keras.optimizers.Adam, says so
    in its one optimizer line, and trains as FusedAdam does (the same update: weights within float rounding)."""

    from emorec.runs import PhaseOutputs, RunFolders
    from emorec.training import batches, fit, optimizer
    from emorec.training.options import TrainingOptions

    x = np.random.default_rng(0).normal(size=(64, 8)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)

    def trained(name):
        fit.seed_everything(0)
        inputs = keras.Input((8,))
        model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(inputs))
        outputs = PhaseOutputs.of(
            RunFolders(
                run_name=None, checkpoint_dir=tmp_path / name, log_dir=tmp_path / name / "tb", prob_dir=tmp_path
            ),
            "Toy",
        )
        summary = fit.fit_best(
            model, batches.ArrayBatches(x, y, np.arange(64), 16, seed=0), (x, y), TrainingOptions(3, 0.05), outputs
        )
        return summary, model.get_weights()

    caplog.set_level("INFO", logger="emorec")
    fused_summary, fused = trained("fused")
    assert "optimizer: FusedAdam" in caplog.text and "keras.optimizers.Adam" not in caplog.text
    caplog.clear()
    monkeypatch.setattr(optimizer, "ADAM_STATE", ("_first_moments", "_second_moments"))  # as a later Keras might
    assert type(optimizer.adam(1e-3)) is keras.optimizers.Adam
    summary, weights = trained("fallback")
    assert (
        "optimizer: keras.optimizers.Adam, the same update unfused" in caplog.text and "_first_moments" in caplog.text
    )
    assert summary["epochs_run"] == 3 and summary["best_val_loss"] < 0.6  # it learnt the rule (chance: 0.69)
    for got, expected in zip(weights, fused):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)  # the same update, in another order of ops
