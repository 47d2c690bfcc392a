"""Runs side by side and disks that refuse: locks, read-only folders, a full disk, damaged caches (issue 15)."""

from __future__ import annotations

import errno
import functools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_same_stored_features, counting, demo_extraction

import IER
import TER
from emorec import extraction
from emorec.cli import run
from emorec.data.dataset import load_dataset
from emorec.data.splits import split_path
from emorec.extraction import Extraction, ensure_features, phase_features
from emorec.feature_store import FeatureStore
from emorec.storage import beside_or_fallback, is_writable

REPO = Path(__file__).resolve().parents[1]


def read_only(monkeypatch, folder: Path) -> None:
    """Make ``folder`` refuse every new file and folder, as a read-only mount does (even for root, whom permission
    bits do not stop): creating a file or folder in it raises PermissionError, reading stays possible."""
    folder = folder.resolve()
    os.chmod(folder, 0o555)  # real for any user but root
    real_open, real_mkdir = os.open, os.mkdir

    def inside(path) -> bool:
        path = Path(os.fsdecode(path)).resolve()
        return path == folder or folder in path.parents

    def guarded_open(path, flags, *args, **kwargs):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) and inside(path):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fsdecode(path))
        return real_open(path, flags, *args, **kwargs)

    def guarded_mkdir(path, *args, **kwargs):
        if inside(path):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fsdecode(path))
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", guarded_open)  # what tempfile, and so every atomic write, creates files with
    monkeypatch.setattr(os, "mkdir", guarded_mkdir)


def tiny_ier(tiny_dataset, out: Path, *flags: str) -> list[str]:
    manifest, root = tiny_dataset
    return [
        "--manifest",
        str(manifest),
        "--image-root",
        str(root),
        "--image-weights",
        "none",
        "--image-size",
        "32",
        "--epoch",
        "1",
        "--checkpoint-dir",
        str(out / "ckpt"),
        "--log-dir",
        str(out / "tb"),
        "--prob-dir",
        str(out / "probs"),
        "--cache-dir",
        str(out / "features"),
        *flags,
    ]


def test_two_ier_runs_started_together_on_an_empty_store_compute_each_image_once(tiny_dataset, tmp_path):
    """Two real processes, two runs, one empty feature store and no split yet: one draws the split and runs the
    backbone over the 40 images, the other waits for each and reuses them; both finish, one complete store results."""
    commands = [[sys.executable, "IER.py", *tiny_ier(tiny_dataset, tmp_path, "--run-name", name)] for name in "ab"]
    processes = [
        subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for command in commands
    ]
    logs = [process.communicate(timeout=300)[1] for process in processes]
    assert [process.returncode for process in processes] == [0, 0], logs
    computed = [log for log in logs if "image features: 40 images computed into" in log]
    reused = [log for log in logs if "image features: all 40 images are in the store" in log]
    assert len(computed) == 1 and len(reused) == 1, logs
    assert sum("drew a new split" in log for log in logs) == 1 and sum("reusing the split" in log for log in logs) == 1
    folders = list((tmp_path / "features").iterdir())
    assert len(folders) == 1  # one store
    assert len((folders[0] / "entries.jsonl").read_text().splitlines()) == 40  # each image computed once
    stores = {json.loads((tmp_path / "ckpt" / name / "IER.metrics.json").read_text())["feature_store"] for name in "ab"}
    assert stores == {str(folders[0])}


def test_the_same_run_started_twice_at_once_is_refused(tiny_dataset, tmp_path, capsys):
    manifest, root = tiny_dataset
    first = subprocess.Popen(
        [
            sys.executable,
            "TER.py",
            "--manifest",
            str(manifest),
            "--image-root",
            str(root),
            "--glove",
            "none",
            "--epoch",
            "1000",
            "--checkpoint-dir",
            str(tmp_path / "ckpt"),
            "--log-dir",
            str(tmp_path / "tb"),
            "--prob-dir",
            str(tmp_path / "probs"),
            "--run-name",
            "r",
        ],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "ckpt" / "r" / ".TER.backup" / "state.json").exists():  # training: the lock is held
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        second = [
            "--manifest",
            str(manifest),
            "--image-root",
            str(root),
            "--glove",
            "none",
            "--checkpoint-dir",
            str(tmp_path / "ckpt"),
            "--log-dir",
            str(tmp_path / "tb"),
            "--prob-dir",
            str(tmp_path / "probs"),
            "--run-name",
            "r",
        ]
        assert run(TER.main, second) == 2
        error = capsys.readouterr().err
        assert f"TER.py is already running in {tmp_path / 'ckpt' / 'r'}" in error and "another --run-name" in error
        assert first.poll() is None  # the first run goes on, untouched
    finally:
        first.kill()
        first.wait()


def test_a_read_only_output_folder_is_an_error_before_any_work(tiny_dataset, tmp_path, monkeypatch, capsys):
    manifest, root = tiny_dataset
    locked = tmp_path / "locked"
    locked.mkdir()
    read_only(monkeypatch, locked)
    argv = [
        "--manifest",
        str(manifest),
        "--image-root",
        str(root),
        "--glove",
        "none",
        "--checkpoint-dir",
        str(locked / "ckpt"),
        "--log-dir",
        str(locked),
        "--prob-dir",
        str(tmp_path / "probs"),
    ]
    assert run(TER.main, argv) == 2
    error = capsys.readouterr().err
    assert f"error: cannot write to {locked / 'ckpt'} (--checkpoint-dir), {locked} (--log-dir)" in error
    assert "Nothing was done" in error and not split_path(manifest).exists()  # not even the split was drawn


def test_beside_read_only_inputs_the_split_and_glove_cache_go_to_the_fallback_folder(
    tiny_dataset, tmp_path_factory, monkeypatch, capsys
):
    """A shared, read-only data set: TER stores its split and GloVe cache in $EMOREC_CACHE_DIR, says so, writes
    nothing beside the inputs, and the next run finds both there."""
    from emorec.glove import load_glove_vectors

    manifest, root = tiny_dataset
    glove = manifest.parent / "glove.tiny.200d.txt"
    glove.write_text(
        "".join(f"{word} " + " ".join(["0.5"] * 200) + "\n" for word in ("tweet", "text", "aa")), encoding="utf-8"
    )
    before = sorted(path.name for path in manifest.parent.iterdir())
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    monkeypatch.setenv("EMOREC_CACHE_DIR", str(elsewhere / "fallback"))
    read_only(monkeypatch, manifest.parent)
    assert not is_writable(manifest.parent)
    out = elsewhere / "out"
    assert (
        TER.main(
            [
                "--manifest",
                str(manifest),
                "--image-root",
                str(root),
                "--glove",
                str(glove),
                "--epoch",
                "1",
                "--checkpoint-dir",
                str(out / "ckpt"),
                "--log-dir",
                str(out / "tb"),
                "--prob-dir",
                str(out / "probs"),
            ]
        )
        == 0
    )
    log = capsys.readouterr().err
    split = beside_or_fallback(split_path(manifest), "the split")
    assert split.is_relative_to(elsewhere / "fallback") and split.exists()
    assert f"{manifest.parent} is read-only: the split goes to {split}" in log
    assert "is read-only: the GloVe cache goes to" in log
    assert sorted(path.name for path in manifest.parent.iterdir()) == before
    assert load_dataset(manifest, root).split_source == "stored"
    load_glove_vectors(glove, ["tweet", "text"], 200)  # words of the run's vocabulary: its cache holds them
    assert "from the cache" in capsys.readouterr().err


def test_a_disk_that_fills_while_extracting_is_an_error_and_the_store_goes_on_from_there(
    tiny_dataset, tmp_path, monkeypatch, capsys
):
    """No room while the second chunk's entries are recorded: exit 2 naming the file, no traceback, the first chunk
    kept; with room again the same command computes only the rest."""
    monkeypatch.setattr(extraction, "Extraction", functools.partial(extraction.Extraction, chunk=16))
    recorded = []
    real_record = FeatureStore.record

    def full_after_one_chunk(self, lines):
        recorded.append(len(lines))
        if len(recorded) >= 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.folder / "entries.jsonl"))
        real_record(self, lines)

    with monkeypatch.context() as patch:
        patch.setattr(FeatureStore, "record", full_after_one_chunk)
        assert run(IER.main, tiny_ier(tiny_dataset, tmp_path, "--extract-batch-size", "8")) == 2
    error = capsys.readouterr().err
    store = next((tmp_path / "features").iterdir())
    assert f"error: no space left on the device writing {store / 'entries.jsonl'} (folder {store})" in error
    assert "Traceback" not in error and len((store / "entries.jsonl").read_text().splitlines()) == 16
    assert run(IER.main, tiny_ier(tiny_dataset, tmp_path, "--extract-batch-size", "8")) == 0
    log = capsys.readouterr().err
    assert "computing 24 of 40 images" in log and "image features: 24 images computed into" in log


def test_no_room_for_the_features_fails_before_extraction_not_with_sigbus(tiny_dataset, tmp_path, monkeypatch, capsys):
    if not hasattr(os, "posix_fallocate"):
        pytest.fail("this test needs os.posix_fallocate (Linux), which reserves the features' disk space")

    def no_room(fd, offset, length):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "posix_fallocate", no_room)
    assert run(IER.main, tiny_ier(tiny_dataset, tmp_path)) == 2
    error = capsys.readouterr().err
    assert "error: no space left on the device of" in error and "for the image features: they need 0.0 MB more" in error


def test_a_disk_that_fills_while_saving_leaves_no_half_file_and_the_run_resumes(
    tiny_dataset, tmp_path, monkeypatch, capsys
):
    import keras

    def full_disk(self, filepath, *args, **kwargs):
        Path(filepath).write_bytes(b"PK\x03\x04 half a zip")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(filepath))

    argv = [
        "--manifest",
        str(tiny_dataset[0]),
        "--image-root",
        str(tiny_dataset[1]),
        "--glove",
        "none",
        "--epoch",
        "2",
        "--checkpoint-dir",
        str(tmp_path / "ckpt"),
        "--log-dir",
        str(tmp_path / "tb"),
        "--prob-dir",
        str(tmp_path / "probs"),
    ]
    with monkeypatch.context() as patch:
        patch.setattr(keras.Model, "save", full_disk)
        assert run(TER.main, argv) == 2
    error = capsys.readouterr().err
    assert "error: no space left on the device writing" in error and f"(folder {tmp_path / 'ckpt'})" in error
    assert sorted(path.name for path in (tmp_path / "ckpt").iterdir()) == [".TER.backup", ".TER.lock", "TER.epochs.csv"]
    assert run(TER.main, argv) == 0
    assert "2 of 2 epochs done (training had ended)" in capsys.readouterr().err
    assert (tmp_path / "ckpt" / "TER.keras").exists() and not (tmp_path / "ckpt" / ".TER.backup").exists()


@pytest.mark.parametrize("damage", ["shard cut short", "a line unreadable", "last line cut short"])
def test_a_damaged_store_computes_again_what_it_cannot_read(small_demo, tmp_path, caplog, damage):
    frame, extractor, store, keys = demo_extraction(small_demo, tmp_path, 24)
    paths = frame["image_path"].tolist()
    expected = np.array(ensure_features(store, paths, keys, Extraction(extractor, 8), "skip").features[:])
    entries = store.folder / "entries.jsonl"
    lines = entries.read_text().splitlines(keepends=True)
    if damage == "shard cut short":
        os.truncate(store.folder / "shard-000000.npy", 200)
    elif damage == "a line unreadable":
        entries.write_text("".join([*lines[:3], "\x00\xff garbage\n", *lines[4:]]))
    else:
        entries.write_text("".join(lines)[:-10])
    caplog.set_level("INFO", logger="emorec")
    calls = []
    repaired = ensure_features(
        FeatureStore.open(store.folder), paths, keys, Extraction(counting(extractor, calls), 8), "skip"
    )
    assert sum(calls) == {"shard cut short": 24, "a line unreadable": 1, "last line cut short": 1}[damage]
    if damage == "shard cut short":
        assert "shard-000000.npy cannot be read" in caplog.text
    if damage == "a line unreadable":
        assert "1 line(s) of entries.jsonl cannot be read" in caplog.text
    # The image computed again ran in a batch of 1, the others were read back: see assert_same_stored_features.
    assert_same_stored_features(repaired.features[:], expected, recomputed=sum(calls))
    assert len(FeatureStore.open(store.folder).entries) == 24  # every line whole again


def test_the_fusion_phase_refuses_a_store_that_lacks_images_naming_what_to_rerun(small_demo, tmp_path):
    from emorec.data.manifest import DEFAULT_CLASS_NAMES, Manifest
    from emorec.errors import InputError
    from emorec.runs import RunConfig

    frame, extractor, store, keys = demo_extraction(small_demo, tmp_path, 8)
    ensure_features(store, frame["image_path"].tolist(), keys, Extraction(extractor, 8), "skip")
    os.truncate(store.folder / "shard-000000.npy", 100)
    manifest = Manifest(frame, DEFAULT_CLASS_NAMES, str(small_demo.resolve()))
    ier_config = RunConfig(tmp_path / "IER.args.json", [], {"cache_key": "stat"}, {})
    with pytest.raises(InputError, match="lacks 8 of these 8 images .*Run `python IER.py` again"):
        phase_features(manifest, {"feature_store": str(store.folder)}, ier_config)
    with pytest.raises(InputError, match="is damaged or missing .*Run `python IER.py` again"):
        phase_features(manifest, {"feature_store": str(tmp_path / "elsewhere")}, ier_config)


def test_a_damaged_glove_cache_is_parsed_again_with_a_warning(tmp_path, caplog):
    from emorec.glove import glove_cache_path, load_glove_vectors

    glove = tmp_path / "glove.txt"
    glove.write_text("happy 1 2\nsad 3 4\n", encoding="utf-8")
    vectors, found = load_glove_vectors(glove, ["happy", "sad", "other"], 2)
    cache = glove_cache_path(glove, ["happy", "sad", "other"], 2)
    cache.write_bytes(cache.read_bytes()[:40])  # cut short
    caplog.set_level("INFO", logger="emorec")
    again, found_again = load_glove_vectors(glove, ["happy", "sad", "other"], 2)
    assert f"GloVe: the cache {cache} is damaged" in caplog.text and "reading" in caplog.text
    np.testing.assert_array_equal(again, vectors)
    assert found_again.tolist() == [True, True, False]
