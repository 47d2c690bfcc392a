"""Adam's training step: keras.optimizers.Adam against emorec.training.optimizer.FusedAdam (TensorFlow's fused kernel).

Times training steps (after the first, which traces) of the paper's heads on
VGG16 features at 224 px: IER's Flatten -> Dense(1000) at its batch of 20, the
fusion's image Dense(3000) at batch 32, and the whole TER network at its batch of 256
(small dense layers, a sparse embedding gradient). Prints ms per step and the
ratio, both measured in one run, and the largest weight difference after the
timed steps:

    .venv/bin/python benchmarks/fused_adam.py [--steps 12]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import keras
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from emorec.models import build_ier_head, build_ter_network  # noqa: E402
from emorec.training.fit import seed_everything
from emorec.training.optimizer import FusedAdam  # noqa: E402


def image_head(units: int) -> keras.Model:
    features = keras.Input((7, 7, 512))
    hidden = keras.layers.Dense(units, activation="relu")(keras.layers.Flatten()(features))
    return keras.Model(features, keras.layers.Dense(4, activation="softmax")(hidden))


def step_time(build, optimizer, inputs, labels, batch_size: int) -> tuple[float, list[np.ndarray]]:
    """Seconds per training step of a freshly seeded model, and its weights afterwards."""
    seed_everything(0)
    model = build()
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
    model.fit(inputs[:batch_size], labels[:batch_size], batch_size=batch_size, verbose=0)  # traces
    started = time.perf_counter()
    model.fit(inputs, labels, batch_size=batch_size, shuffle=False, verbose=0)
    return (time.perf_counter() - started) / (len(inputs) // batch_size), model.get_weights()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=12, help="timed steps per model")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    embeddings = rng.normal(0, 0.4, size=(20_000, 200)).astype(np.float32)
    cases = [
        ("IER head, Dense(25088 -> 1000)", lambda: build_ier_head((7, 7, 512), 4), 20, (7, 7, 512), np.float32),
        ("fusion image Dense(25088 -> 3000)", lambda: image_head(3000), 32, (7, 7, 512), np.float32),
        ("TER network (20k-word vocabulary)", lambda: build_ter_network(embeddings, 30, 4), 256, (30,), np.int32),
    ]
    print(f"{'model':36s} {'batch':>5s} {'Adam ms':>9s} {'FusedAdam ms':>12s} {'speed-up':>8s} {'max |dw|':>9s}")
    for name, build, batch, shape, dtype in cases:
        n = batch * args.steps
        inputs = rng.normal(size=(n, *shape)) if dtype == np.float32 else rng.integers(0, 20_000, (n, *shape))
        inputs, labels = inputs.astype(dtype), np.arange(n) % 4
        keras_seconds, keras_weights = step_time(build, keras.optimizers.Adam(1e-4), inputs, labels, batch)
        fused_seconds, fused_weights = step_time(build, FusedAdam(1e-4), inputs, labels, batch)
        difference = max(float(np.abs(a - b).max()) for a, b in zip(keras_weights, fused_weights))
        print(
            f"{name:36s} {batch:5d} {keras_seconds * 1e3:9.0f} {fused_seconds * 1e3:12.0f} "
            f"{keras_seconds / fused_seconds:7.2f}x {difference:9.1e}"
        )


if __name__ == "__main__":
    main()
