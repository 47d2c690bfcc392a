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

import IER
import TER
from emorec import images
from emorec.cli import run
from emorec.data import load_dataset, split_path
from emorec.images import FeatureCache
from emorec.storage import beside_or_fallback, is_writable

from conftest import demo_extraction, dying_extractor

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
    return ["--manifest", str(manifest), "--image-root", str(root), "--image-weights", "none", "--image-size", "32",
            "--epoch", "1", "--checkpoint-dir", str(out / "ckpt"), "--log-dir", str(out / "tb"),
            "--prob-dir", str(out / "probs"), "--cache-dir", str(out / "features"), *flags]


def test_two_ier_runs_started_together_on_an_empty_cache_compute_each_image_once(tiny_dataset, tmp_path):
    """Two real processes, two runs, one empty feature cache and no split yet: one draws the split and runs the
    backbone over the 40 images, the other waits for each and reuses them; both finish, one complete cache results."""
    commands = [[sys.executable, "IER.py", *tiny_ier(tiny_dataset, tmp_path, "--run-name", name)] for name in "ab"]
    processes = [subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                 for command in commands]
    logs = [process.communicate(timeout=300)[1] for process in processes]
    assert [process.returncode for process in processes] == [0, 0], logs
    computed = [log for log in logs if "image features: 40 images into" in log]
    reused = [log for log in logs if "image features: reusing the cache" in log]
    assert len(computed) == 1 and len(reused) == 1, logs
    assert sum("drew a new split" in log for log in logs) == 1 and sum("reusing the split" in log for log in logs) == 1
    folders = [path.name for path in (tmp_path / "features").iterdir() if not path.name.endswith(".lock")]
    assert len(folders) == 1 and not folders[0].startswith(".")  # one complete cache, no partial one left
    assert len(FeatureCache.open(tmp_path / "features" / folders[0]).ids) == 40
    caches = {json.loads((tmp_path / "ckpt" / name / "IER.metrics.json").read_text())["feature_cache"] for name in "ab"}
    assert len(caches) == 1


def test_the_same_run_started_twice_at_once_is_refused(tiny_dataset, tmp_path, capsys):
    manifest, root = tiny_dataset
    first = subprocess.Popen([sys.executable, "TER.py", "--manifest", str(manifest), "--image-root", str(root),
                              "--glove", "none",
                              "--epoch", "1000", "--checkpoint-dir", str(tmp_path / "ckpt"), "--log-dir",
                              str(tmp_path / "tb"), "--prob-dir", str(tmp_path / "probs"), "--run-name", "r"],
                             cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "ckpt" / "r" / ".TER.backup" / "state.json").exists():  # training: the lock is held
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        second = ["--manifest", str(manifest), "--image-root", str(root), "--glove", "none",
                  "--checkpoint-dir", str(tmp_path / "ckpt"),
                  "--log-dir", str(tmp_path / "tb"), "--prob-dir", str(tmp_path / "probs"), "--run-name", "r"]
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
    argv = ["--manifest", str(manifest), "--image-root", str(root), "--glove", "none",
            "--checkpoint-dir", str(locked / "ckpt"),
            "--log-dir", str(locked), "--prob-dir", str(tmp_path / "probs")]
    assert run(TER.main, argv) == 2
    error = capsys.readouterr().err
    assert f"error: cannot write to {locked / 'ckpt'} (--checkpoint-dir), {locked} (--log-dir)" in error
    assert "Nothing was done" in error and not split_path(manifest).exists()  # not even the split was drawn


def test_beside_read_only_inputs_the_split_and_glove_cache_go_to_the_fallback_folder(tiny_dataset, tmp_path_factory,
                                                                                      monkeypatch, capsys):
    """A shared, read-only data set: TER stores its split and GloVe cache in $EMOREC_CACHE_DIR, says so, writes
    nothing beside the inputs, and the next run finds both there."""
    from emorec.text import load_glove_vectors

    manifest, root = tiny_dataset
    glove = manifest.parent / "glove.tiny.200d.txt"
    glove.write_text("".join(f"{word} " + " ".join(["0.5"] * 200) + "\n" for word in ("tweet", "text", "aa")),
                     encoding="utf-8")
    before = sorted(path.name for path in manifest.parent.iterdir())
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    monkeypatch.setenv("EMOREC_CACHE_DIR", str(elsewhere / "fallback"))
    read_only(monkeypatch, manifest.parent)
    assert not is_writable(manifest.parent)
    out = elsewhere / "out"
    assert TER.main(["--manifest", str(manifest), "--image-root", str(root), "--glove", str(glove), "--epoch", "1",
                     "--checkpoint-dir",
                     str(out / "ckpt"), "--log-dir", str(out / "tb"), "--prob-dir", str(out / "probs")]) == 0
    log = capsys.readouterr().err
    split = beside_or_fallback(split_path(manifest), "the split")
    assert split.is_relative_to(elsewhere / "fallback") and split.exists()
    assert f"{manifest.parent} is read-only: the split goes to {split}" in log
    assert "is read-only: the GloVe cache goes to" in log
    assert sorted(path.name for path in manifest.parent.iterdir()) == before
    assert load_dataset(manifest, root).attrs["split_source"] == "stored"
    load_glove_vectors(glove, ["tweet", "text"], 200)  # words of the run's vocabulary: its cache holds them
    assert "from the cache" in capsys.readouterr().err


def test_a_disk_that_fills_while_extracting_is_an_error_and_the_partial_cache_resumes(tiny_dataset, tmp_path,
                                                                                       monkeypatch, capsys):
    """No room while the progress of the second chunk is saved: exit 2 naming the folder, no traceback, no cache
    folder; with room again the same command resumes after the first chunk and completes the cache."""
    monkeypatch.setattr(images, "cached_features", functools.partial(images.cached_features, chunk=16))
    written = []
    real_write = images.write_json_atomic

    def full_after_one_chunk(path, data):
        written.append(path)
        if len(written) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real_write(path, data)

    with monkeypatch.context() as patch:
        patch.setattr(images, "write_json_atomic", full_after_one_chunk)
        assert run(IER.main, tiny_ier(tiny_dataset, tmp_path)) == 2
    error = capsys.readouterr().err
    partial = next((tmp_path / "features").glob(".*.partial"))
    assert f"error: no space left on the device writing {partial / 'progress.json'} (folder {partial})" in error
    assert "Traceback" not in error and json.loads((partial / "progress.json").read_text())["done"] == 16
    assert run(IER.main, tiny_ier(tiny_dataset, tmp_path)) == 0
    log = capsys.readouterr().err
    assert "resuming at 16 of 40 images" in log and "image features: 40 images into" in log
    assert not partial.exists()


def test_no_room_for_the_features_fails_before_extraction_not_with_sigbus(tiny_dataset, tmp_path, monkeypatch, capsys):
    if not hasattr(os, "posix_fallocate"):
        pytest.fail("this test needs os.posix_fallocate (Linux), which reserves the features' disk space")

    def no_room(fd, offset, length):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "posix_fallocate", no_room)
    assert run(IER.main, tiny_ier(tiny_dataset, tmp_path)) == 2
    error = capsys.readouterr().err
    assert "error: no space left on the device of" in error and "for the image features: they need 0.0 MB" in error


def test_a_disk_that_fills_while_saving_leaves_no_half_file_and_the_run_resumes(tiny_dataset, tmp_path, monkeypatch,
                                                                                capsys):
    import keras

    def full_disk(self, filepath, *args, **kwargs):
        Path(filepath).write_bytes(b"PK\x03\x04 half a zip")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(filepath))

    argv = ["--manifest", str(tiny_dataset[0]), "--image-root", str(tiny_dataset[1]), "--glove", "none", "--epoch", "2",
            "--checkpoint-dir",
            str(tmp_path / "ckpt"), "--log-dir", str(tmp_path / "tb"), "--prob-dir", str(tmp_path / "probs")]
    with monkeypatch.context() as patch:
        patch.setattr(keras.Model, "save", full_disk)
        assert run(TER.main, argv) == 2
    error = capsys.readouterr().err
    assert "error: no space left on the device writing" in error and f"(folder {tmp_path / 'ckpt'})" in error
    assert sorted(path.name for path in (tmp_path / "ckpt").iterdir()) == [".TER.backup", ".TER.lock", "TER.epochs.csv"]
    assert run(TER.main, argv) == 0
    assert "2 of 2 epochs done (training had ended)" in capsys.readouterr().err
    assert (tmp_path / "ckpt" / "TER.keras").exists() and not (tmp_path / "ckpt" / ".TER.backup").exists()


@pytest.mark.parametrize("damage", ["truncated features", "index of other rows", "index not a table"])
def test_a_damaged_feature_cache_is_computed_again_with_a_warning(small_demo, tmp_path, caplog, damage):
    frame, extractor, identity, folder = demo_extraction(small_demo, tmp_path, 24)
    sound = images.cached_features(folder, frame, extractor, 32, 8, "skip")
    expected = np.array(sound.features)
    del sound
    if damage == "truncated features":
        os.truncate(folder / "features.npy", (folder / "features.npy").stat().st_size // 2)
    elif damage == "index of other rows":
        lines = (folder / "index.csv").read_text().splitlines()
        (folder / "index.csv").write_text("\n".join(lines[:-3]) + "\n")
    else:
        (folder / "index.csv").write_bytes(b"\x00\xff garbage")
    caplog.set_level("INFO", logger="emorec")
    repaired = images.cached_features(folder, frame, extractor, 32, 8, "skip")
    assert f"the image feature cache {folder} is damaged" in caplog.text and "computing it again" in caplog.text
    np.testing.assert_array_equal(repaired.features, expected)


def test_the_fusion_phase_refuses_a_damaged_feature_cache_naming_what_to_rerun(small_demo, tmp_path):
    from emorec.errors import InputError

    frame, extractor, identity, folder = demo_extraction(small_demo, tmp_path, 8)
    images.cached_features(folder, frame, extractor, 32, 8, "skip")
    os.truncate(folder / "features.npy", 100)
    with pytest.raises(InputError, match="is damaged .*Run `python IER.py` again"):
        images.phase_feature_cache(frame, {"feature_cache": str(folder), "weights_identity": identity},
                                   {"backbone": "vgg16", "image_size": 32})


def test_a_damaged_glove_cache_is_parsed_again_with_a_warning(tmp_path, caplog):
    from emorec.text import glove_cache_path, load_glove_vectors

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


def test_a_damaged_partial_extraction_starts_again_with_a_warning(small_demo, tmp_path, caplog):
    frame, extractor, identity, folder = demo_extraction(small_demo, tmp_path, 24)
    with pytest.raises(KeyboardInterrupt):  # in the second chunk of 16
        images.compute_features(folder, frame, dying_extractor(extractor, 3, KeyboardInterrupt, []), 32, 8, "skip",
                                chunk=16)
    partial = folder.with_name(f".{folder.name}.partial")
    assert json.loads((partial / "progress.json").read_text())["done"] == 16
    os.truncate(partial / "features.npy", 200)  # the disk lost its end
    caplog.set_level("INFO", logger="emorec")
    images.compute_features(folder, frame, extractor, 32, 8, "skip", chunk=16)
    assert f"the partial extraction in {partial} cannot be resumed" in caplog.text and "resuming" not in caplog.text
    fresh = tmp_path / "fresh"
    images.compute_features(fresh, frame, extractor, 32, 8, "skip", chunk=16)
    np.testing.assert_array_equal(FeatureCache.open(folder).features, FeatureCache.open(fresh).features)
