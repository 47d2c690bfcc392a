"""The image input pipeline alone: images/s of decode + resize, Pillow against TensorFlow's native decoders.

In one run, on the demo's JPEGs (``make data`` makes them; --demo names another folder), at --image-size:
1. a plain loop of ``emorec.images.load_image`` (Pillow decode + resize) on one core;
2. the pipeline IER uses (``load_image`` in a ``tf.numpy_function`` inside the tf.data map);
3. TensorFlow's native JPEG decode (``tf.io.decode_jpeg``) with its antialiased bilinear resize, which is
   what gives Pillow's pixels (a plain bilinear resize is faster but differs by up to 73 levels per pixel);
4. the native decode with Pillow's resample in a ``tf.numpy_function``;
2, 3 and 4 with 1 and with 2 parallel map calls (one thread per call), each the best of three passes,
and each pipeline's largest and mean pixel difference from ``load_image``'s.

    .venv/bin/python benchmarks/input_pipeline.py [--demo data_t4sa/demo] [--image-size 224] [--images 2000]
"""

from __future__ import annotations

import argparse
import glob
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo", default=str(ROOT / "data_t4sa" / "demo"), help="folder holding the images")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--images", type=int, default=2000, help="at most this many images")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    import numpy as np
    import tensorflow as tf
    from PIL import Image

    from emorec.images import load_image

    size = args.image_size
    paths = sorted(glob.glob(f"{args.demo}/**/*.jpg", recursive=True))[: args.images]
    if not paths:
        sys.exit(f"no JPEGs under {args.demo}: run `make data` first")
    for path in paths:  # warm the page cache
        Path(path).read_bytes()

    def with_pil(path):
        pixels, _ = tf.numpy_function(lambda p: load_image(p, size), [path], [tf.uint8, tf.bool])
        return pixels

    def native(path):
        return tf.image.resize(tf.io.decode_jpeg(tf.io.read_file(path), channels=3), (size, size), antialias=True)

    def native_then_pil(path):
        def resample(pixels):
            return np.asarray(Image.fromarray(pixels).resize((size, size), Image.Resampling.BILINEAR))

        return tf.numpy_function(resample, [tf.io.decode_jpeg(tf.io.read_file(path), channels=3)], tf.uint8)

    def pipeline(decode, calls: int) -> tf.data.Dataset:
        options = tf.data.Options()
        options.threading.max_intra_op_parallelism = 1
        return (
            tf.data.Dataset.from_tensor_slices(paths)
            .with_options(options)
            .map(
                lambda path: tf.round(tf.cast(tf.reshape(decode(path), (size, size, 3)), tf.float32)),
                num_parallel_calls=calls,
            )
            .batch(args.batch_size)
            .prefetch(tf.data.AUTOTUNE)
        )

    def rate(run) -> float:
        run()  # warm-up: graph tracing, thread pools
        best = 0.0
        for _ in range(3):
            start = time.perf_counter()
            run()
            best = max(best, len(paths) / (time.perf_counter() - start))
        return best

    print(f"{len(paths)} JPEGs from {args.demo} at {size} px, TensorFlow {tf.__version__}")
    reference = np.stack([load_image(path, size)[0] for path in paths[:256]]).astype(np.float32)
    pil = rate(lambda: [load_image(path, size) for path in paths])
    print(f"{'Pillow loop, one core':<44}{pil:7.0f} images/s")
    for name, decode in (
        ("Pillow in the pipeline (IER's)", with_pil),
        ("native decode + native resize", native),
        ("native decode + Pillow resample", native_then_pil),
    ):
        pixels = np.concatenate([batch.numpy() for batch in pipeline(decode, 2).take(-(-256 // args.batch_size))])
        difference = np.abs(pixels[: len(reference)] - reference)
        one, two = (
            rate(lambda decode=decode, calls=calls: [None for _ in pipeline(decode, calls)]) for calls in (1, 2)
        )
        print(f"{name + ', 1 call':<44}{one:7.0f} images/s  ({one / pil:.2f}x the loop)")
        print(
            f"{name + ', 2 calls':<44}{two:7.0f} images/s  ({two / pil:.2f}x the loop, {two / one:.2f}x 1 call); "
            f"pixels differ from Pillow's by {difference.mean():.2f} on average, {difference.max():.0f} at most"
        )


if __name__ == "__main__":
    main()
