"""A training step with and without XLA (``jit_compile``), per precision: is XLA faster on this machine?

    .venv/bin/python benchmarks/xla_step.py [--network ier|ter] [--features 512] [--vocabulary 5000]
                                            [--batch-size 32] [--steps 50]

Trains IER's head (Flatten -> Dense(1000) -> softmax) on random features, or TER's network on random token ids
(GloVe-sized embeddings of --vocabulary words), for --steps steps after two warm-up steps, each way, in one
process, and prints the seconds per step and the ratio. --features 25088 is VGG16's whole 7x7x512 map at 224 px;
512 its pooled features. What ``emorec.training.fit.use_xla`` decides rests on these figures.
"""

import argparse
import sys
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from emorec.models import build_ier_head, build_ter_network  # noqa: E402
from emorec.precision import dtype_policy  # noqa: E402
from emorec.training.optimizer import adam  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--network", choices=("ier", "ter"), default="ier", help="IER's head or TER's network")
parser.add_argument("--features", type=int, default=512, help="numbers per image (ier)")
parser.add_argument("--vocabulary", type=int, default=5000, help="words in the embeddings (ter)")
parser.add_argument("--batch-size", type=int, default=32, help="rows per step")
parser.add_argument("--steps", type=int, default=50, help="timed steps")
parser.add_argument("--precisions", default="float32,bfloat16", help="comma-separated precisions to time")
args = parser.parse_args()

rng = np.random.default_rng(0)
if args.network == "ier":
    x = rng.normal(size=(args.batch_size * 4, args.features)).astype(np.float32)
else:
    x = rng.integers(2, args.vocabulary, size=(args.batch_size * 4, 30))
y = rng.integers(0, 4, size=len(x))
data = tf.data.Dataset.from_tensor_slices((x, y)).batch(args.batch_size).repeat()
what = f"IER head on {args.features} features" if args.network == "ier" else f"TER, {args.vocabulary} words"
gpus = tf.config.list_physical_devices("GPU")
print(f"device: {'GPU ' + gpus[0].name if gpus else 'CPU'}; {what}, batch {args.batch_size}, {args.steps} steps")
for precision in args.precisions.split(","):
    seconds = {}
    for xla in (False, True):
        keras.utils.set_random_seed(0)
        with dtype_policy(precision):
            head = (
                build_ier_head((args.features,), 4)
                if args.network == "ier"
                else build_ter_network(rng.normal(size=(args.vocabulary, 200)).astype(np.float32), 30, 4)
            )
        head.compile(optimizer=adam(1e-4), loss="sparse_categorical_crossentropy", jit_compile=xla)
        head.fit(data, steps_per_epoch=2, epochs=1, verbose=0)  # tracing and compiling
        started = time.perf_counter()
        head.fit(data, steps_per_epoch=args.steps, epochs=1, verbose=0)
        seconds[xla] = (time.perf_counter() - started) / args.steps
    print(
        f"{precision:9s} without XLA {seconds[False] * 1e3:8.2f} ms/step   "
        f"with XLA {seconds[True] * 1e3:8.2f} ms/step   "
        f"XLA speed-up {seconds[False] / seconds[True]:.2f}x"
    )
