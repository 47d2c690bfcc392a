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

The generator's model of the data
---------------------------------
Each tweet draws its class from the paper's 1k-subset proportions (happy 5 %,
sad 25 %, hate 18 %, anger 52 %). The class is the pair of two hidden binary
factors, and each modality shows only one of them:

- the **text** shows the *tone*: calm (happy, sad) or hostile (hate, anger),
  through two to four tone words ("memories", "quiet" / "idiots", "pathetic");
- the **image** shows the *light*: bright warm colours (happy, hate) or dark
  cool colours (sad, anger), through the palette of its background and shapes.

So the text alone cannot tell happy from sad, nor the image happy from hate:
neither modality suffices, and only both together name the class. Cues are
noisy, as in real tweets: a modality's cue is absent (neutral words, a random
palette) for 6 % of tweets and points the wrong way (conflicting) for 3 %;
grayscale images keep only the brightness half of the image cue. A weak
class-specific signal rides on top: with probability 0.15 a class word ("yay",
"heartbroken", "despise", "furious") and with 0.25 a class emoji. Everything
else is label-free distraction: topic words (football, weather, work, food, ...),
function words, @mentions, #hashtags, URLs, numbers, emoji, mixed case and
misspellings (stretched letters, dropped vowels, swapped letters). One tweet in
ten has two images (``-1``, ``-2``) with the same text, as in B-T4SA.

The word vectors come from a corpus of generated tweets that carries no labels
(30,000 by default): the positive pointwise mutual information of words within
five tokens of each other, reduced to 200 dimensions by truncated SVD
(scikit-learn). Words of one tone or one topic co-occur, so their vectors end up
close, as GloVe's do. Words seen fewer than three times are left out, so a
model meets some misses, as with the real GloVe. The tokens are the generator's
own, written the way GloVe-twitter writes them: lower case, ``<user>``,
``<url>`` and ``<number>`` for mentions, links and numbers, hashtags without '#'.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from emorec.cli import ArgumentParser, HelpFormatter, run, setup_logging
from emorec.data import DEFAULT_CLASS_NAMES, draw_split, read_manifest
from emorec.errors import InputError
from emorec.fileio import atomic_path, write_csv_atomic

log = logging.getLogger("emorec")

MANIFEST_NAME = "image_labels.csv"
GLOVE_NAME = "glove.demo.200d.txt"
DEMO_MARKER = ".emorec-demo"
EMBEDDING_DIM = 200

CLASS_PRIORS = (0.05, 0.25, 0.18, 0.52)  # happy, sad, hate, anger: the paper's 1k subset
TONE_OF_CLASS = (0, 0, 1, 1)  # 0 calm, 1 hostile: what the text shows
LIGHT_OF_CLASS = (0, 1, 0, 1)  # 0 bright warm, 1 dark cool: what the image shows
CUE_ABSENT, CUE_CONFLICT = 0.06, 0.03
CLASS_WORD_RATE, CLASS_EMOJI_RATE = 0.15, 0.25
TWO_IMAGE_RATE = 0.1
# The smallest demo the phases accept: at least 32 tweets (the stratified 70/10/20 split needs a validation split
# of one tweet per class), and so 64 images even if every tweet had two, with at least 5 tweets of every class
# (so that each class keeps tweets in the training split).
MIN_IMAGES, MIN_TWEETS_PER_CLASS = 64, 5
GRAYSCALE_RATE, PNG_RATE = 0.08, 0.08

TONE_WORDS = (
    # calm: feelings, home, self
    "memories quiet feel heart home family wish dream night alone slowly softly "
    "remember missing thinking myself moment hope rain tea letter old photo".split(),
    # hostile: others, blame, contempt
    "idiots pathetic liars disgusting corrupt shame worst clowns fault blame "
    "criminals trash ridiculous enough useless cowards joke lies scum greedy".split(),
)
CLASS_WORDS = (
    "yay awesome lol wonderful".split(),  # happy
    "heartbroken cry rip lonely".split(),  # sad
    "despise hate vile loathe".split(),  # hate
    "furious angry rage mad".split(),  # anger
)
CLASS_EMOJI = ("😂 😍 🎉", "😢 💔 😞", "🤮 🙄 😒", "😡 🤬 💢")
NEUTRAL_EMOJI = "👀 🔥 🙏 👍 🤔 ✨ 📷 🎶".split()
TOPICS = {
    "football": "match goal team league keeper penalty striker season coach fans stadium derby referee transfer kickoff",
    "weather": "sun rain storm cloudy forecast wind snow summer winter umbrella heat morning sky cold weekend",
    "work": "office meeting boss deadline email project monday shift coffee desk salary colleague report overtime",
    "food": "pizza burger dinner lunch breakfast chocolate pasta recipe kitchen sandwich tacos dessert cake soup",
    "music": "song album concert band guitar playlist singer tour lyrics radio dance beat vinyl festival",
    "politics": "election vote government minister party debate policy president senate campaign tax law parliament",
    "travel": "flight airport beach hotel trip train city road holiday passport luggage island mountain map",
    "school": "exam class teacher homework lecture campus grades library essay semester test notes professor",
    "movies": "film cinema trailer actor scene sequel netflix series episode director popcorn premiere plot",
    "tech": "phone update app laptop battery wifi screen android iphone software bug charger internet",
}
TOPICS = {name: words.split() for name, words in TOPICS.items()}
FUNCTION_WORDS = (
    "i the a this that so is was my today just really you they we it in on at "
    "for with not all what why can't don't when about me your of and to be got "
    "again still now never always".split()
)
HANDLES = [f"{a}{b}" for a in ("news", "the", "real", "mr", "its", "daily", "team", "just")
           for b in ("jay", "ana", "sports", "world", "leo", "mia", "kat", "bot", "max", "zoe")]

# Image palettes as HSV ranges: (hue range in [0,1), saturation range, value range).
PALETTES = (
    ((0.0, 0.16), (0.55, 1.0), (0.70, 1.0)),  # bright warm: reds, oranges, yellows
    ((0.52, 0.78), (0.35, 0.9), (0.15, 0.50)),  # dark cool: blues, purples
    ((0.0, 1.0), (0.1, 0.9), (0.3, 0.85)),  # no cue: anything, mid brightness
)


@dataclass
class Tweet:
    """One generated tweet: its class, its text, its normalised tokens and its image cue."""

    label: int
    text: str
    tokens: list[str]
    light_cue: int  # index into PALETTES


def sample_labels(rng: np.random.Generator, count: int) -> np.ndarray:
    """Draw ``count`` class indices with the paper's class proportions, at least ``MIN_TWEETS_PER_CLASS`` of each.

    A class drawn fewer times (happy, 5 %, in a small demo) takes the last
    draws of the most frequent class; larger demos are drawn as they fall.
    """
    labels = rng.choice(len(CLASS_PRIORS), size=count, p=CLASS_PRIORS)
    for label in range(len(CLASS_PRIORS)):
        short = MIN_TWEETS_PER_CLASS - int((labels == label).sum())
        if short > 0:
            largest = np.bincount(labels, minlength=len(CLASS_PRIORS)).argmax()
            labels[np.flatnonzero(labels == largest)[-short:]] = label
    return labels


def noisy_cue(rng: np.random.Generator, true_value: int) -> int | None:
    """Return a binary factor's cue: the true value, the other one (conflict), or None (absent)."""
    draw = rng.random()
    if draw < CUE_ABSENT:
        return None
    if draw < CUE_ABSENT + CUE_CONFLICT:
        return 1 - true_value
    return true_value


def misspell(rng: np.random.Generator, word: str) -> str:
    """Return ``word`` with one tweet-style misspelling: a stretched letter, a dropped vowel or a swap."""
    if len(word) < 3 or not word.isalpha():
        return word
    kind = rng.integers(3)
    position = int(rng.integers(1, len(word) - 1))
    if kind == 0:
        return word[:position] + word[position] * int(rng.integers(2, 5)) + word[position + 1 :]
    if kind == 1:
        vowels = [i for i, c in enumerate(word) if c in "aeiou" and i > 0]
        if vowels:
            drop = vowels[int(rng.integers(len(vowels)))]
            return word[:drop] + word[drop + 1 :]
        return word
    return word[: position - 1] + word[position] + word[position - 1] + word[position + 1 :]


def generate_tweet(rng: np.random.Generator, label: int) -> Tweet:
    """Generate one tweet of class ``label``: surface text, GloVe-style tokens and the image cue."""
    topic = TOPICS[list(TOPICS)[int(rng.integers(len(TOPICS)))]]
    length = int(rng.integers(5, 14))
    words = [
        str(rng.choice(FUNCTION_WORDS)) if rng.random() < 0.45 else str(rng.choice(topic)) for _ in range(length)
    ]
    tone = noisy_cue(rng, TONE_OF_CLASS[label])
    if tone is not None:
        for word in rng.choice(TONE_WORDS[tone], size=int(rng.integers(2, 5)), replace=False):
            words.insert(int(rng.integers(len(words) + 1)), str(word))
    if rng.random() < CLASS_WORD_RATE:
        words.insert(int(rng.integers(len(words) + 1)), str(rng.choice(CLASS_WORDS[label])))
    words = [misspell(rng, w) if rng.random() < 0.06 else w for w in words]

    surface, tokens = [], []
    if rng.random() < 0.3:
        surface.append("@" + str(rng.choice(HANDLES)))
        tokens.append("<user>")
    for word in words:
        style = rng.random()
        surface.append(word.upper() if style < 0.05 else word.capitalize() if style < 0.15 else word)
        tokens.append(word)
    if rng.random() < 0.15:
        position = int(rng.integers(1, len(surface) + 1))
        surface.insert(position, str(int(rng.choice([2, 3, 5, 10, 24, 100, 2019, 2020]))))
        tokens.insert(position, "<number>")
    if rng.random() < 0.4:
        tag = str(rng.choice(topic + (TONE_WORDS[tone] if tone is not None else [])))
        surface.append("#" + tag)
        tokens.append(tag)
    if rng.random() < CLASS_EMOJI_RATE:
        emoji = str(rng.choice(CLASS_EMOJI[label].split()))
    elif rng.random() < 0.4:
        emoji = str(rng.choice(NEUTRAL_EMOJI))
    else:
        emoji = None
    if emoji:
        surface.append(emoji)
        tokens.append(emoji)
    if rng.random() < 0.35:
        surface.append("https://t.co/" + "".join(rng.choice(list("abcdefghijkmnpqrstuvwxyzABCDEFGH23456789"), 10)))
        tokens.append("<url>")
    light = noisy_cue(rng, LIGHT_OF_CLASS[label])
    return Tweet(label, " ".join(surface), tokens, 2 if light is None else light)


def _hsv_colour(rng: np.random.Generator, palette: int) -> tuple[int, int, int]:
    (h0, h1), (s0, s1), (v0, v1) = PALETTES[palette]
    hsv = Image.new("HSV", (1, 1), (int(255 * rng.uniform(h0, h1)), int(255 * rng.uniform(s0, s1)),
                                    int(255 * rng.uniform(v0, v1))))
    return hsv.convert("RGB").getpixel((0, 0))


def render_image(rng: np.random.Generator, palette: int) -> Image.Image:
    """Draw one RGB picture whose colours come mostly from ``palette`` (see PALETTES), with distractors.

    A vertical gradient between two palette colours, four to nine palette
    shapes, two to five shapes in random colours, and mild pixel noise; the
    size is near 500x375 (sometimes portrait).
    """
    width, height = int(np.clip(rng.normal(500, 40), 320, 640)), int(np.clip(rng.normal(375, 35), 240, 480))
    if rng.random() < 0.15:
        width, height = height, width
    top, bottom = np.array(_hsv_colour(rng, palette)), np.array(_hsv_colour(rng, palette))
    ramp = np.linspace(0.0, 1.0, height)[:, None, None]
    column = (top * (1 - ramp) + bottom * ramp).astype(np.uint8)
    image = Image.fromarray(column, "RGB").resize((width, height), Image.Resampling.NEAREST)
    draw = ImageDraw.Draw(image)
    shapes = [palette] * int(rng.integers(4, 10)) + [2] * int(rng.integers(2, 6))
    for shape_palette in rng.permutation(shapes):
        x0, y0 = int(rng.integers(-50, width)), int(rng.integers(-50, height))
        x1, y1 = x0 + int(rng.integers(30, width // 2)), y0 + int(rng.integers(30, height // 2))
        colour = _hsv_colour(rng, int(shape_palette))
        kind = rng.integers(3)
        if kind == 0:
            draw.ellipse((x0, y0, x1, y1), fill=colour)
        elif kind == 1:
            draw.rectangle((x0, y0, x1, y1), fill=colour)
        else:
            draw.polygon([(x0, y1), ((x0 + x1) // 2, y0), (x1, y1)], fill=colour)
    noise = rng.integers(-12, 13, size=(height, width, 1), dtype=np.int16)
    return Image.fromarray(np.clip(np.asarray(image, dtype=np.int16) + noise, 0, 255).astype(np.uint8), "RGB")


def save_image(rng: np.random.Generator, image: Image.Image, stem_path: Path) -> Path:
    """Save ``image`` as a JPEG, or (sometimes) grayscale JPEG or RGBA PNG; return the file's path."""
    draw = rng.random()
    if draw < PNG_RATE:
        path = stem_path.with_suffix(".png")
        image = image.convert("RGBA")
        image.putalpha(int(rng.integers(180, 256)))
        image.save(path, format="PNG", compress_level=1)  # noisy pixels: zlib effort buys little
    else:
        path = stem_path.with_suffix(".jpg")
        if draw < PNG_RATE + GRAYSCALE_RATE:
            image = image.convert("L")
        image.save(path, format="JPEG", quality=int(rng.integers(75, 96)))
    return path


def tweet_ids(rng: np.random.Generator, count: int) -> list[str]:
    """Draw ``count`` distinct, sorted 18-digit tweet ids (as B-T4SA's, whose first 5 digits name the folder)."""
    ids: set[int] = set()
    while len(ids) < count:
        ids.update(int(i) for i in 758_000_000_000_000_000 + rng.integers(0, 12 * 10**15, size=count))
    return [str(i) for i in sorted(rng.choice(sorted(ids), size=count, replace=False))]


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


def generate(out: str | Path, n: int = 2000, seed: int = 0, corpus_size: int = 30000,
             image_scale: float = 1.0) -> Path:
    """Write the demo data set (images, manifest, word vectors) under ``out``; return the manifest's path.

    ``n`` is the number of images (rows); ``corpus_size`` the number of
    unlabelled tweets the word vectors are learned from; ``image_scale``
    shrinks every picture (0.25: about 125x94 px) for quick runs at scale.
    The same arguments give byte-identical files. A previous demo under
    ``out`` is replaced.
    """
    if n < MIN_IMAGES:
        raise InputError(f"--n must be at least {MIN_IMAGES} (the phases' stratified split needs "
                         f"{MIN_TWEETS_PER_CLASS} tweets of every class), got {n}")
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
                picture = picture.resize((max(1, round(picture.width * image_scale)),
                                          max(1, round(picture.height * image_scale))), Image.Resampling.BILINEAR)
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

    frame = read_manifest(manifest_path, image_root)
    split = draw_split(frame, seed)
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
        "both": test_accuracy(sparse.hstack([text_train, image_train]).tocsr(),
                              sparse.hstack([text_test, image_test]).tocsr()),
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
    print(
        f"demo ready: --manifest {manifest_path} --image-root {args.out} --glove {Path(args.out) / GLOVE_NAME}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
