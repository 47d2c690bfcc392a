"""TER.py end to end on a small demo: outputs, the reloadable model, accuracy and determinism (issue 4)."""

from __future__ import annotations

import json
import subprocess
import sys

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

import TER
from emorec.cli import run
from emorec.data.manifest import read_manifest
from emorec.demo import GLOVE_NAME, MANIFEST_NAME


def ter_argv(demo, out, *extra):
    return [
        "--manifest",
        str(demo / MANIFEST_NAME),
        "--image-root",
        str(demo),
        "--glove",
        str(demo / GLOVE_NAME),
        "--epoch",
        "4",
        "--batch-size",
        "32",
        "--lr",
        "3e-3",
        "--seed",
        "0",
        "--checkpoint-dir",
        str(out / "ckpt"),
        "--log-dir",
        str(out / "tb"),
        "--prob-dir",
        str(out / "probs"),
        *extra,
    ]


@pytest.fixture(scope="module")
def ter_run(small_demo, tmp_path_factory):
    """One TER run on the small demo, 4 epochs, as the named run 'r1'; returns its output folder."""
    out = tmp_path_factory.mktemp("ter")
    assert TER.main(ter_argv(small_demo, out, "--run-name", "r1")) == 0
    return out


def test_outputs_exist_and_parse(ter_run, small_demo):
    probs = pd.read_csv(ter_run / "probs" / "r1" / "text_prob.csv", dtype={"id": str})
    manifest = pd.read_csv(small_demo / MANIFEST_NAME)
    assert list(probs.columns) == ["id", "split", "label", "happy", "sad", "hate", "anger"]
    assert len(probs) == len(manifest)
    assert set(probs["split"]) == {"train", "val", "test"}
    np.testing.assert_allclose(probs[["happy", "sad", "hate", "anger"]].sum(axis=1), 1.0, atol=1e-5)

    checkpoints = ter_run / "ckpt" / "r1"
    recorded = json.loads((checkpoints / "TER.args.json").read_text())
    args, text_model = recorded["flags"], recorded["run"]["text_model"]
    assert args["epochs"] == 4 and args["max_words"] == 40000 and args["seq_len"] is None and args["run_name"] == "r1"
    # What the run resolved: the paper's network with its tokens per text, and the flags given.
    steps = 4 * -(-json.loads((checkpoints / "TER.metrics.json").read_text())["training_labels"] // 32)
    assert text_model == {"model": "paper", "lr": 3e-3, "batch_size": 32, "seq_len": 30, "training_steps": steps}
    metrics = json.loads((checkpoints / "TER.metrics.json").read_text())
    assert set(metrics["splits"]) == {"train", "val", "test"}
    assert set(metrics["test_per_class"]) == {"happy", "sad", "hate", "anger"}
    assert metrics["epochs_run"] == 4 and 1 <= metrics["best_epoch"] <= 4
    epochs = pd.read_csv(checkpoints / "TER.epochs.csv")
    assert list(epochs.columns) == ["epoch", "accuracy", "loss", "macro_f1", "val_accuracy", "val_loss", "val_macro_f1"]
    assert epochs["epoch"].tolist() == [1, 2, 3, 4]  # as the log and the metrics count them
    best = epochs.set_index("epoch").loc[metrics["best_epoch"]]  # by --monitor val_macro_f1, TER's default
    assert metrics["best_val_macro_f1"] == pytest.approx(epochs["val_macro_f1"].max())
    assert metrics["best_val_loss"] == pytest.approx(best["val_loss"])
    for curves in ("train", "validation"):
        assert list((ter_run / "tb" / "r1" / "TER" / curves).glob("events.out.tfevents.*"))
    # No temporary or partial files left, no training backup: only the run's lock file (emorec.storage.hold_run).
    assert [path.name for path in checkpoints.glob(".*")] == [".TER.lock"]


def test_test_accuracy_beats_the_majority_class(ter_run):
    test = json.loads((ter_run / "ckpt" / "r1" / "TER.metrics.json").read_text())["splits"]["test"]
    assert test["accuracy"] > test["majority_accuracy"] + 0.05


def test_reloaded_model_maps_raw_strings_to_the_written_probabilities(ter_run, small_demo):
    model = keras.models.load_model(ter_run / "ckpt" / "r1" / "TER.keras")
    probs = pd.read_csv(ter_run / "probs" / "r1" / "text_prob.csv", dtype={"id": str})
    frame = read_manifest(small_demo / MANIFEST_NAME, small_demo).frame
    assert probs["id"].tolist() == frame["id"].tolist()
    predicted = model.predict(tf.constant(frame["text"].tolist()), verbose=0)
    np.testing.assert_allclose(predicted, probs[["happy", "sad", "hate", "anger"]].to_numpy(), atol=1e-6)


def test_same_seed_gives_the_same_probabilities(ter_run, small_demo, tmp_path):
    assert TER.main(ter_argv(small_demo, tmp_path)) == 0  # the default run: no --run-name
    first = pd.read_csv(ter_run / "probs" / "r1" / "text_prob.csv")
    again = pd.read_csv(tmp_path / "probs" / "text_prob.csv")
    pd.testing.assert_frame_equal(first, again)
    assert (tmp_path / "ckpt" / "TER.keras").exists() and (tmp_path / "tb" / "TER").is_dir()


def test_missing_glove_exits_2_with_where_to_get_it(small_demo, tmp_path, capsys):
    argv = ter_argv(small_demo, tmp_path)
    argv[argv.index("--glove") + 1] = str(tmp_path / "glove.twitter.27B.200d.txt")
    assert run(TER.main, argv) == 2
    error = capsys.readouterr().err
    assert "glove.twitter.27B.200d.txt is missing: Download" in error and "--glove none" in error
    assert "Traceback" not in error and not (tmp_path / "ckpt").exists() and not (tmp_path / "probs").exists()


def test_a_glove_file_of_another_dimension_is_refused_before_anything_is_written(small_demo, tmp_path, capsys):
    import shutil

    from emorec.data.splits import split_path

    demo = tmp_path / "demo"
    shutil.copytree(small_demo, demo)
    split_path(demo / MANIFEST_NAME).unlink(missing_ok=True)  # no split yet: TER would draw and store one
    glove = tmp_path / "glove.twitter.27B.25d.txt"
    glove.write_text("happy " + " ".join(["0.1"] * 25) + "\n", encoding="utf-8")
    argv = ter_argv(demo, tmp_path)
    argv[argv.index("--glove") + 1] = str(glove)
    assert run(TER.main, argv) == 2
    assert "line 1: 25 values per word, but the model uses 200 (--embedding-dim)" in capsys.readouterr().err
    assert not split_path(demo / MANIFEST_NAME).exists() and not (tmp_path / "ckpt").exists()


def test_nothing_in_place_reports_every_missing_input_with_its_fix(tmp_path, capsys, monkeypatch):
    """`python TER.py --epoch=100` on a fresh clone: the manifest and the GloVe file, in one message (issue 12)."""
    monkeypatch.chdir(tmp_path)
    assert run(TER.main, ["--epoch=100"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: 2 input files are missing:")
    assert "- data_files/image_labels.csv is missing: Place the IIT-R TIER manifest" in error
    assert "`python -m emorec.demo`" in error and "--manifest data_t4sa/demo/image_labels.csv" in error
    assert "- data_files/glove.twitter.27B.200d.txt is missing: Download" in error


def test_help_documents_every_flag_with_its_default():
    result = subprocess.run([sys.executable, "TER.py", "--help"], capture_output=True, text=True, check=True)
    text = " ".join(result.stdout.split())  # argparse wraps long lines
    for flag, default in [
        ("--manifest", "data_files/image_labels.csv"),
        ("--glove", "data_files/glove.twitter.27B.200d.txt"),
        ("--max-words", "40000"),
        ("--seq-len", "30 (paper), 64 (fine-tuned), 64 (frozen)"),
        ("--batch-size", "256 (paper), 32 (fine-tuned), 64 (frozen)"),
        ("--lr", "0.001 (paper), 5e-05 (fine-tuned), 0.001 (frozen)"),
        ("--text-encoder", "paper"),
        ("--cache-dir", "data_files/features"),
        ("--seed", "0"),
        ("--checkpoint-dir", "model_checkpoints"),
        ("--log-dir", "tb_logs"),
        ("--image-root", "data_t4sa"),
    ]:
        assert flag in text and f"(default: {default})" in text, flag
    assert "--epoch EPOCHS, --epochs EPOCHS" in text and "--run-name" in text
    assert TER.parse_args(["--epochs", "7"]).epochs == TER.parse_args(["--epoch=7"]).epochs == 7


def test_text_only_manifest_trains_ter_and_its_own_classes(small_demo, tmp_path, capsys):
    """A corpus without images (an empty image column, an id column, its own classes file) trains TER; the
    image phases still refuse it: no row has an image."""
    import IER

    demo = pd.read_csv(small_demo / MANIFEST_NAME).head(200)
    classes = ["anger", "fear", "joy", "sadness"]
    texts = pd.DataFrame(
        {
            "id": [f"t{i}" for i in range(len(demo))],
            "label": [classes[i % 4] for i in range(len(demo))],
            "text": demo["text"],
            "image": "",
        }
    )
    manifest = tmp_path / "tweets.csv"
    texts.to_csv(manifest, index=False)
    (tmp_path / "tweets.classes.txt").write_text("\n".join(classes) + "\n")
    out = [
        "--checkpoint-dir",
        str(tmp_path / "ckpt"),
        "--log-dir",
        str(tmp_path / "tb"),
        "--prob-dir",
        str(tmp_path / "p"),
    ]
    assert TER.main(["--manifest", str(manifest), "--glove", "none", "--epoch", "1", *out]) == 0
    probs = pd.read_csv(tmp_path / "p" / "text_prob.csv")
    assert list(probs.columns) == ["id", "split", "label", *classes] and len(probs) == len(texts)
    assert run(IER.main, ["--manifest", str(manifest), "--image-weights", "none", "--image-size", "32", *out]) == 2
    assert "no row has an image: the image phases need images" in capsys.readouterr().err
