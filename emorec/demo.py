"""A generated demo data set that stands in for IIT-R TIER on a fresh machine.

Usage::

    python -m emorec.demo --out data_t4sa/demo --n 2000 --seed 0

writes, under ``--out``:

- ``data/<5 digits>/<tweet id>-<n>.jpg`` (and some ``.png``): real images in the
  B-T4SA folder layout, sizes near 500x375, some grayscale, some PNG with alpha;
- ``image_labels.csv``: the manifest in the IIT-R TIER form (``label,text,image``,
  labels as class names, image paths relative to ``--out``);
- ``glove.demo.200d.txt``: word vectors in the GloVe text format (200 dimensions),
  learned only from a separate unlabelled corpus of generated tweets.

The same seed gives byte-identical files. The phases then run with
``--manifest <out>/image_labels.csv --image-root <out> --glove <out>/glove.demo.200d.txt``.

The generator's model of the data (each class a pair of hidden factors, one shown by each modality, the cues
noisy) is told in :mod:`emorec.demo_content`; the word vectors come from a separate unlabelled corpus.
:func:`modality_baselines` measures the design with scikit-learn logistic
regressions: bag of words on the text, colour histograms on the images, and
both concatenated, on the shared stratified, grouped split.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from emorec.cli import ArgumentParser, HelpFormatter, run, setup_logging
from emorec.data.manifest import DEFAULT_CLASS_NAMES, read_manifest
from emorec.data.splits import draw_split
from emorec.demo_content import (
    MIN_IMAGES,
    MIN_TWEETS_PER_CLASS,
    TWO_IMAGE_RATE,
    generate_tweet,
    render_image,
    sample_labels,
    save_image,
    tweet_ids,
)
from emorec.errors import InputError
from emorec.fileio import atomic_path, write_csv_atomic

log = logging.getLogger("emorec")


MANIFEST_NAME = "image_labels.csv"
GLOVE_NAME = "glove.demo.200d.txt"
DEMO_MARKER = ".emorec-demo"
EMBEDDING_DIM = 200


def learn_word_vectors(
    corpus: Sequence[Sequence[str]], dim: int = EMBEDDING_DIM, window: int = 5, min_count: int = 3, seed: int = 0
) -> tuple[list[str], np.ndarray]:
    """Learn word vectors from tokenised texts: PPMI of co-occurrence within ``window``, then truncated SVD.

    Returns the vocabulary (by descending frequency, words seen at least
    ``min_count`` times) and a float32 matrix of shape (len(vocabulary), dim),
    scaled so its entries have a standard deviation near GloVe-twitter's (0.4).
    """
    from scipy import sparse
    from sklearn.decomposition import TruncatedSVD

    counts = pd.Series([token for text in corpus for token in text]).value_counts(sort=False)
    counts = counts[counts >= min_count]
    order = sorted(counts.index, key=lambda w: (-counts[w], w))
    index = {word: i for i, word in enumerate(order)}
    rows, cols = [], []
    for text in corpus:
        ids = [index[t] for t in text if t in index]
        for offset in range(1, window + 1):
            rows.extend(ids[:-offset])
            cols.extend(ids[offset:])
    size = len(order)
    pairs = sparse.coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(size, size)).tocsr()
    cooc = (pairs + pairs.T).tocoo()
    context = np.asarray(cooc.sum(axis=0)).ravel() ** 0.75  # context-distribution smoothing
    word_total = np.asarray(cooc.sum(axis=1)).ravel()
    pmi = np.log(cooc.data * context.sum() / (word_total[cooc.row] * context[cooc.col]))
    keep = pmi > 0
    ppmi = sparse.csr_matrix((pmi[keep], (cooc.row[keep], cooc.col[keep])), shape=(size, size))
    if size <= dim:
        raise InputError(f"the demo corpus has only {size} words; it needs more than {dim} for {dim}-d vectors")
    svd = TruncatedSVD(n_components=dim, algorithm="randomized", n_iter=7, random_state=seed)
    vectors = svd.fit_transform(ppmi) / np.sqrt(svd.singular_values_)  # U * sqrt(S)
    vectors *= 0.4 / vectors.std()
    return order, vectors.astype(np.float32)


def write_glove(path: Path, words: Sequence[str], vectors: np.ndarray) -> None:
    """Write vectors in the GloVe text format (``word v1 ... vN`` per line, 5 decimals), atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as out:
        for word, vector in zip(words, vectors):
            out.write(word + " " + " ".join(f"{value:.5f}" for value in vector) + "\n")


def generate(out: str | Path, n: int = 2000, seed: int = 0, corpus_size: int = 30000, image_scale: float = 1.0) -> Path:
    """Write the demo data set (images, manifest, word vectors) under ``out``; return the manifest's path.

    ``n`` is the number of images (rows); ``corpus_size`` the number of
    unlabelled tweets the word vectors are learned from; ``image_scale``
    shrinks every picture (0.25: about 125x94 px) for quick runs at scale.
    The same arguments give byte-identical files. A previous demo under
    ``out`` is replaced.
    """
    if n < MIN_IMAGES:
        raise InputError(
            f"--n must be at least {MIN_IMAGES} (the phases' stratified split needs "
            f"{MIN_TWEETS_PER_CLASS} tweets of every class), got {n}"
        )
    out = Path(out)
    manifest_path, marker = out / MANIFEST_NAME, out / DEMO_MARKER
    if (out / "data").exists() or manifest_path.exists():
        if not marker.exists():  # never delete what this generator did not write (real data, say)
            raise InputError(f"{out} holds data that is not a generated demo data set; choose another --out")
        shutil.rmtree(out / "data", ignore_errors=True)
        manifest_path.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    marker.write_text("written by python -m emorec.demo; regenerating replaces this folder's demo files\n")
    text_rng, image_rng, corpus_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3))

    images_per_tweet = []
    while sum(images_per_tweet) < n:
        two = text_rng.random() < TWO_IMAGE_RATE and sum(images_per_tweet) + 2 <= n
        images_per_tweet.append(2 if two else 1)
    labels = sample_labels(text_rng, len(images_per_tweet))
    ids = tweet_ids(text_rng, len(labels))

    rows = []
    started = time.monotonic()
    for number, (tweet_id, label, image_count) in enumerate(zip(ids, labels, images_per_tweet), start=1):
        tweet = generate_tweet(text_rng, int(label))
        folder = out / "data" / tweet_id[:5]
        folder.mkdir(parents=True, exist_ok=True)
        for image_number in range(1, image_count + 1):
            picture = render_image(image_rng, tweet.light_cue)
            if image_scale != 1.0:
                picture = picture.resize(
                    (max(1, round(picture.width * image_scale)), max(1, round(picture.height * image_scale))),
                    Image.Resampling.BILINEAR,
                )
            path = save_image(image_rng, picture, folder / f"{tweet_id}-{image_number}")
            rows.append((DEFAULT_CLASS_NAMES[label], tweet.text, path.relative_to(out).as_posix()))
        if number % 500 == 0 or number == len(ids):
            log.info("demo: %d/%d tweets, %d images (%.0f s)", number, len(ids), len(rows), time.monotonic() - started)

    corpus = [generate_tweet(corpus_rng, int(label)).tokens for label in sample_labels(corpus_rng, corpus_size)]
    words, vectors = learn_word_vectors(corpus, seed=seed)
    write_glove(out / GLOVE_NAME, words, vectors)
    log.info("demo: %d word vectors of %d dimensions in %s", len(words), vectors.shape[1], out / GLOVE_NAME)

    # The manifest goes last: its presence marks a complete demo (make data's target).
    write_csv_atomic(pd.DataFrame(rows, columns=["label", "text", "image"]), manifest_path)
    log.info("demo: wrote %s (%d rows, %d tweets)", manifest_path, len(rows), len(ids))
    return manifest_path


def colour_histograms(paths: Sequence[str], bins: int = 4, size: int = 64) -> np.ndarray:
    """Return each image's RGB colour histogram (``bins`` per channel, fractions of pixels), shape (n, bins**3)."""
    features = np.empty((len(paths), bins**3))
    for row, path in enumerate(paths):
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB").resize((size, size))).reshape(-1, 3)
        histogram, _ = np.histogramdd(pixels, bins=(bins,) * 3, range=((0, 256),) * 3)
        features[row] = histogram.ravel() / len(pixels)
    return features


def modality_baselines(manifest_path: str | Path, image_root: str | Path, seed: int = 0) -> dict[str, float]:
    """Measure how much each modality tells, with scikit-learn logistic regressions.

    Fits on the train part of a fresh stratified, grouped split (seeded, not
    stored) and scores on its test part: bag of words (nltk's tweet tokenizer) on
    the text, colour histograms on the images, and both concatenated. Returns
    test accuracies under the keys ``text``, ``image``, ``both`` and ``majority``
    (always predicting the most common training class).
    """
    from nltk.tokenize import TweetTokenizer
    from scipy import sparse
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    manifest = read_manifest(manifest_path, image_root)
    frame = manifest.frame
    split = draw_split(frame, seed, class_names=manifest.class_names)
    train, test = (split == "train").to_numpy(), (split == "test").to_numpy()
    labels = frame["label"].to_numpy()

    words = CountVectorizer(tokenizer=TweetTokenizer(preserve_case=False).tokenize, token_pattern=None, binary=True)
    text_train, text_test = words.fit_transform(frame["text"][train]), words.transform(frame["text"][test])
    histograms = colour_histograms(frame["image_path"].tolist())
    colours = StandardScaler().fit(histograms[train])
    image_train, image_test = colours.transform(histograms[train]), colours.transform(histograms[test])

    def test_accuracy(x_train, x_test) -> float:
        model = LogisticRegression(max_iter=5000, C=0.5).fit(x_train, labels[train])
        return float((model.predict(x_test) == labels[test]).mean())

    majority = np.bincount(labels[train]).argmax()
    return {
        "text": test_accuracy(text_train, text_test),
        "image": test_accuracy(image_train, image_test),
        "both": test_accuracy(
            sparse.hstack([text_train, image_train]).tocsr(), sparse.hstack([text_test, image_test]).tocsr()
        ),
        "majority": float((labels[test] == majority).mean()),
    }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the demo generator's command line."""
    parser = ArgumentParser(
        prog="python -m emorec.demo",
        description="Generate the demo data set: images, a manifest and GloVe-format word vectors.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--out", default="data_t4sa/demo", help="folder to write the demo data set into")
    parser.add_argument("--n", type=int, default=2000, help="number of images (manifest rows)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives byte-identical files")
    parser.add_argument(
        "--corpus-size", type=int, default=30000, help="unlabelled generated tweets the word vectors are learned from"
    )
    parser.add_argument(
        "--no-baselines", action="store_true", help="skip measuring the scikit-learn baselines after generating"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Generate the demo data set and report the scikit-learn baselines; returns 0."""
    setup_logging()
    args = parse_args(argv)
    manifest_path = generate(args.out, args.n, args.seed, args.corpus_size)
    if not args.no_baselines:
        scores = modality_baselines(manifest_path, args.out, args.seed)
        print(
            "demo baselines, test accuracy of scikit-learn logistic regression: "
            + ", ".join(f"{name} {value:.3f}" for name, value in scores.items())
        )
    print(f"demo ready: --manifest {manifest_path} --image-root {args.out} --glove {Path(args.out) / GLOVE_NAME}")
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
