"""Property-based tests: the manifest reader, the B-T4SA and MVSA converters and predict.py's CSV reader, fed random
and adversarial files, either read them or raise InputError naming the file; never another exception (issue 15).

Hypothesis runs each property on EXAMPLES generated files, derandomized: CI runs the same cases every time."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pandas as pd
import pytest
from conftest import write_image
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import predict
import TER
from emorec import bt4sa, mvsa
from emorec.cli import run
from emorec.data.manifest import read_manifest
from emorec.errors import InputError
from emorec.legacy_text import decode_text

EXAMPLES = 150
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# A folder and image names with spaces and non-ASCII letters, as real data sets have.
IMAGES = ["a b.jpg", "ünï/çødé 1.jpg", "76809/768097967425200001-1.jpg"]
COLUMNS = ["label", "text", "image", "id", "split", "group", "extra", "Label", " TEXT "]
CELLS = st.one_of(
    st.sampled_from(
        [
            "happy",
            "sad",
            "hate",
            "anger",
            "0",
            "3",
            "7",
            "",
            "train",
            "val",
            "test",
            "bogus",
            *IMAGES,
            "missing.jpg",
            "/data_bt4sa/76809/768097967425200001-1.jpg",
        ]
    ),
    st.text(max_size=40),  # any Unicode: quotes, commas, newlines, NUL, surrogates left out by the encoder
    st.text(alphabet='ab,"\n\r ', max_size=20),
    st.just("x" * 200_000),  # a huge field
)
ENCODINGS = st.sampled_from(["utf-8", "utf-8-sig", "latin-1", "utf-16", "cp1252"])


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A folder whose path has a space and non-ASCII letters, holding the images the generated manifests name."""
    root = tmp_path_factory.mktemp("fuzz") / "dätä sét"
    for number, name in enumerate(IMAGES):
        write_image(root / name, seed=number)
    return root


@st.composite
def csv_files(draw, columns=COLUMNS) -> bytes:
    """A CSV file's bytes: a header drawn from ``columns`` (some missing, repeated or extra), rows of drawn cells
    (some short or long), written by the csv module in a drawn encoding; or, now and then, random bytes."""
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(st.binary(max_size=600))
    if kind <= 4:  # nearly valid: the columns wanted, in any order, with good cells and now and then a bad one
        extras = draw(st.lists(st.sampled_from(columns[3:]), max_size=2)) if len(columns) > 3 else []
        header = draw(st.permutations(columns[:3])) + extras
        images = draw(st.permutations(IMAGES))
        good = {
            "label": st.sampled_from(["happy", "sad", "hate", "anger", "0", "3"]),
            "image": None,
            "text": st.text(min_size=1, max_size=30).filter(str.strip),
            "split": st.sampled_from(["train", "val", "test"]),
        }
        rows = []
        for number in range(draw(st.integers(1, len(images)))):
            rows.append(
                [
                    images[number]
                    if name == "image"
                    else draw(CELLS if draw(st.integers(0, 7)) == 0 else good.get(name, st.just(f"x{number}")))
                    for name in header
                ]
            )
    else:
        header = draw(st.lists(st.sampled_from(columns), min_size=0, max_size=7))
        rows = draw(st.lists(st.lists(CELLS, min_size=0, max_size=len(header) + 2), max_size=6))
    text = io.StringIO()
    import csv

    writer = csv.writer(text, lineterminator=draw(st.sampled_from(["\n", "\r\n"])))
    writer.writerow(header)
    writer.writerows(rows)
    return text.getvalue().encode(draw(ENCODINGS), errors="replace")


def assert_reads_or_names_the_file(read, path: Path):
    """Call ``read()``: it returns, or raises InputError whose message names ``path``; anything else fails."""
    try:
        result = read()
    except InputError as error:
        assert str(path) in str(error), str(error)[:500]
        event("refused with InputError")
        return None
    event("read")
    return result


@FUZZ
@given(content=csv_files())
def test_the_manifest_reader_reads_or_names_the_file(folder, content):
    path = folder / "my manifest ü.csv"
    path.write_bytes(content)
    frame = assert_reads_or_names_the_file(lambda: read_manifest(path, folder).frame, path)
    if frame is not None:
        assert len(frame) > 0 and list(frame.columns[:5]) == ["id", "label", "text", "image_path", "group"]
        assert frame["id"].is_unique and frame["label"].between(0, 3).all()


@FUZZ
@given(content=csv_files(["text", "image", "id", "extra", "Text"]))
def test_predicts_csv_reader_reads_or_names_the_file(folder, content):
    path = folder / "to predict.csv"
    path.write_bytes(content)
    table = assert_reads_or_names_the_file(lambda: predict._read_tweets(path), path)
    if table is not None:
        assert {"text", "image"} <= set(table.columns)


TWEETS = ["768097967425200001", "768097967425200002", "768097967425200003", "ü ñ"]
SPLIT_LINES = st.one_of(
    st.builds(
        lambda tweet, number, label: f"data/76809/{tweet}-{number}.jpg {label}",
        st.sampled_from(TWEETS),
        st.integers(1, 2),
        st.sampled_from("0120"),
    ),
    st.sampled_from(["", "no label", "x.jpg 5", "a b/c d-1.jpg 1"]),
    st.text(max_size=30),
)
TEXTS = st.lists(
    st.tuples(st.sampled_from(TWEETS), st.one_of(st.text(max_size=20), st.just('a, "quoted"\ntext'))), max_size=5
).map(lambda rows: pd.DataFrame(rows, columns=["id", "text"]).to_csv(index=False).encode())


@st.composite
def bt4sa_folders(draw) -> tuple[list[bytes], bytes, bool]:
    """The three split files, the tweet text file and whether it is there: now nearly valid (each split a tweet of
    its own, every tweet with a text, one file sometimes replaced by a drawn one), now drawn whole."""
    if draw(st.booleans()):
        tweets = draw(st.permutations(TWEETS))
        splits = [f"data/76809/{tweet}-1.jpg {draw(st.sampled_from('012'))}\n".encode() for tweet in tweets[:3]]
        texts = (
            pd.DataFrame(
                {"id": tweets, "text": [draw(st.text(min_size=1, max_size=20).filter(str.strip)) for _ in tweets]}
            )
            .to_csv(index=False)
            .encode()
        )
        if draw(st.integers(0, 3)) == 0:
            splits[draw(st.integers(0, 2))] = draw(st.binary(max_size=40))
        return splits, texts, True
    splits = draw(
        st.lists(
            st.one_of(
                st.lists(SPLIT_LINES, max_size=4).map(lambda lines: "\n".join(lines).encode()), st.binary(max_size=80)
            ),
            min_size=3,
            max_size=3,
        )
    )
    return splits, draw(st.one_of(TEXTS, csv_files(["id", "text", "extra"]))), draw(st.booleans())


@FUZZ
@given(files=bt4sa_folders())
def test_the_bt4sa_converter_converts_or_names_the_file(folder, files):
    splits, texts, with_texts = files
    root = folder / "b-t4sa copy"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir()
    for name, content in zip(bt4sa.SPLIT_FILES.values(), splits):
        (root / name).write_bytes(content)
    if with_texts:
        (root / bt4sa.TEXT_FILE).write_bytes(texts)
    out = folder / "converted" / "bt4sa.csv"
    manifest = assert_reads_or_names_the_file(lambda: bt4sa.convert(root, out)[0], root)
    if manifest is None:
        assert not out.exists()  # nothing written from bad input
    else:
        assert out.exists() and set(manifest["split"]) <= {"train", "val", "test"}
        out.unlink()


MVSA_LABELS = st.sampled_from(["positive", "neutral", "negative", "Positive "])
MVSA_LINES = st.one_of(
    st.tuples(st.integers(1, 9), st.lists(st.tuples(MVSA_LABELS, MVSA_LABELS), min_size=1, max_size=3)).map(
        lambda line: f"{line[0]}\t" + "\t".join(f"{text},{image}" for text, image in line[1])
    ),
    st.text(max_size=30),
)
# 30 tweets that convert, so that a drawn folder can: the split needs a few of each class.
MVSA_BASE = {100 + n: ("negative", "neutral", "positive")[n % 3] for n in range(30)}


@st.composite
def mvsa_folders(draw) -> tuple[bytes, dict[int, bytes], set[int]]:
    """labelResultAll.txt's bytes (a header, 30 good lines and drawn ones, or random bytes), the text files' bytes
    by id (the 30's, and drawn ones: any bytes, or any text in UTF-8 or a legacy encoding) and the ids with an
    image."""
    texts = {tweet: f"tweet {chr(65 + n)} is {label}".encode() for n, (tweet, label) in enumerate(MVSA_BASE.items())}
    if draw(st.integers(0, 4)):
        lines = [f"{tweet}\t{label},{label}" for tweet, label in MVSA_BASE.items()]
        extra = draw(st.lists(MVSA_LINES, max_size=6))
        labels = "\r\n".join(["ID\ttext,image", *draw(st.permutations(lines + extra))]).encode()
    else:
        labels = draw(st.binary(max_size=200))
    raw = st.one_of(
        st.binary(max_size=40),
        st.tuples(st.text(max_size=20), st.sampled_from(["utf-8", "utf-8-sig", "gbk", "cp1252", "utf-16"])).map(
            lambda t: t[0].encode(t[1], errors="replace")
        ),
    )
    texts |= draw(st.dictionaries(st.integers(1, 9), raw, max_size=9))
    return labels, texts, set(MVSA_BASE) | draw(st.sets(st.integers(1, 9)))


@settings(FUZZ, max_examples=40)
@given(files=mvsa_folders())
def test_the_mvsa_converter_converts_or_names_the_folder(folder, files):
    labels, texts, images = files
    root = folder / "MVSA cöpy"
    shutil.rmtree(root, ignore_errors=True)
    (root / "data").mkdir(parents=True)
    (root / "labelResultAll.txt").write_bytes(labels)
    for tweet, raw in texts.items():
        (root / "data" / f"{tweet}.txt").write_bytes(raw)
    for tweet in images:
        shutil.copy(folder / IMAGES[0], root / "data" / f"{tweet}.jpg")
    out = folder / "converted" / "mvsa.csv"
    manifest = assert_reads_or_names_the_file(lambda: mvsa.convert(root, out)[0], root)
    if manifest is None:
        assert not out.exists()
    else:
        assert out.exists() and manifest["text"].str.strip().ne("").all() and manifest["split"].nunique() == 3
        out.unlink()


@FUZZ
@given(raw=st.one_of(st.binary(max_size=60), st.text(max_size=30).map(str.encode)))
def test_any_bytes_decode_and_utf8_decodes_as_itself(raw):
    text, encoding = decode_text(raw)
    if encoding == "utf-8":
        assert text == raw.decode("utf-8-sig")
    elif encoding == "undecodable":
        assert "\ufffd" in text
    else:
        assert text == raw.decode(encoding)


def test_line_numbers_count_the_lines_of_a_text_that_spans_several(tmp_path):
    """Row 2's text takes three lines, so row 3 starts on line 6 of the file, as an editor shows it."""
    write_image(tmp_path / "a-1.jpg")
    write_image(tmp_path / "b-1.jpg")
    write_image(tmp_path / "c-1.jpg")
    path = tmp_path / "manifest.csv"
    path.write_text(
        'label,text,image\nhappy,one line,a-1.jpg\nsad,"first\nsecond, with a comma\nthird",b-1.jpg\n'
        "joyful,after it,c-1.jpg\n",
        encoding="utf-8",
    )
    with pytest.raises(InputError, match="line 6: 'joyful'"):
        read_manifest(path, tmp_path)


def test_a_byte_order_mark_is_read_and_a_repeated_column_is_refused_with_exit_2(tmp_path, capsys):
    write_image(tmp_path / "a-1.jpg")
    path = tmp_path / "manifest.csv"
    path.write_bytes("label,text,image\nhappy,hello,a-1.jpg\n".encode("utf-8-sig"))  # as Excel saves a CSV
    assert read_manifest(path, tmp_path).frame["text"].tolist() == ["hello"]
    path.write_text("label,text,image,text\nhappy,hello,a-1.jpg,again\n", encoding="utf-8")
    argv = [
        "--manifest",
        str(path),
        "--image-root",
        str(tmp_path),
        "--glove",
        "none",
        "--checkpoint-dir",
        str(tmp_path / "ckpt"),
        "--log-dir",
        str(tmp_path / "tb"),
        "--prob-dir",
        str(tmp_path / "probs"),
    ]
    assert run(TER.main, argv) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and "names column(s) 'text' more than once" in error and str(path) in error
    assert "Traceback" not in error
    assert pd.read_csv(path).shape == (1, 4)  # the file itself is left as it was
