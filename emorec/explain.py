"""Why a tweet got its prediction: modality contributions, word importance and image heat maps.

For one tweet (a text and an image) and a run's models (:class:`emorec.predictor.RunModels`),
:meth:`Explainer.explain` gives:

- **probabilities**: TER's, IER's and the intermediate fusion's, and the late-fused ones (the run's weights);
- **modalities**: the late-fused prediction with both modalities, with the text alone and with the image alone.
  A modality is taken away by giving every model its empty form: the text becomes the empty text (token ids
  all padding), the image a blank image of ImageNet's mean colour (:data:`BLANK_RGB`, which VGG16's and
  ResNet50's ``preprocess_input`` turn into zeros). TER scores the text whatever the image, IER the image
  whatever the text; the fusion model sees both;
- **words**: for TER and for the fusion model, each token's importance for the predicted class by
  *occlusion* (:data:`WORD_METHOD`): the predicted class's probability with the whole text, minus the
  same with that token deleted from the vectorizer's token ids (the tokens after it move up one place, as if
  the word were not in the tweet). Positive: the word speaks for the predicted class;
- **heat maps**: for IER and for the fusion model, *Grad-CAM* (:data:`HEAT_METHOD`) on the backbone's last
  convolution: the feature maps weighted by the mean gradient of the predicted class's logit (before the
  softmax), summed over channels, negative values cut to zero and scaled so the hottest cell is 1.

The predicted class is the late-fused one throughout. :func:`draw` makes the one picture of it all (the image
with each heat map, the words coloured by importance, bars of the probabilities), :func:`to_json` its JSON.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emorec.fusion import MEMBERS

WORD_METHOD = ("occlusion: importance = the predicted class's probability with the whole text minus with that "
               "token deleted from the token ids (the later tokens move up one place)")
HEAT_METHOD = ("Grad-CAM: the last convolution's feature maps weighted by the mean gradient of the predicted "
               "class's logit, summed, cut at zero and scaled to a peak of 1")
BLANK_RGB = (123.68, 116.779, 103.939)  # ImageNet's mean pixel: what an image without content is, to the backbone
MODALITIES = ("both", "text_only", "image_only")
HEAT_MODELS = ("IER", "Intermediate_fusion")
WORD_MODELS = ("TER", "Intermediate_fusion")


@dataclass
class Explanation:
    """One tweet's explanation; see the module's docstring for each part.

    ``probabilities`` and ``modalities`` map a name to (classes,) float arrays;
    ``words`` maps TER and Intermediate_fusion to (their tokens, importance
    per token); ``heat_maps`` maps IER and Intermediate_fusion to a (h, w)
    array in [0, 1] over the image as the model saw it (a square of
    ``image_size`` pixels); ``peaks`` holds each map's value before the scaling.
    """

    text: str
    image: str
    class_names: list[str]
    prediction: int
    probabilities: dict
    modalities: dict
    words: dict
    heat_maps: dict
    peaks: dict
    heat_layer: str
    pixels: np.ndarray

    @property
    def predicted_class(self) -> str:
        return self.class_names[self.prediction]


class Explainer:
    """Explains tweets with a loaded run (``models``, a :class:`emorec.predictor.RunModels`); build it once, then
    call :meth:`explain` per tweet."""

    def __init__(self, models):
        self.models = models
        self._cams = {phase: _GradCam(extractor, network) for phase, extractor, network in (
            ("IER", models.ier_extractor, models.ier_head),
            ("Intermediate_fusion", models.fusion_extractor, models.fusion_network))}
        size = models.image_size
        self._blank = np.broadcast_to(np.array(BLANK_RGB, np.float32), (1, size, size, 3)).copy()

    def explain(self, text: str, pixels: np.ndarray, image: str = "") -> Explanation:
        """Explain the tweet ``text`` with the image ``pixels`` ((size, size, 3) RGB, 0-255, as
        :func:`emorec.images.load_image` gives them); ``image`` names the image in the outputs."""
        models = self.models
        pixels = np.asarray(pixels, np.float32)[None]
        (ter_ids,), (fusion_ids,) = models.token_ids([text])
        ier_features, fusion_features = models.image_features(np.concatenate([pixels, self._blank]), direct=True)
        tokens = _tokens(text)

        # Both modalities, the text alone (a blank image) and the image alone (the empty text): one batch per model.
        def rows(ids, features, blank_features):
            return (np.stack([ids, ids, np.zeros_like(ids)]),
                    np.stack([features, blank_features, features]))

        ter_rows, ier_rows = rows(ter_ids, ier_features[0], ier_features[1])
        fusion_id_rows, fusion_feature_rows = rows(fusion_ids, fusion_features[0], fusion_features[1])
        scored = models.score(ter_rows, fusion_id_rows, ier_rows, fusion_feature_rows, direct=True)
        fused = models.fuse(scored)
        modalities = dict(zip(MODALITIES, fused))
        prediction = int(modalities["both"].argmax())
        probabilities = {phase: scored[phase][0] for phase in MEMBERS} | {"Late_fusion": modalities["both"]}

        # Word importance: every one-token deletion of the text at once, per model (as many rows as the sequence is
        # long, the rows past the tokens left at padding: one shape whatever the text).
        words = {}
        for phase, ids in (("TER", ter_ids), ("Intermediate_fusion", fusion_ids)):
            count = int(np.count_nonzero(ids))
            variants = np.zeros((len(ids), len(ids)), np.int32)
            for i in range(count):
                variants[i, : len(ids) - 1] = np.delete(ids, i)
            if phase == "TER":
                p = models.ter_network(variants, training=False)
            else:
                p = models.fusion_network({"token_ids": variants, "image_features": np.repeat(fusion_features[:1],
                                                                                                len(ids), axis=0)},
                                          training=False)
            importance = probabilities[phase][prediction] - np.asarray(p, np.float64)[:count, prediction]
            words[phase] = (_shown_tokens(tokens, ids, count, models, phase), importance)

        heat_maps, peaks = {}, {}
        for phase in HEAT_MODELS:
            heat_maps[phase], peaks[phase] = self._cams[phase](pixels, prediction, fusion_ids[None] if phase != "IER" else None)
        return Explanation(text=text, image=image, class_names=models.class_names, prediction=prediction,
                           probabilities=probabilities, modalities=modalities, words=words, heat_maps=heat_maps,
                           peaks=peaks, heat_layer=self._cams["IER"].layer_name, pixels=pixels[0].astype(np.uint8))


class _GradCam:
    """Grad-CAM for a frozen extractor (preprocess layer, then a backbone model) and the network on its features."""

    def __init__(self, extractor, network):
        import keras

        backbone = next(layer for layer in extractor.layers if isinstance(layer, keras.Model))
        convolution = [layer for layer in backbone.layers if isinstance(layer, keras.layers.Conv2D)][-1]
        self.layer_name = convolution.name
        self.preprocess = extractor.get_layer("preprocess")
        self.maps_and_features = keras.Model(backbone.inputs, [convolution.output, backbone.output])
        head = network.get_layer("probabilities")
        self.hidden = keras.Model(network.input, head.input)
        self.kernel, self.bias = head.kernel, head.bias
        self.fusion = isinstance(network.input, dict)

    def __call__(self, pixels, class_index: int, token_ids=None) -> tuple[np.ndarray, float]:
        """The heat map ((h, w), peak 1, or all zero) of ``pixels`` (1, size, size, 3) for ``class_index``, and its
        peak before scaling; ``token_ids`` (1, length) go with the image to a fusion network."""
        import tensorflow as tf

        x = tf.convert_to_tensor(self.preprocess(tf.constant(pixels)))
        with tf.GradientTape() as tape:
            tape.watch(x)  # the backbone is frozen: without this the tape records none of its operations
            maps, features = self.maps_and_features(x, training=False)
            inputs = {"token_ids": tf.constant(token_ids), "image_features": features} if self.fusion else features
            hidden = tf.cast(self.hidden(inputs, training=False), tf.float32)
            logit = tf.linalg.matvec(hidden, tf.cast(self.kernel[:, class_index], tf.float32)) + tf.cast(
                self.bias[class_index], tf.float32)
        gradients = tf.cast(tape.gradient(logit, maps), tf.float32)[0]
        channel_weights = tf.reduce_mean(gradients, axis=(0, 1))
        cam = tf.nn.relu(tf.reduce_sum(tf.cast(maps[0], tf.float32) * channel_weights, axis=-1)).numpy().astype(np.float64)
        peak = float(cam.max())
        return (cam / peak if peak > 0 else cam), peak


def _tokens(text: str) -> list[str]:
    from emorec.text import normalise_texts

    return normalise_texts([text])[0].split()


def _shown_tokens(tokens: list[str], ids: np.ndarray, count: int, models, phase: str) -> list[str]:
    """The words of the ``count`` token ids ``ids`` as the tweet wrote them (after normalising); the vocabulary's
    own words should the split ever disagree with the vectorizer's."""
    if len(tokens[:len(ids)]) == count:
        return tokens[:count]
    vectorizer = models.ter_vectorizer if phase == "TER" else models.fusion_vectorizer
    vocabulary = vectorizer.get_vocabulary()
    return [vocabulary[i] for i in ids[:count]]


def to_json(explanation: Explanation) -> dict:
    """The explanation as plain JSON data: probabilities by class name, tokens with their importance, heat maps as
    nested lists (rows of the map, top first), and the methods used."""
    names = explanation.class_names

    def by_class(p):
        return {name: round(float(value), 6) for name, value in zip(names, p)}

    return {
        "text": explanation.text, "image": explanation.image, "class_names": names,
        "prediction": explanation.predicted_class,
        "probabilities": {name: by_class(p) for name, p in explanation.probabilities.items()},
        "modalities": {name: by_class(p) for name, p in explanation.modalities.items()},
        "words": {"method": WORD_METHOD, "class": explanation.predicted_class,
                  **{phase: [{"token": token, "importance": round(float(value), 6)}
                             for token, value in zip(tokens, importance)]
                     for phase, (tokens, importance) in explanation.words.items()}},
        "heat_maps": {"method": HEAT_METHOD, "layer": explanation.heat_layer, "class": explanation.predicted_class,
                      **{phase: {"map": np.round(cam, 4).tolist(), "peak": explanation.peaks[phase]}
                         for phase, cam in explanation.heat_maps.items()}},
    }


def draw(explanation: Explanation, original=None):
    """The explanation as one matplotlib Figure: the image (``original``, a PIL image, or the pixels the model saw)
    with IER's and the fusion model's heat maps, the words coloured by importance, bars of the probabilities."""
    from matplotlib import colormaps
    from matplotlib.colors import TwoSlopeNorm
    from matplotlib.figure import Figure

    names = explanation.class_names
    shown = np.asarray(original.convert("RGB")) if original is not None else explanation.pixels
    figure = Figure(figsize=(12, 8.2), dpi=100)
    grid = figure.add_gridspec(3, 3, height_ratios=[3.2, 1.6, 2.2], hspace=0.4, wspace=0.25)
    title = explanation.text if len(explanation.text) <= 110 else explanation.text[:107] + "..."
    figure.suptitle(f"prediction: {explanation.predicted_class} "
                    f"({explanation.probabilities['Late_fusion'][explanation.prediction]:.2f})\n{title}", fontsize=11)

    axes = figure.add_subplot(grid[0, 0])
    axes.imshow(shown)
    axes.set_title("image", fontsize=10)
    axes.axis("off")
    for column, phase in enumerate(HEAT_MODELS, start=1):
        axes = figure.add_subplot(grid[0, column])
        axes.imshow(shown)
        heat = _resized(explanation.heat_maps[phase], shown.shape[1], shown.shape[0])
        axes.imshow(heat, cmap="jet", alpha=0.45, vmin=0, vmax=1)
        axes.set_title(f"{_model_name(phase)}: Grad-CAM for {explanation.predicted_class}", fontsize=10)
        axes.axis("off")

    axes = figure.add_subplot(grid[1, :])
    axes.axis("off")
    scale = max([float(np.abs(v).max()) for _, v in explanation.words.values() if len(v)] + [1e-6])
    norm, cmap = TwoSlopeNorm(0.0, -scale, scale), colormaps["RdBu_r"]
    axes.set_title(f"words: importance for {explanation.predicted_class} by occlusion "
                   f"(red for, blue against; strongest {scale:.3f})", fontsize=10)
    lines = [(phase, line) for phase in WORD_MODELS for line in _wrapped(*explanation.words[phase])]
    for number, (phase, line) in enumerate(lines):
        y = 1.0 - (number + 0.5) / max(len(lines), 3)
        if number == 0 or lines[number - 1][0] != phase:
            axes.text(0.0, y, f"{_model_name(phase)}:", fontsize=9, ha="left", va="center", transform=axes.transAxes)
        for x, token, value in line:
            axes.text(x, y, token, fontsize=9, family="monospace", ha="left", va="center", transform=axes.transAxes,
                      bbox={"boxstyle": "round,pad=0.2", "facecolor": cmap(norm(value)), "edgecolor": "none"})

    axes = figure.add_subplot(grid[2, :2])
    models = [*MEMBERS, "Late_fusion"]
    width = 0.8 / len(models)
    for k, phase in enumerate(models):
        axes.bar(np.arange(len(names)) + (k - (len(models) - 1) / 2) * width, explanation.probabilities[phase], width,
                 label=_model_name(phase))
    axes.set_xticks(range(len(names)), names)
    axes.set_ylim(0, 1)
    axes.set_ylabel("probability")
    axes.set_title("each model's probabilities", fontsize=10)
    axes.legend(fontsize=8, ncols=2)

    axes = figure.add_subplot(grid[2, 2])
    shares = [explanation.modalities[m][explanation.prediction] for m in MODALITIES]
    axes.barh(range(len(MODALITIES)), shares, color=["#555555", "#c44e52", "#4c72b0"])
    axes.set_yticks(range(len(MODALITIES)), ["both", "text alone", "image alone"])
    axes.invert_yaxis()
    axes.set_xlim(0, 1)
    axes.set_xlabel(f"late-fused probability of {explanation.predicted_class}")
    axes.set_title("modalities", fontsize=10)
    return figure


def png_bytes(explanation: Explanation, original=None) -> bytes:
    """:func:`draw`'s picture as PNG bytes."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Glyph .* missing from font")  # emoji: drawn as a box, still coloured
        draw(explanation, original).savefig(buffer, format="png")
    return buffer.getvalue()


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


def summary_lines(explanation: Explanation, top: int = 5) -> list[str]:
    """A few lines for a terminal: the modalities' fused probability of the prediction, each model's most
    important words, and where each heat map peaks (row, column of its grid)."""
    c = explanation.prediction
    lines = ["fused probability of {}: both {:.3f}, text alone {:.3f}, image alone {:.3f}".format(
        explanation.predicted_class, *(explanation.modalities[m][c] for m in MODALITIES))]
    for phase, (tokens, importance) in explanation.words.items():
        order = np.argsort(-importance)[:top]
        lines.append(f"{_model_name(phase)} words for {explanation.predicted_class}: "
                     + (", ".join(f"{tokens[i]} {importance[i]:+.3f}" for i in order) or "(no tokens)"))
    for phase, cam in explanation.heat_maps.items():
        row, column = np.unravel_index(int(cam.argmax()), cam.shape)
        lines.append(f"{_model_name(phase)} heat map ({cam.shape[0]}x{cam.shape[1]} on {explanation.heat_layer}): "
                     f"hottest cell row {row}, column {column}" + ("" if explanation.peaks[phase] > 0 else " (all zero)"))
    return lines


def choose_examples(labels: np.ndarray, probabilities: np.ndarray, eligible: np.ndarray, count: int) -> list[tuple[int, str]]:
    """The ``count`` rows to explain in a report: per true class, the most confident right prediction and the
    most confident wrong one, then the second most confident of each, and so on, classes in order.

    ``labels`` (n,) true classes, ``probabilities`` (n, classes) a method's, ``eligible`` (n,) the rows to draw
    from (the test rows every model scored). Returns (row index, "right" or "wrong") pairs, at most ``count``.
    """
    predictions, confidence = probabilities.argmax(axis=1), probabilities.max(axis=1)
    queues = []
    for c in range(probabilities.shape[1]):
        for kind, chosen in (("right", predictions == c), ("wrong", predictions != c)):
            rows = np.flatnonzero(eligible & (labels == c) & chosen)
            queues.append([(int(row), kind) for row in rows[np.argsort(-confidence[rows], kind="stable")]])
    picked = []
    for rank in range(max(map(len, queues), default=0)):
        picked += [queue[rank] for queue in queues if rank < len(queue)]
    return picked[:count]


def _wrapped(tokens: list[str], importance: np.ndarray, start: float = 0.08, end: float = 1.0,
             per_character: float = 0.0085) -> list[list[tuple[float, str, float]]]:
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

    return np.asarray(Image.fromarray(cam.astype(np.float32), mode="F").resize((width, height), Image.Resampling.BILINEAR))


def _model_name(phase: str) -> str:
    return {"TER": "TER", "IER": "IER", "Intermediate_fusion": "fusion", "Late_fusion": "late fusion"}[phase]
