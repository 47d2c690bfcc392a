"""Issue 46: posts with a side missing or damaged. One run of the four phases (in-process, 1 epoch, 32 px) on the
first 240 posts of the small demo with texts and images taken away, the fusion trained with --modality-dropout,
and its robustness table."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

NO_TEXT, NO_IMAGE, GONE, UNDECODABLE, NEITHER = range(0, 20), range(20, 40), range(40, 43), 43, 44
ROWS = 240  # of the small demo's 600: a drawn split of 168 / 24 / 48


@pytest.fixture(scope="module")
def one_sided(small_demo, tmp_path_factory):
    """The run's folder (ckpt/, probs/, results/, features/) and its manifest, rows NO_TEXT without a text, NO_IMAGE
    without an image, GONE naming files that are not there, UNDECODABLE a file that is no image and NEITHER no
    text and a file that is no image."""
    import IER
    import Intermediate_fusion
    import Late_fusion
    import TER
    from emorec.demo import GLOVE_NAME, MANIFEST_NAME

    out = tmp_path_factory.mktemp("one_sided")
    manifest = pd.read_csv(small_demo / MANIFEST_NAME, dtype=str, keep_default_na=False).head(ROWS)
    manifest.insert(0, "id", [f"post{i}" for i in range(len(manifest))])
    manifest.loc[list(NO_TEXT), "text"] = ""
    manifest.loc[list(NO_IMAGE), "image"] = ""
    manifest.loc[list(GONE), "image"] = [f"data/gone/{i}.jpg" for i in GONE]
    (out / "not_an_image.jpg").write_bytes(b"not a jpeg")
    manifest.loc[UNDECODABLE, "image"] = str(out / "not_an_image.jpg")
    (out / "no_image_either.jpg").write_bytes(b"not a jpeg either")
    manifest.loc[NEITHER, ["text", "image"]] = ["", str(out / "no_image_either.jpg")]  # found out only by IER
    manifest.to_csv(out / "posts.csv", index=False)
    folders = ["--checkpoint-dir", str(out / "ckpt"), "--log-dir", str(out / "tb"), "--prob-dir", str(out / "probs")]
    data = ["--manifest", str(out / "posts.csv"), "--image-root", str(small_demo), *folders]
    ier = ["--image-weights", "none", "--image-size", "32", "--cache-dir", str(out / "features")]
    assert TER.main([*data, "--glove", str(small_demo / GLOVE_NAME), "--epoch", "1", "--lr", "3e-3"]) == 0
    assert IER.main([*data, *ier, "--epoch", "1", "--lr", "1e-3"]) == 0
    assert Intermediate_fusion.main([*data, "--epoch", "1", "--modality-dropout", "0.5"]) == 0
    assert Late_fusion.main([*folders, "--results-dir", str(out / "results")]) == 0
    return out, manifest


def probabilities(out, file):
    return pd.read_csv(out / "probs" / file).set_index("id")


def test_each_phase_learns_from_and_scores_what_each_post_has(one_sided):
    out, manifest = one_sided
    no_text, no_image = manifest["id"][[*NO_TEXT, NEITHER]], manifest["id"][[*NO_IMAGE, *GONE, UNDECODABLE, NEITHER]]
    text, image, fused = (probabilities(out, f) for f in ("text_prob.csv", "img_prob.csv", "inter_prob.csv"))
    assert text.loc[no_text].iloc[:, 2:].isna().all().all() and not text.drop(no_text).iloc[:, 2:].isna().any().any()
    assert image.loc[no_image].iloc[:, 2:].isna().all().all()
    assert not image.drop(no_image).iloc[:, 2:].isna().any().any()
    # With --modality-dropout every post with a side is scored; the one IER found to have neither is not.
    neither = manifest["id"][NEITHER]
    assert fused.loc[neither].iloc[2:].isna().all() and not fused.drop(neither).iloc[:, 2:].isna().any().any()
    assert probabilities(out, "late_prob.csv").loc[neither].iloc[2:].isna().all()
    ter, ier, inter = (
        json.loads((out / "ckpt" / f"{p}.metrics.json").read_text()) for p in ("TER", "IER", "Intermediate_fusion")
    )
    assert ter["rows_without_text"] == 21
    assert (ier["posts_without_image"], ier["unreadable_images"]) == (25, 5)
    assert inter["modality_dropout"] == 0.5 and inter["posts_without"] == {"text": 21, "image": 25}


def test_a_post_no_member_could_score_is_counted_and_named(caplog):
    from emorec.fusion import warn_fewer

    probabilities = np.full((3, 4, 2), 0.5)
    probabilities[:, 1], probabilities[0, 2] = np.nan, np.nan
    warn_fewer({"test": 2}, probabilities, ["a", "b", "c", "d"])
    assert "1 post(s) with neither side any member could score" in caplog.text and "\n  b" in caplog.text


def test_the_report_has_the_robustness_table_and_keeps_the_clean_features(one_sided):
    out, _ = one_sided
    from emorec.feature_store import FeatureStore
    from emorec.robustness import CONDITIONS, IMAGE_DAMAGES

    summary = json.loads((out / "results" / "summary.json").read_text())
    table = summary["robustness"]
    assert list(table["conditions"]) == list(CONDITIONS)
    clean, without_image = table["conditions"]["clean"]["scores"], table["conditions"]["image_removed"]["scores"]
    # One number two ways (the table's from the confusion matrix, the report's from scikit-learn): equal but for
    # the order of a few float operations.
    assert clean["Late_fusion"]["macro_f1"] == pytest.approx(
        summary["methods"]["Late_fusion"]["test"]["macro_f1"], abs=1e-12
    )
    assert without_image["IER"] == {"n": 0} and table["conditions"]["text_removed"]["scores"]["TER"] == {"n": 0}
    # TER does not see the image: removing or damaging it leaves TER's predictions, up to a batch's float order.
    for condition in ("image_removed", *IMAGE_DAMAGES):
        assert table["conditions"][condition]["scores"]["TER"]["accuracy"] == pytest.approx(clean["TER"]["accuracy"])
    assert table["late_fusion_against_one_side"]["image_removed"]["than"] == "TER"
    markdown = (out / "results" / "summary.md").read_text()
    assert "## Robustness" in markdown and "| image: JPEG quality 10 |" in markdown
    # The damaged images' features sit in IER's store under keys of their own, beside the clean ones.
    store = FeatureStore.open(next((out / "features").iterdir()))
    damaged = [key for key in store.entries if "@0|" in key]
    clean_keys = [key for key in store.entries if "@0|" not in key]
    test_images = summary["methods"]["IER"]["test"]["n"]
    assert len(damaged) == len(IMAGE_DAMAGES) * test_images
    assert {key.split("|", 1)[1] for key in damaged} <= set(clean_keys)


def test_a_one_sided_post_is_late_fused_with_weights_chosen_on_val_posts_lacking_that_side(one_sided):
    out, manifest = one_sided
    weights = json.loads((out / "ckpt" / "Late_fusion.metrics.json").read_text())["one_sided_weights"]
    assert set(weights) == {"without_image", "without_text"}
    assert set(weights["without_image"]) == {"TER", "Intermediate_fusion"}
    assert all(sum(w.values()) == pytest.approx(1) for w in weights.values())
    late, text, fused = (probabilities(out, f) for f in ("late_prob.csv", "text_prob.csv", "inter_prob.csv"))
    classes = late.columns[2:]
    for post, case, alone in (
        ("post25", "without_image", text),
        ("post5", "without_text", probabilities(out, "img_prob.csv")),
    ):
        w = weights[case]
        member = "TER" if case == "without_image" else "IER"
        expected = w[member] * alone.loc[post, classes] + w["Intermediate_fusion"] * fused.loc[post, classes]
        np.testing.assert_allclose(late.loc[post, classes], expected, atol=1e-6)


def test_predict_scores_a_one_sided_post_with_the_fusion_model_that_learnt_without_a_side(one_sided, capsys):
    import predict

    out, _ = one_sided
    assert predict.main(["--checkpoint-dir", str(out / "ckpt"), "--text", "so happy today", "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["rows"][0]["models_used"] == ["TER", "Intermediate_fusion"]
    assert answer["rows"][0]["IER"] is None and answer["rows"][0]["Intermediate_fusion"] is not None


def test_modality_dropout_is_seeded_by_batch_and_never_drops_a_posts_only_side():
    from emorec.training.batches import ArrayBatches, ModalityDropout

    rows = 4000
    complete = np.arange(rows) % 4 != 0  # every fourth post has one side only
    inputs = {"token_ids": np.ones((rows, 3), np.int64), "image_features": np.ones((rows, 2), np.float32)}
    absent = {"text": {"token_ids": np.zeros(3, np.int64)}, "image": {"image_features": np.zeros(2, np.float32)}}
    batches = ArrayBatches(
        inputs, np.zeros(rows, int), np.arange(rows), 500, seed=1, dropout=ModalityDropout(0.4, absent, complete, 1)
    )
    first, again = batches.batch(2, 3), batches.batch(2, 3)
    assert all(np.array_equal(first[0][k], again[0][k]) for k in inputs)
    x = {k: np.concatenate([batches.batch(0, i)[0][k] for i in range(len(batches))]) for k in inputs}
    order = np.concatenate([np.sort(batches.order_of(0)[i * 500 : (i + 1) * 500]) for i in range(len(batches))])
    text_dropped, image_dropped = x["token_ids"].sum(axis=1) == 0, x["image_features"].sum(axis=1) == 0
    assert not (text_dropped & image_dropped).any() and not (text_dropped | image_dropped)[~complete[order]].any()
    # 3,000 complete posts at 0.4: 1,200 expected, standard deviation 27
    assert abs((text_dropped | image_dropped).sum() - 1200) < 120
    assert abs(text_dropped.sum() - image_dropped.sum()) < 150
