"""IER with a KerasHub image backbone (issue 31), offline: tiny random ViT and CLIP backbones written by the tests in
the exact formats a user passes (KerasHub's preset layout from ``save_to_preset``, and a Hugging Face folder with
``config.json``, ``model.safetensors`` and ``preprocessor_config.json``), run as a user runs them, in fresh
processes. The four phases, predict.py and the explanations with one are in test_text_encoders' frozen sweep."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import keras_hub  # Requirements-hub.txt, which make test installs
import numpy as np
import pytest
from conftest import TINY_NORMALISATION, assert_same_stored_features, dying_extractor, hugging_face_vit_weights

from emorec.demo import MANIFEST_NAME
from emorec.presets import hugging_face_unreachable

REPO = Path(__file__).resolve().parents[1]


def ier_argv(demo: Path, out: Path, *extra: str) -> list[str]:
    """IER.py's flags on the small demo, writing under ``out``: one epoch, float32."""
    return [
        "--manifest",
        str(demo / MANIFEST_NAME),
        "--image-root",
        str(demo),
        "--epoch",
        "1",
        "--batch-size",
        "32",
        "--lr",
        "1e-3",
        "--precision",
        "float32",
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


def ier(demo: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    """``python IER.py`` on the small demo in a fresh process, writing under ``out``."""
    return subprocess.run(
        [sys.executable, str(REPO / "IER.py"), *ier_argv(demo, out, *extra)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
    )


def test_a_hugging_face_folder_gives_its_weights_and_its_image_processor(image_presets):
    from emorec.image_encoders import load_image_encoder

    encoder = load_image_encoder(str(image_presets["vit_hf"]))
    written = hugging_face_vit_weights()
    embedding = encoder.backbone.get_layer("vit_patching_and_embedding")
    np.testing.assert_array_equal(
        embedding.patch_embedding.kernel.numpy(),
        written["vit.embeddings.patch_embeddings.projection.weight"].transpose(2, 3, 1, 0),
    )
    np.testing.assert_array_equal(embedding.class_token.numpy(), written["vit.embeddings.cls_token"])
    # preprocessor_config.json: pixels / 255, then (x - mean) / std, as one scale and offset per channel.
    mean, std = np.array(TINY_NORMALISATION["mean"]), np.array(TINY_NORMALISATION["std"])
    np.testing.assert_allclose(encoder.scale, 1 / (255 * std))
    np.testing.assert_allclose(encoder.offset, -mean / std)
    assert encoder.image_size == 32 and encoder.describe()["architecture"] == "ViTBackbone"
    assert encoder.describe()["dim"] == 8  # the class token


def test_clips_vision_tower_takes_the_precision_of_the_block_it_is_loaded_in(image_presets):
    """A CLIP preset names its towers' dtype apart from the backbone's (float32); the block's policy wins. Nothing
    is computed, so this holds on a CPU without bfloat16 too."""
    from emorec.image_encoders import load_image_encoder
    from emorec.precision import dtype_policy

    with dtype_policy("bfloat16"):
        encoder = load_image_encoder(str(image_presets["clip"]))
    tower = encoder.vision.network.get_layer("clip_vision_encoder")
    assert tower.dtype_policy.name == "mixed_bfloat16"
    assert encoder.vision.network.get_layer("vision_projection").dtype_policy.name == "mixed_bfloat16"
    assert encoder.describe()["dim"] == 6  # CLIP's projected embedding, the space its text tower shares
    float32 = load_image_encoder(str(image_presets["clip"]))
    assert float32.vision.network.get_layer("clip_vision_encoder").dtype_policy.name == "float32"
    assert float32.weights_sha256 == encoder.weights_sha256  # the same weights: bfloat16 is only the arithmetic


def test_ier_with_a_preset_fills_the_store_in_shares_resumes_after_a_kill_and_trains(
    image_presets, small_demo, tmp_path, capsys
):
    """Share 0 of 2 by one process, share 1 killed after its first chunk by another, then IER alone: it computes
    only what is left, trains, and the store holds what one uninterrupted extraction gives."""
    import IER
    from emorec import images
    from emorec.cli import run
    from emorec.data.manifest import read_manifest
    from emorec.extraction import Extraction, compute_features, ensure_features, share_of
    from emorec.feature_store import FeatureStore, image_keys, store_folder

    preset = str(image_presets["vit_hf"])
    first = ier(small_demo, tmp_path, "--backbone", preset, "--num-shards", "2", "--shard-index", "0")
    assert first.returncode == 0, first.stderr[-3000:]
    assert "share 0 of 2 (0 first): 300 images computed" in first.stderr
    folder = next((tmp_path / "features").iterdir())
    assert folder.name.startswith("tiny_vit_hf_32px_embedding_float32_")

    frame = read_manifest(small_demo / MANIFEST_NAME, small_demo).frame
    paths, keys = frame["image_path"].tolist(), image_keys(frame["image_path"], small_demo)
    extractor, identity = images.build_extractor(preset, "preset", None, 0, "embedding", "float32")
    assert store_folder(tmp_path / "features", preset, identity, 32, "embedding", "float32") == folder
    path_of = dict(zip(keys, paths))
    rest = share_of(keys, 1, 2)

    class Killed(Exception):
        pass

    store = FeatureStore.open(folder)
    with pytest.raises(Killed):  # dies in the second chunk of 64
        compute_features(
            store,
            [path_of[key] for key in rest],
            rest,
            Extraction(dying_extractor(extractor, 3, Killed, []), 32, chunk=64),
            "skip",
        )
    assert len(FeatureStore.open(folder).entries) == 300 + 64

    assert run(IER.main, ier_argv(small_demo, tmp_path, "--backbone", preset)) == 0  # this process: no second start-up
    logged = capsys.readouterr().err
    assert "computing 236 of 600 images" in logged and "ViTBackbone" in logged
    metrics = json.loads((tmp_path / "ckpt" / "IER.metrics.json").read_text())
    assert metrics["image_size"] == 32 and metrics["weights_identity"] == identity
    assert json.loads((tmp_path / "ckpt" / "IER.args.json").read_text())["run"]["pooling"] == "embedding"

    single = FeatureStore.open(tmp_path / "single", dict(FeatureStore.open(folder).config))
    expected = ensure_features(single, paths, keys, Extraction(extractor, 32), "skip")
    # Three processes against one, in other batch shapes: within a float16 step (assert_same_stored_features).
    assert_same_stored_features(
        FeatureStore.open(folder).view(keys).features[:], expected.features[:], recomputed=len(keys)
    )


def test_a_preset_that_cannot_be_used_is_one_clear_error(image_presets, small_demo, tmp_path, capsys, monkeypatch):
    import IER
    from emorec.cli import run

    (tmp_path / "empty").mkdir()
    bert = tmp_path / "tiny_bert"
    keras_hub.models.BertBackbone(
        vocabulary_size=10, num_layers=1, num_heads=2, hidden_dim=4, intermediate_dim=8, max_sequence_length=8
    ).save_to_preset(str(bert))
    data = [
        "--manifest",
        str(small_demo / MANIFEST_NAME),
        "--image-root",
        str(small_demo),
        "--checkpoint-dir",
        str(tmp_path / "ckpt"),
        "--log-dir",
        str(tmp_path / "tb"),
        "--prob-dir",
        str(tmp_path / "probs"),
        "--cache-dir",
        str(tmp_path / "features"),
    ]
    for flags, says in (
        (["--backbone", f"{tmp_path}/no_such_folder"], "no such folder"),
        (["--backbone", f"{tmp_path}/empty"], "could not be loaded"),
        (["--backbone", str(bert)], "BertBackbone is not an image backbone"),
        (["--backbone", str(image_presets["vit"]), "--image-size", "64"], "takes images of 32 pixels"),
        (["--backbone", str(image_presets["vit"]), "--pooling", "flatten"], "gives tokens, not a convolutional"),
    ):
        assert run(IER.main, [*data, *flags]) == 2, flags
        error = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
        assert len(error) == 1 and says in error[0], (flags, error)
        assert not (tmp_path / "ckpt").exists() and not (tmp_path / "features").exists()  # nothing written
    # A Hugging Face handle without network names the cause and the way out (issue 45), not a missing config.json.
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert run(IER.main, [*data, "--backbone", "hf://google/vit-base-patch16-224"]) == 2
    error = capsys.readouterr().err
    assert "could not be downloaded: HF_HUB_OFFLINE is set" in error and "config.json" not in error.split("; ")[0]
    assert "hf download google/vit-base-patch16-224 --local-dir models/vit-base-patch16-224" in error
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # a port nothing listens on: as a server that cannot be reached
        monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{closed.getsockname()[1]}")
        assert hugging_face_unreachable().startswith(f"no network: 127.0.0.1:{closed.getsockname()[1]} cannot be")
    for flags, says in (
        (["--backbone", "some_preset", "--image-weights", "none"], "carries its own weights"),
        (["--pooling", "embedding"], "--pooling embedding is a KerasHub preset's"),
    ):
        with pytest.raises(SystemExit) as stopped:
            IER.main(flags)
        assert stopped.value.code == 2 and says in capsys.readouterr().err
