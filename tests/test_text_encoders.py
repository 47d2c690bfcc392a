"""TER with a pretrained KerasHub text encoder (issue 30), offline: tiny random BERT backbones written by the tests
in the exact formats a user passes (a KerasHub preset folder from ``save_to_preset``, and a Hugging Face folder
with ``config.json``, ``model.safetensors`` and the tokenizer's files), run as a user runs them, in fresh processes.
The frozen sweep's IER runs on a tiny CLIP (issue 31), so its reports also hold the zero-label rows, checked here."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import keras_hub  # Requirements-hub.txt, which make test installs
import numpy as np
import pandas as pd
import pytest

from emorec.demo import MANIFEST_NAME
from emorec.zero_shot import DEFAULT_PROMPTS

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
    shapes = {
        "embeddings.word_embeddings.weight": (vocabulary_size, hidden),
        "embeddings.position_embeddings.weight": (positions, hidden),
        "embeddings.token_type_embeddings.weight": (2, hidden),
        "embeddings.LayerNorm.weight": (hidden,),
        "embeddings.LayerNorm.bias": (hidden,),
        "pooler.dense.weight": (hidden, hidden),
        "pooler.dense.bias": (hidden,),
    }
    for layer in range(TINY["num_layers"]):
        prefix = f"encoder.layer.{layer}."
        for part in ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"):
            shapes |= {f"{prefix}{part}.weight": (hidden, hidden), f"{prefix}{part}.bias": (hidden,)}
        shapes |= {
            f"{prefix}intermediate.dense.weight": (inner, hidden),
            f"{prefix}intermediate.dense.bias": (inner,),
            f"{prefix}output.dense.weight": (hidden, inner),
            f"{prefix}output.dense.bias": (hidden,),
        }
        for norm in ("attention.output.LayerNorm", "output.LayerNorm"):
            shapes |= {f"{prefix}{norm}.weight": (hidden,), f"{prefix}{norm}.bias": (hidden,)}
    return {name: (0.2 * rng.standard_normal(shape)).astype(np.float32) for name, shape in shapes.items()}


def write_hugging_face_folder(folder: Path, vocabulary: list[str]) -> Path:
    """A tiny random BERT in the Hugging Face layout, as ``save_pretrained`` writes one (the tokenizer as
    ``vocab.txt`` and ``tokenizer_config.json``)."""
    from safetensors.numpy import save_file

    folder.mkdir(parents=True)
    config = {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": len(vocabulary),
        "hidden_size": TINY["hidden_dim"],
        "num_hidden_layers": TINY["num_layers"],
        "num_attention_heads": TINY["num_heads"],
        "intermediate_size": TINY["intermediate_dim"],
        "max_position_embeddings": TINY["max_sequence_length"],
        "type_vocab_size": 2,
        "hidden_act": "gelu",
        "layer_norm_eps": 1e-12,
        "pad_token_id": 0,
    }
    (folder / "config.json").write_text(json.dumps(config))
    save_file(hugging_face_weights(len(vocabulary)), str(folder / "model.safetensors"))
    (folder / "vocab.txt").write_text("\n".join(vocabulary) + "\n")
    (folder / "tokenizer_config.json").write_text(
        json.dumps({"do_lower_case": True, "tokenizer_class": "BertTokenizer"})
    )
    return folder


@pytest.fixture(scope="module")
def presets(small_demo, tmp_path_factory):
    """The two folders: {"keras_hub": ..., "hugging_face": ...}."""
    root = tmp_path_factory.mktemp("presets")
    vocabulary = demo_vocabulary(small_demo)
    return {
        "keras_hub": write_keras_hub_preset(root / "tiny_bert", vocabulary),
        "hugging_face": write_hugging_face_folder(root / "tiny_bert_hf", vocabulary),
    }


def ter(demo: Path, out: Path, *extra: str, python: list[str] | None = None) -> subprocess.CompletedProcess:
    """``python TER.py`` on the small demo in a fresh process, writing under ``out``."""
    argv = [
        "--manifest",
        str(demo / MANIFEST_NAME),
        "--image-root",
        str(demo),
        "--epoch",
        "2",
        "--seq-len",
        "16",
        "--checkpoint-dir",
        str(out / "ckpt"),
        "--log-dir",
        str(out / "tb"),
        "--prob-dir",
        str(out / "probs"),
        "--cache-dir",
        str(out / "features"),
        *extra,
    ]
    return subprocess.run(
        [*(python or [sys.executable]), str(REPO / "TER.py"), *argv],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
    )


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
    done = subprocess.run(
        [sys.executable, "-c", LOAD_AND_PREDICT, str(model), json.dumps(texts)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return np.array(json.loads(done.stdout.strip().splitlines()[-1]))


def test_hugging_face_weights_are_the_ones_written(presets):
    from emorec.text_encoders import load_text_encoder

    encoder = load_text_encoder(str(presets["hugging_face"]), 16)
    written = hugging_face_weights(encoder.backbone.vocabulary_size)
    np.testing.assert_array_equal(
        encoder.backbone.get_layer("token_embedding").embeddings.numpy(), written["embeddings.word_embeddings.weight"]
    )
    tokens = encoder.preprocessor(["[UNK] zzzz"])["token_ids"].numpy()[0]
    assert tokens[0] == SPECIAL.index("[CLS]") and SPECIAL.index("[SEP]") in tokens


def test_an_encoder_takes_the_precision_of_the_block_it_is_loaded_in(presets, tmp_path):
    """A KerasHub preset names its dtype (float32) in its configuration; the block's policy wins, and names the
    store. Nothing is computed, so this holds on a CPU without bfloat16 too."""
    from emorec.precision import dtype_policy
    from emorec.text_encoders import load_text_encoder, text_store_folder

    assert '"float32"' in (presets["keras_hub"] / "config.json").read_text()
    with dtype_policy("bfloat16"):
        encoder = load_text_encoder(str(presets["keras_hub"]), 16)
    assert encoder.backbone.dtype_policy.name == "mixed_bfloat16" and encoder.describe()["precision"] == "bfloat16"
    assert "_16tok_mean_bfloat16_" in text_store_folder(tmp_path, encoder).name
    assert load_text_encoder(str(presets["keras_hub"]), 16).precision == "float32"


def test_a_preset_that_cannot_be_loaded_is_one_clear_error(small_demo, tmp_path, capsys):
    import sweep
    import TER
    from emorec.cli import run

    (tmp_path / "empty").mkdir()
    for preset, says in (
        (f"{tmp_path}/no_such_folder", "no such folder"),
        (f"{tmp_path}/empty", "could not be loaded"),
    ):
        argv = [
            "--manifest",
            str(small_demo / MANIFEST_NAME),
            "--image-root",
            str(small_demo),
            "--text-encoder",
            preset,
            "--checkpoint-dir",
            str(tmp_path / "ckpt"),
            "--log-dir",
            str(tmp_path / "tb"),
            "--prob-dir",
            str(tmp_path / "probs"),
            "--cache-dir",
            str(tmp_path / "features"),
        ]
        assert run(TER.main, argv) == 2
        error = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
        assert len(error) == 1 and preset in error[0] and says in error[0] and "KerasHub name" in error[0]
        assert not (tmp_path / "ckpt").exists()  # nothing trained, nothing written
    assert run(sweep.main, ["--text-encoder", f"{tmp_path}/no_such_folder", "--results-dir", str(tmp_path / "r")]) == 2
    assert "no such folder" in capsys.readouterr().err and not (tmp_path / "r").exists()
    for main, argv in ((TER.main, ["--freeze-text-encoder"]), (sweep.main, ["--freeze-text-encoder"])):
        with pytest.raises(SystemExit) as stopped:
            main(argv)
        assert stopped.value.code == 2 and "--freeze-text-encoder needs --text-encoder" in capsys.readouterr().err


HIDE_KERAS_HUB = (
    "import runpy, sys; sys.modules['keras_hub'] = None; sys.argv = sys.argv[1:]; "
    "runpy.run_path(sys.argv[0], run_name='__main__')"
)


def test_the_paper_network_needs_no_keras_hub(presets, small_demo, tmp_path):
    """Without KerasHub installed (its import made to fail), the paper's TER trains and an encoder is refused with
    how to install it."""
    from emorec.demo import GLOVE_NAME

    hidden = [sys.executable, "-c", HIDE_KERAS_HUB]
    paper = ter(small_demo, tmp_path, "--glove", str(small_demo / GLOVE_NAME), "--epoch", "1", python=hidden)
    assert paper.returncode == 0, paper.stderr[-3000:]
    encoder = ter(small_demo, tmp_path / "encoder", "--text-encoder", str(presets["keras_hub"]), python=hidden)
    assert encoder.returncode == 2 and "pip install -r Requirements-hub.txt" in encoder.stderr


def script(name: str, *argv: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """``python <name>.py ARGV`` in a fresh process, from the repository root."""
    return subprocess.run(
        [sys.executable, str(REPO / f"{name}.py"), *argv], capture_output=True, text=True, cwd=REPO, timeout=timeout
    )


def outputs(out: Path, run: str) -> list[str]:
    return [
        "--checkpoint-dir",
        str(out / "ckpt"),
        "--log-dir",
        str(out / "tb"),
        "--prob-dir",
        str(out / "probs"),
        "--run-name",
        run,
    ]


@pytest.fixture(scope="module")
def frozen_sweep(presets, image_presets, small_demo, tmp_path_factory):
    """``python sweep.py --text-encoder <HF folder> --freeze-text-encoder`` on the whole training split, one seed,
    one epoch per phase, in a fresh process: the four phases with a frozen text encoder, and IER on a tiny CLIP's
    vision tower (KerasHub's layout). Returns (its output folder, its run's name, the process)."""
    out = tmp_path_factory.mktemp("frozen_sweep")
    image_flags = f"--backbone {image_presets['clip']} --precision float32 --batch-size 32 --lr 1e-3"
    prompts = shutil.copy(DEFAULT_PROMPTS, out / "prompts.json")  # the default prompts, passed through by the sweep
    done = script(
        "sweep",
        "--fractions",
        "1.0",
        "--seeds",
        "0",
        "--epoch",
        "1",
        "--run-prefix",
        "frozen",
        "--text-encoder",
        str(presets["hugging_face"]),
        "--freeze-text-encoder",
        "--manifest",
        str(small_demo / MANIFEST_NAME),
        "--image-root",
        str(small_demo),
        "--ter-args",
        f"--seq-len 16 --cache-dir {out / 'features'}",
        "--ier-args",
        f"{image_flags} --cache-dir {out / 'features'}",
        "--checkpoint-dir",
        str(out / "ckpt"),
        "--log-dir",
        str(out / "tb"),
        "--prob-dir",
        str(out / "probs"),
        "--results-dir",
        str(out / "results"),
        "--prompts",
        str(prompts),
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return out, "frozen-f1-s0", done


def predictions_of(out: Path, run: str, demo: Path, csv: Path) -> pd.DataFrame:
    """predict.py --csv on the demo's manifest with the run, in a fresh process."""
    done = script(
        "predict",
        "--csv",
        str(demo / MANIFEST_NAME),
        "--out",
        str(csv),
        "--batch-size",
        "128",
        "--checkpoint-dir",
        str(out / "ckpt"),
        "--run-name",
        run,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return pd.read_csv(csv)


def assert_reproduces_prob_files(
    predicted: pd.DataFrame, out: Path, run: str, atol: float, image_atol: float | None = None
) -> None:
    """predict.py's probabilities against those the phases wrote, within ``atol`` (``image_atol`` for IER and the
    fusion, whose phases read the image features from the float16 store where predict.py computes them)."""
    for phase, prob_file in (
        ("TER", "text_prob.csv"),
        ("IER", "img_prob.csv"),
        ("Intermediate_fusion", "inter_prob.csv"),
    ):
        written = pd.read_csv(out / "probs" / run / prob_file)[CLASSES].to_numpy()
        tolerance = atol if phase == "TER" or image_atol is None else image_atol
        np.testing.assert_allclose(
            predicted[[f"{phase}_{c}" for c in CLASSES]].to_numpy(), written, atol=tolerance, err_msg=phase
        )


CLASSES = ["happy", "sad", "hate", "anger"]


def test_frozen_encoder_through_the_sweep_fusion_late_fusion_and_predict(frozen_sweep, presets, small_demo, tmp_path):
    out, run, sweep = frozen_sweep
    # TER filled the text store (its folder named by the preset, the tokens and the weights); the fusion read it,
    # computing nothing, and trained its layers on the stored features.
    assert "text features: computing" in sweep.stderr and sweep.stderr.count("text features: all") == 1
    stores = list((out / "features").glob("text_tiny_bert_hf_16tok_mean_float32_*"))
    assert len(stores) == 1
    assert len(list((out / "features").glob("tiny_clip_32px_embedding_*"))) == 1  # IER's, from the CLIP preset
    ter_settings = json.loads((out / "ckpt" / run / "TER.metrics.json").read_text())["text_model"]
    assert ter_settings["model"] == "frozen" and ter_settings["lr"] == 1e-3 and ter_settings["batch_size"] == 64
    assert ter_settings["encoder"]["feature_store"] == str(stores[0])
    fusion = json.loads((out / "ckpt" / run / "Intermediate_fusion.metrics.json").read_text())
    assert fusion["text_model"]["model"] == "frozen" and fusion["text_model"]["lr"] == 1e-4
    assert fusion["text_model"]["encoder"] == ter_settings["encoder"]
    summary = json.loads((out / "results" / run / "summary.json").read_text())
    assert {"TER", "IER", "Intermediate_fusion", "Late_fusion"} <= set(summary["methods"])
    assert (out / "results/label_efficiency.csv").is_file()
    # predict.py computes the text features with the saved models themselves (float32), where the phases read the
    # store's float16: within what that rounding of 8 features moves a probability.
    assert_reproduces_prob_files(predictions_of(out, run, small_demo, tmp_path / "p.csv"), out, run, atol=5e-3)

    # One tweet explained: whole words deleted from the text, whatever the tokenizer makes of them.
    manifest = pd.read_csv(small_demo / MANIFEST_NAME, dtype=str, keep_default_na=False)
    text, image = manifest["text"][0], str(small_demo / manifest["image"][0])
    done = script(
        "predict",
        "--image",
        image,
        "--text",
        text,
        "--json",
        "--explain-dir",
        str(tmp_path / "why"),
        "--checkpoint-dir",
        str(out / "ckpt"),
        "--run-name",
        run,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    explanation = json.loads(next((tmp_path / "why").glob("*.json")).read_text())
    for model in ("TER", "Intermediate_fusion"):
        words = explanation["words"][model]
        assert [w["token"] for w in words] == text.split()[:16], model
        assert any(abs(w["importance"]) > 0 for w in words), model
    assert list((tmp_path / "why").glob("*.png"))
    assert_occlusion_is_faithful(explanation, out / "ckpt" / run / "IER.keras", image)

    # TER again on the same store: read, not computed, and the same probabilities to the byte.
    written = (out / "probs" / run / "text_prob.csv").read_bytes()
    again = script(
        "TER",
        "--manifest",
        str(small_demo / MANIFEST_NAME),
        "--image-root",
        str(small_demo),
        "--epoch",
        "1",
        "--seq-len",
        "16",
        "--text-encoder",
        str(presets["hugging_face"]),
        "--freeze-text-encoder",
        "--cache-dir",
        str(out / "features"),
        *outputs(out, run),
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert "text features: all" in again.stderr and "computing" not in again.stderr
    assert (out / "probs" / run / "text_prob.csv").read_bytes() == written


def test_the_zero_label_rows_score_the_test_posts_against_the_prompts(frozen_sweep, image_presets, small_demo):
    """IER ran on a CLIP preset, so Late_fusion's report has the zero-label rows (--zero-shot auto) and the sweep's
    curve starts at 0 labels. A test post's image row is what CLIP's own towers give for it against the default
    prompts, computed here apart; both is the mean of image and text; no other row is scored."""
    from emorec.data.manifest import read_manifest
    from emorec.images import load_image

    out, run, _ = frozen_sweep
    summary = json.loads((out / "results" / run / "summary.json").read_text())
    assert {"ZeroShot_image", "ZeroShot_text", "ZeroShot_both"} <= set(summary["methods"])
    assert summary["zero_shot"]["preset"] == str(image_presets["clip"])  # --zero-shot auto: IER's backbone
    assert summary["zero_shot"]["prompts"] == str(out / "prompts.json")  # sweep.py --prompts, passed through
    curve = pd.read_csv(out / "results/label_efficiency.csv")
    zero = curve[curve["fraction"] == 0]
    assert set(zero["method"]) == {"ZeroShot_image", "ZeroShot_text", "ZeroShot_both"}
    assert (zero["training_labels"] == 0).all() and (zero["validation_labels"] == 0).all()
    assert "| 0 | 0 | 0 | 1 |" in (out / "results/label_efficiency.md").read_text()

    probabilities = {
        kind: pd.read_csv(out / "probs" / run / f"zero_shot_{kind}_prob.csv") for kind in ("image", "text", "both")
    }
    test = (probabilities["text"]["split"] == "test").to_numpy()
    for table in probabilities.values():
        assert table.loc[~test, CLASSES].isna().all().all() and table.loc[test, CLASSES].notna().all().all()
    np.testing.assert_allclose(
        probabilities["both"][CLASSES],
        (probabilities["image"][CLASSES] + probabilities["text"][CLASSES]) / 2,
        atol=1e-6,
    )

    backbone = keras_hub.models.CLIPBackbone.from_preset(str(image_presets["clip"]))
    converter = keras_hub.layers.CLIPImageConverter.from_preset(str(image_presets["clip"]))
    preprocessor = keras_hub.models.CLIPPreprocessor.from_preset(str(image_presets["clip"]))
    prompts = json.loads(DEFAULT_PROMPTS.read_text())
    tokens = preprocessor({"images": None, "prompts": np.array([prompts[c] for c in CLASSES])})["token_ids"]
    classes = np.asarray(backbone.get_text_embeddings(tokens))
    frame = read_manifest(small_demo / MANIFEST_NAME, small_demo).frame
    row = int(np.flatnonzero(test)[0])
    pixels, _ = load_image(frame["image_path"].iloc[row], 32)
    image = np.asarray(backbone.get_vision_embeddings(converter(pixels[None].astype(np.float32))))
    cosine = (image / np.linalg.norm(image)) @ (classes / np.linalg.norm(classes, axis=1, keepdims=True)).T
    logits = float(np.exp(backbone.get_layer("clip_head").logit_scale.numpy())) * cosine[0]
    expected = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    # The report's image embeddings were read back from IER's float16 store: within what that rounding moves them.
    np.testing.assert_allclose(probabilities["image"].loc[row, CLASSES].to_numpy(float), expected, atol=5e-3)


def test_edited_prompts_another_preset_and_a_bad_file_or_preset(frozen_sweep, image_presets, tmp_path, capsys):
    """Late_fusion again with the happy and sad prompts swapped: the text row's happy and sad columns swap. Again
    with --zero-shot naming a copy of IER's CLIP (another preset to it): its image embeddings go to a store of
    their own, and give the image row IER's store gave. A file without a prompt for a class, and a preset without
    a text tower, each stop the run with one error (exit 2)."""
    import Late_fusion
    from emorec.cli import run

    out, run_name, _ = frozen_sweep
    before = pd.read_csv(out / "probs" / run_name / "zero_shot_text_prob.csv")
    image_before = pd.read_csv(out / "probs" / run_name / "zero_shot_image_prob.csv")
    shutil.copytree(image_presets["clip"], tmp_path / "another_clip")
    prompts = json.loads(DEFAULT_PROMPTS.read_text())
    prompts["happy"], prompts["sad"] = prompts["sad"], prompts["happy"]
    (tmp_path / "swapped.json").write_text(json.dumps(prompts))
    # The run's Late_fusion outputs as the sweep left them, put back after (the other tests read them).
    shutil.copytree(out / "probs" / run_name, tmp_path / "probs")
    shutil.copytree(out / "ckpt" / run_name, tmp_path / "ckpt", ignore=shutil.ignore_patterns("*.keras"))
    try:
        assert (
            run(
                Late_fusion.main,
                [
                    *outputs(out, run_name),
                    "--results-dir",
                    str(tmp_path / "results"),
                    "--prompts",
                    str(tmp_path / "swapped.json"),
                ],
            )
            == 0
        )
        after = pd.read_csv(out / "probs" / run_name / "zero_shot_text_prob.csv")
        assert (
            run(
                Late_fusion.main,
                [
                    *outputs(out, run_name),
                    "--results-dir",
                    str(tmp_path / "results"),
                    "--zero-shot",
                    str(tmp_path / "another_clip"),
                ],
            )
            == 0
        )
        image_after = pd.read_csv(out / "probs" / run_name / "zero_shot_image_prob.csv")
    finally:
        shutil.copytree(tmp_path / "probs", out / "probs" / run_name, dirs_exist_ok=True)
        shutil.copytree(tmp_path / "ckpt", out / "ckpt" / run_name, dirs_exist_ok=True)
    test = before["split"] == "test"
    np.testing.assert_allclose(after.loc[test, "happy"], before.loc[test, "sad"], atol=1e-6)
    np.testing.assert_allclose(after.loc[test, "sad"], before.loc[test, "happy"], atol=1e-6)
    assert len(list((out / "features").glob("another_clip_32px_embedding_float32_*"))) == 1
    # Both stores hold float16 roundings of float32 embeddings computed in other batches: a few 1e-4 apart.
    np.testing.assert_allclose(image_after.loc[test, CLASSES], image_before.loc[test, CLASSES], atol=1e-3)

    del prompts["anger"]
    (tmp_path / "no_anger.json").write_text(json.dumps(prompts))
    for flags, says in (
        (["--prompts", str(tmp_path / "no_anger.json")], "has no prompt for anger"),
        (["--zero-shot", str(image_presets["vit"])], "ViTBackbone has no text tower"),
    ):
        assert run(Late_fusion.main, [*outputs(out, run_name), "--results-dir", str(tmp_path / "r2"), *flags]) == 2
        error = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
        assert len(error) == 1 and says in error[0], (flags, error)


def assert_occlusion_is_faithful(explanation: dict, ier_model: Path, image: str) -> None:
    """The heat map of a KerasHub backbone is occlusion's (and says so), and it is faithful: blanking
    its hottest cell lowers IER's probability of the predicted class by the map's peak, more than blanking its
    coldest cell does."""
    import keras

    import emorec.models  # noqa: F401
    from emorec.explain.explainer import BLANK_RGB, OCCLUSION_CELLS, occlusion_masks
    from emorec.images import load_image

    heat = explanation["heat_maps"]
    assert heat["method"].startswith("occlusion") and "occlusion" in heat["layer"]
    cam, peak = np.array(heat["IER"]["map"]), heat["IER"]["peak"]
    assert cam.shape == (OCCLUSION_CELLS, OCCLUSION_CELLS) and peak > 0
    pixels, _ = load_image(image, 32)
    masks = occlusion_masks(32, OCCLUSION_CELLS)
    blanked = [np.where(masks[cell], np.array(BLANK_RGB, np.float32), pixels) for cell in (cam.argmax(), cam.argmin())]
    predicted = explanation["class_names"].index(explanation["prediction"])
    probability = keras.models.load_model(ier_model).predict_on_batch(np.stack([pixels, *blanked]).astype(np.float32))[
        :, predicted
    ]
    drops = probability[0] - probability[1:]
    # The extractor runs in another batch than the explanation's, in IER's precision (float32 in this sweep; under
    # --precision auto it may be bfloat16): a drop within a few bfloat16 steps (8 bits: 0.4 %) of the probabilities.
    assert abs(drops[0] - peak) < 0.02 * probability[0] + 1e-4 and drops[0] > drops[1]


def test_fine_tuned_encoder_warm_started_fusion_and_predict(frozen_sweep, presets, small_demo, tmp_path):
    out, frozen_run, _ = frozen_sweep
    run = "tuned"
    (out / "ckpt" / run).mkdir(parents=True)
    for file in ("IER.keras", "IER.args.json", "IER.metrics.json"):  # the frozen sweep's IER, for this run too
        shutil.copy(out / "ckpt" / frozen_run / file, out / "ckpt" / run / file)
    (out / "probs" / run).mkdir(parents=True)
    shutil.copy(out / "probs" / frozen_run / "img_prob.csv", out / "probs" / run / "img_prob.csv")
    data = ["--manifest", str(small_demo / MANIFEST_NAME), "--image-root", str(small_demo), "--epoch", "1"]
    done = script(
        "TER", *data, "--text-encoder", str(presets["keras_hub"]), "--seq-len", "16", "--lr", "1e-3", *outputs(out, run)
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert "optimizer: AdamW" in done.stderr and "BertBackbone" in done.stderr
    metrics = json.loads((out / "ckpt" / run / "TER.metrics.json").read_text())
    recorded = json.loads((out / "ckpt" / run / "TER.args.json").read_text())
    settings = metrics["text_model"]
    assert settings == recorded["run"]["text_model"]
    assert settings["model"] == "fine-tuned" and settings["lr"] == 1e-3 and settings["batch_size"] == 32
    assert settings["encoder"]["architecture"] == "BertBackbone" and settings["encoder"]["dim"] == TINY["hidden_dim"]
    assert recorded["flags"]["lr"] == 1e-3 and recorded["flags"]["batch_size"] is None  # the user's flags, as given
    # The documented loading example, in a fresh process: raw strings in, the probabilities TER wrote out (the
    # same weights; another batch shape, hence a float tolerance far under any difference between classes).
    texts = pd.read_csv(small_demo / MANIFEST_NAME, dtype=str, keep_default_na=False)["text"].head(5).tolist()
    written = pd.read_csv(out / "probs" / run / "text_prob.csv")[CLASSES].head(5).to_numpy()
    np.testing.assert_allclose(saved_model_probabilities(out / "ckpt" / run / "TER.keras", texts), written, atol=1e-5)

    done = script("Intermediate_fusion", *data, "--init-from-unimodal", *outputs(out, run))
    assert done.returncode == 0, done.stderr[-4000:]
    assert "optimizer: AdamW" in done.stderr
    fusion = json.loads((out / "ckpt" / run / "Intermediate_fusion.metrics.json").read_text())
    assert fusion["text_model"]["model"] == "fine-tuned" and fusion["text_model"]["lr"] == 5e-5
    assert fusion["warm_started_layers"][0].startswith("text_encoder")
    assert "image_dense3000" in fusion["warm_started_layers"]
    # The zero-label rows of this IER's CLIP are the frozen run's (checked there): left out.
    done = script("Late_fusion", *outputs(out, run), "--results-dir", str(out / "results"), "--zero-shot", "none")
    assert done.returncode == 0, done.stderr[-4000:]
    # The saved models compute what the phases wrote (the same weights, float32; another batch shape). The image
    # phases read IER's float16 store of the tiny CLIP's 6-number embeddings: float16's 3 digits of 6 numbers move a
    # probability by a few 1e-4 (seen: 2e-4), where predict.py computes the embeddings in float32.
    assert_reproduces_prob_files(
        predictions_of(out, run, small_demo, tmp_path / "p.csv"), out, run, atol=1e-4, image_atol=1e-3
    )


def test_precision_auto_names_the_store_that_the_saved_model_reads_back(presets, small_demo, tmp_path):
    """TER --precision auto with a frozen KerasHub-layout encoder: the run records what auto resolved to (bfloat16
    on a CPU with AVX512_BF16 or AMX, float32 elsewhere), the store is that precision's, and the encoder inside the
    saved model (what Intermediate_fusion takes) opens that store as its own and finds every text in it."""
    import keras

    import emorec.models  # noqa: F401  (registers what TER.keras holds)
    from emorec.text_encoders import open_text_store, saved_text_encoder, text_keys

    done = ter(
        small_demo,
        tmp_path,
        "--text-encoder",
        str(presets["keras_hub"]),
        "--freeze-text-encoder",
        "--precision",
        "auto",
        "--epoch",
        "1",
    )
    assert done.returncode == 0, done.stderr[-4000:]
    recorded = json.loads((tmp_path / "ckpt/TER.args.json").read_text())
    precision, described = recorded["run"]["precision"], recorded["run"]["text_model"]["encoder"]
    assert recorded["flags"]["precision"] == "auto" and precision in ("float32", "bfloat16")
    assert f"precision: {precision} (--precision auto" in done.stderr and described["precision"] == precision
    store = Path(described["feature_store"])
    assert store.name.startswith(f"text_tiny_bert_16tok_mean_{precision}_")
    encoder, _ = saved_text_encoder(keras.models.load_model(tmp_path / "ckpt/TER.keras"), described)
    reopened = open_text_store(store, encoder)  # a store of another configuration would be refused here
    assert reopened.config["precision"] == precision
    texts = pd.read_csv(small_demo / MANIFEST_NAME, dtype=str, keep_default_na=False)["text"].tolist()
    assert not reopened.missing(text_keys(texts))
