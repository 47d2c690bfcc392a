"""Is a timm checkpoint loaded exactly? Its ImageNet logits, computed through what ``IER.py --backbone`` loads,
against a reference's, for images given as the reference's own inputs.

The checkpoint folder is timm's (``config.json``, ``model.safetensors``; a ``tf_`` one is converted with
TensorFlow's padding and epsilon, :mod:`emorec.timm_checkpoints`). The logits are the classifier the checkpoint
holds (``classifier.weight``, ``classifier.bias``) on IER's features (``--pooling avg``: the spatial average, as
the network's own head pools). The reference folder holds, per image, ``<name>.input224.npy`` (the network's input
as an HxWx3 array of 0-255 pixel values, resized and cropped as the reference did) and ``<name>.logits.npy`` (the
reference's logits). Prints, per image, the largest difference, the correlation and whether the top-5 agree, in
float32, and the same for the checkpoint as KerasHub alone would take it (under the PyTorch architecture's name)
where it is a ``tf_`` one, to show what exact loading changes.

    .venv/bin/python benchmarks/timm_exactness.py CHECKPOINT_FOLDER REFERENCE_FOLDER

With ``--store STORE --image-root ROOT``, also: the vectors an IER run stored for the first ``--count`` images
under ROOT (``*.jpg``, sorted) against the checkpoint's network computed here on the same decoded images in
float32: the largest difference relative to the features' scale, which the store's float16 bounds (2**-11).

    .venv/bin/python benchmarks/timm_exactness.py CHECKPOINT_FOLDER REFERENCE_FOLDER \
        --store data_files/features/tf_efficientnet_lite0_224px_embedding_float32_... --image-root IMAGES
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def logits_of(folder: str, inputs: np.ndarray) -> np.ndarray:
    """The checkpoint's logits for ``inputs`` (images, H, W, 3; 0-255) through IER's extractor and its classifier."""
    from safetensors.numpy import load_file

    from emorec.image_encoders import build_hub_extractor, load_image_encoder

    encoder = load_image_encoder(folder, "avg")
    features = np.asarray(build_hub_extractor(encoder).predict(inputs, verbose=0), np.float64)
    weights = load_file(str(Path(folder) / "model.safetensors"))
    return features @ weights["classifier.weight"].T.astype(np.float64) + weights["classifier.bias"]


def store_against_network(folder: str, store: str, image_root: str, count: int) -> dict:
    """The stored vectors of the first ``count`` images under ``image_root`` against the network's, computed here."""
    from emorec.feature_store import FeatureStore, image_keys
    from emorec.image_encoders import build_hub_extractor, load_image_encoder
    from emorec.images import load_image

    extractor = build_hub_extractor(load_image_encoder(folder, "avg"))
    paths = [str(path) for path in sorted(Path(image_root).rglob("*.jpg"))[:count]]
    stored = FeatureStore.open(Path(store)).view(image_keys(paths, image_root)).features[:].astype(np.float64)
    pixels = np.stack([load_image(path, extractor.input_shape[1])[0] for path in paths]).astype(np.float32)
    computed = np.asarray(extractor.predict(pixels, batch_size=16, verbose=0), np.float64)
    relative = np.abs(stored - computed).max(axis=1) / np.abs(computed).max(axis=1)
    return {
        "images": len(paths),
        "largest_relative_difference": float(relative.max()),
        "mean_relative_difference": float(relative.mean()),
        "float16_step": 2.0**-11,
    }


def compare(logits: np.ndarray, references: dict[str, np.ndarray]) -> dict:
    rows = {}
    for (name, reference), computed in zip(references.items(), logits):
        reference = reference.reshape(-1)
        rows[name] = {
            "max_abs_difference": float(np.abs(computed - reference).max()),
            "correlation": float(np.corrcoef(computed, reference)[0, 1]),
            "top5_same": bool((np.argsort(-computed)[:5] == np.argsort(-reference)[:5]).all()),
            "top1": int(computed.argmax()),
        }
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="a timm checkpoint folder (config.json, model.safetensors)")
    parser.add_argument("reference", help="a folder of <name>.input224.npy and <name>.logits.npy")
    parser.add_argument("--store", help="an IER feature store of this checkpoint (--pooling embedding or avg)")
    parser.add_argument("--image-root", help="the images the store was filled from (with --store)")
    parser.add_argument("--count", type=int, default=64, help="images compared with --store")
    args = parser.parse_args()
    names = sorted(path.name.removesuffix(".input224.npy") for path in Path(args.reference).glob("*.input224.npy"))
    inputs = np.stack([np.load(Path(args.reference) / f"{name}.input224.npy").reshape(224, 224, 3) for name in names])
    references = {name: np.load(Path(args.reference) / f"{name}.logits.npy") for name in names}
    results = {"exact": compare(logits_of(args.checkpoint, inputs.astype(np.float32)), references)}
    config = json.loads((Path(args.checkpoint) / "config.json").read_text())
    if config["architecture"].startswith("tf_"):
        with tempfile.TemporaryDirectory() as folder:
            renamed = Path(folder) / "pytorch_name"
            renamed.mkdir()
            (renamed / "model.safetensors").symlink_to(Path(args.checkpoint).resolve() / "model.safetensors")
            (renamed / "config.json").write_text(json.dumps({**config, "architecture": config["architecture"][3:]}))
            results["as_the_pytorch_architecture"] = compare(
                logits_of(str(renamed), inputs.astype(np.float32)), references
            )
    if args.store:
        results["store"] = store_against_network(args.checkpoint, args.store, args.image_root, args.count)
    print(json.dumps({"checkpoint": config["architecture"], **results}, indent=2))


if __name__ == "__main__":
    main()
