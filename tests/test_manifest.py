"""The manifest reader: the happy path and every kind of bad input (issue 3, points 3 and 4)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import write_image, write_manifest

from emorec.data.dataset import load_dataset
from emorec.data.manifest import DEFAULT_CLASS_NAMES, read_manifest
from emorec.data.splits import split_path
from emorec.errors import InputError

REPO = Path(__file__).resolve().parents[1]


def test_reads_the_tier_form(tiny_dataset):
    manifest, root = tiny_dataset
    read = read_manifest(manifest, root)
    frame = read.frame
    assert list(frame.columns) == ["id", "label", "text", "image_path", "group"]
    assert len(frame) == 40
    assert read.class_names == DEFAULT_CLASS_NAMES
    first = frame.iloc[0]
    assert first.id == "768097967425200000-1"
    assert first.group == "768097967425200000"
    assert first.label == 0
    # Tweet 0 is written as index "0", tweet 1 by name "sad", each with two images; tweet 10 as "2".
    assert frame.label.tolist()[:4] == [0, 0, 1, 1]
    assert frame.set_index("id").at["768097967425200010-1", "label"] == 2
    assert all(pd.Series(frame.image_path).map(lambda p: p.startswith("/")))
    assert frame.groupby("group").size().max() == 2


def test_labels_as_names_or_indices_and_explicit_ids(tmp_path):
    root = tmp_path / "img"
    rows = []
    for i, label in enumerate(["Happy", " sad ", "3", "HATE"]):
        write_image(root / f"a{i}.png", fmt="PNG")
        rows.append({"id": f"row{i}", "label": label, "text": "x", "image": f"a{i}.png"})
    frame = read_manifest(write_manifest(tmp_path / "m.csv", rows), root).frame
    assert frame.id.tolist() == ["row0", "row1", "row2", "row3"]
    assert frame.label.tolist() == [0, 1, 3, 2]


def test_papers_absolute_looking_paths_resolve_under_the_image_root(tmp_path):
    root = tmp_path / "data_t4sa"
    write_image(root / "76809" / "768097967425200128-1.jpg")  # root/<folder>/<file>
    write_image(root / "data_bt4sa" / "76810" / "768100000000000000-1.jpg")  # root/data_bt4sa/<folder>/<file>
    rows = [
        {"label": "1", "text": "a", "image": "/data_bt4sa/76809/768097967425200128-1.jpg"},
        {"label": "2", "text": "b", "image": "/data_bt4sa/76810/768100000000000000-1.jpg"},
    ]
    frame = read_manifest(write_manifest(tmp_path / "m.csv", rows), root).frame
    assert frame.image_path.tolist() == [
        str((root / "76809" / "768097967425200128-1.jpg").resolve()),
        str((root / "data_bt4sa" / "76810" / "768100000000000000-1.jpg").resolve()),
    ]
    assert frame.id.tolist() == ["768097967425200128-1", "768100000000000000-1"]


def test_class_names_file_beside_the_manifest(tmp_path):
    write_image(tmp_path / "x.jpg")
    manifest = write_manifest(tmp_path / "bt.csv", [{"label": "positive", "text": "t", "image": "x.jpg"}])
    (tmp_path / "bt.classes.txt").write_text("negative\nneutral\npositive\n")
    read = read_manifest(manifest, tmp_path)
    assert read.class_names == ("negative", "neutral", "positive")
    assert read.frame.label.tolist() == [2]
    with pytest.raises(InputError, match="unknown label"):
        read_manifest(manifest, tmp_path, class_names=DEFAULT_CLASS_NAMES)


def test_missing_manifest_says_how_to_make_one(tmp_path):
    with pytest.raises(InputError) as error:
        read_manifest(tmp_path / "nope.csv", tmp_path)
    assert str(tmp_path / "nope.csv") in str(error.value)
    assert "make data" in str(error.value)


def test_missing_column_is_named(tmp_path):
    manifest = write_manifest(tmp_path / "m.csv", [{"label": "0", "image": "x.jpg"}])
    with pytest.raises(InputError, match=r"missing column\(s\) text") as error:
        read_manifest(manifest, tmp_path)
    assert str(manifest) in str(error.value)


def _bad_rows(tmp_path, rows):
    for row in rows:
        if row.get("image"):
            write_image(tmp_path / row["image"])
    return write_manifest(tmp_path / "m.csv", rows, ["label", "text", "image"])


def test_unknown_label_names_line_and_value(tmp_path):
    manifest = _bad_rows(
        tmp_path,
        [
            {"label": "0", "text": "ok", "image": "a-1.jpg"},
            {"label": "joy", "text": "ok", "image": "b-1.jpg"},
            {"label": "4", "text": "ok", "image": "c-1.jpg"},
        ],
    )
    with pytest.raises(InputError) as error:
        read_manifest(manifest, tmp_path)
    message = str(error.value)
    assert "unknown label in 2 row(s)" in message
    assert "line 3: 'joy'" in message and "line 4: '4'" in message
    assert "happy, sad, hate, anger" in message


def test_a_post_may_lack_its_text_or_its_image_but_not_both(tmp_path):
    """Issue 46: an empty text, an empty image cell or an image file that is not there leave the post its other
    side; a row with neither is refused, counted and named by line."""
    write_image(tmp_path / "a.jpg"), write_image(tmp_path / "b.jpg"), write_image(tmp_path / "c.jpg")
    rows = "0,hello,a.jpg\nx1,1,,b.jpg\nx2,2,there,\nx3,3,again,gone.jpg\n"
    manifest = tmp_path / "m.csv"
    manifest.write_text("id,label,text,image\nx0," + rows)
    frame = read_manifest(manifest, tmp_path).frame
    assert frame["text"].tolist() == ["hello", "", "there", "again"]
    assert frame["image_path"].tolist()[2] == "" and frame["image_path"].tolist()[3].endswith("gone.jpg")
    manifest.write_text("id,label,text,image\nx0," + rows + 'x4,0,"   ",\nx5,1,,gone.jpg\n')
    with pytest.raises(InputError) as error:
        read_manifest(manifest, tmp_path)
    assert "2 row(s) with neither a text nor an image file that is there" in str(error.value)
    assert "line 6" in str(error.value) and "line 7" in str(error.value)


def test_duplicated_id(tmp_path):
    write_image(tmp_path / "a" / "t-1.jpg"), write_image(tmp_path / "b" / "t-1.jpg")
    manifest = write_manifest(
        tmp_path / "m.csv",
        [
            {"label": "0", "text": "x", "image": "a/t-1.jpg"},
            {"label": "0", "text": "x", "image": "b/t-1.jpg"},
        ],
    )
    with pytest.raises(InputError, match=r"duplicated id in 2 row\(s\):\n  id 't-1' on lines 2, 3"):
        read_manifest(manifest, tmp_path)


def test_every_missing_image_is_counted_and_the_first_ten_listed(tmp_path):
    rows = [{"label": "0", "text": "x", "image": f"data/1/{i}-1.jpg"} for i in range(13)]
    write_image(tmp_path / "data/1/0-1.jpg")
    manifest = write_manifest(tmp_path / "m.csv", rows)
    with pytest.raises(InputError) as error:
        read_manifest(manifest, tmp_path)
    message = str(error.value)
    assert "12 of 13 image file(s) not found" in message
    assert len(re.findall(r"line \d+: .*\.jpg", message)) == 10
    assert "... and 2 more (12 in all)" in message
    assert "--image-root" in message


def test_all_problems_are_reported_at_once(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("label,text,image\nfoo,,missing.jpg\n")
    with pytest.raises(InputError) as error:
        read_manifest(manifest, tmp_path)
    message = str(error.value)
    for part in ("unknown label", "with neither a text nor an image", "image file(s) not found"):
        assert part in message


def test_bad_split_value(tmp_path):
    write_image(tmp_path / "a.jpg")
    manifest = write_manifest(tmp_path / "m.csv", [{"label": "0", "text": "x", "image": "a.jpg", "split": "dev"}])
    with pytest.raises(InputError, match="(?s)bad split value .*'dev'"):
        read_manifest(manifest, tmp_path)


def test_a_manifest_that_is_not_utf8_names_its_lines_and_columns_in_a_fresh_process(tmp_path):
    """Issue 45: a Latin-1 save of a manifest (a multi-line text first) stops TER with the lines and columns of
    the bytes UTF-8 cannot read, as an editor numbers them, not a byte offset; exit 2, no traceback."""
    write_image(tmp_path / "a.jpg")
    rows = ['0,"two\nlines",a.jpg', "1,caf\u00e9 au lait,a.jpg", "2,fine,a.jpg", "3,na\u00efve d\u00e9j\u00e0,a.jpg"]
    text = "label,text,image\n" + "\n".join(rows) + "\n"
    (tmp_path / "latin.csv").write_bytes(text.encode("latin-1"))
    command = [sys.executable, str(REPO / "TER.py"), "--manifest", "latin.csv", "--image-root", ".", "--glove", "none"]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "latin.csv: the manifest is not UTF-8 text (2 line(s) with bytes UTF-8 cannot read)" in result.stderr
    assert "line 4, column 6: byte 0xe9" in result.stderr and "line 6, column 5: byte 0xef" in result.stderr
    assert "position" not in result.stderr


def test_nothing_is_written_when_the_input_is_bad(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("label,text,image\n0,hi,missing.jpg\n")
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(InputError):
        load_dataset(manifest, tmp_path)
    assert sorted(tmp_path.rglob("*")) == before
    assert not split_path(manifest).exists()


def test_a_text_only_phase_reads_rows_without_images_that_have_ids(tmp_path):
    write_image(tmp_path / "a.jpg")
    manifest = tmp_path / "m.csv"
    manifest.write_text("id,label,text,image\nx1,0,hello,\nx2,1,there,a.jpg\nx3,2,again,\n")
    frame = read_manifest(manifest, tmp_path, images_required=False).frame
    assert frame["image_path"].tolist() == ["", str((tmp_path / "a.jpg").resolve()), ""]
    assert frame["group"].tolist() == ["x1", "a", "x3"]  # a row without an image is its own group
    assert read_manifest(manifest, tmp_path).frame.equals(frame)  # the image phases read the one image
    (tmp_path / "t.csv").write_text("id,label,text,image\nx1,0,hello,\nx2,1,there,\n")
    with pytest.raises(InputError, match="no row has an image"):
        read_manifest(tmp_path / "t.csv", tmp_path)
    (tmp_path / "n.csv").write_text("label,text\n0,hello\n1,there\n")
    with pytest.raises(InputError, match=r"(?s)empty id in 2 row\(s\).*a row without an image needs an id column"):
        read_manifest(tmp_path / "n.csv", tmp_path, images_required=False)
