"""Every command the README and docs/ tell a user to run, run as written, each in a fresh process (issues 12, 29).

README.md and each page of docs/ mark each block a user runs with ``<!-- test: NAME -->`` on the line before
it. This module reads the blocks from the pages themselves, so an edit that breaks a command fails here, and runs
them in a sandbox laid out like a clone: the demo data set placed where the real data
goes (``data_files/image_labels.csv``, in the paper's ``/data_bt4sa/...`` image
form, and the GloVe file), the phases' outputs left for the commands after them.

Each command runs as the README writes it, in a new interpreter (one pytest
process, where every module is already imported, hides a missing import or
registration), with a few flags appended that keep it small (argparse keeps a
flag's last value): rows, epochs, image size, and a VGG16 weights file that
the test writes in Keras' .h5 format, since ImageNet's cannot be downloaded here.
Blocks of ``make`` commands are not run: ``make test`` is this suite, and
``make demo``/``make sweep`` run the same scripts with the demo's flags.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shlex
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from emorec.baselines import BASELINE_NAMES
from emorec.fusion import FUSIONS, MEMBERS

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
WEIGHTS = "keras_home/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
# What each marked block is: the names this module runs. A new marked block needs a test here.
TESTED = {
    "phases",
    "demo-phases",
    "load",
    "predict",
    "explain",
    "tensorboard",
    "serve",
    "demo",
    "sweep",
    "bt4sa",
    "mvsa",
    "text-encoder",
    "image-encoder",
    "real-data",
    "real-data-defaults",
}
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]  # every page whose blocks are run
# Flags appended to a command to keep it small, by script or module.
SMALL = {
    "emorec.demo": ["--n", "120", "--corpus-size", "3000"],
    "TER.py": ["--epoch", "1", "--batch-size", "32"],
    "IER.py": ["--epoch", "1", "--image-size", "32", "--image-weights", WEIGHTS],
    "Intermediate_fusion.py": ["--epoch", "1"],
    "sweep.py": ["--fractions", "0.5", "--seeds", "0", "--epoch", "1"],
}
CLASSES = ["happy", "sad", "hate", "anger"]
BLOCK = re.compile(r"(?:<!-- test: (?P<name>[\w-]+) -->\n)?```(?P<language>\w*)\n(?P<body>.*?)```", re.S)


def readme_blocks() -> list[tuple[str | None, str, str]]:
    """Every fenced block of the README and of docs/: (its test name or None, its language, its text)."""
    return [(m["name"], m["language"], m["body"]) for page in PAGES for m in BLOCK.finditer(page.read_text("utf-8"))]


def block(name: str) -> str:
    """The text of the block marked ``name``, on whichever page it is."""
    return next(body for marked, _, body in readme_blocks() if marked == name)


def commands(body: str) -> list[list[str]]:
    """A shell block's commands, continuation lines joined and comments dropped, each as its words."""
    lines = body.replace("\\\n", " ").splitlines()
    return [words for words in (shlex.split(line, comments=True) for line in lines) if words]


def target(words: list[str]) -> str:
    """The script or module a command runs: ``TER.py``, ``emorec.demo``, ``tensorboard``."""
    if Path(words[0]).name == "tensorboard":
        return "tensorboard"
    return words[2] if words[1] == "-m" else words[1]


def argv_of(words: list[str]) -> list[str]:
    """The command as this interpreter runs it: ``python`` and ``.venv/bin/...`` are this environment's."""
    program = Path(words[0]).name
    assert program in ("python", "tensorboard"), f"the README runs {words[0]}, which this test does not know"
    return [sys.executable if program == "python" else str(BIN / program), *words[1:], *SMALL.get(target(words), [])]


def run_command(words: list[str], cwd: Path, timeout: int = 400) -> subprocess.CompletedProcess:
    """Run one README command in a fresh process in ``cwd``; fail with its output unless it exits 0."""
    result = subprocess.run(argv_of(words), cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"`{shlex.join(words)}` exited {result.returncode}:\n{result.stderr[-4000:]}"
    return result


def run_block(name: str, cwd: Path, at_once: bool = False) -> list[subprocess.CompletedProcess]:
    """Run every command of the README block ``name`` in order, skipping ``make`` lines; ``at_once``: start them
    all together (a block of commands that do not depend on each other), then wait for each in order."""
    lines = [words for words in commands(block(name)) if words[0] != "make"]
    return run_together(lines, cwd) if at_once else [run_command(words, cwd) for words in lines]


def run_together(lines: list[list[str]], cwd: Path) -> list[subprocess.CompletedProcess]:
    """Start the README commands ``lines`` all at once, each in a fresh process, then wait for each in order;
    fail with the output of one that does not exit 0."""
    started = [
        (words, subprocess.Popen(argv_of(words), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        for words in lines
    ]
    results = []
    for words, process in started:
        stdout, stderr = process.communicate(timeout=400)
        assert process.returncode == 0, f"`{shlex.join(words)}` exited {process.returncode}:\n{stderr[-4000:]}"
        results.append(subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr))
    return results


def test_every_command_block_of_the_readme_and_the_docs_is_run_here():
    assert len(PAGES) >= 9 and (REPO / "docs/phases.md") in PAGES  # the README and the docs pages are read
    blocks = readme_blocks()
    marked = [name for name, _, _ in blocks if name]
    assert sorted(marked) == sorted(TESTED), "each marked block once, and each has its test here"
    for name, language, body in blocks:
        if name is None and language in ("sh", "python"):
            assert all(words[0] == "make" for words in commands(body)), f"a block no test runs:\n{body}"
    assert len([c for name in TESTED - {"load"} for c in commands(block(name)) if c[0] != "make"]) >= 11


def test_the_phases_block_runs_the_four_phases_on_data_in_the_real_places(trained):
    for prob_file in ("text_prob.csv", "img_prob.csv", "inter_prob.csv", "late_prob.csv"):
        probs = pd.read_csv(trained / "data_files" / prob_file)
        assert len(probs) == 120 and list(probs.columns[3:]) == CLASSES
    summary = json.loads((trained / "results/summary.json").read_text())
    assert summary["dataset"] == "data_files/image_labels.csv"  # the manifest the phases read
    assert [c.split()[1] for c in summary["commands"]] == [
        "TER.py",
        "IER.py",
        "Intermediate_fusion.py",
        "Late_fusion.py",
    ]


def test_the_demo_phases_block_is_what_make_demo_runs_and_runs_each_phase_on_the_demo(trained):
    lines = [shlex.join(words) for words in commands(block("demo-phases"))]
    printed = subprocess.run(["make", "-n", "-B", "demo"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    made = [
        line.replace(".venv/bin/python ", "python ", 1)
        for line in printed.splitlines()
        if line.startswith(".venv/bin/python ") and " -m pip " not in line
    ]
    assert [shlex.join(shlex.split(line)) for line in made] == lines  # the README says what make demo does
    summary = json.loads((trained / "demo-phases-results/summary.json").read_text())
    assert summary["dataset"] == "data_t4sa/demo/image_labels.csv" and summary["split_sizes"]["test"] > 0
    assert [c.split()[1] for c in summary["commands"]] == [
        "TER.py",
        "IER.py",
        "Intermediate_fusion.py",
        "Late_fusion.py",
    ]


# Run after the README's loading example, in its interpreter (a second fresh one would cost the suite one more
# TensorFlow start): loads each saved model with the README's one import (and emorec.training, which holds the
# training optimizer, never imported, by the example or by this), then scores raw rows: texts and image files as the
# manifest gives them.
FRESH_LOAD = """
import json, sys
import keras
import emorec.models
models = {p: keras.models.load_model(f"model_checkpoints/{p}.keras") for p in ("TER", "IER", "Intermediate_fusion")}
assert "emorec.training" not in sys.modules
import numpy as np, pandas as pd, tensorflow as tf
from pathlib import Path
from emorec.data.manifest import resolve_image_paths
from emorec.images import load_image
rows = pd.read_csv("data_files/image_labels.csv", dtype=str, keep_default_na=False).iloc[::10]
paths, _ = resolve_image_paths(rows["image"], Path("data_t4sa"))
texts = tf.constant(rows["text"].tolist())
images = np.stack([load_image(p, models["IER"].input_shape[1])[0] for p in paths]).astype("float32")
out = {"rows": rows.index.tolist(), "TER": models["TER"].predict(texts, verbose=0).tolist(),
       "IER": models["IER"].predict(images, verbose=0).tolist(),
       "Intermediate_fusion": models["Intermediate_fusion"].predict({"text": texts, "image": images},
                                                                   verbose=0).tolist()}
print(json.dumps(out))
"""


def test_the_loading_example_runs_and_saved_models_reproduce_the_prob_files_in_a_fresh_interpreter(trained):
    (trained / "readme_load.py").write_text(block("load") + FRESH_LOAD, encoding="utf-8")  # as written, then the checks
    loaded = run_command(["python", "readme_load.py"], trained)
    assert len(re.findall(r"^\[\[", loaded.stdout, re.M)) == 3  # the README's example: three (1, classes) arrays
    scored = json.loads(loaded.stdout.splitlines()[-1])
    for phase, prob_file in (
        ("TER", "text_prob.csv"),
        ("IER", "img_prob.csv"),
        ("Intermediate_fusion", "inter_prob.csv"),
    ):
        written = pd.read_csv(trained / "data_files" / prob_file).iloc[scored["rows"]][CLASSES].to_numpy()
        np.testing.assert_allclose(scored[phase], written, atol=2e-3, err_msg=phase)  # image features cached as float16


def test_the_predict_and_explain_blocks_in_each_form(trained):
    manifest = pd.read_csv(trained / "data_t4sa/demo/image_labels.csv")
    lines = [words for name in ("predict", "explain") for words in commands(block(name))]
    stale = trained / "results/explanations/09-wrong-sad-x.png"  # a larger --explain's, from an earlier run
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_bytes(b"")
    table, as_json, as_csv, explained, report = run_together(lines, trained)  # all independent
    assert re.search(r"^prediction: (happy|sad|hate|anger) \(from TER\+IER\+Intermediate_fusion\)$", table.stdout, re.M)
    assert json.loads(as_json.stdout)["rows"][0]["prediction"] in CLASSES
    predictions = pd.read_csv(trained / "predictions.csv")  # the demo's manifest, every row, its columns kept
    assert len(predictions) == len(manifest) and predictions["image_ok"].all()
    assert predictions["prediction"].isin(CLASSES).all() and (predictions["label"] == manifest["label"]).all()

    # One tweet explained: the summary printed, the picture and the JSON written.
    assert re.search(
        r"^fused probability of \w+: both [\d.]+, text alone [\d.]+, image alone [\d.]+$", explained.stdout, re.M
    )
    data = json.loads((trained / "explanations/example.json").read_text())
    assert data["prediction"] in CLASSES and set(data["probabilities"]) == {*MEMBERS, "Late_fusion"}
    assert data["words"]["TER"] and data["words"]["Intermediate_fusion"]
    heat = data["heat_maps"]["IER"]
    hottest = max(max(row) for row in heat["map"])
    # Scaled to a peak of 1, or cut to zero everywhere (a tiny model may find nothing for the class in this image;
    # test_explain checks maps that are not zero).
    assert (hottest == 1.0 and heat["peak"] > 0) or (hottest == 0.0 and heat["peak"] <= 0), (hottest, heat["peak"])
    assert (trained / "explanations/example.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The report's examples: in results/ and in TensorBoard's Images tab.
    pictures = sorted((trained / "results/explanations").glob("*.png"))
    assert len(pictures) == 8 and re.fullmatch(r"01-(right|wrong)-(happy|sad|hate|anger)-.+\.png", pictures[0].name)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(trained / "tb_logs/Late_fusion"), size_guidance={"tensors": 0, "images": 0})
    events.Reload()
    shown = {tag.removesuffix("/image/0") for tag in events.Tags()["tensors"] if tag.startswith("explanation/")}
    assert shown == {f"explanation/{path.stem}" for path in pictures}, events.Tags()["tensors"]


def test_the_tensorboard_command_serves_the_run_on_127_0_0_1(trained):
    (words,) = commands(block("tensorboard"))
    port = free_port()
    server = subprocess.Popen(
        [*argv_of(words), "--host", "127.0.0.1", "--port", str(port)],
        cwd=trained,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        runs = first_answer(f"http://127.0.0.1:{port}/data/runs", server, 90)
        assert runs is not None, f"tensorboard did not answer: {server.poll()=}"
        assert {"TER/train", "IER/validation", "Late_fusion"} <= set(json.loads(runs))
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_the_serve_block_answers_good_and_bad_uploads_and_keeps_serving(trained):
    from markupsafe import escape  # as the page's templates escape
    from PIL import Image

    (words,) = [c for c in commands(block("serve")) if c[0] != "make"]
    port = free_port()
    server = subprocess.Popen(
        [*argv_of(words), "--port", str(port), "--max-upload-mb", "1"],
        cwd=trained,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        page = first_answer(url + "/", server, 120)
        assert page is not None, f"the page did not answer: {server.poll()=}"
        assert 'type="file"' in page and 'name="text"' in page

        photo = (trained / "photo.jpg").read_bytes()
        status, answer = post(url + "/api/predict", {"text": "what a day"}, ("photo.jpg", photo))
        assert status == 200, answer
        answer = json.loads(answer)
        assert answer["prediction"] in CLASSES and answer["class_names"] == CLASSES
        for model in (*MEMBERS, "Late_fusion"):
            assert sum(answer["probabilities"][model].values()) == pytest.approx(1, abs=1e-4)
        status, html = post(url + "/", {"text": "what a day"}, ("photo.jpg", photo))
        assert status == 200 and 'id="probabilities"' in html and "data:image/png;base64," in html

        huge = io.BytesIO()
        Image.new("L", (8000, 7000)).save(huge, format="PNG")  # 56 megapixels in a small file
        for fields, upload, expected, message in [
            ({"text": "what a day"}, ("notes.jpg", b"not an image at all"), 400, "is not an image"),
            (
                {"text": "what a day"},
                ("big.jpg", np.random.default_rng(0).bytes(1_300_000)),
                413,
                "over this page's limit",
            ),
            ({"text": "what a day"}, ("huge.png", huge.getvalue()), 413, "megapixels"),
            ({"text": "   "}, None, 400, "give the tweet's text, its image, or both"),
            ({"text": "what a day", "run": "no-such-run"}, ("photo.jpg", photo), 404, "no trained run named"),
        ]:
            status, answer = post(url + "/api/predict", fields, upload)
            assert (status, message in json.loads(answer)["error"]) == (expected, True), answer
            status, html = post(url + "/", fields, upload)  # the page says it too
            assert status == expected and 'id="error"' in html and str(escape(message)) in html, html[:3000]
        status, answer = post(url + "/api/predict", {"text": "what a day"}, ("photo.jpg", photo))
        assert status == 200 and server.poll() is None  # still serving
        assert json.loads(answer)["text_cut"] is None

        # Latin-1 bytes (not UTF-8) are refused, not read as replacement characters.
        status, answer = post(
            url + "/api/predict", {"text": "TEXT"}, ("photo.jpg", photo), raw_text="tr\xe8s bien".encode("latin-1")
        )
        assert status == 400 and "the text is not UTF-8" in json.loads(answer)["error"], answer
        # A text longer than the models read is answered, and the answer says it was cut.
        status, answer = post(url + "/api/predict", {"text": "what a day " * 400}, ("photo.jpg", photo))
        cut = json.loads(answer)["text_cut"]
        assert status == 200 and cut["tokens"] == 1200 and set(cut["read"].values()) == {30}, answer
        status, html = post(url + "/", {"text": "what a day " * 400}, ("photo.jpg", photo))
        assert 'id="text-cut"' in html and "it has 1,200 tokens and the text models read only the first 30" in html
        # The page keeps the image of its answer: a second text with no new upload is answered with it.
        kept = re.search(r'name="kept_image" value="([^"]+)"', html).group(1)
        status, html = post(url + "/", {"text": "so sad today", "kept_image": kept, "kept_name": "photo.jpg"}, None)
        assert status == 200 and 'id="probabilities"' in html and "photo.jpg, the image of the last answer" in html
        # One side (issue 46): the image alone, or the text alone, from the models that can score it.
        status, answer = post(url + "/api/predict", {"text": "  "}, ("photo.jpg", photo))
        answer = json.loads(answer)
        assert status == 200 and answer["models_used"] == ["IER"] and answer["probabilities"]["TER"] is None
        assert answer["probabilities"]["Late_fusion"] == pytest.approx(answer["probabilities"]["IER"], abs=1e-6)
        status, html = post(url + "/", {"text": "so sad today"}, None)
        assert status == 200 and 'id="one-sided"' in html and "From TER:" in html and "data:image/png" not in html
        # An image Pillow does not recognise is said in words, not by the name of Pillow's exception.
        status, html = post(url + "/", {"text": "what a day"}, ("notes.jpg", b"not an image at all"))
        assert "UnidentifiedImageError" not in html and "its format is none of those it knows" in html
    finally:
        server.terminate()
        server.wait(timeout=30)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def first_answer(url: str, server: subprocess.Popen, seconds: float) -> str | None:
    """The body of ``url`` once the ``server`` process answers it; None if it exits or ``seconds`` pass first."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and server.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                return answer.read().decode()
        except OSError:
            time.sleep(0.5)
    return None


def post(url: str, fields: dict, upload: tuple[str, bytes] | None, raw_text: bytes | None = None) -> tuple[int, str]:
    """POST ``fields`` and the file ``upload`` (name, bytes; None: no file) as ``image`` in a multipart form;
    ``raw_text``: these bytes as the text field's value, whatever their encoding. Returns (status, body)."""
    from werkzeug.datastructures import FileStorage
    from werkzeug.test import encode_multipart

    files = {} if upload is None else {"image": FileStorage(io.BytesIO(upload[1]), filename=upload[0])}
    boundary, body = encode_multipart({**fields, **files})
    if raw_text is not None:
        body = body.replace(fields["text"].encode(), raw_text, 1)
    request = urllib.request.Request(url, body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    try:
        with urllib.request.urlopen(request, timeout=120) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_the_sweep_block_on_a_tiny_setting(trained):
    (words,) = [c for c in commands(block("sweep")) if c[0] != "make"]
    # The README's image flags, then ours (the last value holds): the weights file and SMALL's image size, at which
    # the phases block's IER already filled the store.
    size = SMALL["IER.py"][SMALL["IER.py"].index("--image-size") + 1]
    words[words.index("--ier-args") + 1] += f" --image-weights {WEIGHTS} --image-size {size}"
    swept = run_command(words, trained)
    assert "image features: all 120 images are in the store" in swept.stderr  # not computed again
    table = pd.read_csv(trained / "results/label_efficiency.csv")
    assert set(table["fraction"]) == {0.5} and set(table["seed"]) == {0}
    assert set(table["method"]) == {*MEMBERS, *BASELINE_NAMES, *FUSIONS} and len(table) == 9  # the baselines too


def test_the_bt4sa_block_converts_the_official_format(clone):
    from test_bt4sa import TWEETS, write_bt4sa

    write_bt4sa(clone / "data_t4sa")
    run_block("bt4sa", clone)
    manifest = pd.read_csv(clone / "data_files/bt4sa.csv", dtype=str)
    assert len(manifest) == sum(images for _, _, images, _ in TWEETS.values())
    assert (clone / "data_files/bt4sa.classes.txt").read_text().split() == ["negative", "neutral", "positive"]


def test_the_mvsa_block_converts_the_distributed_layout(clone):
    """docs/data.md's command, as a user runs it, on MVSA-Single's layout with every case the converter handles."""
    from test_mvsa import SINGLE_LOG, check_single_conversion, single

    root = single(clone / "data_mvsa/MVSA_Single")
    (result,) = run_block("mvsa", clone)
    for line in SINGLE_LOG:
        assert line in result.stderr
    check_single_conversion(clone / "data_files/mvsa_single.csv", root)


@contextlib.contextmanager
def as_after_make_demo(root: Path):
    """``root`` without the data the README's phases block reads (data_files/image_labels.csv), as a clone after
    `make demo` has it: a page's command that reads it unasked fails inside (issue 45)."""
    real = root / "data_files/image_labels.csv"
    real.rename(real.with_suffix(".aside"))
    try:
        yield
    finally:
        real.with_suffix(".aside").rename(real)


def test_the_image_encoder_block_with_a_folder_in_the_hugging_face_layout(trained):
    """docs/image_encoders.md's command, with a tiny random ViT written where it reads the folder (a real one cannot
    be downloaded here), as written: no --image-size (the preset's own) and no --image-weights (its own), which
    SMALL would add; one epoch."""
    from conftest import write_hugging_face_vit

    (words,) = commands(block("image-encoder"))
    folder = words[words.index("--backbone") + 1]
    write_hugging_face_vit(trained / folder)
    with as_after_make_demo(trained):
        done = subprocess.run(
            [sys.executable, *words[1:], "--epoch", "1"], cwd=trained, capture_output=True, text=True, timeout=400
        )
    assert done.returncode == 0, done.stderr[-4000:]
    metrics = json.loads((trained / "model_checkpoints/vit/IER.metrics.json").read_text())
    assert metrics["image_size"] == 32 and metrics["weights_identity"].startswith("hub-")
    assert Path(metrics["feature_store"]).name.startswith("vit-base-patch16-224_32px_embedding_")


def test_the_text_encoder_block_with_a_folder_in_the_hugging_face_layout(trained):
    """docs/text_encoders.md's commands, with a tiny random BERT written where they read the folder (a real one
    cannot be downloaded here): the frozen run computes the store, the fine-tuned one trains AdamW."""
    from test_text_encoders import demo_vocabulary, write_hugging_face_folder

    lines = commands(block("text-encoder"))
    folder = lines[0][lines[0].index("--text-encoder") + 1]
    write_hugging_face_folder(trained / folder, demo_vocabulary(trained / "data_t4sa/demo"))
    with as_after_make_demo(trained):
        frozen, tuned = [run_command(words, trained) for words in lines]
    assert "text features: computing" in frozen.stderr and "optimizer: AdamW" in tuned.stderr
    # Not silent after training (issue 45): the scoring's own progress bar, after the last epoch's line.
    assert "scoring the" in tuned.stderr and "/step" in tuned.stdout.rsplit("val_macro_f1", 1)[-1]
    for run_name, model in (("minilm", "frozen"), ("minilm-tuned", "fine-tuned")):
        metrics = json.loads((trained / "model_checkpoints" / run_name / "TER.metrics.json").read_text())
        assert metrics["text_model"]["model"] == model and metrics["text_model"]["encoder"]["preset"] == folder
