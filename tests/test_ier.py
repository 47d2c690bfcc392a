"""IER.py end to end on a small demo, the feature store, bad images and the weights message (issues 5, 16)."""

from __future__ import annotations

import json
import os
import shutil

import keras
import numpy as np
import pandas as pd
import pytest
from conftest import counting, demo_extraction, dying_extractor

import IER
from emorec import extraction, images
from emorec.cli import run
from emorec.data.manifest import read_manifest
from emorec.demo import MANIFEST_NAME
from emorec.errors import InputError
from emorec.extraction import Extraction, compute_features, ensure_features, phase_features
from emorec.feature_store import FeatureStore, image_keys
from emorec.images import load_image
from emorec.runs import read_run_config

CLASSES = ["happy", "sad", "hate", "anger"]


def ier_argv(demo, out, *extra):
    return [
        "--manifest",
        str(demo / MANIFEST_NAME),
        "--image-root",
        str(demo),
        "--image-weights",
        "none",
        "--image-size",
        "32",
        "--epoch",
        "2",
        "--batch-size",
        "32",
        "--lr",
        "1e-3",
        "--seed",
        "0",
        "--cache-dir",
        str(out / "features"),
        "--checkpoint-dir",
        str(out / "ckpt"),
        "--log-dir",
        str(out / "tb"),
        "--prob-dir",
        str(out / "probs"),
        *extra,
    ]


@pytest.fixture(scope="module")
def ier_run(small_demo, tmp_path_factory):
    """One IER run on the small demo (32 px, random VGG16, 2 epochs); returns its output folder."""
    out = tmp_path_factory.mktemp("ier")
    assert IER.main(ier_argv(small_demo, out)) == 0
    return out


def test_outputs_exist_and_parse(ier_run, small_demo):
    probs = pd.read_csv(ier_run / "probs" / "img_prob.csv", dtype={"id": str})
    assert list(probs.columns) == ["id", "split", "label", *CLASSES]
    assert len(probs) == len(pd.read_csv(small_demo / MANIFEST_NAME))
    np.testing.assert_allclose(probs[CLASSES].sum(axis=1), 1.0, atol=1e-5)
    metrics = json.loads((ier_run / "ckpt" / "IER.metrics.json").read_text())
    assert metrics["unreadable_images"] == 0 and metrics["epochs_run"] == 2
    assert metrics["weights_identity"] == "none-seed0"
    args = read_run_config(ier_run / "ckpt" / "IER.args.json")
    assert args.flags["backbone"] == "vgg16" and args.flags["image_size"] == 32
    assert len(pd.read_csv(ier_run / "ckpt" / "IER.epochs.csv")) == 2
    assert list((ier_run / "tb" / "IER" / "validation").glob("events.out.tfevents.*"))
    stored = phase_features(read_manifest(small_demo / MANIFEST_NAME, small_demo), metrics, args)
    assert stored.features.dtype == np.float16 and stored.features.shape == (len(probs), 1, 1, 512)  # block5_pool
    store = FeatureStore.open(stored.folder)
    assert store.shards and all(isinstance(shard, np.memmap) for shard in store.shards.values())
    assert args.run["precision"] in ("float32", "bfloat16") and store.config["precision"] == args.run["precision"]


def test_saved_model_on_raw_pixels_matches_the_cached_path(ier_run, small_demo):
    model = keras.models.load_model(ier_run / "ckpt" / "IER.keras")
    frame = read_manifest(small_demo / MANIFEST_NAME, small_demo).frame
    probs = pd.read_csv(ier_run / "probs" / "img_prob.csv", dtype={"id": str})
    rows = [0, 7, 42]
    pixels = np.stack([load_image(frame["image_path"][row], 32)[0] for row in rows]).astype(np.float32)
    np.testing.assert_allclose(model.predict(pixels, verbose=0), probs.loc[rows, CLASSES].to_numpy(), atol=2e-3)


def test_second_run_reuses_the_cache_without_running_the_backbone(ier_run, small_demo, monkeypatch):
    def no_extraction(*args, **kwargs):
        raise AssertionError("the backbone ran again")

    monkeypatch.setattr(extraction, "compute_features", no_extraction)
    assert IER.main(ier_argv(small_demo, ier_run, "--run-name", "again")) == 0
    first = pd.read_csv(ier_run / "probs" / "img_prob.csv")
    again = pd.read_csv(ier_run / "probs" / "again" / "img_prob.csv")
    pd.testing.assert_frame_equal(first, again)  # same seed, same numbers


def test_pooled_features_go_to_a_store_of_their_own_and_the_saved_model_pools_alike(ier_run, small_demo):
    assert (
        IER.main(ier_argv(small_demo, ier_run, "--run-name", "avg", "--pooling", "avg", "--precision", "float32")) == 0
    )
    metrics = json.loads((ier_run / "ckpt" / "avg" / "IER.metrics.json").read_text())
    args = read_run_config(ier_run / "ckpt" / "avg" / "IER.args.json")
    manifest = read_manifest(small_demo / MANIFEST_NAME, small_demo)
    stored = phase_features(manifest, metrics, args)
    assert stored.features.shape == (len(manifest.frame), 512) and "_avg_float32_" in stored.folder.name
    assert (
        stored.folder
        != phase_features(
            manifest,
            json.loads((ier_run / "ckpt" / "IER.metrics.json").read_text()),
            read_run_config(ier_run / "ckpt" / "IER.args.json"),
        ).folder
    )
    model = keras.models.load_model(ier_run / "ckpt" / "avg" / "IER.keras")
    probs = pd.read_csv(ier_run / "probs" / "avg" / "img_prob.csv", dtype={"id": str})
    pixels = np.stack([load_image(manifest.frame["image_path"][row], 32)[0] for row in (1, 2)]).astype(np.float32)
    np.testing.assert_allclose(model.predict(pixels, verbose=0), probs.loc[[1, 2], CLASSES].to_numpy(), atol=2e-3)


@pytest.fixture
def damaged_demo(small_demo, tmp_path):
    """A copy of the small demo with one truncated JPEG, one zero-byte file and one text file posing as an image."""
    demo = tmp_path / "demo"
    shutil.copytree(small_demo, demo)
    frame = read_manifest(demo / MANIFEST_NAME, demo).frame
    jpegs = [path for path in frame["image_path"] if path.endswith(".jpg")]
    truncated, empty, not_image = jpegs[3], jpegs[5], jpegs[8]
    data = open(truncated, "rb").read()
    open(truncated, "wb").write(data[: len(data) // 2])
    open(empty, "wb").close()
    open(not_image, "w").write("this is not an image")
    return demo, truncated, empty, not_image


def test_truncated_jpegs_are_read_as_far_as_they_go(damaged_demo):
    _, truncated, empty, not_image = damaged_demo
    pixels, ok = load_image(truncated, 32)
    assert ok and pixels.shape == (32, 32, 3) and pixels.any()
    assert not load_image(empty, 32)[1] and not load_image(not_image, 32)[1]


def test_bad_images_are_skipped_and_marked(damaged_demo, tmp_path, capsys):
    demo, truncated, empty, not_image = damaged_demo
    assert IER.main(ier_argv(demo, tmp_path, "--epoch", "1")) == 0
    logged = capsys.readouterr().err
    assert logged.count("2 image file(s) could not be read") == 1
    assert empty in logged and not_image in logged and truncated not in logged
    probs = pd.read_csv(tmp_path / "probs" / "img_prob.csv", dtype={"id": str})
    frame = read_manifest(demo / MANIFEST_NAME, demo).frame
    unscored = probs[CLASSES].isna().all(axis=1)
    assert sorted(frame["image_path"][unscored.to_numpy()]) == sorted([empty, not_image])
    assert json.loads((tmp_path / "ckpt" / "IER.metrics.json").read_text())["unreadable_images"] == 2


def test_bad_images_stop_the_run_in_error_mode(damaged_demo, tmp_path, capsys):
    demo, _, empty, not_image = damaged_demo
    assert run(IER.main, ier_argv(demo, tmp_path, "--on-bad-image", "error")) == 2
    error = capsys.readouterr().err
    assert "could not be read" in error and (empty in error or not_image in error) and "--on-bad-image skip" in error
    assert not (tmp_path / "ckpt" / "IER.keras").exists()


def test_missing_imagenet_weights_say_where_to_put_them(monkeypatch, tmp_path):
    def offline(*args, **kwargs):
        raise Exception("URL fetch failure: no network")

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(keras.utils, "get_file", offline)
    monkeypatch.setattr("keras.src.applications.vgg16.file_utils.get_file", offline)
    with pytest.raises(InputError) as error:
        images.build_extractor("vgg16", "imagenet", 32, seed=0)
    message = str(error.value)
    assert "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5" in message
    assert str(tmp_path / "models") in message
    assert "--image-weights PATH" in message and "--image-weights none" in message


def test_every_image_mode_becomes_rgb(tmp_path):
    from PIL import Image

    base = Image.new("RGB", (40, 30), (200, 30, 30))
    files = {
        "gray.jpg": base.convert("L"),
        "cmyk.jpg": base.convert("CMYK"),
        "palette.png": base.convert("P"),
        "alpha.png": base.convert("RGBA"),
        "la.png": base.convert("LA"),
    }
    for name, image in files.items():
        image.save(tmp_path / name)
    frames = [Image.new("RGB", (40, 30), colour) for colour in ((200, 30, 30), (0, 0, 255))]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    for name in [*files, "anim.gif"]:
        pixels, ok = load_image(str(tmp_path / name), 16)
        assert ok and pixels.shape == (16, 16, 3) and pixels.dtype == np.uint8, name
    red = load_image(str(tmp_path / "anim.gif"), 16)[0].mean(axis=(0, 1))
    assert red[0] > 150 and red[2] < 80  # the first frame, not the blue second one
    transparent = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    transparent.save(tmp_path / "clear.png")
    assert load_image(str(tmp_path / "clear.png"), 8)[0].min() == 255  # laid on white


def write_sideways_photo(tmp_path):
    """An upright 40x30 picture (red top, blue bottom) and the same photo stored as a phone stores it: the pixels
    turned a quarter left, with EXIF Orientation 6 (turn them a quarter right to show them). Their two paths."""
    from PIL import Image

    upright = Image.new("RGB", (40, 30), (200, 30, 30))
    upright.paste((0, 0, 255), (0, 15, 40, 30))
    upright.save(tmp_path / "upright.png")
    exif = Image.Exif()
    exif[images.ORIENTATION] = 6
    upright.transpose(Image.Transpose.ROTATE_90).save(tmp_path / "sideways.png", exif=exif)
    return tmp_path / "upright.png", tmp_path / "sideways.png"


def test_a_photo_stored_sideways_is_read_upright_by_extraction_and_the_page(tmp_path):
    from PIL import Image

    from emorec.serve.app import read_upload

    upright, sideways = write_sideways_photo(tmp_path)
    with Image.open(sideways) as stored:
        assert stored.size == (30, 40)  # the file itself holds the turned pixels
    pixels, ok = load_image(str(sideways), 16)
    assert ok
    # Exact: lossless PNGs of the same pixels, turned and resized by Pillow's integer code alone (no oneDNN), so
    # the same computation on any CPU.
    np.testing.assert_array_equal(pixels, load_image(str(upright), 16)[0])
    assert pixels[0].mean(axis=0)[0] > 150 and pixels[-1].mean(axis=0)[2] > 150  # red on top, blue below
    page_pixels, original = read_upload(sideways.read_bytes(), "sideways.png", 16)
    np.testing.assert_array_equal(page_pixels, pixels)
    assert original.size == (40, 30)  # the page's picture is upright too


def test_killed_extraction_resumes_where_it_stopped(small_demo, tmp_path, caplog):
    frame, extractor, store, keys = demo_extraction(small_demo, tmp_path, 40)
    paths, calls = frame["image_path"].tolist(), []

    class Killed(Exception):
        pass

    with pytest.raises(Killed):  # dies in the second chunk of 16
        compute_features(
            store, paths, keys, Extraction(dying_extractor(extractor, 3, Killed, calls), 8, chunk=16), "skip"
        )
    assert len(FeatureStore.open(store.folder).entries) == 16  # the batches done before, recorded
    caplog.set_level("INFO", logger="emorec")
    calls.clear()
    resumed = ensure_features(
        FeatureStore.open(store.folder), paths, keys, Extraction(counting(extractor, calls), 8, chunk=16), "skip"
    )
    assert "computing 24 of 40 images" in caplog.text
    assert sum(calls) == 24  # only the images not done before
    _, _, fresh_store, _ = demo_extraction(small_demo, tmp_path / "fresh", 40)
    fresh = ensure_features(fresh_store, paths, keys, Extraction(extractor, 8, chunk=16), "skip")
    np.testing.assert_array_equal(resumed.features[:], fresh.features[:])
    assert resumed.ok.all() and len(resumed.features) == 40


def test_the_store_computes_only_new_images_and_keeps_them_for_moved_folders_and_subsets(small_demo, tmp_path, caplog):
    """Per-image keys: 10 more rows compute 10 images; a second manifest over a subset, or the image folder moved
    elsewhere (mtimes kept, as `mv` does), computes none; a copy that loses mtimes is recognised by --cache-key
    content (issue 16)."""
    demo = tmp_path / "demo"
    shutil.copytree(small_demo, demo)  # copy2: modification times kept
    frame, extractor, store, _ = demo_extraction(demo, tmp_path / "features", 50)
    calls = []

    def extract(frame, root, mode="stat"):
        calls.clear()
        stored = ensure_features(
            store,
            frame["image_path"].tolist(),
            image_keys(frame["image_path"], root, mode),
            Extraction(counting(extractor, calls), 8),
        )
        return sum(calls), np.asarray(stored.features[:], dtype=np.float32)

    caplog.set_level("INFO", logger="emorec")
    assert extract(frame.iloc[:40], demo)[0] == 40
    assert "computing all 40 images into the store" in caplog.text  # nothing was in it
    computed, features = extract(frame, demo)
    assert computed == 10  # the 10 rows added
    assert "computing 10 of 50 images (the other 40 are in the store" in caplog.text
    assert extract(frame.iloc[5:30], demo)[0] == 0  # another manifest over a subset
    moved = tmp_path / "moved" / "images"
    moved.parent.mkdir()
    os.rename(demo, moved)
    moved_frame = read_manifest(moved / MANIFEST_NAME, moved).frame.iloc[:50]
    computed, moved_features = extract(moved_frame, moved)
    assert computed == 0
    np.testing.assert_array_equal(moved_features, features)

    copied = tmp_path / "copied"
    shutil.copytree(moved, copied, copy_function=shutil.copyfile)  # new modification times
    copied_frame = read_manifest(copied / MANIFEST_NAME, copied).frame.iloc[:50]
    assert extract(copied_frame, copied)[0] == 50  # stat keys: every image looks new
    assert extract(moved_frame, moved, "content")[0] == 50  # content keys, computed once
    computed, copied_features = extract(copied_frame, copied, "content")
    assert computed == 0
    np.testing.assert_array_equal(copied_features, features)


def test_ctrl_c_during_extraction_stops_at_once_keeping_the_finished_batches(tmp_path):
    """SIGINT while the backbone is inside a long batch: exit 130 within seconds, not after the batch, with the
    batches already finished kept; the same command then resumes after them (issue 12)."""
    import os
    import signal
    import subprocess
    import sys
    import threading
    import time

    from emorec import demo

    demo.generate(tmp_path / "demo", n=128, seed=0, corpus_size=300)
    size = 192  # large enough that one batch takes well over the process's shut-down
    argv = [
        sys.executable,
        "IER.py",
        *ier_argv(tmp_path / "demo", tmp_path, "--image-size", str(size), "--extract-batch-size", "64", "--epoch", "1"),
    ]
    # As in a terminal, the child starts with SIGINT at its default, so Python turns it into KeyboardInterrupt: a
    # handled signal is reset to the default on exec, an ignored one (a shell's background job, as CI may be) stays
    # ignored in the child.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        process = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"}
        )
    finally:
        signal.signal(signal.SIGINT, previous)
    printed = []
    threading.Thread(
        target=lambda: printed.extend(iter(lambda: os.read(process.stdout.fileno(), 4096), b"")), daemon=True
    ).start()

    def wait_for(progress: bytes) -> float:
        deadline = time.monotonic() + 300
        while progress not in b"".join(printed) and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        return time.monotonic()

    started = wait_for(b" 0/128")
    interrupted = wait_for(b" 64/128")  # the first batch is done, the second is now inside VGG16
    process.send_signal(signal.SIGINT)
    status = process.wait(timeout=60)
    exit_seconds, batch_seconds = time.monotonic() - interrupted, interrupted - started
    error = process.stderr.read().decode()
    assert status == 130, error[-3000:]
    # Not held up by the batch under way: a process that waited for it would take at least one more batch's time
    # (it had just begun) and then its shut-down; this one takes its shut-down alone (about a second here).
    assert exit_seconds < batch_seconds, (exit_seconds, batch_seconds)
    assert "interrupted; the 64 of 128 images done are kept" in error and "Traceback" not in error
    store = FeatureStore.open(next((tmp_path / "features").glob(f"vgg16_{size}px_*")))
    assert len(store.entries) == 64

    resumed = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "computing 64 of 128 images" in resumed.stderr
    store.reload()
    assert len(store.entries) == 128 and all(ok for _, _, ok in store.entries.values())
