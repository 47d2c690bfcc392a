"""An explanation as JSON, as a few lines for a terminal, and as the two files a report or predict.py writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from emorec.explain.explainer import MODALITIES, WORD_METHOD, Explainer, Explanation, model_name
from emorec.explain.figure import png_bytes


def to_json(explanation: Explanation) -> dict:
    """The explanation as plain JSON data: probabilities by class name, tokens with their importance, heat maps as
    nested lists (rows of the map, top first), and the methods used."""
    names = explanation.class_names

    def by_class(p):
        return {name: round(float(value), 6) for name, value in zip(names, p)}

    return {
        "text": explanation.text,
        "image": explanation.image,
        "class_names": names,
        "prediction": explanation.predicted_class,
        **({"label": explanation.label} if explanation.label is not None else {}),
        "text_cut": explanation.text_cut,
        "probabilities": {name: by_class(p) for name, p in explanation.probabilities.items()},
        "modalities": {name: by_class(p) for name, p in explanation.modalities.items()},
        "words": {
            "method": WORD_METHOD,
            "class": explanation.predicted_class,
            **{
                phase: [
                    {"token": token, "importance": round(float(value), 6)} for token, value in zip(tokens, importance)
                ]
                for phase, (tokens, importance) in explanation.words.items()
            },
        },
        "heat_maps": {
            "method": explanation.heat_method,
            "layer": explanation.heat_layer,
            "class": explanation.predicted_class,
            **{
                phase: {"map": np.round(cam, 4).tolist(), "peak": explanation.peaks[phase]}
                for phase, cam in explanation.heat_maps.items()
            },
        },
    }


def write(explanation: Explanation, stem: Path, original=None) -> tuple[Path, Path]:
    """Write ``<stem>.png`` (:func:`draw`) and ``<stem>.json`` (:func:`to_json`) atomically; return both paths."""
    from emorec.fileio import atomic_path, write_json_atomic

    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    png, data = stem.with_name(stem.name + ".png"), stem.with_name(stem.name + ".json")
    with atomic_path(png) as tmp:
        Path(tmp).write_bytes(png_bytes(explanation, original))
    write_json_atomic(data, to_json(explanation))
    return png, data


def explain_file(
    explainer: Explainer, text: str, path: str, stem: Path, image: str = "", label: str | None = None
) -> tuple[Explanation, tuple[Path, Path]]:
    """Explain the tweet ``text`` with the image file ``path`` (readable: see
    :func:`emorec.images.load_image`) and :func:`write` it to ``<stem>.png`` (drawn over the original image) and
    ``<stem>.json``; ``image`` names the image in the outputs, ``label`` is the true class where known. Returns
    the explanation and the two paths."""
    from PIL import Image

    from emorec.images import load_image, upright

    pixels, _ = load_image(path, explainer.models.image_size)
    explanation = explainer.explain(text, pixels, image)
    explanation.label = label
    with Image.open(path) as original:
        return explanation, write(explanation, stem, upright(original))


def summary_lines(explanation: Explanation, top: int = 5) -> list[str]:
    """A few lines for a terminal: the modalities' fused probability of the prediction, each model's most
    important words (by size, each with its sign: for the class or against it), and where each heat map peaks
    (row, column of its grid)."""
    c = explanation.prediction
    lines = [
        "fused probability of {}: both {:.3f}, text alone {:.3f}, image alone {:.3f}".format(
            explanation.predicted_class, *(explanation.modalities[m][c] for m in MODALITIES)
        )
    ]
    if explanation.text_cut:
        lines.append(cut_note(explanation.text_cut))
    for phase, (tokens, importance) in explanation.words.items():
        order = np.argsort(-np.abs(importance), kind="stable")[:top]
        lines.append(
            f"{model_name(phase)} words for {explanation.predicted_class}: "
            + (", ".join(f"{tokens[i]} {importance[i]:+.3f}" for i in order) or "(no tokens)")
        )
    for phase, cam in explanation.heat_maps.items():
        row, column = np.unravel_index(int(cam.argmax()), cam.shape)
        lines.append(
            f"{model_name(phase)} heat map ({cam.shape[0]}x{cam.shape[1]} on {explanation.heat_layer}): "
            f"hottest cell row {row}, column {column}" + ("" if explanation.peaks[phase] > 0 else " (all zero)")
        )
    return lines


def cut_note(text_cut: dict) -> str:
    """One sentence saying that a text was cut (``Explanation.text_cut``): how many tokens each model read."""
    read = text_cut["read"]
    counts = (
        f"the first {read['TER']}"
        if len(set(read.values())) == 1
        else f"the first {read['TER']} (TER) and {read['Intermediate_fusion']} (fusion model)"
    )
    return (
        f"the text was cut: it has {text_cut['tokens']:,} tokens and the text models read only {counts} "
        "(their --seq-len); the words after those change nothing"
    )
