"""Image features: how fast the frozen backbone runs, what the cache saves, and extraction's memory.

In one run, on this machine:
1. the machine's float32 matmul GFLOP/s (2048 x 2048, TensorFlow);
2. VGG16's images/s and the GFLOP/s it reaches at 224 px (15.5 G multiply-adds,
   31 GFLOPs, per image), as a share of the matmul figure;
3. one epoch of the IER head on cached features against the same epoch through
   the frozen backbone (what the paper's script does every epoch), per image,
   for N images;
4. peak resident memory of a feature extraction into the feature store over N
   and 4N images (separate processes), which must not grow with the number of images;
5. VGG16's images/s in each --precision (float32, Keras' mixed bfloat16 and
   float16) and the cosine similarity of the lower precisions' features to
   float32's (per image, the mean and the lowest).

    .venv/bin/python benchmarks/image_features.py [--images 32] [--image-size 224]

With ``--backbones``, only this instead: per backbone and --precision, the
images/s of the extractor IER builds (224 px), the numbers per image and the
store's bytes per image. The KerasHub backbones are the architectures of real
presets at their real sizes (their configurations below) with random weights
(none can be downloaded here), saved as local presets and loaded through
``build_extractor`` as ``IER.py --backbone`` loads a preset: the speed is the
real one, the features are not.

    .venv/bin/python benchmarks/image_features.py --backbones vgg16 clip vit siglip dinov2 [--images 32]
        [--precisions float32 bfloat16 float16]

The CNN families KerasHub converts go in that table the same way (``resnet50``, ``efficientnet_b0``,
``densenet121``: their architectures at their real sizes, random weights), and so does any local preset folder
named by its path, real weights included: a timm checkpoint folder such as the TF-ported EfficientNet-Lite0.

    .venv/bin/python benchmarks/image_features.py --backbones vgg16 resnet50 efficientnet_b0 densenet121 \
        /path/to/tf_efficientnet_lite0
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
VGG16_GFLOPS_224 = 31.0  # 2 x 15.5 G multiply-adds per image


def write_images(folder: Path, count: int) -> list[str]:
    """Write ``count`` 500x375 JPEGs of noise and return their paths."""
    from PIL import Image

    rng = np.random.default_rng(0)
    paths = []
    for index in range(count):
        path = folder / f"{index}-1.jpg"
        Image.fromarray(rng.integers(0, 256, (375, 500, 3), dtype=np.uint8)).save(path, quality=90)
        paths.append(str(path))
    return paths


def extraction_peak_rss(count: int, image_size: int, folder: Path) -> float:
    """Extract features of ``count`` images in a fresh process; return its peak RSS in MB."""
    code = f"""
import resource, sys
import pandas as pd
sys.path.insert(0, {str(ROOT)!r})
from benchmarks.image_features import write_images
from emorec.extraction import Extraction, ensure_features
from emorec.feature_store import FeatureStore, image_keys
from emorec.images import build_extractor
from pathlib import Path
folder = Path({str(folder)!r}) / "n{count}"
folder.mkdir()
paths = write_images(folder, {count})
extractor, _ = build_extractor("vgg16", "none", {image_size}, 0)
store = FeatureStore.open(folder / "features", {{"feature_shape": list(extractor.output_shape[1:])}})
ensure_features(store, paths, image_keys(paths, folder), Extraction(extractor, 16, chunk=64))
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(result.stdout.strip().splitlines()[-1])


# The image towers of real presets, at their sizes: clip_vit_base_patch16, vit_base_patch16_224_imagenet,
# siglip_base_patch16_224, dinov2_base (patch 14: 224 px gives 16x16 patches).
BASE = {"hidden_dim": 768, "num_layers": 12, "num_heads": 12}


def write_real_size_preset(name: str, folder: Path) -> str:
    """The architecture of preset family ``name`` at its real size, random weights, saved as a local preset with
    its image converter (scale and offset as the family's); returns the folder."""
    import keras_hub

    hub, path = keras_hub.models, str(folder / name)
    imagenet = {"scale": 1 / 127.5, "offset": -1.0}
    if name == "clip":
        vision = hub.CLIPVisionEncoder(
            patch_size=16,
            intermediate_dim=3072,
            intermediate_activation="quick_gelu",
            image_shape=(224, 224, 3),
            **BASE,
        )
        text = hub.CLIPTextEncoder(
            vocabulary_size=49408,
            embedding_dim=512,
            hidden_dim=512,
            num_layers=12,
            num_heads=8,
            intermediate_dim=2048,
            intermediate_activation="quick_gelu",
            max_sequence_length=77,
        )
        backbone, converter = hub.CLIPBackbone(vision, text, projection_dim=512), keras_hub.layers.CLIPImageConverter
    elif name == "siglip":
        vision = hub.SigLIPVisionEncoder(patch_size=16, intermediate_dim=3072, image_shape=(224, 224, 3), **BASE)
        text = hub.SigLIPTextEncoder(vocabulary_size=32000, embedding_dim=768, intermediate_dim=3072, **BASE)
        backbone, converter = hub.SigLIPBackbone(vision, text), keras_hub.layers.SigLIPImageConverter
    elif name == "vit":
        backbone = hub.ViTBackbone(image_shape=(224, 224, 3), patch_size=16, mlp_dim=3072, **BASE)
        converter = keras_hub.layers.ViTImageConverter
    elif name == "dinov2":
        backbone = hub.DINOV2Backbone(patch_size=14, intermediate_dim=3072, image_shape=(224, 224, 3), **BASE)
        converter = keras_hub.layers.DINOV2ImageConverter
    elif name == "resnet50":
        backbone = hub.ResNetBackbone(
            input_conv_filters=[64],
            input_conv_kernel_sizes=[7],
            stackwise_num_filters=[64, 128, 256, 512],
            stackwise_num_blocks=[3, 4, 6, 3],
            stackwise_num_strides=[1, 2, 2, 2],
            block_type="bottleneck_block",
        )
        converter = keras_hub.layers.ResNetImageConverter
    elif name == "efficientnet_b0":
        from keras_hub.src.utils.timm import convert_efficientnet

        backbone = hub.EfficientNetBackbone(**convert_efficientnet.convert_backbone_config({"architecture": name}))
        converter = keras_hub.layers.EfficientNetImageConverter
    elif name == "densenet121":
        backbone, converter = (
            hub.DenseNetBackbone(stackwise_num_repeats=[6, 12, 24, 16]),
            keras_hub.layers.DenseNetImageConverter,
        )
    else:
        raise SystemExit(
            f"unknown backbone {name}: vgg16, clip, siglip, vit, dinov2, resnet50, efficientnet_b0, "
            "densenet121, or a preset folder's path"
        )
    backbone.save_to_preset(path)
    converter(image_size=(224, 224), **imagenet).save_to_preset(path)
    return path


def backbone_table(names: list[str], count: int, precisions: list[str]) -> dict:
    """Per backbone and precision: images/s of IER's extractor at 224 px, numbers and store bytes per image."""
    from emorec.images import build_extractor

    pixels = np.random.default_rng(0).uniform(0, 255, (16, 224, 224, 3)).astype(np.float32)
    batches, table = max(1, count // 16), {}
    with tempfile.TemporaryDirectory() as folder:
        for name in names:
            if name == "vgg16" or Path(name).is_dir():
                preset = name
            else:
                preset = write_real_size_preset(name, Path(folder))
            weights, pooling = ("none", "avg") if name == "vgg16" else ("preset", "embedding")
            rows = {}
            for precision in precisions:
                extractor, _ = build_extractor(preset, weights, 224 if name == "vgg16" else None, 0, pooling, precision)
                extractor.predict_on_batch(pixels)
                started = time.perf_counter()
                for _ in range(batches):
                    extractor.predict_on_batch(pixels)
                rows[precision] = round(batches * 16 / (time.perf_counter() - started), 2)
            numbers = int(np.prod(extractor.output_shape[1:]))
            table[name] = {
                "images_per_s": rows,
                **{f"{p}_speedup": round(rows[p] / rows["float32"], 2) for p in rows if p != "float32"},
                "weights": int(extractor.count_params()),
                "numbers_per_image": numbers,
                "store_bytes_per_image": 2 * numbers,
                "pooling": pooling,
            }
            if name == "vgg16":
                table[name]["store_bytes_per_image_flatten"] = 2 * 7 * 7 * 512
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=32, help="N: images per timing, and the smaller RSS run")
    parser.add_argument("--image-size", type=int, default=224, help="backbone input size")
    parser.add_argument(
        "--backbones",
        nargs="+",
        default=None,
        help="only the table per backbone (vgg16, clip, siglip, vit, dinov2, resnet50, efficientnet_b0, "
        "densenet121, or a preset folder) and precision",
    )
    parser.add_argument(
        "--precisions",
        nargs="+",
        default=["float32", "bfloat16"],
        help="with --backbones: the precisions timed (float32 first)",
    )
    args = parser.parse_args()
    if args.backbones:
        table = backbone_table(args.backbones, args.images, args.precisions)
        print(json.dumps({"images": args.images, "backbones": table}, indent=2))
        return
    import keras
    import tensorflow as tf

    from emorec.images import build_extractor
    from emorec.models import build_ier_head, image_model

    size = 2048
    a, b = tf.random.normal((size, size)), tf.random.normal((size, size))
    tf.matmul(a, b).numpy()
    started = time.perf_counter()
    for _ in range(10):
        tf.matmul(a, b).numpy()
    matmul_gflops = 10 * 2 * size**3 / (time.perf_counter() - started) / 1e9

    extractor, _ = build_extractor("vgg16", "none", args.image_size, 0)
    pixels = np.random.default_rng(0).uniform(0, 255, (16, args.image_size, args.image_size, 3)).astype(np.float32)
    extractor.predict_on_batch(pixels)
    batches = max(1, args.images // 16)
    started = time.perf_counter()
    for _ in range(batches):
        extractor.predict_on_batch(pixels)
    images_per_s = batches * 16 / (time.perf_counter() - started)
    backbone_gflops = images_per_s * VGG16_GFLOPS_224 * (args.image_size / 224) ** 2

    labels = np.zeros(args.images, dtype=np.int64)
    images = np.resize(pixels, (args.images, *pixels.shape[1:]))
    features = extractor.predict(images, batch_size=16, verbose=0).astype(np.float16)
    head = build_ier_head(features.shape[1:], 4)
    head.compile(optimizer=keras.optimizers.Adam(1e-4), loss="sparse_categorical_crossentropy")
    head.fit(features.astype(np.float32), labels, batch_size=20, epochs=1, verbose=0)  # compile once
    # The head's epoch costs little per image, so time it on many rows (the features repeated)
    # and compare seconds per image: an epoch over the real data scales with that.
    # At the paper's batch of 20 the head's cost is Adam updating its 25 M weights every step,
    # so it is timed at batch 256 too.
    many = np.resize(features, (100 * args.images, *features.shape[1:])).astype(np.float32)
    cached_epoch = {}
    for batch_size in (20, 256):
        head.fit(many[:batch_size], labels.repeat(100)[:batch_size], batch_size=batch_size, epochs=1, verbose=0)
        started = time.perf_counter()
        head.fit(many, np.zeros(len(many), dtype=np.int64), batch_size=batch_size, epochs=1, verbose=0)
        cached_epoch[batch_size] = (time.perf_counter() - started) / len(many) * args.images
    through = image_model(extractor, head)
    through.compile(optimizer=keras.optimizers.Adam(1e-4), loss="sparse_categorical_crossentropy")
    through.fit(images[:20], labels[:20], batch_size=20, epochs=1, verbose=0)
    started = time.perf_counter()
    through.fit(images, labels, batch_size=20, epochs=1, verbose=0)
    backbone_epoch = time.perf_counter() - started

    with tempfile.TemporaryDirectory() as folder:
        rss_small = extraction_peak_rss(args.images, args.image_size, Path(folder))
        rss_large = extraction_peak_rss(4 * args.images, args.image_size, Path(folder))

    precisions, reference = {}, None
    for precision in ("float32", "bfloat16", "float16"):
        low, _ = build_extractor("vgg16", "none", args.image_size, 0, precision=precision)
        low.predict_on_batch(pixels)
        started = time.perf_counter()
        for _ in range(batches):
            out = np.asarray(low.predict_on_batch(pixels), dtype=np.float64).reshape(len(pixels), -1)
        rate = batches * 16 / (time.perf_counter() - started)
        reference = out if reference is None else reference
        cosine = (out * reference).sum(axis=1) / np.linalg.norm(out, axis=1) / np.linalg.norm(reference, axis=1)
        precisions[precision] = {
            "images_per_s": round(rate, 2),
            "speedup_over_float32": None,
            "cosine_to_float32_mean": round(float(cosine.mean()), 5),
            "cosine_to_float32_min": round(float(cosine.min()), 5),
        }
    for precision in precisions:
        precisions[precision]["speedup_over_float32"] = round(
            precisions[precision]["images_per_s"] / precisions["float32"]["images_per_s"], 2
        )

    results = {
        "matmul_gflops": round(matmul_gflops, 1),
        "vgg16_images_per_s": round(images_per_s, 2),
        "vgg16_gflops": round(backbone_gflops, 1),
        "vgg16_share_of_matmul": round(backbone_gflops / matmul_gflops, 2),
        f"head_epoch_through_backbone_s_{args.images}_images_batch20": round(backbone_epoch, 2),
        f"head_epoch_on_cache_s_{args.images}_images_batch20": round(cached_epoch[20], 4),
        f"head_epoch_on_cache_s_{args.images}_images_batch256": round(cached_epoch[256], 4),
        "cache_speedup_batch20": round(backbone_epoch / cached_epoch[20], 1),
        "cache_speedup_batch256": round(backbone_epoch / cached_epoch[256], 1),
        f"extraction_peak_rss_mb_{args.images}": round(rss_small, 1),
        f"extraction_peak_rss_mb_{4 * args.images}": round(rss_large, 1),
        "rss_ratio_4n_over_n": round(rss_large / rss_small, 3),
        "image_size": args.image_size,
        "precision": precisions,
    }
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
