"""TER with a pretrained KerasHub text encoder (issue 30), offline: tiny random BERT backbones written by the tests
in the exact formats a user passes (a KerasHub preset folder from ``save_to_preset``, and a Hugging Face folder
with ``config.json``, ``model.safetensors`` and the tokenizer's files), run as a user runs them, in fresh processes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import keras_hub  # Requirements-hub.txt, which make test installs
import pytest

from emorec.demo import MANIFEST_NAME

REPO = Path(__file__).resolve().parents[1]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
TINY = {"num_layers": 1, "num_heads": 2, "hidden_dim": 8, "intermediate_dim": 16, "max_sequence_length": 64}


def demo_vocabulary(demo: Path, size: int = 400) -> list[str]:
    """BERT's special tokens and the demo's most frequent lower-case words: a WordPiece vocabulary that covers
    most of its tweets."""
    texts = pd.read_csv(demo / MANIFEST_NAME, dtype=str, keep_default_na=False)["text"]
    words = Counter(word for text in texts for word in re.findall(r"[a-z]+", text.lower()))
    return list(dict.fromkeys(SPECIAL + list("abcdefghijklmnopqrstuvwxyz") + [w for w, _ in words.most_common(size)]))


def write_keras_hub_preset(folder: Path, vocabulary: list[str]) -> Path:
    """A tiny random BERT and its classifier preprocessor, saved as KerasHub saves a preset."""
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=vocabulary, lowercase=True)
    backbone = keras_hub.models.BertBackbone(vocabulary_size=len(vocabulary), **TINY)
    backbone.save_to_preset(str(folder))
    keras_hub.models.BertTextClassifierPreprocessor(tokenizer, sequence_length=16).save_to_preset(str(folder))
    return folder


def hugging_face_weights(vocabulary_size: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Random weights of a tiny BERT under Hugging Face's names and shapes (``BertModel``; out x in kernels)."""
    rng = np.random.default_rng(seed)
    hidden, inner, positions = TINY["hidden_dim"], TINY["intermediate_dim"], TINY["max_sequence_length"]
    shapes = {"embeddings.word_embeddings.weight": (vocabulary_size, hidden),
              "embeddings.position_embeddings.weight": (positions, hidden),
              "embeddings.token_type_embeddings.weight": (2, hidden),
              "embeddings.LayerNorm.weight": (hidden,), "embeddings.LayerNorm.bias": (hidden,),
              "pooler.dense.weight": (hidden, hidden), "pooler.dense.bias": (hidden,)}
    for layer in range(TINY["num_layers"]):
        prefix = f"encoder.layer.{layer}."
        for part in ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"):
            shapes |= {f"{prefix}{part}.weight": (hidden, hidden), f"{prefix}{part}.bias": (hidden,)}
        shapes |= {f"{prefix}intermediate.dense.weight": (inner, hidden), f"{prefix}intermediate.dense.bias": (inner,),
                   f"{prefix}output.dense.weight": (hidden, inner), f"{prefix}output.dense.bias": (hidden,)}
        for norm in ("attention.output.LayerNorm", "output.LayerNorm"):
            shapes |= {f"{prefix}{norm}.weight": (hidden,), f"{prefix}{norm}.bias": (hidden,)}
    return {name: (0.2 * rng.standard_normal(shape)).astype(np.float32) for name, shape in shapes.items()}


def write_hugging_face_folder(folder: Path, vocabulary: list[str]) -> Path:
    """A tiny random BERT in the Hugging Face layout, as ``save_pretrained`` writes one (the tokenizer as
    ``vocab.txt`` and ``tokenizer_config.json``)."""
    from safetensors.numpy import save_file

    folder.mkdir(parents=True)
    config = {"architectures": ["BertModel"], "model_type": "bert", "vocab_size": len(vocabulary),
              "hidden_size": TINY["hidden_dim"], "num_hidden_layers": TINY["num_layers"],
              "num_attention_heads": TINY["num_heads"], "intermediate_size": TINY["intermediate_dim"],
              "max_position_embeddings": TINY["max_sequence_length"], "type_vocab_size": 2, "hidden_act": "gelu",
              "layer_norm_eps": 1e-12, "pad_token_id": 0}
    (folder / "config.json").write_text(json.dumps(config))
    save_file(hugging_face_weights(len(vocabulary)), str(folder / "model.safetensors"))
    (folder / "vocab.txt").write_text("\n".join(vocabulary) + "\n")
    (folder / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True, "tokenizer_class": "BertTokenizer"}))
    return folder


@pytest.fixture(scope="module")
def presets(small_demo, tmp_path_factory):
    """The two folders: {"keras_hub": ..., "hugging_face": ...}."""
    root = tmp_path_factory.mktemp("presets")
    vocabulary = demo_vocabulary(small_demo)
    return {"keras_hub": write_keras_hub_preset(root / "tiny_bert", vocabulary),
            "hugging_face": write_hugging_face_folder(root / "tiny_bert_hf", vocabulary)}


def ter(demo: Path, out: Path, *extra: str, python: list[str] | None = None) -> subprocess.CompletedProcess:
    """``python TER.py`` on the small demo in a fresh process, writing under ``out``."""
    argv = ["--manifest", str(demo / MANIFEST_NAME), "--image-root", str(demo), "--epoch", "2", "--seq-len", "16",
            "--checkpoint-dir", str(out / "ckpt"), "--log-dir", str(out / "tb"), "--prob-dir", str(out / "probs"),
            "--cache-dir", str(out / "features"), *extra]
    return subprocess.run([*(python or [sys.executable]), str(REPO / "TER.py"), *argv], capture_output=True,
                          text=True, cwd=REPO, timeout=600)


LOAD_AND_PREDICT = """
import sys, json
import keras, tensorflow as tf
import emorec.models
model = keras.models.load_model(sys.argv[1])
texts = json.loads(sys.argv[2])
print(json.dumps(model.predict(tf.constant(texts), verbose=0).tolist()))
"""


def saved_model_probabilities(model: Path, texts: list[str]) -> np.ndarray:
    """The saved model's probabilities for ``texts``, loaded in a fresh process with the one documented import."""
    done = subprocess.run([sys.executable, "-c", LOAD_AND_PREDICT, str(model), json.dumps(texts)], capture_output=True,
                          text=True, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return np.array(json.loads(done.stdout.strip().splitlines()[-1]))


def first_texts(demo: Path, rows: int = 5) -> list[str]:
    return pd.read_csv(demo / MANIFEST_NAME, dtype=str, keep_default_na=False)["text"].head(rows).tolist()


def first_probabilities(out: Path, rows: int = 5) -> np.ndarray:
    """The probabilities TER wrote for the manifest's first rows (the file keeps the manifest's order)."""
    return pd.read_csv(out / "probs/text_prob.csv")[["happy", "sad", "hate", "anger"]].head(rows).to_numpy()


def test_fine_tuned_keras_hub_preset(presets, small_demo, tmp_path):
    done = ter(small_demo, tmp_path, "--text-encoder", str(presets["keras_hub"]), "--lr", "1e-3")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "optimizer: AdamW" in done.stderr and "BertBackbone" in done.stderr
    metrics = json.loads((tmp_path / "ckpt/TER.metrics.json").read_text())
    recorded = json.loads((tmp_path / "ckpt/TER.args.json").read_text())
    assert metrics["text_model"] == recorded["run"]["text_model"]
    settings = metrics["text_model"]
    assert settings["model"] == "fine-tuned" and settings["lr"] == 1e-3 and settings["batch_size"] == 32
    assert settings["encoder"]["architecture"] == "BertBackbone" and settings["encoder"]["dim"] == TINY["hidden_dim"]
    assert recorded["flags"]["lr"] == 1e-3 and recorded["flags"]["batch_size"] is None  # the user's flags, as given
    # Raw strings in, probabilities out, loaded in a fresh process: the probabilities TER wrote for these rows
    # (the same weights; another batch shape, hence a float tolerance far under any difference between classes).
    np.testing.assert_allclose(saved_model_probabilities(tmp_path / "ckpt/TER.keras", first_texts(small_demo)),
                               first_probabilities(tmp_path), atol=1e-5)


def test_frozen_hugging_face_folder_stores_features_once(presets, small_demo, tmp_path):
    first = ter(small_demo, tmp_path, "--text-encoder", str(presets["hugging_face"]), "--freeze-text-encoder")
    assert first.returncode == 0, first.stderr[-3000:]
    assert "text features: computing" in first.stderr
    stores = list((tmp_path / "features").glob("text_tiny_bert_hf_16tok_mean_float32_*"))
    assert len(stores) == 1
    settings = json.loads((tmp_path / "ckpt/TER.metrics.json").read_text())["text_model"]
    assert settings["model"] == "frozen" and settings["lr"] == 1e-3 and settings["batch_size"] == 64
    written = pd.read_csv(tmp_path / "probs/text_prob.csv", dtype={"id": str})

    again = ter(small_demo, tmp_path, "--text-encoder", str(presets["hugging_face"]), "--freeze-text-encoder")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "text features: all" in again.stderr and "computing" not in again.stderr  # read, not computed again
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "probs/text_prob.csv", dtype={"id": str}), written)
    # The saved model computes the features itself (float32, not the store's float16): close to the head's
    # probabilities on the stored features, within what float16's 11-bit rounding of 8 features moves them.
    np.testing.assert_allclose(saved_model_probabilities(tmp_path / "ckpt/TER.keras", first_texts(small_demo)),
                               first_probabilities(tmp_path), atol=5e-3)


def test_hugging_face_weights_are_the_ones_written(presets):
    from emorec.text_encoders import load_text_encoder

    encoder = load_text_encoder(str(presets["hugging_face"]), 16)
    written = hugging_face_weights(encoder.backbone.vocabulary_size)
    np.testing.assert_array_equal(encoder.backbone.get_layer("token_embedding").embeddings.numpy(),
                                  written["embeddings.word_embeddings.weight"])
    tokens = encoder.preprocessor(["[UNK] zzzz"])["token_ids"].numpy()[0]
    assert tokens[0] == SPECIAL.index("[CLS]") and SPECIAL.index("[SEP]") in tokens


@pytest.mark.parametrize("preset, says", [
    ("{tmp}/no_such_folder", "no such folder"),
    ("{tmp}/empty", "could not be loaded"),
])
def test_a_preset_that_cannot_be_loaded_is_one_clear_error(preset, says, small_demo, tmp_path):
    (tmp_path / "empty").mkdir()
    preset = preset.format(tmp=tmp_path)
    done = ter(small_demo, tmp_path, "--text-encoder", preset)
    assert done.returncode == 2
    error = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and preset in error[0] and says in error[0] and "KerasHub name" in error[0]
    assert "Traceback" not in done.stderr and not (tmp_path / "ckpt").exists()  # nothing trained, nothing written


def test_freeze_without_an_encoder_is_refused(small_demo, tmp_path):
    done = ter(small_demo, tmp_path, "--freeze-text-encoder")
    assert done.returncode == 2 and "--freeze-text-encoder needs --text-encoder" in done.stderr


HIDE_KERAS_HUB = "import runpy, sys; sys.modules['keras_hub'] = None; sys.argv = sys.argv[1:]; " \
                 "runpy.run_path(sys.argv[0], run_name='__main__')"


def test_the_paper_network_needs_no_keras_hub(presets, small_demo, tmp_path):
    """Without KerasHub installed (its import made to fail), the paper's TER trains and an encoder is refused with
    how to install it."""
    from emorec.demo import GLOVE_NAME

    hidden = [sys.executable, "-c", HIDE_KERAS_HUB]
    paper = ter(small_demo, tmp_path, "--glove", str(small_demo / GLOVE_NAME), "--epoch", "1", python=hidden)
    assert paper.returncode == 0, paper.stderr[-3000:]
    encoder = ter(small_demo, tmp_path / "encoder", "--text-encoder", str(presets["keras_hub"]), python=hidden)
    assert encoder.returncode == 2 and "pip install -r Requirements-hub.txt" in encoder.stderr
