"""Shared test helpers: tiny images and manifests written by the tests themselves."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

# `make test` runs whole files per process (pytest-xdist's --dist loadfile), so that a file's fixtures are made once.
# These files go to the process of the file named beside them, where a session fixture they share is made once
# (the same work twice would cost the suite a minute): test_explain reads the run that test_readme's README commands
# trained (the `trained` fixture); test_pipeline reads the whole-split setting of test_label_efficiency's sweep
# (the `small_sweep` fixture).
RUN_WITH = {"tests/test_explain.py": "tests/test_readme.py", "tests/test_pipeline.py": "tests/test_label_efficiency.py"}
# The files that take longest, sent to the processes first (longest first), so that no long file is left for
# last while the other process waits; the others follow in their usual order.
LONGEST_FIRST = [
    "tests/test_readme.py",
    "tests/test_label_efficiency.py",
    "tests/test_text_encoders.py",
    "tests/test_distribute.py",
    "tests/test_real_data.py",
    "tests/test_resume.py",
    "tests/test_ier.py",
    "tests/test_storage.py",
    "tests/test_ter.py",
    "tests/test_image_encoders.py",
]


def process_file(nodeid: str) -> str:
    """The file whose process runs the test ``nodeid``: its own file, or its RUN_WITH partner."""
    file = nodeid.split("::", 1)[0]
    return RUN_WITH.get(file, file)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """Under --dist loadfile: whole files per process as usual, but RUN_WITH's files with their partner's, and the
    files in the collection's order (LONGEST_FIRST's), not by their number of tests."""
    if config.getoption("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class FilesSharingFixtures(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return process_file(nodeid)

    config.option.loadscopereorder = False
    return FilesSharingFixtures(config, log)


def pytest_collection_modifyitems(config, items):
    """LONGEST_FIRST's files first, and each RUN_WITH file just before its partner (a stable sort: the order of
    the tests within a file, and of the other files, is kept)."""

    def rank(item):
        file = process_file(item.nodeid)
        return LONGEST_FIRST.index(file) if file in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)


def write_image(path: Path, seed: int = 0, size: tuple[int, int] = (16, 12), fmt: str = "JPEG") -> Path:
    """Write a small random RGB image to ``path`` (folders created) and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels, "RGB").save(path, format=fmt)
    return path


def write_manifest(path: Path, rows: list[dict], columns: list[str] | None = None) -> Path:
    """Write ``rows`` (dicts) as a CSV manifest with the given column order."""
    columns = columns or list(rows[0])
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture
def tiny_dataset(tmp_path):
    """A valid 40-row manifest in the IIT-R TIER form with its images; 8 tweets have two images.

    Returns (manifest path, image root).
    """
    root = tmp_path / "images"
    names = ["happy", "sad", "hate", "anger"]
    rows = []
    for tweet in range(32):
        tweet_id = f"76809796742520{tweet:04d}"
        label = tweet % 4
        for number in range(1, 3 if tweet < 8 else 2):
            image = f"data/76809/{tweet_id}-{number}.jpg"
            write_image(root / image, seed=tweet * 10 + number)
            rows.append(
                {
                    "label": names[label] if tweet % 2 else str(label),
                    "text": f"tweet {_word(tweet)} text",
                    "image": image,
                }
            )
    return write_manifest(tmp_path / "image_labels.csv", rows), root


def _word(number: int) -> str:
    """A word of letters for ``number`` (aa, ab, ...): texts that differ only in a number normalise alike."""
    return chr(97 + number // 26) + chr(97 + number % 26)


@pytest.fixture(scope="session")
def small_demo(tmp_path_factory):
    """A 600-image demo (the default is 2000), with word vectors from 5,000 unlabelled tweets; its folder."""
    from emorec import demo

    out = tmp_path_factory.mktemp("demo")
    demo.generate(out, n=600, seed=0, corpus_size=5000)
    return out


@pytest.fixture(scope="session")
def small_sweep(small_demo, tmp_path_factory):
    """A two-fraction, one-seed label-efficiency sweep on the small demo (1 epoch per phase, 32 px images, the
    fusions with the baselines): (its output folder, its argv). Its whole-split setting, the run ``t-f1-s0``, is the
    four phases chained as a user runs them, which test_pipeline checks."""
    import sweep
    from emorec.demo import GLOVE_NAME, MANIFEST_NAME

    out = tmp_path_factory.mktemp("sweep")
    shutil.copy(small_demo / GLOVE_NAME, out / GLOVE_NAME)  # a GloVe file of its own, so its caches are this sweep's
    argv = [
        "--fractions",
        "0.25",
        "1.0",
        "--seeds",
        "0",
        "--epoch",
        "1",
        "--run-prefix",
        "t",
        "--with-baselines",
        "--manifest",
        str(small_demo / MANIFEST_NAME),
        "--image-root",
        str(small_demo),
        "--ter-args",
        f"--glove {out / GLOVE_NAME} --batch-size 32 --lr 3e-3",
        "--ier-args",
        f"--image-weights none --image-size 32 --batch-size 32 --lr 1e-3 --cache-dir {out / 'features'}",
        "--inter-args",
        "--lr 1e-3",
        "--checkpoint-dir",
        str(out / "ckpt"),
        "--log-dir",
        str(out / "tb"),
        "--prob-dir",
        str(out / "probs"),
        "--results-dir",
        str(out / "results"),
    ]
    assert sweep.main(argv) == 0
    return out, argv


def demo_extraction(demo: Path, cache_dir: Path, rows: int):
    """The first ``rows`` rows of the demo in ``demo``, a random 32 px VGG16 in float32, its feature store under
    ``cache_dir`` and the rows' image keys: (frame, extractor, store, keys), for tests of the feature store."""
    from emorec import images
    from emorec.data.manifest import read_manifest
    from emorec.demo import MANIFEST_NAME
    from emorec.extraction import open_image_store
    from emorec.feature_store import image_keys

    frame = read_manifest(demo / MANIFEST_NAME, demo).frame.iloc[:rows]
    extractor, identity = images.build_extractor("vgg16", "none", 32, seed=0)
    store = open_image_store(cache_dir, "vgg16", identity, extractor, "flatten", "float32")
    return frame, extractor, store, image_keys(frame["image_path"], demo)


def assert_same_stored_features(actual, expected, recomputed: int = 0) -> None:
    """Stored image features of the same images, computed once more in another batch shape or process: every row
    but at most ``recomputed`` bit for bit (those are read back from the store), and each value within one float16
    step of the expected one.

    Why that tolerance: the backbone computes in float32 and the store keeps float16. oneDNN picks its kernel by
    CPU and batch shape, so the same image in a batch of 1 and in a batch of 8 may differ in float32's last bits
    (seen on an AVX2 CPU without AVX-512: 0.058837890625 against 0.058868408203125, one float16 step). Rounded to
    float16 that is the same value or its neighbour; near zero, where float16's steps are tiny, the float32
    difference itself (a few units of float32's last place of the layer's largest values) is the bound.
    """
    actual, expected = np.asarray(actual, np.float32), np.asarray(expected, np.float32)
    assert actual.shape == expected.shape
    exact = sum(np.array_equal(a, e) for a, e in zip(actual, expected))
    assert exact >= len(expected) - recomputed, f"only {exact} of {len(expected)} rows are bit for bit the same"
    step = np.spacing(np.maximum(np.abs(actual), np.abs(expected)).astype(np.float16)).astype(np.float32)
    bound = np.maximum(step, 1e-6 * float(np.abs(expected).max()))
    far = np.abs(actual - expected) > bound
    assert not far.any(), (
        f"{far.sum()} values differ by more than one float16 step, e.g. {actual[far][:3]} against {expected[far][:3]}"
    )


def _shapes(extractor) -> dict:
    """What the extraction reads of an extractor besides its batches: its input and output shapes."""
    return {"input_shape": extractor.input_shape, "output_shape": extractor.output_shape}


def counting(extractor, calls: list):
    """``extractor``, recording the size of each batch it runs in ``calls``."""

    def predict_on_batch(batch):
        calls.append(len(batch))
        return extractor.predict_on_batch(batch)

    return type("Counted", (), {**_shapes(extractor), "predict_on_batch": staticmethod(predict_on_batch)})


def dying_extractor(extractor, dies_at: int, error: type[BaseException], calls: list):
    """An extractor that runs ``extractor`` on each batch (recording its size in ``calls``) and raises ``error`` on
    batch number ``dies_at``: an extraction killed in the middle."""

    def predict_on_batch(batch):
        calls.append(len(batch))
        if len(calls) == dies_at:
            raise error()
        return extractor.predict_on_batch(batch)

    return type("Dying", (), {**_shapes(extractor), "predict_on_batch": staticmethod(predict_on_batch)})


def interrupt_after_epoch(monkeypatch, epoch: int) -> None:
    """Raise KeyboardInterrupt once epoch ``epoch`` (1-based) of any training is backed up: a kill between two
    epochs (``monkeypatch`` undoes it)."""
    from emorec.training.backup import TrainingBackup

    backed_up = TrainingBackup.on_epoch_end

    def on_epoch_end(self, number, logs=None):
        backed_up(self, number, logs)
        if number + 1 == epoch:
            raise KeyboardInterrupt

    monkeypatch.setattr(TrainingBackup, "on_epoch_end", on_epoch_end)


def link_clone(root: Path) -> Path:
    """Lay ``root`` out like a clone: the repository's scripts, the package and docs/, linked; returns ``root``."""
    from test_readme import REPO

    for path in REPO.iterdir():
        if path.suffix == ".py" or path.name in ("emorec", "docs"):
            (root / path.name).symlink_to(path)
    return root


@pytest.fixture(scope="session")
def clone(tmp_path_factory):
    """A folder laid out like a clone (the scripts, the package and docs/, linked), with a VGG16 weights file (one
    per session: test_readme runs the README's and the docs' commands in it, test_explain reads the run they
    trained)."""
    import keras
    from test_readme import WEIGHTS

    root = link_clone(tmp_path_factory.mktemp("clone"))
    (root / WEIGHTS).parent.mkdir()
    keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3)).save(root / WEIGHTS)
    return root


@pytest.fixture(scope="session")
def trained(clone):
    """The docs' demo block; the README's block of each phase on the demo; the demo's data placed as the real
    data goes, then the block of the paper's four commands: the clone, whose default run is the last one's."""
    from test_readme import block, commands, run_block, run_command, run_together, target

    demo = run_block("demo", clone)
    assert "demo baselines" in demo[0].stdout
    generate, ter, ier, *fusions = commands(block("demo-phases"))
    assert [target(generate), target(ter), target(ier)] == ["emorec.demo", "TER.py", "IER.py"]
    run_command(generate, clone)  # the same seed: the same files again
    run_together([ter, ier], clone)
    for words in fusions:
        run_command(words, clone)
    assert (clone / "results/summary.json").is_file()
    shutil.move(clone / "results", clone / "demo-phases-results")  # kept apart from the paper block's report
    manifest = pd.read_csv(clone / "data_t4sa/demo/image_labels.csv", dtype=str, keep_default_na=False)
    manifest["image"] = "/data_bt4sa/demo/" + manifest["image"]  # the paper's form: resolves under data_t4sa/
    (clone / "data_files").mkdir(exist_ok=True)  # the demo block's run wrote its probabilities and features there
    manifest.to_csv(clone / "data_files/image_labels.csv", index=False)
    shutil.copy(clone / "data_t4sa/demo/glove.demo.200d.txt", clone / "data_files/glove.twitter.27B.200d.txt")
    shutil.copy(next((clone / "data_t4sa/demo/data").rglob("*.jpg")), clone / "photo.jpg")
    ter, ier, *fusions = commands(block("phases"))
    assert [target(ter), target(ier)] == ["TER.py", "IER.py"]
    run_together([ter, ier], clone)  # the two unimodal phases need nothing from each other
    for words in fusions:
        run_command(words, clone)
    return clone


# Tiny random KerasHub image backbones (issue 31), 32 px images in 8 px patches, written in the formats a user passes.
TINY_VISION = {"patch_size": 8, "num_layers": 1, "num_heads": 2, "hidden_dim": 8}
TINY_NORMALISATION = {"mean": [0.48, 0.46, 0.41], "std": [0.27, 0.26, 0.28]}  # CLIP's, rounded


def write_vit_preset(folder: Path) -> Path:
    """A tiny random ViT and its image converter (scaled to [-1, 1]), saved as KerasHub saves a preset."""
    import keras_hub

    keras_hub.models.ViTBackbone(image_shape=(32, 32, 3), mlp_dim=16, **TINY_VISION).save_to_preset(str(folder))
    keras_hub.layers.ViTImageConverter(image_size=(32, 32), scale=1 / 127.5, offset=-1.0).save_to_preset(str(folder))
    return folder


def clip_tokenizer():
    """A byte-level BPE tokenizer as CLIP's is made (every byte's character, alone and ending a word, a few merges,
    the start and end tokens), with a tiny vocabulary."""
    import keras_hub
    from keras_hub.src.tokenizers.byte_pair_tokenizer import bytes_to_unicode

    _, characters = bytes_to_unicode()  # (bytes, the character standing for each)
    merges = ["h a", "ha p", "s a", "a n", "an g", "e r</w>", "p o", "po s"]
    vocabulary = [
        *characters,
        *(c + "</w>" for c in characters),
        *(m.replace(" ", "") for m in merges),
        "<|startoftext|>",
        "<|endoftext|>",
    ]
    return keras_hub.models.CLIPTokenizer(vocabulary={token: i for i, token in enumerate(vocabulary)}, merges=merges)


def write_clip_preset(folder: Path) -> Path:
    """A tiny random CLIP (vision and text towers, 6-dimensional embeddings) with its image converter and its
    preprocessor (:func:`clip_tokenizer`, CLIP's 77 tokens per text: one per byte but for a few merges, so the
    prompts differ within them), saved as KerasHub saves a preset."""
    import keras_hub

    tokenizer = clip_tokenizer()
    vision = keras_hub.models.CLIPVisionEncoder(image_shape=(32, 32, 3), intermediate_dim=16, **TINY_VISION)
    text = keras_hub.models.CLIPTextEncoder(
        vocabulary_size=tokenizer.vocabulary_size(),
        embedding_dim=8,
        hidden_dim=8,
        num_layers=1,
        num_heads=2,
        intermediate_dim=16,
        max_sequence_length=77,
    )
    keras_hub.models.CLIPBackbone(vision, text, projection_dim=6).save_to_preset(str(folder))
    keras_hub.models.CLIPPreprocessor(tokenizer, sequence_length=77).save_to_preset(str(folder))
    mean, std = np.array(TINY_NORMALISATION["mean"]), np.array(TINY_NORMALISATION["std"])
    keras_hub.layers.CLIPImageConverter(
        image_size=(32, 32), scale=list(1 / (255 * std)), offset=list(-mean / std)
    ).save_to_preset(str(folder))
    return folder


def hugging_face_vit_weights(seed: int = 0) -> dict[str, np.ndarray]:
    """Random weights of the tiny ViT under Hugging Face's names and shapes (``ViTForImageClassification``; out x in
    kernels)."""
    rng = np.random.default_rng(seed)
    hidden, patch, inner = TINY_VISION["hidden_dim"], TINY_VISION["patch_size"], 16
    shapes = {
        "vit.embeddings.patch_embeddings.projection.weight": (hidden, 3, patch, patch),
        "vit.embeddings.patch_embeddings.projection.bias": (hidden,),
        "vit.embeddings.cls_token": (1, 1, hidden),
        "vit.embeddings.position_embeddings": (1, 1 + (32 // patch) ** 2, hidden),
        "vit.layernorm.weight": (hidden,),
        "vit.layernorm.bias": (hidden,),
    }
    for layer in range(TINY_VISION["num_layers"]):
        prefix = f"vit.encoder.layer.{layer}."
        for part in (
            "attention.attention.query",
            "attention.attention.key",
            "attention.attention.value",
            "attention.output.dense",
        ):
            shapes |= {f"{prefix}{part}.weight": (hidden, hidden), f"{prefix}{part}.bias": (hidden,)}
        shapes |= {
            f"{prefix}intermediate.dense.weight": (inner, hidden),
            f"{prefix}intermediate.dense.bias": (inner,),
            f"{prefix}output.dense.weight": (hidden, inner),
            f"{prefix}output.dense.bias": (hidden,),
        }
        for norm in ("layernorm_before", "layernorm_after"):
            shapes |= {f"{prefix}{norm}.weight": (hidden,), f"{prefix}{norm}.bias": (hidden,)}
    return {name: (0.2 * rng.standard_normal(shape)).astype(np.float32) for name, shape in shapes.items()}


def write_hugging_face_vit(folder: Path) -> Path:
    """The tiny ViT in the Hugging Face layout, as ``save_pretrained`` writes one with its image processor
    (``preprocessor_config.json``: rescaled to [0, 1], then normalised by CLIP's mean and deviation)."""
    import json

    from safetensors.numpy import save_file

    folder.mkdir(parents=True)
    config = {
        "architectures": ["ViTForImageClassification"],
        "model_type": "vit",
        "image_size": 32,
        "patch_size": TINY_VISION["patch_size"],
        "num_channels": 3,
        "hidden_size": TINY_VISION["hidden_dim"],
        "num_hidden_layers": TINY_VISION["num_layers"],
        "num_attention_heads": TINY_VISION["num_heads"],
        "intermediate_size": 16,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
        "layer_norm_eps": 1e-12,
        "qkv_bias": True,
    }
    (folder / "config.json").write_text(json.dumps(config))
    save_file(hugging_face_vit_weights(), str(folder / "model.safetensors"))
    (folder / "preprocessor_config.json").write_text(
        json.dumps(
            {
                "image_processor_type": "ViTImageProcessor",
                "do_resize": True,
                "size": {"height": 32, "width": 32},
                "do_rescale": True,
                "rescale_factor": 1 / 255,
                "do_normalize": True,
                "image_mean": TINY_NORMALISATION["mean"],
                "image_std": TINY_NORMALISATION["std"],
            }
        )
    )
    return folder


@pytest.fixture(scope="session")
def image_presets(tmp_path_factory):
    """The tiny image backbones: {"vit": KerasHub layout, "clip": KerasHub layout, "vit_hf": Hugging Face layout}."""
    root = tmp_path_factory.mktemp("image_presets")
    return {
        "vit": write_vit_preset(root / "tiny_vit"),
        "clip": write_clip_preset(root / "tiny_clip"),
        "vit_hf": write_hugging_face_vit(root / "tiny_vit_hf"),
    }


def write_timm_checkpoint(folder: Path, architecture: str = "tf_efficientnet_lite0", image_size: int = 64) -> Path:
    """A random timm EfficientNet checkpoint as timm and the Hugging Face hub give one (issue 42): ``config.json``
    (``architecture``, ``pretrained_cfg`` with the input size, mean and std) and ``model.safetensors`` with timm's
    parameter names, in PyTorch's layouts. The names and layouts are those KerasHub's converter reads: a random
    KerasHub network of the architecture is read out through the converter, each tensor drawn in the PyTorch shape
    whose conversion gives the Keras weight's."""
    import json
    from itertools import permutations

    from keras_hub.src.utils.timm import convert_efficientnet
    from safetensors.numpy import save_file

    base = {"architecture": architecture.removeprefix("tf_")}
    backbone = convert_efficientnet.backbone_cls(**convert_efficientnet.convert_backbone_config(base))
    rng, tensors = np.random.default_rng(0), {}

    class Recorder:
        def port_weight(self, keras_variable, hf_weight_key, hook_fn=None):
            shape = tuple(keras_variable.shape)
            for candidate in dict.fromkeys(permutations(shape)):
                try:
                    converted = hook_fn(np.zeros(candidate), None) if hook_fn else np.zeros(candidate)
                except (AssertionError, ValueError):
                    continue
                if converted.shape == shape:
                    break
            if hf_weight_key.endswith("running_var"):
                value = rng.uniform(0.5, 1.5, candidate)
            else:
                value = rng.normal(0.0, 0.3, candidate)
            tensors[hf_weight_key] = value.astype(np.float32)

    convert_efficientnet.convert_weights(backbone, Recorder(), base)
    folder.mkdir(parents=True)
    save_file(tensors, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(
        json.dumps(
            {
                "architecture": architecture,
                "num_classes": 1000,
                "num_features": 1280,
                "pretrained_cfg": {
                    "input_size": [3, image_size, image_size],
                    "interpolation": "bicubic",
                    "mean": TINY_NORMALISATION["mean"],
                    "std": TINY_NORMALISATION["std"],
                    "num_classes": 1000,
                    "classifier": "classifier",
                },
            }
        )
    )
    return folder
