"""The picture of an explanation: the image with each heat map, the words coloured by importance, bars of the
probabilities."""

from __future__ import annotations

import io

import numpy as np

from emorec.explain.explainer import HEAT_MODELS, MODALITIES, WORD_MODELS, Explanation, model_name
from emorec.explain.fonts import drawable, families
from emorec.fusion import MEMBERS


def draw(explanation: Explanation, original=None):
    """The explanation as one matplotlib Figure: the image (``original``, a PIL image, or the pixels the model saw)
    with IER's and the fusion model's heat maps, the words coloured by importance, bars of the probabilities."""
    from matplotlib.figure import Figure

    shown = np.asarray(original.convert("RGB")) if original is not None else explanation.pixels
    figure = Figure(figsize=(12, 8.2), dpi=100)
    grid = figure.add_gridspec(3, 3, height_ratios=[3.2, 1.6, 2.2], hspace=0.4, wspace=0.25)
    title = explanation.text if len(explanation.text) <= 110 else explanation.text[:107] + "..."
    truth = f", true class: {explanation.label}" if explanation.label is not None else ""
    figure.suptitle(
        f"prediction: {explanation.predicted_class} "
        f"({explanation.probabilities['Late_fusion'][explanation.prediction]:.2f}){truth}\n"
        + drawable(title, "DejaVu Sans"),
        fontsize=11,
        family=families("DejaVu Sans"),
    )

    _draw_images(figure, grid, explanation, shown)
    _draw_words(figure.add_subplot(grid[1, :]), explanation)
    _draw_probabilities(figure.add_subplot(grid[2, :2]), explanation)
    _draw_modalities(figure.add_subplot(grid[2, 2]), explanation)
    return figure


def _draw_images(figure, grid, explanation: Explanation, shown: np.ndarray) -> None:
    """The image, then each heat model's map over it, along the grid's first row."""
    axes = figure.add_subplot(grid[0, 0])
    axes.imshow(shown)
    axes.set_title("image", fontsize=10)
    axes.axis("off")
    for column, phase in enumerate(HEAT_MODELS, start=1):
        axes = figure.add_subplot(grid[0, column])
        axes.imshow(shown)
        heat = _resized(explanation.heat_maps[phase], shown.shape[1], shown.shape[0])
        axes.imshow(heat, cmap="jet", alpha=0.45, vmin=0, vmax=1)
        method = "occlusion" if explanation.heat_method.startswith("occlusion") else "Grad-CAM"
        axes.set_title(f"{model_name(phase)}: {method} for {explanation.predicted_class}", fontsize=10)
        axes.axis("off")


def _draw_words(axes, explanation: Explanation) -> None:
    """Each word model's words, as chips coloured by their importance for the predicted class."""
    from matplotlib import colormaps
    from matplotlib.colors import TwoSlopeNorm

    axes.axis("off")
    scale = max([float(np.abs(v).max()) for _, v in explanation.words.values() if len(v)] + [1e-6])
    norm, cmap = TwoSlopeNorm(0.0, -scale, scale), colormaps["RdBu_r"]
    axes.set_title(
        f"words: importance for {explanation.predicted_class} by occlusion "
        f"(red for, blue against; strongest {scale:.3f})",
        fontsize=10,
    )
    shown = {
        phase: ([drawable(t, "DejaVu Sans Mono") for t in tokens], v)
        for phase, (tokens, v) in explanation.words.items()
    }
    lines = [(phase, line) for phase in WORD_MODELS for line in _wrapped(*shown[phase])]
    for number, (phase, line) in enumerate(lines):
        y = 1.0 - (number + 0.5) / max(len(lines), 3)
        if number == 0 or lines[number - 1][0] != phase:
            axes.text(0.0, y, f"{model_name(phase)}:", fontsize=9, ha="left", va="center", transform=axes.transAxes)
        for x, token, value in line:
            colour = cmap(norm(value))
            axes.text(
                x,
                y,
                token,
                fontsize=9,
                family=families("DejaVu Sans Mono"),
                color=text_colour(colour),
                ha="left",
                va="center",
                transform=axes.transAxes,
                bbox={"boxstyle": "round,pad=0.2", "facecolor": colour, "edgecolor": "none"},
            )


def text_colour(background) -> str:
    """Black or white, whichever reads better on ``background`` (an RGB(A) colour, 0-1): white below a relative
    luminance (WCAG's, of the linear sRGB channels) of 0.18, where white's contrast is the higher."""
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in background[:3]]
    luminance = 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]
    return "white" if luminance < 0.18 else "black"


def _draw_probabilities(axes, explanation: Explanation) -> None:
    """Bars of each member's and the late fusion's probabilities, per class."""
    names = explanation.class_names
    models = [*MEMBERS, "Late_fusion"]
    width = 0.8 / len(models)
    for k, phase in enumerate(models):
        axes.bar(
            np.arange(len(names)) + (k - (len(models) - 1) / 2) * width,
            explanation.probabilities[phase],
            width,
            label=model_name(phase),
        )
    axes.set_xticks(range(len(names)), names)
    axes.set_ylim(0, 1)
    axes.set_ylabel("probability")
    axes.set_title("each model's probabilities", fontsize=10)
    axes.legend(fontsize=8, ncols=2)


def _draw_modalities(axes, explanation: Explanation) -> None:
    """The late-fused probability of the predicted class from both modalities, the text alone, the image alone."""
    shares = [explanation.modalities[m][explanation.prediction] for m in MODALITIES]
    bars = axes.barh(range(len(MODALITIES)), shares, color=["#555555", "#c44e52", "#4c72b0"])
    axes.bar_label(bars, fmt="%.2f", padding=3, fontsize=9)
    axes.set_yticks(range(len(MODALITIES)), ["both", "text alone", "image alone"], fontsize=9)
    axes.invert_yaxis()
    axes.set_xlim(0, 1.15)  # room for a number right of a bar at 1
    axes.set_xticks([0, 0.25, 0.5, 0.75, 1])
    axes.set_xlabel(f"late-fused probability of {explanation.predicted_class}")
    axes.set_title("modalities", fontsize=10)


def png_bytes(explanation: Explanation, original=None) -> bytes:
    """:func:`draw`'s picture as PNG bytes."""
    buffer = io.BytesIO()
    draw(explanation, original).savefig(buffer, format="png")
    return buffer.getvalue()


def _wrapped(
    tokens: list[str], importance: np.ndarray, start: float = 0.08, end: float = 1.0, per_character: float = 0.0085
) -> list[list[tuple[float, str, float]]]:
    """The tokens laid out in lines across the axes (monospace): each line a list of (x, token, importance)."""
    lines, line, x = [], [], start
    for token, value in zip(tokens, importance):
        width = per_character * (len(token) + 1.5)
        if line and x + width > end:
            lines.append(line)
            line, x = [], start
        line.append((x, token, float(value)))
        x += width
    return lines + [line] if line or not lines else lines


def _resized(cam: np.ndarray, width: int, height: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(
        Image.fromarray(cam.astype(np.float32), mode="F").resize((width, height), Image.Resampling.BILINEAR)
    )
