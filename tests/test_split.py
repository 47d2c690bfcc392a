"""The shared split: seeded, stratified, grouped, stored once and reused (issue 3, point 5)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import write_image, write_manifest
from sklearn.metrics import f1_score

from emorec.data.dataset import load_dataset
from emorec.data.splits import draw_split, split_path
from emorec.errors import InputError

REPO = Path(__file__).resolve().parents[1]


def synthetic_frame(tweets: int = 1500, seed: int = 0) -> pd.DataFrame:
    """Rows as read_manifest returns them, without files: one tweet in five has two images."""
    rng = np.random.default_rng(seed)
    labels = rng.choice(4, size=tweets, p=[0.05, 0.25, 0.18, 0.52])
    rows = []
    for tweet, label in enumerate(labels):
        for number in range(1, 3 if tweet % 5 == 0 else 2):
            rows.append({"id": f"{tweet}-{number}", "label": int(label), "group": str(tweet)})
    return pd.DataFrame(rows)


def test_same_seed_same_split_other_seed_other_split():
    frame = synthetic_frame()
    first, again, other = draw_split(frame, seed=0), draw_split(frame, seed=0), draw_split(frame, seed=1)
    assert first.equals(again)
    assert (first != other).mean() > 0.2


def test_default_fractions_are_70_10_20_and_stratified():
    frame = synthetic_frame()
    split = draw_split(frame, seed=0)
    tweets = frame.assign(split=split).groupby("group").first()
    shares = tweets["split"].value_counts(normalize=True)
    assert shares["train"] == pytest.approx(0.7, abs=0.01)
    assert shares["val"] == pytest.approx(0.1, abs=0.01)
    assert shares["test"] == pytest.approx(0.2, abs=0.01)
    overall = tweets["label"].value_counts(normalize=True)
    for name in ("train", "val", "test"):
        in_split = tweets.loc[tweets["split"] == name, "label"].value_counts(normalize=True)
        for label in range(4):
            assert in_split[label] == pytest.approx(overall[label], abs=0.02), (name, label)


def test_images_of_one_tweet_never_straddle_two_splits():
    frame = synthetic_frame()
    split = draw_split(frame, seed=3)
    assert (frame.assign(split=split).groupby("group")["split"].nunique() == 1).all()
    assert frame.groupby("group").size().max() == 2  # the property is not vacuous


def test_split_does_not_depend_on_row_order():
    frame = synthetic_frame()
    shuffled = frame.sample(frac=1, random_state=7)
    assert draw_split(frame, 0).equals(draw_split(shuffled, 0).sort_index())


def test_too_few_examples_of_a_class_is_a_clear_error_in_the_class_names():
    frame = pd.DataFrame({"id": list("abcdef"), "label": [0, 0, 0, 0, 0, 1], "group": list("abcdef")})
    with pytest.raises(InputError, match=r"class 'sad' has 1 \(per class: happy: 5, sad: 1\)") as raised:
        draw_split(frame, seed=0, class_names=("happy", "sad"))
    assert "too few members" not in str(raised.value)  # scikit-learn's words, which name classes by index


def test_a_manifest_too_small_to_split_is_refused_leaving_no_file_behind(tmp_path, capsys):
    import TER
    from emorec.cli import run

    rows = [
        {"label": name, "text": f"word{i} text", "image": f"{i}.jpg"} for i, name in enumerate(["happy", "sad", "hate"])
    ]
    manifest = write_manifest(tmp_path / "data" / "three.csv", rows)
    images = [write_image(tmp_path / "data" / row["image"], seed=i) for i, row in enumerate(rows)]
    argv = [
        "--manifest",
        str(manifest),
        "--image-root",
        str(tmp_path / "data"),
        "--glove",
        "none",
        "--epoch",
        "1",
        "--checkpoint-dir",
        str(tmp_path / "ck"),
        "--log-dir",
        str(tmp_path / "tb"),
        "--prob-dir",
        str(tmp_path / "p"),
    ]
    assert run(TER.main, argv) == 2
    error = capsys.readouterr().err
    assert "class 'happy' has 1 (per class: happy: 1, sad: 1, hate: 1)" in error
    assert sorted(path for path in tmp_path.rglob("*") if not path.is_dir()) == sorted([manifest, *images])  # no lock


def test_split_is_stored_beside_the_manifest_and_reused(tiny_dataset):
    manifest, root = tiny_dataset
    first = load_dataset(manifest, root, seed=0).frame
    stored = split_path(manifest)
    assert stored == manifest.with_name("image_labels.split.csv")
    on_disk = pd.read_csv(stored, dtype=str)
    assert list(on_disk.columns) == ["id", "split"]
    assert on_disk["id"].tolist() == first["id"].tolist()
    # Another seed reuses the stored split rather than drawing a new one.
    assert load_dataset(manifest, root, seed=5).frame["split"].equals(first["split"])
    # --resplit draws anew with the given seed, and stores it.
    redrawn = load_dataset(manifest, root, seed=5, resplit=True).frame
    assert not redrawn["split"].equals(first["split"])
    assert pd.read_csv(stored, dtype=str)["split"].tolist() == redrawn["split"].tolist()


def test_stored_split_that_no_longer_matches_is_an_error(tiny_dataset):
    manifest, root = tiny_dataset
    load_dataset(manifest, root, seed=0)
    frame = pd.read_csv(manifest, dtype=str)
    write_image(root / "extra-1.jpg")
    frame = pd.concat([frame.iloc[1:], pd.DataFrame([{"label": "0", "text": "new", "image": "extra-1.jpg"}])])
    frame.to_csv(manifest, index=False)
    with pytest.raises(InputError) as error:
        load_dataset(manifest, root, seed=0)
    message = str(error.value)
    assert "no longer matches" in message and "--resplit" in message
    assert "1 id(s) in the manifest but not in the split" in message and "extra-1" in message
    assert "1 id(s) in the split but not in the manifest" in message
    assert len(load_dataset(manifest, root, seed=0, resplit=True).frame) == 40


def test_a_manifest_with_its_own_split_keeps_it(tmp_path):
    rows = []
    for i, split in enumerate(["train", "train", "val", "test", "TEST"]):
        write_image(tmp_path / f"{i}.jpg")
        rows.append({"label": str(i % 2), "text": "t", "image": f"{i}.jpg", "split": split})
    manifest = write_manifest(tmp_path / "m.csv", rows)
    frame = load_dataset(manifest, tmp_path, seed=0, class_names=["yes", "no"]).frame
    assert frame["split"].tolist() == ["train", "train", "val", "test", "test"]
    assert not split_path(manifest).exists()


def test_a_class_a_given_split_lacks_is_named_and_left_out_of_macro_f1_and_one_without_training_rows_refused(
    tmp_path, caplog
):
    """Issue 45: anger has training rows but none in test (a warning naming it, recorded for the report, and the
    test macro-F1 over the other three); a class without training rows cannot be learnt (an error naming it)."""
    from emorec.metrics import classification_metrics
    from emorec.report import absent_class_notes

    splits = ["train"] * 8 + ["val"] * 4 + ["test"] * 3
    labels = [0, 1, 2, 3] * 2 + [0, 1, 2, 3] + [0, 1, 2]
    rows = []
    for i, (label, split) in enumerate(zip(labels, splits)):
        write_image(tmp_path / f"{i}.jpg")
        rows.append({"label": str(label), "text": f"text {i}", "image": f"{i}.jpg", "split": split})
    dataset = load_dataset(write_manifest(tmp_path / "m.csv", rows), tmp_path)
    assert dataset.absent_classes == {"test": ["anger"]}
    assert "has no test rows of anger: test-set macro-F1 averages the other 3 classes" in caplog.text
    probabilities = np.eye(4)[[0, 1, 2, 3] * 3 + [0, 3, 2]]  # test: happy right, sad called anger, hate right
    scores = classification_metrics(labels, probabilities, splits, dataset.class_names)["splits"]["test"]
    assert scores["absent_classes"] == ["anger"]
    assert absent_class_notes(dataset.absent_classes, 4) == [
        "The test split has no row of anger: its macro-F1 averages the other 3 classes (a class without rows has "
        "no F1)."
    ]
    assert scores["macro_f1"] == pytest.approx((1 + 0 + 1) / 3)  # not (1 + 0 + 1 + 0) / 4
    # The phase, as a user runs it: exit 0, the warning, and the test macro-F1 over the classes test has.
    command = [sys.executable, str(REPO / "TER.py"), "--manifest", str(tmp_path / "m.csv"), "--glove", "none"]
    outputs = ["--image-root", str(tmp_path), "--epoch", "1", "--checkpoint-dir", "c", "--prob-dir", "p"]
    result = subprocess.run([*command, *outputs, "--log-dir", "l"], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "has no test rows of anger: test-set macro-F1 averages the other 3 classes" in result.stderr
    test = pd.read_csv(tmp_path / "p" / "text_prob.csv").query("split == 'test'")
    truth, predicted = test["label"], test[["happy", "sad", "hate", "anger"]].idxmax(axis=1)
    recorded = json.loads((tmp_path / "c" / "TER.metrics.json").read_text())["splits"]["test"]
    assert recorded["macro_f1"] == pytest.approx(
        f1_score(truth, predicted, average="macro", labels=["happy", "sad", "hate"], zero_division=0)
    )
    assert recorded["absent_classes"] == ["anger"]
    rows[0]["split"] = rows[4]["split"] = "val"  # no happy row left in train
    with pytest.raises(InputError, match=r"no training rows for 1 class\(es\): happy \(3 val, 1 test\)"):
        load_dataset(write_manifest(tmp_path / "m.csv", rows), tmp_path)


def test_a_drawn_split_keeps_tweets_and_normalised_texts_whole():
    """Adversarial: chains of four tweets whose texts TER cannot tell apart (case, numbers, links, '#',
    punctuation), some of them tweets with two images; no tweet and no normalised text may straddle two splits."""
    from emorec.data.splits import split_leakage

    frame = synthetic_frame(tweets=600, seed=1)
    frame["text"] = [f"plain text number {chr(97 + int(g) % 26)}{chr(97 + int(g) // 26 % 26)}" for g in frame["group"]]
    variants = [
        "Great GAME tonight 7 https://t.co/a",
        "great game TONIGHT 12!! http://x.co/b",
        "#great game tonight 3. www.y.org",
        "great game... tonight 42 <url>",
    ]
    for chain in range(40):  # each chain: four tweets whose texts normalise alike
        for link, text in enumerate(variants):
            frame.loc[frame["group"] == str(chain * 4 + link), "text"] = (
                text + f" chain{chr(97 + chain % 26)}{chain // 26}"
            )
    for seed in range(3):
        split = draw_split(frame, seed=seed)
        leakage = split_leakage(frame.assign(split=split.to_numpy()))
        assert (leakage["straddling_tweets"], leakage["straddling_texts"]) == (0, 0), seed
        chains = frame.assign(split=split)[frame["text"].str.contains("chain")]
        assert chains.groupby(chains["text"].str[-3:])["split"].nunique().max() == 1


def test_a_drawn_split_of_the_demo_leaks_nothing(small_demo):
    from emorec.demo import MANIFEST_NAME

    dataset = load_dataset(small_demo / MANIFEST_NAME, small_demo, seed=0)
    leakage = dataset.split_leakage
    assert (leakage["straddling_tweets"], leakage["straddling_texts"], leakage["rows_involved"]) == (0, 0, 0)
    assert dataset.frame.groupby("group").size().max() == 2  # tweets with two images exist: the property is not vacuous


def leaky_manifest(folder):
    """A manifest with its own split: tweet 5 has images in train and test, tweets 1 and 2 share a text
    (to TER: case, a number, a link) across train and val, tweets 3 and 4 share one within test."""
    rows = [
        ("1", "1-1", "Good MORNING world 7 https://t.co/x", "train"),
        ("2", "2-1", "good morning world 12 http://bit.ly/q", "val"),
        ("3", "3-1", "same in test", "test"),
        ("4", "4-1", "Same in test!", "test"),
        ("5", "5-1", "two photos", "train"),
        ("5", "5-2", "two photos", "test"),
        *[
            (str(t), f"{t}-1", f"text {chr(97 + t)}", split)
            for t, split in ((6, "train"), (7, "train"), (8, "val"), (9, "test"))
        ],
    ]
    for _, image_id, _, _ in rows:
        write_image(folder / f"{image_id}.jpg")
    return write_manifest(
        folder / "leaky.csv",
        [
            {"label": label, "text": text, "image": f"{image_id}.jpg", "split": split}
            for label, (_, image_id, text, split) in zip("0123112301", rows)  # every class in train
        ],
    )


def test_a_given_split_that_leaks_is_counted_and_refused_with_strict_split(tmp_path, caplog, capsys):
    import TER
    from emorec.cli import run

    manifest = leaky_manifest(tmp_path)
    leakage = load_dataset(manifest, tmp_path).split_leakage
    assert (leakage["straddling_tweets"], leakage["straddling_texts"], leakage["rows_involved"]) == (1, 2, 4)
    assert leakage["examples"]["tweets"] == ["'5' in test/train"]
    assert leakage["examples"]["texts"] == [
        "'good morning world <number> <url>' in train/val",
        "'two photos' in test/train",
    ]
    assert "the split (manifest) leaks: 1 tweet(s) and 2 normalised text(s)" in caplog.text
    with pytest.raises(InputError, match="--strict-split makes this an error"):
        load_dataset(manifest, tmp_path, strict_split=True)
    # The phase refuses before any training: exit 2, nothing written.
    out = [
        "--checkpoint-dir",
        str(tmp_path / "ckpt"),
        "--log-dir",
        str(tmp_path / "tb"),
        "--prob-dir",
        str(tmp_path / "p"),
    ]
    assert (
        run(
            TER.main,
            ["--manifest", str(manifest), "--image-root", str(tmp_path), "--glove", "none", "--strict-split", *out],
        )
        == 2
    )
    assert "occur in more than one split" in capsys.readouterr().err
    assert not (tmp_path / "ckpt").exists()


def test_fingerprints_tell_a_redrawn_split_and_a_changed_manifest(tiny_dataset):
    from emorec.data.fingerprints import check_same_data, data_fingerprint

    manifest, root = tiny_dataset
    first = load_dataset(manifest, root, seed=0)
    recorded = {"TER": ("TER.args.json", {"data": first.fingerprint})}
    check_same_data(load_dataset(manifest, root, seed=4).fingerprint, recorded, "TER.py")  # reused split: same
    with pytest.raises(InputError, match="TER \\(TER.args.json\\) used another split .*redrawn"):
        check_same_data(load_dataset(manifest, root, seed=4, resplit=True).fingerprint, recorded, "TER.py")
    changed = first.frame.copy()
    changed.loc[3, "text"] = "an edited tweet"
    with pytest.raises(InputError, match="read other manifest rows"):
        check_same_data(data_fingerprint(changed), recorded, "TER.py")
    with pytest.raises(InputError, match="recorded no data fingerprint"):
        check_same_data(first.fingerprint, {"TER": ("TER.args.json", {})}, "TER.py")
