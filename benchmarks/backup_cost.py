"""What the per-epoch training backup costs at real size: IER's head at 224 px (Flatten of 7 x 7 x 512 VGG16
features into Dense(1000): 25 M weights, with Adam's two moments 75 M numbers to write).

    .venv/bin/python benchmarks/backup_cost.py [--rows 2000] [--epochs 3]

Trains the head with fit_best on random features twice, with the backup (emorec.training.backup.TrainingBackup) and with
its file writes switched off, and prints the seconds per epoch of each, the backup's size on disk, and the share of an
epoch it takes here and, from the measured time per training step, on B-T4SA's ~330,000 training pairs.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import emorec.training.backup  # noqa: E402
from emorec.models import build_ier_head  # noqa: E402
from emorec.runs import PhaseOutputs  # noqa: E402
from emorec.training.batches import ArrayBatches  # noqa: E402
from emorec.training.fit import fit_best, seed_everything  # noqa: E402
from emorec.training.options import TrainingOptions  # noqa: E402

BT4SA_TRAIN_ROWS = 330_000
BATCH = 20  # IER's default


def seconds_per_epoch(rows: int, epochs: int, folder: Path, backup: bool) -> tuple[float, int]:
    """Train the head; return (seconds per epoch, bytes of the backup folder after the last epoch)."""
    seed_everything(0)
    features = np.random.default_rng(0).normal(size=(rows, 7, 7, 512)).astype(np.float16)
    labels = np.random.default_rng(1).integers(0, 4, size=rows)
    head = build_ier_head(features.shape[1:], 4)
    outputs = PhaseOutputs(
        model=folder / "m.keras",
        args_json=folder / "a.json",
        metrics_json=folder / "m.json",
        epochs_csv=folder / "e.csv",
        tensorboard=folder / "tb",
        prob_dir=folder,
        backup=folder / "bk",
    )
    if not backup:  # the backup keeps its history in memory but writes nothing
        emorec.training.backup._save_arrays = emorec.training.backup.write_json_atomic = lambda path, data: None
    started = time.perf_counter()
    fit_best(
        head,
        ArrayBatches(features, labels, np.arange(rows), BATCH, seed=0),
        ArrayBatches(features, labels, np.arange(min(rows, 200)), 256),
        TrainingOptions(epochs, 1e-4),
        outputs,
    )
    seconds = (time.perf_counter() - started) / epochs
    size = sum(path.stat().st_size for path in outputs.backup.glob("*")) if outputs.backup.exists() else 0
    return seconds, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        with_backup, size = seconds_per_epoch(args.rows, args.epochs, Path(tmp) / "with", backup=True)
        without, _ = seconds_per_epoch(args.rows, args.epochs, Path(tmp) / "without", backup=False)
    backup_seconds = max(with_backup - without, 0.0)
    step = without / -(-args.rows // BATCH)
    real_epoch = step * -(-BT4SA_TRAIN_ROWS // BATCH)
    print(f"IER head at 224 px, {args.rows} rows, batch {BATCH}, {args.epochs} epochs each")
    print(
        f"seconds per epoch: with backup {with_backup:.2f}, without {without:.2f} "
        f"(ratio {with_backup / without:.3f}); backup on disk {size / 1e6:.0f} MB"
    )
    print(
        f"the backup's {backup_seconds:.2f} s against a B-T4SA epoch of about {real_epoch:.0f} s "
        f"({step * 1000:.1f} ms per step here): {100 * backup_seconds / real_epoch:.2f} %"
    )


if __name__ == "__main__":
    main()
