"""The B-T4SA converter on a tiny fixture in the data set's exact distributed format (issue 3, point 6)."""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import write_image

from emorec import bt4sa
from emorec.cli import run
from emorec.data.dataset import load_dataset
from emorec.data.manifest import class_names_path
from emorec.data.splits import split_path
from emorec.errors import InputError

TWEETS = {
    "758014713804587008": ("Just landed in #Rome!! 😍 https://t.co/abc", 2, 2, "train"),
    "758014713804587009": ('so "tired" of this, honestly\nnew line', 0, 1, "train"),
    "768097967425200128": ("meh, it's a monday", 1, 1, "val"),
    "768097967425200200": ("@someone what a GAME tonight", 2, 1, "test"),
    "768097967425200300": ("worst service ever", 0, 1, "test"),
    "768097967425200400": ("just a tuesday, nothing more", 1, 1, "train"),  # every class has training rows
}


def write_bt4sa(root, tweets=TWEETS, extra_lines=()):
    """Write B-T4SA as distributed: split files, raw_tweets_text.csv (quoted "id","text") and data/."""
    lines = {"train": [], "val": [], "test": []}
    for tweet_id, (_, label, images, split) in tweets.items():
        for number in range(1, images + 1):
            relative = f"data/{tweet_id[:5]}/{tweet_id}-{number}.jpg"
            write_image(root / relative, seed=number)
            lines[split].append(f"{relative} {label}")
    lines["train"].extend(extra_lines)
    for split, content in lines.items():
        (root / f"b-t4sa_{split}.txt").write_text("\n".join(content) + "\n")
    texts = pd.DataFrame({"id": list(tweets), "text": [t[0] for t in tweets.values()]})
    texts.to_csv(root / "raw_tweets_text.csv", index=False, quoting=1)  # csv.QUOTE_ALL, as distributed
    return root


def test_converts_to_a_manifest_with_its_split_and_class_names(tmp_path):
    root = write_bt4sa(tmp_path / "b-t4sa")
    out = tmp_path / "data_files" / "bt4sa.csv"
    assert bt4sa.main(["--root", str(root), "--out", str(out)]) == 0

    manifest = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert list(manifest.columns) == ["label", "text", "image", "id", "split"]
    assert len(manifest) == 7
    assert class_names_path(out).read_text().split() == ["negative", "neutral", "positive"]
    row = manifest.set_index("id").loc["758014713804587008-2"]
    assert (row.label, row.split, row.image) == ("positive", "train", "data/75801/758014713804587008-2.jpg")
    assert row.text == TWEETS["758014713804587008"][0]
    assert manifest.set_index("id").at["758014713804587009-1", "text"] == 'so "tired" of this, honestly\nnew line'

    dataset = load_dataset(out, root)
    assert dataset.class_names == ("negative", "neutral", "positive")
    assert dataset.frame.set_index("id")["split"].to_dict() == manifest.set_index("id")["split"].to_dict()
    assert dataset.frame.set_index("id").at["768097967425200128-1", "label"] == 1
    assert not split_path(out).exists()  # B-T4SA's own split is kept, nothing drawn


def test_malformed_split_line_is_named(tmp_path):
    root = write_bt4sa(tmp_path, extra_lines=["data/75801/x-1.jpg positive"])
    with pytest.raises(
        InputError, match=r"(?s)b-t4sa_train.txt: 1 malformed line\(s\).*line 5: 'data/75801/x-1.jpg positive'"
    ):
        bt4sa.convert(root, tmp_path / "out.csv")
    assert not (tmp_path / "out.csv").exists()


def test_missing_text_stops_or_is_dropped_on_request(tmp_path):
    root = write_bt4sa(tmp_path)
    texts = pd.read_csv(root / "raw_tweets_text.csv", dtype=str)
    texts[texts["id"] != "768097967425200300"].to_csv(root / "raw_tweets_text.csv", index=False, quoting=1)
    with pytest.raises(InputError, match="(?s)no text for 1 image.*768097967425200300-1.jpg.*--drop-missing-text"):
        bt4sa.convert(root, tmp_path / "out.csv")
    assert not (tmp_path / "out.csv").exists()
    manifest, _ = bt4sa.convert(root, tmp_path / "out.csv", drop_missing_text=True)
    assert len(manifest) == 6


def test_wrong_root_exits_2_with_a_message(tmp_path, capsys):
    assert run(bt4sa.main, ["--root", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o.csv")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: B-T4SA split file not found")
    assert "Traceback" not in error


def write_split_files(root, images):
    """Write B-T4SA's split files from (tweet id, image number, label, split) and the images they name."""
    lines = {"train": [], "val": [], "test": []}
    for tweet_id, number, label, split in images:
        relative = f"data/{tweet_id[:5]}/{tweet_id}-{number}.jpg"
        write_image(root / relative, seed=number)
        lines[split].append(f"{relative} {label}")
    for split, content in lines.items():
        (root / f"b-t4sa_{split}.txt").write_text("\n".join(content) + "\n")


STRADDLING = {  # tweet id: text
    "758000000000000001": "Two photos, one tweet https://t.co/x",
    "758000000000000002": "GREAT day at the beach 2day? #sun 1",
    "758000000000000003": "great day at the beach 2day #SUN 22",  # the same text to TER (numbers and case)
    "758000000000000004": "a tweet kept whole",
    **{f"75800000000000001{label}": f"training tweet number {label}" for label in range(3)},  # every class in train
}


def test_straddling_tweets_and_texts_are_reported_and_regrouped(tmp_path, caplog):
    root = tmp_path / "b-t4sa"
    write_split_files(
        root,
        [
            ("758000000000000001", 1, 2, "train"),
            ("758000000000000001", 2, 2, "test"),  # one tweet, two splits
            ("758000000000000002", 1, 1, "train"),
            ("758000000000000003", 1, 1, "val"),  # one text, two splits
            ("758000000000000004", 1, 0, "test"),
            ("758000000000000004", 2, 0, "test"),
            *[(f"75800000000000001{label}", 1, label, "train") for label in range(3)],
        ],
    )
    pd.DataFrame({"id": list(STRADDLING), "text": list(STRADDLING.values())}).to_csv(
        root / "raw_tweets_text.csv", index=False, quoting=1
    )

    kept, leakage = bt4sa.convert(root, tmp_path / "kept.csv")
    assert (leakage["straddling_tweets"], leakage["straddling_texts"], leakage["rows_involved"]) == (1, 2, 4)
    assert "'758000000000000001' in test/train" in leakage["examples"]["tweets"]
    assert "'great day at the beach 2day sun <number>' in train/val" in leakage["examples"]["texts"]
    assert "--regroup moves each wholly into one split" in caplog.text
    # Without --regroup the official split is kept, and the phases' leakage guard sees the same counts.
    assert kept["split"].tolist() == ["train"] * 5 + ["val"] + ["test"] * 3
    assert load_dataset(tmp_path / "kept.csv", root).split_leakage["straddling_texts"] == 2
    with pytest.raises(InputError, match="1 tweet\\(s\\) and 2 normalised text\\(s\\) occur in more than one split"):
        load_dataset(tmp_path / "kept.csv", root, strict_split=True)

    assert bt4sa.main(["--root", str(root), "--out", str(tmp_path / "regrouped.csv"), "--regroup"]) == 0
    regrouped = pd.read_csv(tmp_path / "regrouped.csv", dtype=str).set_index("id")["split"]
    # Ties go to the held-out side: the two-image tweet (train/test) to test, the shared text (train/val) to val.
    assert regrouped.to_dict() == {
        "758000000000000001-1": "test",
        "758000000000000001-2": "test",
        "758000000000000002-1": "val",
        "758000000000000003-1": "val",
        "758000000000000004-1": "test",
        "758000000000000004-2": "test",
        **{f"75800000000000001{label}-1": "train" for label in range(3)},
    }
    leakage = load_dataset(tmp_path / "regrouped.csv", root, strict_split=True).split_leakage
    assert leakage["straddling_tweets"] == leakage["straddling_texts"] == 0


def test_regroup_follows_the_majority_of_a_tweets_images():
    manifest = pd.DataFrame(
        {
            "id": ["7-1", "7-2", "7-3", "8-1"],
            "text": ["x y", "x y", "x y", "other"],
            "split": ["train", "train", "test", "val"],
        }
    )
    assert bt4sa.regroup_split(manifest).tolist() == ["train", "train", "train", "val"]
