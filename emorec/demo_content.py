"""What the demo's tweets and pictures are made of: each class a pair of hidden factors, one shown by each modality.

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
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

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
    "football": "match goal team league keeper penalty striker season coach fans stadium derby referee transfer "
    "kickoff",
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
HANDLES = [
    f"{a}{b}"
    for a in ("news", "the", "real", "mr", "its", "daily", "team", "just")
    for b in ("jay", "ana", "sports", "world", "leo", "mia", "kat", "bot", "max", "zoe")
]


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
    words = [str(rng.choice(FUNCTION_WORDS)) if rng.random() < 0.45 else str(rng.choice(topic)) for _ in range(length)]
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
    hsv = Image.new(
        "HSV", (1, 1), (int(255 * rng.uniform(h0, h1)), int(255 * rng.uniform(s0, s1)), int(255 * rng.uniform(v0, v1)))
    )
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
