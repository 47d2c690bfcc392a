"""The four phases chained on a small demo, the results report, predict.py and the missing-input messages (issue 6)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import interrupt_after_epoch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score

import IER
import Intermediate_fusion
import Late_fusion
import predict
from emorec.cli import run
from emorec.demo import MANIFEST_NAME
from emorec.fusion import FUSION_METHODS, METHOD_NAMES, METHODS, SINGLE_MODALITY
from emorec.runs import read_run_config
from emorec.zero_shot import ZERO_SHOT_NAMES

CLASSES = ["happy", "sad", "hate", "anger"]
REPO = Path(__file__).resolve().parents[1]
RUN = "t-f1-s0"  # the sweep's whole-split setting
PROB_FILES = {
    "TER": "text_prob.csv",
    "IER": "img_prob.csv",
    "Intermediate_fusion": "inter_prob.csv",
    "Late_fusion": "late_prob.csv",
}


def data(demo):
    return ["--manifest", str(demo / MANIFEST_NAME), "--image-root", str(demo), "--seed", "0"]


@pytest.fixture(scope="module")
def pipeline(small_sweep):
    """The four phases chained on the small demo, Late_fusion with the baselines: the whole-split setting of the
    suite's small sweep (conftest's ``small_sweep``), the run RUN; returns the output folder."""
    out, _ = small_sweep
    return out


def test_the_args_json_keeps_the_users_flags_apart_from_what_the_run_found(pipeline, small_demo, tmp_path):
    """``flags`` is the command line as parsed, nothing added; ``run`` is what the run found: the data fingerprint,
    the strategy as it ran, the precision and pooling as resolved. A file in the flat form of releases before the
    record (facts among the flags, the resolved values in the flags' place) reads back as the same record."""
    checkpoints = pipeline / "ckpt" / RUN
    for phase in ("TER", "IER", "Intermediate_fusion", "Late_fusion"):
        written = json.loads((checkpoints / f"{phase}.args.json").read_text())
        assert set(written) == {"argv", "flags", "run"}, phase
        assert not {"data", "distribution", "training_ids", "training_id_list", "split_leakage"} & set(written["flags"])
        assert written["run"]["data"]["rows"] == len(pd.read_csv(small_demo / MANIFEST_NAME)), phase
        assert set(written["run"]["versions"]) == {"keras", "tensorflow", "numpy"}
    ier, fusion = (
        json.loads((checkpoints / f"{phase}.args.json").read_text()) for phase in ("IER", "Intermediate_fusion")
    )
    assert ier["flags"]["precision"] == fusion["flags"]["precision"] == "auto"  # what the user asked (the default)
    assert ier["run"]["precision"] in ("float32", "bfloat16") and fusion["run"]["precision"] == ier["run"]["precision"]
    assert fusion["flags"]["pooling"] is None and fusion["run"]["pooling"] == ier["run"]["pooling"] == "flatten"
    assert ier["run"]["distribution"]["replicas"] == 1
    late = json.loads((checkpoints / "Late_fusion.args.json").read_text())
    assert late["run"]["manifest"] == str(small_demo / MANIFEST_NAME)  # the one its phases read

    flat = {
        "argv": ier["argv"],
        **ier["flags"],
        "precision": ier["run"]["precision"],
        "pooling": ier["run"]["pooling"],
        **{key: ier["run"][key] for key in ("data", "training_ids", "distribution")},
        **ier["run"]["versions"],
    }
    (tmp_path / "IER.args.json").write_text(json.dumps(flat))
    old, new = read_run_config(tmp_path / "IER.args.json"), read_run_config(checkpoints / "IER.args.json")
    assert old.argv == new.argv
    assert old.flags == {**new.flags, "precision": new.run["precision"], "pooling": new.run["pooling"]}
    for key in ("data", "training_ids", "distribution", "precision", "pooling"):
        assert old.run[key] == new.run[key], key


def read_probs(out, phase, run_name=RUN):
    return pd.read_csv(out / "probs" / run_name / PROB_FILES[phase], dtype={"id": str})


def test_every_phase_writes_every_output(pipeline, small_demo):
    checkpoints = pipeline / "ckpt" / RUN
    for phase in ("TER", "IER", "Intermediate_fusion"):
        for suffix in (".keras", ".args.json", ".metrics.json", ".epochs.csv"):
            assert (checkpoints / f"{phase}{suffix}").is_file(), phase + suffix
        assert list((pipeline / "tb" / RUN / phase / "validation").glob("events.out.tfevents.*"))
    assert (checkpoints / "Late_fusion.metrics.json").is_file() and (checkpoints / "Late_fusion.args.json").is_file()
    assert list((pipeline / "tb" / RUN / "Late_fusion").glob("events.out.tfevents.*"))
    n = len(pd.read_csv(small_demo / MANIFEST_NAME))
    for phase in PROB_FILES:
        probs = read_probs(pipeline, phase)
        assert list(probs.columns) == ["id", "split", "label", *CLASSES] and len(probs) == n
        np.testing.assert_allclose(probs[CLASSES].sum(axis=1), 1.0, atol=1e-5)
    results = pipeline / "results" / RUN
    # Every method but the zero-label ones: VGG16 has no text tower, so --zero-shot auto leaves them out.
    reported = [method for method in METHODS if method not in ZERO_SHOT_NAMES]
    assert {p.name for p in results.glob("confusion_*.png")} == {f"confusion_{m}.png" for m in reported}
    summary = (results / "summary.md").read_text()
    assert "| Late fusion (weights chosen on val) |" in summary and "python Intermediate_fusion.py" in summary
    for method in reported:  # every member, baseline and fusion has its row
        assert f"| {METHOD_NAMES[method]} | " in summary, method
    weights = json.loads((checkpoints / "Late_fusion.metrics.json").read_text())["weights"]
    assert set(weights) == {"TER", "IER", "Intermediate_fusion"} and sum(weights.values()) == pytest.approx(1.0)


def scikit_scores(labels, predictions):
    return {
        "n": len(labels),
        "accuracy": accuracy_score(labels, predictions),
        "macro_f1": f1_score(labels, predictions, average="macro", labels=CLASSES, zero_division=0),
        "weighted_f1": f1_score(labels, predictions, average="weighted", labels=CLASSES, zero_division=0),
    }


def point(scores):
    """A split's point scores in the summary, without its intervals and notes."""
    return {key: scores[key] for key in ("n", "accuracy", "macro_f1", "weighted_f1")}


def test_summary_numbers_are_what_scikit_learn_computes_from_the_prob_files(pipeline):
    summary = json.loads((pipeline / "results" / RUN / "summary.json").read_text())
    members = {phase: read_probs(pipeline, phase) for phase in PROB_FILES}
    stacked = np.stack([members[m][CLASSES].to_numpy() for m in ("TER", "IER", "Intermediate_fusion")])
    average = np.nanmean(stacked, axis=0)  # equal weights, renormalised over the members that scored a row
    features = np.concatenate(list(np.where(np.isnan(stacked), average[None], stacked)), axis=1)
    frame = members["TER"]
    val = (frame["split"] == "val").to_numpy()
    stacker = LogisticRegression(max_iter=2000, random_state=0).fit(features[val], frame["label"][val])
    predictions = {phase: table[CLASSES].to_numpy() for phase, table in members.items()}
    predictions["Average"] = average
    for method, probabilities in predictions.items():
        for split in ("train", "val", "test"):
            rows = (frame["split"] == split).to_numpy() & ~np.isnan(probabilities).any(axis=1)
            expected = scikit_scores(frame["label"][rows], np.array(CLASSES)[probabilities[rows].argmax(axis=1)])
            assert point(summary["methods"][method][split]) == pytest.approx(expected), (method, split)
    test = (frame["split"] == "test").to_numpy()
    expected = scikit_scores(frame["label"][test], stacker.predict(features[test]))
    assert point(summary["methods"]["Stacker"]["test"]) == pytest.approx(expected)
    assert summary["split_sizes"] == frame["split"].value_counts().to_dict()


def test_baselines_are_what_scikit_learn_computes_directly(pipeline, small_demo):
    """Each baseline, refitted here with scikit-learn alone on the run's training rows (the C that Late_fusion
    chose, which must be the grid's best on val), gives the probabilities and test scores that the report holds."""
    from scipy import sparse
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.preprocessing import StandardScaler

    from emorec.baselines import BASELINE_PROB_FILES, C_GRID, COMPARED_PHASE
    from emorec.data.manifest import read_manifest
    from emorec.extraction import phase_features

    summary = json.loads((pipeline / "results" / RUN / "summary.json").read_text())
    manifest = pd.read_csv(small_demo / MANIFEST_NAME)
    frame = read_probs(pipeline, "TER")
    labels = frame["label"].map(CLASSES.index).to_numpy()
    train, val, test = ((frame["split"] == split).to_numpy() for split in ("train", "val", "test"))
    assert len(manifest) == len(frame) and train.sum() >= 100  # terms in at least two training texts are kept
    words = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2, dtype=np.float32).fit(
        manifest["text"][train]
    )
    text = words.transform(manifest["text"])
    ier = json.loads((pipeline / "ckpt" / RUN / "IER.metrics.json").read_text())
    cache = phase_features(
        read_manifest(small_demo / MANIFEST_NAME, small_demo),
        ier,
        read_run_config(pipeline / "ckpt" / RUN / "IER.args.json"),
    )
    pooled = np.asarray(cache.features[:], dtype=np.float32).mean(axis=(1, 2))
    image = StandardScaler().fit(pooled[train]).transform(pooled) / np.sqrt(pooled.shape[1])
    inputs = {"Baseline_text": text, "Baseline_image": image, "Baseline_both": sparse.hstack([text, image]).tocsr()}
    for name, x in inputs.items():
        weighting = summary["baselines"][name]["class_weight"]  # the phase of the same modality's
        assert (
            weighting
            == read_run_config(pipeline / "ckpt" / RUN / f"{COMPARED_PHASE[name]}.args.json").flags["class_weight"]
        )

        def fitted(C, x=x, weighting=weighting):
            return LogisticRegression(
                C=C, max_iter=2000, random_state=0, class_weight=None if weighting == "none" else weighting
            ).fit(x[train].astype(np.float64), labels[train])

        val_scores = [f1_score(labels[val], fitted(C).predict(x[val]), average="macro") for C in C_GRID]
        chosen = summary["baselines"][name]["C"]
        assert chosen == C_GRID[int(np.argmax(val_scores))], name
        expected = fitted(chosen).predict_proba(x)
        written = pd.read_csv(pipeline / "probs" / RUN / BASELINE_PROB_FILES[name])
        np.testing.assert_allclose(written[CLASSES].to_numpy(), expected, atol=1e-5, err_msg=name)
        test_scores = scikit_scores(frame["label"][test], np.array(CLASSES)[expected[test].argmax(axis=1)])
        assert point(summary["methods"][name]["test"]) == pytest.approx(test_scores), name


def test_fusion_with_baselines_searches_six_members(pipeline):
    metrics = json.loads((pipeline / "ckpt" / RUN / "Late_fusion.metrics.json").read_text())
    six = metrics["weights_with_baselines"]
    assert list(six) == ["TER", "IER", "Intermediate_fusion", "Baseline_text", "Baseline_image", "Baseline_both"]
    assert sum(six.values()) == pytest.approx(1.0) and metrics["grid_step_with_baselines"] == 0.2
    assert set(metrics["weights"]) == {"TER", "IER", "Intermediate_fusion"}  # the paper's three stay the default
    fused = read_probs(pipeline, "Late_fusion")
    members = {
        phase: read_probs(pipeline, phase)[CLASSES].to_numpy() for phase in ("TER", "IER", "Intermediate_fusion")
    }
    expected = sum(metrics["weights"][phase] * p for phase, p in members.items())
    np.testing.assert_allclose(fused[CLASSES].to_numpy(), expected, atol=1e-6)  # late_prob.csv: the paper's fusion


def test_predict_reproduces_the_phases_prob_files(pipeline, small_demo, tmp_path, capsys, monkeypatch):
    """From the features IER stored (the backbone does not run: issue 45), every batch of one size (the networks
    trace once)."""
    import keras

    shapes, predict_on_batch = [], keras.Model.predict_on_batch
    monkeypatch.setattr(
        keras.Model,
        "predict_on_batch",
        lambda self, x: shapes.append((self.name, _rows(x))) or predict_on_batch(self, x),
    )
    out = tmp_path / "predictions.csv"
    argv = [
        "--csv",
        str(small_demo / MANIFEST_NAME),
        "--out",
        str(out),
        "--checkpoint-dir",
        str(pipeline / "ckpt"),
        "--run-name",
        RUN,
        "--batch-size",
        "128",
    ]
    assert predict.main(argv) == 0
    predicted = pd.read_csv(out)
    assert predicted["image_ok"].all() and not predicted["text_cut"].any()
    assert f"{len(predicted)} of {len(predicted)} images read from the run's feature store" in capsys.readouterr().err
    assert len(predicted) % 128 and {rows for _, rows in shapes} == {128}  # the last batch too
    assert not any(name.endswith("_extractor") for name, _ in shapes)
    for phase in PROB_FILES:
        np.testing.assert_allclose(
            predicted[[f"{phase}_{c}" for c in CLASSES]].to_numpy(),
            read_probs(pipeline, phase)[CLASSES].to_numpy(),
            atol=2e-3,
            err_msg=phase,
        )
    late = read_probs(pipeline, "Late_fusion")
    assert (predicted["prediction"] == np.array(CLASSES)[late[CLASSES].to_numpy().argmax(axis=1)]).mean() > 0.99


def _rows(inputs) -> int:
    """How many rows a batch of a model's inputs (an array, or a dict of them) has."""
    return len(next(iter(inputs.values())) if isinstance(inputs, dict) else inputs)


def test_predict_one_tweet_as_json_running_the_backbone_once(pipeline, small_demo, capsys, monkeypatch, tmp_path):
    import keras

    manifest = pd.read_csv(small_demo / MANIFEST_NAME)
    image, text = str(shutil.copy(small_demo / manifest["image"][0], tmp_path)), manifest["text"][0]  # not stored
    argv = ["--image", image, "--text", text, "--json", "--checkpoint-dir", str(pipeline / "ckpt"), "--run-name", RUN]
    ran, predict_on_batch = [], keras.Model.predict_on_batch
    monkeypatch.setattr(
        keras.Model, "predict_on_batch", lambda self, x: ran.append(self.name) or predict_on_batch(self, x)
    )
    assert predict.main(argv) == 0
    assert ran.count("vgg16_extractor") == 1 and "ier_head" in ran and "fusion_network" in ran  # one image, one pass
    result = json.loads(capsys.readouterr().out)
    assert result["class_names"] == CLASSES and len(result["rows"]) == 1
    row = result["rows"][0]
    assert row["prediction"] in CLASSES and row["image_ok"]
    for model in ("TER", "IER", "Intermediate_fusion", "Late_fusion"):
        assert sum(row[model].values()) == pytest.approx(1.0, abs=1e-5)


def test_a_text_longer_than_the_models_read_is_marked_and_counted(pipeline, small_demo, tmp_path, capsys):
    """Issue 45: a text past --seq-len counts by its first tokens only: the CSV's text_cut column and one warning
    with the count (a fresh process), and a line under the one-tweet table."""
    manifest = pd.read_csv(small_demo / MANIFEST_NAME)
    long_text = " ".join(["sunshine"] * 400)
    images = [str(small_demo / image) for image in manifest["image"][:2]]
    pd.DataFrame({"text": [long_text, "short"], "image": images}).to_csv(tmp_path / "long.csv", index=False)
    command = [sys.executable, "predict.py", "--csv", str(tmp_path / "long.csv"), "--run-name", RUN]
    result = subprocess.run([*command, "--checkpoint-dir", str(pipeline / "ckpt")], cwd=REPO, capture_output=True)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    assert "1 of 2 text(s) are longer than the text models read" in result.stderr.decode()
    assert pd.read_csv(tmp_path / "long.predictions.csv")["text_cut"].tolist() == [True, False]
    argv = ["--image", images[0], "--text", long_text, "--checkpoint-dir", str(pipeline / "ckpt"), "--run-name", RUN]
    assert predict.main(argv) == 0
    assert "text_cut: the text is longer than the text models read" in capsys.readouterr().out


def test_predict_a_tweet_with_one_modality_from_the_models_that_can(pipeline, small_demo, tmp_path, capsys):
    """Issue 46: --text alone (a fresh process) is TER's prediction, a CSV row with its image alone IER's, each
    saying which models it used; --explain leaves a one-modality tweet out, saying why."""
    manifest = pd.read_csv(small_demo / MANIFEST_NAME)
    image, text = str(small_demo / manifest["image"][0]), manifest["text"][0]
    ckpt = ["--checkpoint-dir", str(pipeline / "ckpt"), "--run-name", RUN]
    alone = subprocess.run([sys.executable, "predict.py", "--text", text, *ckpt], cwd=REPO, capture_output=True)
    assert alone.returncode == 0, alone.stderr.decode()[-2000:]
    out = alone.stdout.decode()
    assert "(from TER)" in out and next(line for line in out.splitlines() if line.startswith("IER")).split()[1] == "-"
    rows = pd.DataFrame({"text": [text, "", text], "image": [image, image, ""]})
    rows.to_csv(tmp_path / "mixed.csv", index=False)
    assert predict.main(["--csv", str(tmp_path / "mixed.csv"), *ckpt]) == 0
    written = pd.read_csv(tmp_path / "mixed.predictions.csv")
    assert written["models_used"].tolist() == ["TER+IER+Intermediate_fusion", "IER", "TER"]
    classes = [column.removeprefix("IER_") for column in written.columns if column.startswith("IER_")]
    image_alone = written.iloc[1]  # the late fusion of a tweet with its image alone is IER's prediction
    assert image_alone[[f"TER_{c}" for c in classes]].isna().all()
    assert image_alone[[f"Intermediate_fusion_{c}" for c in classes]].isna().all()
    late, ier = (image_alone[[f"{m}_{c}" for c in classes]].to_numpy(float) for m in ("Late_fusion", "IER"))
    np.testing.assert_allclose(late, ier, atol=1e-6)
    explained = tmp_path / "explained"
    assert predict.main(["--text", text, "--explain-dir", str(explained), *ckpt]) == 0
    assert "not defined for one modality" in capsys.readouterr().err and not explained.exists()


def test_a_missing_earlier_output_names_the_phase_that_makes_it(pipeline, small_demo, tmp_path, capsys):
    empty = [
        "--checkpoint-dir",
        str(tmp_path / "ckpt"),
        "--log-dir",
        str(tmp_path / "tb"),
        "--prob-dir",
        str(tmp_path / "probs"),
    ]
    assert run(Intermediate_fusion.main, [*data(small_demo), *empty]) == 2
    assert "TER.keras is missing" in capsys.readouterr().err
    assert run(Late_fusion.main, empty) == 2
    assert "python TER.py" in capsys.readouterr().err
    assert run(predict.main, ["--image", "x.jpg", "--text", "hi", "--checkpoint-dir", str(tmp_path / "ckpt")]) == 2
    assert "python TER.py" in capsys.readouterr().err
    # A tweet with neither a text nor an image is refused, one tweet or rows of a CSV (issue 46).
    assert run(predict.main, ["--text", "  ", "--checkpoint-dir", str(pipeline / "ckpt"), "--run-name", RUN]) == 2
    assert "--text/--image: give the tweet's text, its image, or both" in capsys.readouterr().err
    # Rows named by the line an editor shows (issue 45): a text over two lines moves the empty one to line 4.
    texts = ["fine\nover two lines", "", "ok"]
    pd.DataFrame({"text": texts, "image": ["a.jpg", "", "a.jpg"]}).to_csv(tmp_path / "blank.csv", index=False)
    command = [sys.executable, "predict.py", "--csv", str(tmp_path / "blank.csv"), "--run-name", RUN]
    result = subprocess.run([*command, "--checkpoint-dir", str(pipeline / "ckpt")], cwd=REPO, capture_output=True)
    assert result.returncode == 2 and "1 row(s) with neither a text nor an image (lines 4)" in result.stderr.decode()
    assert not (tmp_path / "blank.predictions.csv").exists()
    shutil.copytree(pipeline / "probs" / RUN, tmp_path / "probs")
    (tmp_path / "probs" / "inter_prob.csv").unlink()
    assert run(Late_fusion.main, empty) == 2
    error = capsys.readouterr().err
    assert "inter_prob.csv is missing" in error and "python Intermediate_fusion.py" in error


def test_fusion_refuses_a_missing_or_stale_feature_store(pipeline, small_demo, tmp_path, capsys):
    shutil.copytree(pipeline / "ckpt" / RUN, tmp_path / "ckpt")
    metrics_file = tmp_path / "ckpt" / "IER.metrics.json"
    metrics = json.loads(metrics_file.read_text())
    stale = tmp_path / "features" / "copy"
    shutil.copytree(metrics["feature_store"], stale)
    entries = (stale / "entries.jsonl").read_text().splitlines(keepends=True)
    (stale / "entries.jsonl").write_text("".join(entries[:10]))  # a store of other images
    metrics["feature_store"] = str(stale)
    metrics_file.write_text(json.dumps(metrics))
    argv = [
        *data(small_demo),
        "--checkpoint-dir",
        str(tmp_path / "ckpt"),
        "--log-dir",
        str(tmp_path / "tb"),
        "--prob-dir",
        str(tmp_path / "probs"),
    ]
    assert run(Intermediate_fusion.main, argv) == 2
    error = capsys.readouterr().err
    assert f"lacks {len(entries) - 10} of these" in error and "python IER.py" in error
    metrics["feature_store"] = str(tmp_path / "features" / "gone")
    metrics_file.write_text(json.dumps(metrics))
    assert run(Intermediate_fusion.main, argv) == 2
    error = capsys.readouterr().err
    assert "is damaged or missing" in error and "python IER.py" in error


def test_late_fusion_refuses_files_from_another_split(pipeline, tmp_path, capsys):
    shutil.copytree(pipeline / "probs" / RUN, tmp_path / "probs")
    shutil.copytree(pipeline / "ckpt" / RUN, tmp_path / "ckpt")
    (tmp_path / "probs" / "late_prob.csv").unlink()
    image = pd.read_csv(tmp_path / "probs" / "img_prob.csv", dtype={"id": str})
    image.loc[image["split"] == "test", "split"] = "val"
    image.to_csv(tmp_path / "probs" / "img_prob.csv", index=False)
    argv = [
        "--checkpoint-dir",
        str(tmp_path / "ckpt"),
        "--log-dir",
        str(tmp_path / "tb"),
        "--prob-dir",
        str(tmp_path / "probs"),
        "--results-dir",
        str(tmp_path / "results"),
    ]
    assert run(Late_fusion.main, argv) == 2
    assert "disagree on the split" in capsys.readouterr().err
    assert not (tmp_path / "results").exists() and not (tmp_path / "probs" / "late_prob.csv").exists()


def test_late_fusion_takes_the_manifest_the_phases_read_and_refuses_another(pipeline, small_demo, tmp_path, capsys):
    shutil.copytree(pipeline / "probs" / RUN, tmp_path / "probs")
    shutil.copytree(pipeline / "ckpt" / RUN, tmp_path / "ckpt")
    argv = [
        "--checkpoint-dir",
        str(tmp_path / "ckpt"),
        "--log-dir",
        str(tmp_path / "tb"),
        "--prob-dir",
        str(tmp_path / "probs"),
        "--results-dir",
        str(tmp_path / "results"),
        "--grid-step",
        "0.7",
    ]
    assert run(Late_fusion.main, argv) == 0  # no --manifest: the phases' own; a step of 0.7: equal weights only
    summary = json.loads((tmp_path / "results" / "summary.json").read_text())
    assert summary["dataset"] == str(small_demo / MANIFEST_NAME)
    assert json.loads((tmp_path / "ckpt" / "Late_fusion.metrics.json").read_text())["candidates"] == 1
    other = shutil.copy(small_demo / MANIFEST_NAME, tmp_path / "other.csv")
    (tmp_path / "results" / "summary.json").unlink()
    for manifest, message in ((tmp_path / "nope.csv", "no such file"), (other, "is not the manifest the phases")):
        assert run(Late_fusion.main, [*argv, "--manifest", str(manifest)]) == 2
        assert message in capsys.readouterr().err
        assert not (tmp_path / "results" / "summary.json").exists()


def test_predict_scores_an_unreadable_image_row_by_text_alone_and_explains_the_others(
    pipeline, small_demo, tmp_path, capsys
):
    manifest = pd.read_csv(small_demo / MANIFEST_NAME).iloc[:3]
    (tmp_path / "broken.jpg").write_text("not an image")
    tweets = pd.DataFrame(
        {
            "text": manifest["text"],
            "image": [str(small_demo / manifest["image"][0]), str(tmp_path / "broken.jpg"), "missing.jpg"],
        }
    )
    tweets.to_csv(tmp_path / "tweets.csv", index=False)
    argv = [
        "--csv",
        str(tmp_path / "tweets.csv"),
        "--checkpoint-dir",
        str(pipeline / "ckpt"),
        "--run-name",
        RUN,
        "--explain-dir",
        str(tmp_path / "explained"),
        "--json",
    ]
    assert predict.main(argv) == 0
    predicted = pd.read_csv(tmp_path / "tweets.predictions.csv")
    assert predicted["image_ok"].tolist() == [True, False, False]
    late = predicted[[f"Late_fusion_{c}" for c in CLASSES]].to_numpy()
    text = predicted[[f"TER_{c}" for c in CLASSES]].to_numpy()
    np.testing.assert_allclose(late[1:], text[1:], atol=1e-6)  # fused from TER alone
    assert predicted[[f"IER_{c}" for c in CLASSES]].iloc[1:].isna().all().all()
    # --explain-dir: every row with a readable image explained, named by its row number; --json prints them too.
    captured = capsys.readouterr()
    rows = json.loads(captured.out)["rows"]
    assert [("explanation" in row) for row in rows] == [True, False, False]
    assert "2 tweet(s) without a text or a readable image are not explained" in captured.err
    stem = f"00000-{Path(manifest['image'][0]).stem}"
    assert sorted(path.name for path in (tmp_path / "explained").iterdir()) == [f"{stem}.json", f"{stem}.png"]
    written = json.loads((tmp_path / "explained" / f"{stem}.json").read_text())
    assert written == rows[0]["explanation"] and written["prediction"] == rows[0]["prediction"]


def test_summary_scores_the_same_rows_and_tweets_with_intervals(pipeline, small_demo):
    summary = json.loads((pipeline / "results" / RUN / "summary.json").read_text())
    manifest = pd.read_csv(small_demo / MANIFEST_NAME, dtype=str)
    tweets = manifest["image"].str.rsplit("/", n=1).str[-1].str.rsplit("-", n=1).str[0]
    test = (read_probs(pipeline, "TER")["split"] == "test").to_numpy()
    evaluation = summary["evaluation"]
    assert evaluation["rows"] == test.sum() and evaluation["tweets"] == tweets[test].nunique() < test.sum()
    assert evaluation["bootstrap"]["resamples"] >= 1000 and evaluation["bootstrap"]["unit"] == "test tweet"
    predictions = pd.read_csv(pipeline / "results" / RUN / "test_predictions.csv", dtype=str, keep_default_na=False)
    assert predictions["tweet"].tolist() == tweets[test].tolist()
    for method, scores in summary["methods"].items():
        for way in ("test", "test_same_rows", "test_per_tweet"):
            for metric in ("accuracy", "macro_f1"):
                low, high = scores[way][f"{metric}_ci"]
                assert low <= scores[way][metric] <= high, (method, way, metric)
        assert scores["val"]["in_sample"]  # val chose something for every method
        # The prediction file holds what the scores were computed from.
        right = (predictions[method] == predictions["label"]).mean()
        assert right == pytest.approx(scores["test_same_rows"]["accuracy"])
    assert summary["methods"]["TER"]["test_per_tweet"]["n"] == evaluation["same_rows_tweets"]
    difference = summary["fusion_vs_single"]
    assert difference["better"] in (
        "Intermediate_fusion",
        "Baseline_both",
        "Average",
        "Late_fusion",
        "Stacker",
        "Late_fusion_with_baselines",
        "Stacker_with_baselines",
    )
    assert difference["than"] in ("TER", "IER", "Baseline_text", "Baseline_image")
    for chosen, group in ((difference["better"], FUSION_METHODS), (difference["than"], SINGLE_MODALITY)):
        val = {m: summary["methods"][m]["val"]["macro_f1"] for m in group if m in summary["methods"]}
        assert chosen == max(val, key=val.get)  # chosen on validation, never on test
    assert summary["labels_used"] == {
        "training": summary["split_sizes"]["train"],
        "validation": summary["split_sizes"]["val"],
    }
    markdown = (pipeline / "results" / RUN / "summary.md").read_text()
    assert "same rows: macro-F1" in markdown and "Best fusion against the best single modality" in markdown
    for phase in ("TER", "IER", "Intermediate_fusion", "Late_fusion"):  # one manifest and split, recorded by each
        recorded = json.loads((pipeline / "ckpt" / RUN / f"{phase}.args.json").read_text())["run"]["data"]
        for key in ("rows", "split_counts", "manifest_sha256", "split_sha256"):  # split_source: drawn, then stored
            assert recorded[key] == summary["data"][key], (phase, key)


def run_copy(pipeline, tmp_path):
    """A copy of the pipeline's run (checkpoints and probabilities) and the flags that point a phase at it."""
    shutil.copytree(pipeline / "probs" / RUN, tmp_path / "probs")
    shutil.copytree(pipeline / "ckpt" / RUN, tmp_path / "ckpt")
    return [
        "--checkpoint-dir",
        str(tmp_path / "ckpt"),
        "--log-dir",
        str(tmp_path / "tb"),
        "--prob-dir",
        str(tmp_path / "probs"),
    ]


def test_later_phases_refuse_a_redrawn_split_and_a_changed_manifest(pipeline, small_demo, tmp_path, capsys):
    """The run's phases read the demo's manifest; a copy of it with a redrawn split, then with an edited text,
    stands for the manifest as it is now."""
    from emorec.data.manifest import read_manifest
    from emorec.data.splits import draw_split, split_path

    copied = run_copy(pipeline, tmp_path)
    manifest = shutil.copy(small_demo / MANIFEST_NAME, tmp_path / "now.csv")
    redrawn = draw_split(read_manifest(manifest, small_demo).frame, seed=7)
    pd.DataFrame({"id": read_manifest(manifest, small_demo).frame["id"], "split": redrawn}).to_csv(
        split_path(manifest), index=False
    )
    for phase in ("TER", "IER", "Intermediate_fusion"):  # as if the phases had read this file
        config = tmp_path / "ckpt" / f"{phase}.args.json"
        config.write_text(config.read_text().replace(str(small_demo / MANIFEST_NAME), str(manifest)))
    late = [*copied, "--results-dir", str(tmp_path / "results")]
    assert run(Late_fusion.main, late) == 2
    error = capsys.readouterr().err
    assert (
        all(f"- {phase} (" in error for phase in ("TER", "IER", "Intermediate_fusion"))
        and "used another split" in error
    )
    assert "Rerun TER.py, IER.py and Intermediate_fusion.py" in error
    assert not (tmp_path / "results").exists()
    fusion = ["--manifest", str(manifest), "--image-root", str(small_demo), "--epoch", "1", *copied]
    before = (tmp_path / "ckpt" / "Intermediate_fusion.keras").stat().st_mtime_ns
    assert run(Intermediate_fusion.main, fusion) == 2  # refused before any training
    error = capsys.readouterr().err
    assert "- TER (" in error and "- IER (" in error and "Rerun TER.py and IER.py" in error
    assert (tmp_path / "ckpt" / "Intermediate_fusion.keras").stat().st_mtime_ns == before

    split_path(manifest).write_text(split_path(small_demo / MANIFEST_NAME).read_text())  # the phases' split again
    edited = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    edited.loc[5, "text"] = "an edited tweet"
    edited.to_csv(manifest, index=False)
    assert run(Late_fusion.main, late) == 2
    assert "read other manifest rows" in capsys.readouterr().err


def test_predict_refuses_models_and_weights_from_different_splits(pipeline, small_demo, tmp_path, capsys):
    copied = run_copy(pipeline, tmp_path)
    config = tmp_path / "ckpt" / "TER.args.json"
    recorded = json.loads(config.read_text())
    recorded["run"]["data"]["split_sha256"] = (
        "0" * 64
    )  # TER retrained on another split after Late_fusion chose its weights
    config.write_text(json.dumps(recorded))
    manifest = pd.read_csv(small_demo / MANIFEST_NAME)
    argv = ["--image", str(small_demo / manifest["image"][0]), "--text", "hi", copied[0], copied[1]]
    assert run(predict.main, argv) == 2
    assert "- TER (" in capsys.readouterr().err


def test_an_interrupted_ier_resumes_and_ends_as_an_uninterrupted_run(pipeline, small_demo, tmp_path, monkeypatch):
    """IER reads the memory-mapped feature cache in seeded batches (as Intermediate_fusion does, with the same
    fit_best): stopped after epoch 2 of 4 (a kill between epochs), the same command resumes at epoch 3 and writes
    what an uninterrupted run writes. (TER's test kills a real process: tests/test_resume.py.)"""
    phase, module = "IER", IER
    own = [
        "--image-weights",
        "none",
        "--image-size",
        "32",
        "--batch-size",
        "32",
        "--cache-dir",
        str(pipeline / "features"),
    ]
    runs = {name: run_copy(pipeline, tmp_path / name) for name in ("whole", "resumed")}

    def argv(name):
        return [*data(small_demo), "--epoch", "4", "--lr", "1e-3", *own, *runs[name]]

    assert module.main(argv("whole")) == 0
    with monkeypatch.context() as patch:
        interrupt_after_epoch(patch, 2)
        with pytest.raises(KeyboardInterrupt):
            module.main(argv("resumed"))
    assert module.main(argv("resumed")) == 0

    metrics = {name: json.loads((tmp_path / name / "ckpt" / f"{phase}.metrics.json").read_text()) for name in runs}
    assert metrics["resumed"].pop("resumed_at_epoch") == 3 and metrics["whole"].pop("resumed_at_epoch") is None
    for timing in ("fit_seconds", "seconds_per_epoch"):
        del metrics["resumed"][timing], metrics["whole"][timing]
    assert metrics["resumed"] == metrics["whole"]
    prob_file = PROB_FILES[phase]
    assert (tmp_path / "resumed" / "probs" / prob_file).read_bytes() == (
        tmp_path / "whole" / "probs" / prob_file
    ).read_bytes()
    assert not (tmp_path / "resumed" / "ckpt" / f".{phase}.backup").exists()
