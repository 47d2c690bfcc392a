"""Explanations (issue 18): word importance by occlusion, Grad-CAM heat maps, modality contributions, and the
examples Late_fusion.py --explain picks. On the run the README's phases trained on the demo (``trained``): the
demo's texts carry tone words ("idiots", "memories") and its images carry the light, so the decisive words and
regions of an example are known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from emorec.demo_content import TONE_WORDS
from emorec.explain.examples import choose_examples
from emorec.explain.explainer import BLANK_RGB, HEAT_MODELS
from emorec.fusion import MEMBERS

TONE = set(TONE_WORDS[0]) | set(TONE_WORDS[1])


@pytest.fixture(scope="module")
def explainer(trained):
    from emorec.explain.explainer import Explainer
    from emorec.predictor import RunModels

    return Explainer(RunModels.load(trained / "model_checkpoints"))


@pytest.fixture(scope="module")
def example(trained, explainer):
    """A demo tweet with a tone word among at most 25 tokens, and its image's pixels: (text, pixels, tokens)."""
    from emorec.images import load_image
    from emorec.text import normalise_texts

    demo = trained / "data_t4sa/demo"
    manifest = pd.read_csv(demo / "image_labels.csv", dtype=str, keep_default_na=False)
    for text, image, tokens in zip(manifest["text"], manifest["image"], normalise_texts(manifest["text"])):
        tokens = tokens.split()
        if len(tokens) <= 25 and TONE & set(tokens):
            pixels, ok = load_image(str(demo / image), explainer.models.image_size)
            if ok:
                return text, pixels, tokens
    raise AssertionError("no demo tweet with a tone word")


@pytest.fixture(scope="module")
def full(explainer, example):
    """The example's explanation."""
    text, pixels, _ = example
    return explainer.explain(text, pixels)


def test_word_importance_is_the_change_when_the_decisive_word_is_removed(explainer, example, full):
    _, pixels, tokens = example
    for phase in ("TER", "Intermediate_fusion"):
        shown, importance = full.words[phase]
        assert shown == tokens and len(importance) == len(tokens)
        assert np.abs(importance).max() > 0, f"{phase}: every word's importance is zero"
    decisive = next(i for i, token in enumerate(tokens) if token in TONE)
    without = explainer.explain(" ".join(tokens[:decisive] + tokens[decisive + 1 :]), pixels)
    c = full.prediction
    for phase in ("TER", "Intermediate_fusion"):
        # Occlusion is removal: each model's probability without the word is the one with it, less its importance.
        expected = full.probabilities[phase][c] - full.words[phase][1][decisive]
        assert without.probabilities[phase][c] == pytest.approx(expected, abs=1e-5), phase
        # And the other words' importance changes once it is gone.
        assert without.words[phase][0] == tokens[:decisive] + tokens[decisive + 1 :]
        assert not np.allclose(without.words[phase][1], np.delete(full.words[phase][1], decisive), atol=1e-7), phase


def hot_image(explainer, text, images: list[str], root) -> tuple[np.ndarray, object]:
    """The first of ``images`` whose Grad-CAM map is above zero somewhere for every heat model: (pixels, its
    explanation). A map is legitimately all zero where every gradient-weighted activation is negative, which the
    demo's tiny networks (a 2 x 2 last map) give some images."""
    from emorec.images import load_image

    for image in images:
        pixels, ok = load_image(str(root / image), explainer.models.image_size)
        if not ok:
            continue
        explanation = explainer.explain(text, pixels)
        if all(explanation.peaks[phase] > 0 for phase in HEAT_MODELS):
            return pixels, explanation
    raise AssertionError(f"every heat map is zero on {len(images)} demo images")


def test_heat_maps_are_not_zero_and_change_when_the_hottest_region_is_blanked(explainer, example, trained):
    text = example[0]
    size = explainer.models.image_size
    demo = trained / "data_t4sa/demo"
    images = pd.read_csv(demo / "image_labels.csv", dtype=str, keep_default_na=False)["image"].head(20).tolist()
    pixels, full = hot_image(explainer, text, images, demo)
    for phase in HEAT_MODELS:
        cam = full.heat_maps[phase]
        assert cam.max() == 1 and cam.min() >= 0, phase
    cam = full.heat_maps["IER"]
    row, column = np.unravel_index(int(cam.argmax()), cam.shape)
    height, width = size // cam.shape[0], size // cam.shape[1]
    blanked = pixels.astype(np.float32)
    blanked[row * height : (row + 1) * height, column * width : (column + 1) * width] = BLANK_RGB
    again = explainer.explain(text, blanked)
    # The map is scaled to a peak of 1: on a small map one hot cell may stay the only one, but its raw peak moves.
    moved = abs(again.peaks["IER"] - full.peaks["IER"]) > 1e-6 * full.peaks["IER"]
    assert np.abs(again.heat_maps["IER"] - cam).max() > 1e-3 or moved
    assert np.abs(again.probabilities["IER"] - full.probabilities["IER"]).max() > 1e-6
    assert again.probabilities["TER"] == pytest.approx(full.probabilities["TER"])  # the text model never sees it


def test_modalities_are_the_late_fusion_of_each_model_without_the_other_modality(explainer, example, full):
    _, pixels, _ = example
    np.testing.assert_allclose(full.modalities["both"], full.probabilities["Late_fusion"])
    weights = explainer.models.weights["both"]
    np.testing.assert_allclose(
        full.probabilities["Late_fusion"],
        sum(w * full.probabilities[m] for w, m in zip(weights, MEMBERS)) / weights.sum(),
        atol=1e-9,
    )
    no_text = explainer.explain("", pixels)  # the image alone is the whole prediction for the empty text
    np.testing.assert_allclose(full.modalities["image_only"], no_text.modalities["both"], atol=1e-6)
    assert no_text.words["TER"][0] == [] and len(no_text.words["TER"][1]) == 0


def test_the_report_picks_the_most_confident_right_and_wrong_per_class_in_turn():
    labels = np.array([0, 0, 0, 1, 1, 1])
    probabilities = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.3, 0.7], [0.95, 0.05], [0.1, 0.9]])
    eligible = np.array([True, True, True, True, True, False])  # the last row: not a test row, or a member failed
    assert choose_examples(labels, probabilities, eligible, 10) == [
        (0, "right"),
        (2, "wrong"),
        (3, "right"),
        (4, "wrong"),
        (1, "right"),
    ]
    assert choose_examples(labels, probabilities, eligible, 2) == [(0, "right"), (2, "wrong")]


def test_the_console_summary_lists_the_strongest_words_by_size_with_their_sign():
    from types import SimpleNamespace

    from emorec.explain.output import summary_lines

    explanation = SimpleNamespace(
        prediction=3,
        predicted_class="anger",
        heat_maps={},
        heat_layer="block5_conv3",
        peaks={},
        text_cut=None,
        modalities={m: np.full(4, 0.25) for m in ("both", "text_only", "image_only")},
        words={
            "TER": (
                ["angry", "at", "this", "useless", "phone", "ok"],
                np.array([0.053, 0.010, -0.001, -0.065, 0.002, -0.020]),
            )
        },
    )
    words = summary_lines(explanation, top=3)[1]
    assert words == "TER words for anger: useless -0.065, angry +0.053, ok -0.020"


def test_the_picture_draws_emoji_or_their_names_reads_on_dark_chips_and_numbers_the_modalities(
    explainer, example, monkeypatch
):
    """Issue 45: an emoji no installed font has is written as its name (never an empty box: no missing-glyph
    warning); the strongest word's chip, the darkest, has white text; each modality bar carries its number."""
    import io
    import warnings

    from matplotlib import colormaps

    from emorec.explain import fonts
    from emorec.explain.figure import draw, text_colour

    monkeypatch.setattr(fonts, "installed_emoji_fonts", lambda: ())  # as on a system without an emoji font
    assert fonts.drawable("sad \U0001f494 \u2665\ufe0f", "DejaVu Sans Mono") == "sad :broken heart: \u2665"
    text, pixels, _ = example
    explanation = explainer.explain(text + " \U0001f494", pixels)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib warns "Glyph ... missing from font" where it draws a box
        figure = draw(explanation)
        figure.savefig(io.BytesIO(), format="png")
    assert ":broken heart:" in figure._suptitle.get_text()
    chips = [t for axes in figure.axes for t in axes.texts if t.get_bbox_patch() is not None]
    assert ":broken heart:" in {chip.get_text() for chip in chips}
    darkest = min(chips, key=lambda chip: sum(chip.get_bbox_patch().get_facecolor()[:3]))
    assert darkest.get_color() == "white" and text_colour(colormaps["RdBu_r"](0.5)) == "black"
    (modalities,) = [axes for axes in figure.axes if axes.get_title() == "modalities"]
    shown = {t.get_text() for t in modalities.texts}
    assert shown == {f"{explanation.modalities[m][explanation.prediction]:.2f}" for m in explanation.modalities}
