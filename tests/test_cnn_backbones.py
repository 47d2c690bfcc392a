"""CNN image backbones by KerasHub preset and from timm checkpoints (issue 42), offline: a tiny random ResNet saved
as KerasHub saves a preset, and random EfficientNet-Lite0 checkpoints written in timm's exact format
(``config.json`` with ``pretrained_cfg``, ``model.safetensors`` with timm's names), one under timm's name for
TensorFlow-ported weights (``tf_efficientnet_lite0``) and one under the PyTorch-trained name; each checked against
an independent computation of the same layers in TensorFlow's own ops, and IER run on one as a user runs it, its
saved model loaded again in a fresh process."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from conftest import TINY_NORMALISATION, write_timm_checkpoint
from safetensors.numpy import load_file
from test_image_encoders import REPO, ier

from emorec.data.manifest import read_manifest
from emorec.demo import MANIFEST_NAME
from emorec.image_encoders import build_hub_extractor, load_image_encoder

STRIDES = (1, 2, 2, 2, 1, 2, 1)  # EfficientNet-Lite0's first block of each stage


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """{"tf": a tf_efficientnet_lite0 folder, "pytorch": the same weights as efficientnet_lite0}."""
    root = tmp_path_factory.mktemp("timm")
    ported = write_timm_checkpoint(root / "tf_efficientnet_lite0")
    pytorch = root / "efficientnet_lite0"
    pytorch.mkdir()
    shutil.copy(ported / "model.safetensors", pytorch)
    config = json.loads((ported / "config.json").read_text())
    (pytorch / "config.json").write_text(json.dumps({**config, "architecture": "efficientnet_lite0"}))
    return {"tf": ported, "pytorch": pytorch}


def lite0_features(weights: dict, pixels: np.ndarray, tensorflow_padding: bool, epsilon: float) -> np.ndarray:
    """timm's EfficientNet-Lite0 on ``pixels`` (0-255, normalised as the fixture's pretrained_cfg says), spatially
    averaged, computed here from the checkpoint's tensors with TensorFlow's ops: "SAME" padding (TensorFlow's: the
    extra pixel after) or PyTorch's symmetric padding, and batch-norm ``epsilon``."""
    mean, std = np.array(TINY_NORMALISATION["mean"]), np.array(TINY_NORMALISATION["std"])
    x = tf.constant((pixels / 255 - mean) / std, tf.float32)

    def conv(x, name, stride=1, depthwise=False):
        kernel = weights[f"{name}.weight"]
        size = kernel.shape[-1]
        if tensorflow_padding:
            padding = "SAME"
        else:
            x, padding = tf.pad(x, [[0, 0], [size // 2] * 2, [size // 2] * 2, [0, 0]]), "VALID"
        if depthwise:
            return tf.nn.depthwise_conv2d(x, kernel.transpose(2, 3, 0, 1), [1, stride, stride, 1], padding)
        return tf.nn.conv2d(x, kernel.transpose(2, 3, 1, 0), stride, padding)

    def norm(x, name):
        scale = weights[f"{name}.weight"] / np.sqrt(weights[f"{name}.running_var"] + epsilon)
        return (x - weights[f"{name}.running_mean"]) * scale + weights[f"{name}.bias"]

    x = tf.nn.relu6(norm(conv(x, "conv_stem", 2), "bn1"))
    x = tf.nn.relu6(norm(conv(x, "blocks.0.0.conv_dw", 1, True), "blocks.0.0.bn1"))
    x = norm(conv(x, "blocks.0.0.conv_pw"), "blocks.0.0.bn2")
    for stage, stride in enumerate(STRIDES[1:], start=1):
        blocks = len({key.split(".")[2] for key in weights if key.startswith(f"blocks.{stage}.")})
        for block in range(blocks):
            name, step = f"blocks.{stage}.{block}", stride if block == 0 else 1
            y = tf.nn.relu6(norm(conv(x, f"{name}.conv_pw"), f"{name}.bn1"))
            y = tf.nn.relu6(norm(conv(y, f"{name}.conv_dw", step, True), f"{name}.bn2"))
            y = norm(conv(y, f"{name}.conv_pwl"), f"{name}.bn3")
            x = x + y if step == 1 and x.shape[-1] == y.shape[-1] else y
    return tf.reduce_mean(tf.nn.relu6(norm(conv(x, "conv_head"), "bn2")), axis=(1, 2)).numpy()


@pytest.fixture(scope="module")
def resnet_preset(tmp_path_factory) -> str:
    """A tiny random ResNet saved as KerasHub saves a preset, with its image converter (32 px, pixels / 255)."""
    import keras_hub

    folder = str(tmp_path_factory.mktemp("cnn") / "tiny_resnet")
    keras_hub.models.ResNetBackbone(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[3],
        stackwise_num_filters=[64, 8],
        stackwise_num_blocks=[1, 1],
        stackwise_num_strides=[1, 2],
        block_type="basic_block",
    ).save_to_preset(folder)
    keras_hub.layers.ResNetImageConverter(image_size=(32, 32), scale=1 / 255).save_to_preset(folder)
    return folder


def test_a_keras_hub_cnn_preset_gives_one_vector_per_image_by_each_pooling(resnet_preset):
    """A ResNet in KerasHub's layout: its size and normalisation, the spatial average (``embedding`` and ``avg``),
    the maximum, and the paper's ``flatten`` (the whole last feature map)."""
    folder = resnet_preset
    pixels = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3))
    features = {}
    for pooling in ("embedding", "avg", "max", "flatten"):
        encoder = load_image_encoder(folder, pooling)
        assert (encoder.architecture, encoder.image_size) == ("ResNetBackbone", 32)
        features[pooling] = np.asarray(build_hub_extractor(encoder)(pixels))
    assert features["flatten"].shape == (2, 4, 4, 8)  # the whole last map, as keras.applications' (IER flattens)
    maps = features["flatten"].reshape(2, -1, 8)
    assert maps.shape[1] > 1 and features["avg"].shape == features["max"].shape == (2, 8)
    np.testing.assert_allclose(features["avg"], maps.mean(axis=1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(features["max"], maps.max(axis=1), rtol=1e-6)
    np.testing.assert_array_equal(features["embedding"], features["avg"])


def test_grad_cam_reaches_a_keras_hub_cnns_last_feature_map(resnet_preset):
    """The heat map of a KerasHub CNN is Grad-CAM's, as for VGG16: on its last feature map, whose pooling gives the
    features the head reads, with a gradient that is not zero."""
    from emorec.explain.explainer import _ImageModel
    from emorec.models import build_ier_head

    extractor = build_hub_extractor(load_image_encoder(resnet_preset, "avg"))
    image_model = _ImageModel(extractor, build_ier_head((8,), 3))
    assert not image_model.occlusion and image_model.layer_name.endswith("'s last feature map")
    pixels = tf.constant(np.random.default_rng(1).uniform(0, 255, (1, 32, 32, 3)), tf.float32)
    with tf.GradientTape() as tape:
        maps, features = image_model.features(pixels, tape)
        first_logit = image_model.logits(features)[:, 0]
    assert maps.shape[1:] == (4, 4, 8)  # 32 px through the stem (stride 4) and the second stage (2)
    np.testing.assert_allclose(features, extractor(pixels), rtol=1e-5, atol=1e-6)
    assert np.abs(tape.gradient(first_logit, maps)).max() > 0


def test_a_tf_ported_checkpoint_computes_what_tensorflow_padding_and_epsilon_give(checkpoints):
    """The tf_ checkpoint: TensorFlow's SAME padding and epsilon 1e-3; the same weights under the PyTorch name:
    symmetric padding and 1e-5, as KerasHub converts it. Each as an independent computation says, and the two far
    apart, so the test tells them apart."""
    pixels = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3))
    weights = load_file(str(checkpoints["tf"] / "model.safetensors"))
    computed = {}
    for kind, (tensorflow_padding, epsilon) in {"tf": (True, 1e-3), "pytorch": (False, 1e-5)}.items():
        encoder = load_image_encoder(str(checkpoints[kind]), "avg")
        assert encoder.image_size == 64 and encoder.architecture == f"{'tf_' * (kind == 'tf')}efficientnet_lite0"
        computed[kind] = np.asarray(build_hub_extractor(encoder)(pixels))
        expected = lite0_features(weights, pixels, tensorflow_padding, epsilon)
        # float32 through 16 blocks in another order of operations (oneDNN's kernels against TensorFlow's ops):
        # a few units in the sixth significant digit of the features' scale.
        np.testing.assert_allclose(computed[kind], expected, atol=1e-4 * np.abs(expected).max(), rtol=0)
    assert np.abs(computed["tf"] - computed["pytorch"]).max() > 0.01 * np.abs(computed["tf"]).max()  # 0.10 here


def test_ier_on_a_tf_ported_checkpoint_saves_a_model_that_loads_with_the_same_numbers(
    checkpoints, small_demo, tmp_path
):
    """IER.py as a user runs it, with the folder as --backbone; then, in another fresh process, IER.keras loaded
    after `import emorec.models` gives the probabilities IER wrote for the same images (theirs from the float16
    store, these from the pixels: within float16's rounding of the features)."""
    result = ier(small_demo, tmp_path, "--backbone", str(checkpoints["tf"]), "--pooling", "avg")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "tf_efficientnet_lite0, 3,413,024 weights, 64 px, 1280 numbers per image (--pooling avg)" in result.stderr
    folder = next((tmp_path / "features").iterdir())
    assert folder.name.startswith("tf_efficientnet_lite0_64px_avg_float32_")
    probabilities = pd.read_csv(tmp_path / "probs" / "img_prob.csv", dtype={"id": str}).head(4)
    image_of = read_manifest(small_demo / MANIFEST_NAME, small_demo).frame.set_index("id")["image_path"]
    images = [image_of[row_id] for row_id in probabilities["id"]]
    loaded = subprocess.run(
        [sys.executable, "-c", LOAD_AND_PREDICT, str(tmp_path / "ckpt" / "IER.keras"), *images],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    predicted = np.array(json.loads(loaded.stdout.strip().splitlines()[-1]))
    np.testing.assert_allclose(predicted, probabilities.iloc[:, 3:].to_numpy(), atol=2e-3)


LOAD_AND_PREDICT = """
import json, sys
import keras, numpy as np
import emorec.models
from emorec.images import load_image
model = keras.models.load_model(sys.argv[1])
pixels = np.stack([load_image(path, model.input_shape[1])[0] for path in sys.argv[2:]]).astype("float32")
print(json.dumps(model.predict(pixels, verbose=0).tolist()))
"""


def test_a_timm_checkpoint_that_cannot_be_used_is_one_clear_error(checkpoints, small_demo, tmp_path, capsys):
    import IER
    from emorec.cli import run

    config = json.loads((checkpoints["tf"] / "config.json").read_text())
    folders = {}
    for name, changed, weights in (
        ("v2", {"architecture": "tf_efficientnetv2_s"}, True),
        ("vit", {"architecture": "vit_base_patch16_224"}, True),
        ("no_weights", {}, False),
        ("no_mean", {"pretrained_cfg": {"input_size": [3, 64, 64], "std": [0.5] * 3}}, True),
    ):
        folder = folders[name] = tmp_path / name
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps({**config, **changed}))
        if weights:
            (folder / "model.safetensors").symlink_to(checkpoints["tf"] / "model.safetensors")
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
    for name, says in (
        (
            "v2",
            "no converter for timm's architecture 'tf_efficientnetv2_s'; KerasHub converts timm's "
            "resnet, csp, dark, densenet, mobilenet, vgg, efficientnet, hgnetv2",
        ),
        ("vit", "no converter for timm's architecture 'vit_base_patch16_224'"),
        ("no_weights", "has config.json but no model.safetensors"),
        ("no_mean", "has no pretrained_cfg mean"),
    ):
        assert run(IER.main, [*data, "--backbone", str(folders[name])]) == 2, name
        error = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
        assert len(error) == 1 and says in error[0], (name, error)
        assert not (tmp_path / "ckpt").exists() and not (tmp_path / "features").exists()  # nothing computed
