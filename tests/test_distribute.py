"""--strategy on CPU: MirroredStrategy over two logical CPU devices, a real two-worker MultiWorkerMirroredStrategy
on 127.0.0.1, and two processes extracting one feature store at once. Every run is a fresh process, as a user's."""

from __future__ import annotations

import csv
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_same_stored_features

from emorec.distribute import CPU_DEVICES_ENV

REPO = Path(__file__).resolve().parents[1]
PHASES = """
import sys
from emorec.cli import run
import TER, IER, Intermediate_fusion
data, out, cache, strategy = sys.argv[1:5], sys.argv[5:11], sys.argv[11:13], sys.argv[13:]
for phase, flags in ((TER, ["--glove", "none", "--epoch", "3"]),
                     (IER, [*cache, "--image-weights", "none", "--image-size", "32", "--precision", "float32",
                            "--epoch", "3", "--batch-size", "8"]),
                     (Intermediate_fusion, ["--precision", "float32", "--epoch", "2", "--batch-size", "8"])):
    status = run(phase.main, [*data, *out, *strategy, *flags])
    if status:
        sys.exit(status)
"""


def start(args: list[str], env: dict | None = None, cwd: Path = REPO) -> subprocess.Popen:
    """Start ``python args...`` in a fresh process (the repository on its path), its output captured."""
    return subprocess.Popen(
        [sys.executable, *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(process: subprocess.Popen, timeout: int = 300) -> str:
    """Wait for ``process``; its output, after asserting that it succeeded."""
    output, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, output[-4000:]
    return output


def outputs_flags(folder: Path) -> list[str]:
    return [
        "--checkpoint-dir",
        str(folder / "ck"),
        "--log-dir",
        str(folder / "tb"),
        "--prob-dir",
        str(folder / "p"),
        "--cache-dir",
        str(folder / "cache"),
    ]


def last_epoch(folder: Path, phase: str) -> dict:
    with open(folder / "ck" / f"{phase}.epochs.csv", newline="") as epochs:
        return {key: float(value) for key, value in list(csv.DictReader(epochs))[-1].items()}


def test_mirrored_over_two_cpu_devices_trains_every_phase_as_the_default_strategy(tiny_dataset, tmp_path):
    manifest, root = tiny_dataset
    data = ["--manifest", str(manifest), "--image-root", str(root)]
    runs = {
        name: start(
            ["-c", PHASES, *data, *outputs_flags(tmp_path / name), "--strategy", name],
            {CPU_DEVICES_ENV: "2"} if name == "mirrored" else None,
        )
        for name in ("default", "mirrored")
    }
    logs = {name: finish(process) for name, process in runs.items()}
    assert "strategy: mirrored, 2 replica(s) in sync" in logs["mirrored"]
    assert "strategy:" not in logs["default"]  # the default says nothing
    for phase in ("TER", "IER", "Intermediate_fusion"):
        config = json.loads((tmp_path / "mirrored" / "ck" / f"{phase}.args.json").read_text())
        assert config["run"]["distribution"] == {"name": "mirrored", "replicas": 2, "workers": 1}
        default, mirrored = last_epoch(tmp_path / "default", phase), last_epoch(tmp_path / "mirrored", phase)
        # The same updates up to the summation order, the last uneven batch and (TER) the dropout draws.
        assert abs(default["val_loss"] - mirrored["val_loss"]) < 0.02, (phase, default, mirrored)
        assert abs(default["loss"] - mirrored["loss"]) < 0.03, (phase, default, mirrored)
    # IER's head has no dropout: its probabilities agree closely.
    probabilities = {
        name: np.genfromtxt(tmp_path / name / "p" / "img_prob.csv", delimiter=",", skip_header=1, usecols=(3, 4, 5, 6))
        for name in runs
    }
    assert np.nanmax(np.abs(probabilities["default"] - probabilities["mirrored"])) < 0.01


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def test_two_workers_on_localhost_train_ter_to_identical_weights_and_only_the_chief_writes(tiny_dataset, tmp_path):
    manifest, root = tiny_dataset
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]}
    workers = []
    for index in range(2):
        (tmp_path / f"tmp{index}").mkdir()  # each worker's temporary folder, to see what it leaves there
        workers.append(
            start(
                [
                    "TER.py",
                    "--manifest",
                    str(manifest),
                    "--image-root",
                    str(root),
                    "--glove",
                    "none",
                    "--epoch",
                    "1",
                    *outputs_flags(tmp_path / "run")[:6],
                    "--strategy",
                    "multiworker",
                ],
                {
                    "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
                    "TMPDIR": str(tmp_path / f"tmp{index}"),
                },
            )
        )
    logs = [finish(worker) for worker in workers]
    fingerprints = [re.findall(r"weights fingerprint ([0-9a-f]{64})", log) for log in logs]
    assert len(fingerprints[0]) == 1 and fingerprints[0] == fingerprints[1]
    metrics = json.loads((tmp_path / "run" / "ck" / "TER.metrics.json").read_text())
    assert metrics["weights_sha256"] == fingerprints[0][0]
    assert "the chief: it writes the outputs" in logs[0] and "not the chief" in logs[1]
    written = sorted(
        str(path.relative_to(tmp_path / "run")) for path in (tmp_path / "run").rglob("*") if path.is_file()
    )
    assert [path for path in written if not path.startswith("tb/")] == [
        "ck/.TER.lock",
        "ck/TER.args.json",
        "ck/TER.epochs.csv",
        "ck/TER.keras",
        "ck/TER.metrics.json",
        "p/text_prob.csv",
    ]
    assert len([path for path in written if path.startswith("tb/")]) == 2  # the chief's train and validation curves
    assert not any((tmp_path / "tmp1").iterdir())  # the other worker's outputs went to a folder removed at its end


def test_two_shard_processes_fill_one_store_equal_to_a_single_extraction(tiny_dataset, tmp_path):
    from emorec import images
    from emorec.data.manifest import read_manifest
    from emorec.extraction import Extraction, ensure_features
    from emorec.feature_store import FeatureStore, image_keys, store_folder

    manifest, root = tiny_dataset
    frame = read_manifest(manifest, root).frame
    extractor, identity = images.build_extractor("vgg16", "none", 32, seed=0)
    single = FeatureStore.open(
        store_folder(tmp_path / "single", "vgg16", identity, 32, "flatten", "float32"),
        {
            "backbone": "vgg16",
            "weights": identity,
            "image_size": 32,
            "pooling": "flatten",
            "precision": "float32",
            "feature_shape": list(extractor.output_shape[1:]),
        },
    )
    keys = image_keys(frame["image_path"], root)
    expected = ensure_features(single, frame["image_path"].tolist(), keys, Extraction(extractor, 4), "skip")
    flags = [
        "IER.py",
        "--manifest",
        str(manifest),
        "--image-root",
        str(root),
        "--image-weights",
        "none",
        "--image-size",
        "32",
        "--precision",
        "float32",
        "--extract-batch-size",
        "4",
        *outputs_flags(tmp_path / "run"),
        "--num-shards",
        "2",
    ]
    shards = [start([*flags, "--shard-index", str(index)]) for index in range(2)]
    logs = [finish(shard) for shard in shards]
    computed = [int(re.search(r"share \d of 2 \(0 first\): (\d+) images computed", log).group(1)) for log in logs]
    assert computed == [20, 20]
    assert not (tmp_path / "run" / "ck" / "IER.keras").exists()  # extraction only
    store = FeatureStore.open(next((tmp_path / "run" / "cache").iterdir()))
    assert store.missing(keys) == []  # IER.py without --num-shards computes nothing
    view = store.view(keys)
    # Computed by two other processes: the same features within a float16 step (assert_same_stored_features).
    assert_same_stored_features(view.features[:], expected.features[:], recomputed=len(keys))
    np.testing.assert_array_equal(view.ok, expected.ok)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--num-shards", "2", "--shard-index", "2"], "--shard-index must be 0 to 1"),
        (["--num-shards", "2", "--strategy", "multiworker"], "the workers share the extraction"),
    ],
)
def test_ier_refuses_a_shard_outside_its_shares(flags, message, capsys):
    import IER

    with pytest.raises(SystemExit):
        IER.parse_args(flags)
    assert message in capsys.readouterr().err


def test_multiworker_without_tf_config_says_how_to_set_it(tiny_dataset, tmp_path, monkeypatch, capsys):
    import TER
    from emorec.cli import run

    monkeypatch.delenv("TF_CONFIG", raising=False)
    manifest, root = tiny_dataset
    status = run(
        TER.main,
        [
            "--manifest",
            str(manifest),
            "--image-root",
            str(root),
            "--glove",
            "none",
            *outputs_flags(tmp_path)[:6],
            "--strategy",
            "multiworker",
        ],
    )
    assert status == 2
    assert "--strategy multiworker needs TF_CONFIG" in capsys.readouterr().err


def test_xla_only_without_determinism_and_on_cpu_only_where_it_was_faster():

    import keras
    import tensorflow as tf

    from emorec.models import build_ier_head
    from emorec.training.fit import use_xla

    pooled_head, flat_head = build_ier_head((512,), 4), build_ier_head((7, 7, 512), 4)
    tokens = keras.Input((30,), dtype="int32")
    recurrent = keras.Model(
        tokens, keras.layers.Bidirectional(keras.layers.LSTM(4))(keras.layers.Embedding(50, 8)(tokens))
    )
    fast, deterministic = False, True
    assert not any(use_xla(deterministic, network) for network in (pooled_head, flat_head, recurrent))
    if tf.config.list_physical_devices("GPU"):
        assert all(use_xla(fast, network) for network in (pooled_head, flat_head, recurrent))
    else:  # benchmarks/xla_step.py: faster for the small head only
        assert [use_xla(fast, network) for network in (pooled_head, flat_head, recurrent)] == [True, False, False]
