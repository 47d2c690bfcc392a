"""The MVSA converter (issue 41) on tiny folders in MVSA-Single's and MVSA-Multiple's exact distributed layout:
the label protocol, texts in the encodings they really come in, every kind of unusable pair, the split, and bad
folders."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from conftest import write_image

from emorec import mvsa
from emorec.cli import run
from emorec.data.dataset import load_dataset
from emorec.data.manifest import class_names_path
from emorec.errors import InputError
from emorec.legacy_text import decode_text

CLASSES = ("negative", "neutral", "positive")
# Text files as MVSA has them: UTF-8 (with an emoji, with a byte-order mark), GBK as a Chinese-locale re-save left
# them (“ is A1 B0; Japanese), and a Latin text in cp1252 that GBK would also decode, into nonsense.
SPECIAL_TEXTS = {
    "101": ("positive,positive", "Just landed in #Rome!! 😍".encode()),
    "102": ("neutral,positive", "\ufeffnew phone, who dis".encode("utf-8")),
    "103": ("negative,neutral", "“@rickygervais: Just got thrown out… #fail”".encode("gbk")),
    "104": ("neutral,neutral", "E-girls 藤井姉妹 ロック画面 #Egirls".encode("gbk")),
    "105": ("positive,neutral", "Señor niño, feliz año".encode("cp1252")),
    "106": ("positive,negative", b"so happy, so sad"),  # positive against negative: dropped
    "107": ("neutral,negative", b"bad bytes \x81 here"),  # neither UTF-8, GBK nor cp1252: kept, with U+FFFD
}
DECODED = {
    "101": "Just landed in #Rome!! 😍",
    "102": "new phone, who dis",
    "103": "“@rickygervais: Just got thrown out… #fail”",
    "104": "E-girls 藤井姉妹 ロック画面 #Egirls",
    "105": "Señor niño, feliz año",
}


def plain_tweets(start: int, per_class: int = 10) -> dict[str, tuple[str, bytes]]:
    """``per_class`` ordinary tweets of each class, labels agreeing, ids from ``start``; each text its own words
    (the split keeps texts that normalise alike together, and numbers normalise away)."""
    tweets = {}
    for offset in range(3 * per_class):
        label, word = CLASSES[offset % 3], "".join(chr(ord("a") + int(d)) for d in str(start + offset))
        tweets[str(start + offset)] = (f"{label},{label}", f"tweet {word} feels {label}".encode())
    return tweets


def write_mvsa(
    root,
    tweets,
    header="ID\ttext,image",
    missing_text=(),
    missing_image=(),
    no_files=(),
    unlabelled=("900",),
    empty_text=(),
    upper_case=(),
):
    """Write MVSA as distributed: labelResultAll.txt (CRLF lines, as the archive's) and data/<ID>.jpg, .txt (for
    the ids of ``upper_case``, .JPG as some copies have it)."""
    (root / "data").mkdir(parents=True, exist_ok=True)
    lines = [header]
    for number, (tweet, (labels, raw)) in enumerate(tweets.items()):
        lines.append(f"{tweet}\t{labels}")
        if tweet in no_files:
            continue
        if tweet not in missing_image:
            suffix = ".JPG" if tweet in upper_case else ".jpg"
            write_image(root / "data" / f"{tweet}{suffix}", seed=number % 7, size=(8, 8))
        if tweet not in missing_text:
            (root / "data" / f"{tweet}.txt").write_bytes(b" \n" if tweet in empty_text else raw + b" \n")
    for tweet in unlabelled:
        write_image(root / "data" / f"{tweet}.jpg", size=(8, 8))
        (root / "data" / f"{tweet}.txt").write_bytes(b"a tweet nobody labelled")
    (root / "labelResultAll.txt").write_bytes(("\r\n".join(lines) + "\r\n").encode())
    return root


def single(root):
    tweets = {
        **SPECIAL_TEXTS,
        **plain_tweets(200),
        "301": ("positive,positive", b"x"),
        "302": ("negative,negative", b"x"),
        "303": ("neutral,neutral", b"x"),
        "304": ("positive,positive", b"x"),
    }
    return write_mvsa(
        root,
        tweets,
        missing_text=("301",),
        missing_image=("302",),
        no_files=("303",),
        empty_text=("304",),
        upper_case=("105",),
    )


SINGLE_LOG = [  # what converting single()'s folder logs: each rule, each encoding, each unusable pair by its id
    "MVSA-Single layout, 41 labelled pairs in",
    "text and image agree (kept): 36",
    "neutral yields to the polar label (kept): 4",
    "positive against negative (dropped): 1",
    "texts decoded: utf-8 33, gb18030 2, cp1252 1, undecodable 1",
    "1 labelled, no files (left out): 303",
    "1 no text file (left out): 301",
    "1 no image file (left out): 302",
    "1 empty text (left out): 304",
    "1 undecodable text (kept, with U+FFFD): 107",
    "1 files with no label (left out): 900",
]


def check_single_conversion(out, root) -> None:
    """What converting single()'s folder into ``out`` must give: the protocol's labels, every text decoded as it
    was written, the unusable pairs left out, the class names, the record, a manifest the phases read."""
    manifest = pd.read_csv(out, dtype=str, keep_default_na=False).set_index("id")
    assert len(manifest) == 36 and "106" not in manifest.index and "900" not in manifest.index
    for tweet, text in DECODED.items():
        assert manifest.at[tweet, "text"] == text
    assert "\ufffd" in manifest.at["107", "text"] and manifest.at["107", "label"] == "negative"
    assert manifest.loc[["102", "103", "105"], "label"].tolist() == ["positive", "negative", "positive"]
    assert manifest.at["101", "image"] == "data/101.jpg" and manifest.at["105", "image"] == "data/105.JPG"
    assert class_names_path(out).read_text().split() == list(CLASSES)
    record = json.loads(mvsa.conversion_record_path(out).read_text())
    assert record["layout"] == "MVSA-Single" and record["rows"] == 36
    assert record["problems"]["no text file (left out)"] == ["301"] and record["split"]["drawn"]["seed"] == 0

    dataset = load_dataset(out, root)
    assert dataset.class_names == CLASSES
    assert dataset.frame.set_index("id")["split"].to_dict() == manifest["split"].to_dict()


def test_the_single_layout(tmp_path, caplog):
    """The protocol's counts, the encodings, every unusable pair named (the user's command, in a fresh process, is
    test_readme's test of docs/data.md's block)."""
    caplog.set_level("INFO", logger="emorec")
    root = single(tmp_path / "MVSA_Single")
    out = tmp_path / "data_files" / "mvsa_single.csv"
    mvsa.convert(root, out)
    for line in SINGLE_LOG:
        assert line in caplog.text
    check_single_conversion(out, root)


def test_the_multiple_layout_takes_the_label_two_of_three_annotators_gave(tmp_path):
    tweets = {
        **{tweet: ("\t".join([labels] * 3), raw) for tweet, (labels, raw) in plain_tweets(10).items()},
        "1": ("positive,neutral\tpositive,positive\tneutral,neutral", b"two say positive and neutral"),
        "2": ("positive,negative\tneutral,negative\tnegative,negative", b"text: no two agree"),
        "3": ("neutral,positive\tneutral,negative\tneutral,neutral", b"image: no two agree"),
        "4": ("negative,positive\tnegative,positive\tneutral,neutral", b"negative against positive"),
        "5": ("neutral,negative\tneutral,negative\tpositive,negative", b"neutral text, negative image"),
    }
    root = write_mvsa(tmp_path, tweets, header="ID\ttext,image\ttext,image\ttext,image", unlabelled=())
    manifest, record = mvsa.convert(root, tmp_path / "mvsa_multiple.csv")
    assert record["layout"] == "MVSA-Multiple" and record["pairs_in"] == 35
    assert record["rules"] == {
        "no label two of three annotators gave the text (dropped)": 1,
        "no label two of three annotators gave the image (dropped)": 1,
        "text and image agree (kept)": 30,
        "neutral yields to the polar label (kept)": 2,
        "positive against negative (dropped)": 1,
    }
    labels = manifest.set_index("id")["label"]
    assert labels["1"] == "positive" and labels["5"] == "negative" and not {"2", "3", "4"} & set(labels.index)


def test_texts_decode_as_what_they_are():
    assert decode_text("“quoted” …".encode("gbk")) == ("“quoted” …", "gb18030")  # never cp1252's ¡°quoted¡± ¡­
    assert decode_text("Straße über Größe".encode("cp1252")) == ("Straße über Größe", "cp1252")
    assert decode_text("café 5€".encode("utf-8-sig")) == ("café 5€", "utf-8")
    assert decode_text("хлеб и вино".encode("gbk")) == ("хлеб и вино", "gb18030")
    assert decode_text(b"\x81 ") == ("\ufffd ", "undecodable")
    assert decode_text("Señor".encode("cp1252"), legacy=("gb18030",)) == ("Se駉r", "gb18030")  # the only reading


def test_the_split_is_8_1_1_stratified_and_seeded(tmp_path):
    root = write_mvsa(tmp_path / "mvsa", plain_tweets(1, per_class=40), unlabelled=())
    first, _ = mvsa.convert(root, tmp_path / "a.csv", seed=0)
    again, _ = mvsa.convert(root, tmp_path / "b.csv", seed=0)
    other, _ = mvsa.convert(root, tmp_path / "c.csv", seed=1)
    assert first["split"].tolist() == again["split"].tolist() != other["split"].tolist()
    counts = pd.crosstab(first["label"], first["split"])  # 40 per class: 32, 4 and 4, give or take scikit's rounding
    assert ((counts["train"] - 32).abs() <= 1).all() and ((counts[["val", "test"]] - 4).abs() <= 1).all().all()


def test_a_given_split_as_a_csv_or_as_id_lists(tmp_path):
    root = write_mvsa(tmp_path / "mvsa", plain_tweets(1, per_class=2), unlabelled=())
    pd.DataFrame(
        {"id": ["1", "2", "3", "4", "5", "99"], "split": ["train", "train", "val", "test", "TRAIN", "test"]}
    ).to_csv(tmp_path / "split.csv", index=False)
    manifest, record = mvsa.convert(root, tmp_path / "given.csv", split_file=tmp_path / "split.csv")
    assert manifest.set_index("id")["split"].to_dict() == {
        "1": "train",
        "2": "train",
        "3": "val",
        "4": "test",
        "5": "train",
    }
    assert record["problems"]["not in the split file (left out)"] == ["6"] and record["split"] == {
        "file": str(tmp_path / "split.csv")
    }

    lists = tmp_path / "lists"
    lists.mkdir()
    for name, ids in (("train.txt", "1\n2\n3\n"), ("dev.txt", "4\n"), ("test.txt", "5\n6\n")):
        (lists / name).write_text(ids)
    manifest, _ = mvsa.convert(root, tmp_path / "lists.csv", split_file=lists)
    assert manifest["split"].tolist() == ["train"] * 3 + ["val"] + ["test"] * 2

    (lists / "dev.txt").write_text("99\n")
    with pytest.raises(InputError, match="leaves val without a single converted pair"):
        mvsa.convert(root, tmp_path / "none.csv", split_file=lists)
    (lists / "dev.txt").write_text("1\n")
    with pytest.raises(InputError, match="1 id.s. given more than once"):
        mvsa.convert(root, tmp_path / "none.csv", split_file=lists)
    assert not (tmp_path / "none.csv").exists()


def test_a_folder_that_is_not_mvsa_is_one_error_and_nothing_is_written(tmp_path, capsys):
    out = tmp_path / "out" / "m.csv"
    assert run(mvsa.main, ["--root", str(tmp_path / "nowhere"), "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert "is not an MVSA folder: missing" in error and "labelResultAll.txt and" in error and "data/" in error
    assert "holds labelResultAll.txt" in error and not out.parent.exists()

    root = write_mvsa(tmp_path / "bad", plain_tweets(1, per_class=2), unlabelled=())
    with open(root / "labelResultAll.txt", "a") as labels:
        labels.write("77\tpositive,happy\n78\tpositive\n")
    assert run(mvsa.main, ["--root", str(root), "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert "2 malformed line(s)" in error and "line 8: '77\\tpositive,happy'" in error and "line 9" in error
    assert run(mvsa.main, ["--root", str(root), "--out", str(out), "--encodings", "gbk,klingon"]) == 2
    assert "'klingon' is not an encoding" in capsys.readouterr().err
    assert not out.parent.exists()
