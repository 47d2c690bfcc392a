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
    ``image_size`` pixels); ``peaks`` holds each map's value before the scaling;
    ``label`` the true class, when the caller knows it.
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
    label: str | None = None  # the true class, where known (the report's test tweets)
    # Where the text has more tokens than a text model reads: {"tokens": all of them, "read": {phase: how many}}.
    text_cut: dict | None = None

    @property
    def predicted_class(self) -> str:
        return self.class_names[self.prediction]


class Explainer:
    """Explains tweets with a loaded run (``models``, a :class:`emorec.predictor.RunModels`); build it once, then
    call :meth:`explain` per tweet."""

    def __init__(self, models):
        import tensorflow as tf

        self.models = models
        self._image_models = {phase: _ImageModel(extractor, network) for phase, extractor, network in (
            ("IER", models.ier_extractor, models.ier_head),
            ("Intermediate_fusion", models.fusion_extractor, models.fusion_network))}
        self._blank = np.broadcast_to(np.array(BLANK_RGB, np.float32), (models.image_size, models.image_size, 3))
        ier_blank, self._fusion_blank = models.image_features(self._blank[None], direct=True)  # for every tweet
        self._ier_blank = np.asarray(models.ier_head(ier_blank, training=False), np.float64)[0]
        # Every model of a tweet's explanation in one graph, traced on the first tweet (seconds) and then run as
        # such (the recurrent text networks run eagerly take most of a second each).
        self._run = tf.function(self._graph)

    def _graph(self, pixels, ter_rows, fusion_rows):
        """Every number of an explanation, as tensors: IER's logits on the image, TER's probabilities on the rows of
        :func:`_text_rows`, the fusion network's on the same rows with the image and then on the text with the blank
        image, the late-fused prediction and each image model's Grad-CAM (before scaling) for it."""
        import tensorflow as tf

        models, ier, fusion = self.models, self._image_models["IER"], self._image_models["Intermediate_fusion"]
        with tf.GradientTape(persistent=True, watch_accessed_variables=False) as tape:  # the image, recorded
            maps = {"IER": ier.features(pixels, tape)}
            maps["Intermediate_fusion"] = maps["IER"] if models.shared_extractor else fusion.features(pixels, tape)
            ier_logits = ier.logits(maps["IER"][1])
            # The fusion network on the rows of _text_rows with the tweet's image, and the text with the blank image
            # appended: one batch, so the whole text and its deletions are scored alike.
            features = maps["Intermediate_fusion"][1]
            fusion_logits = fusion.logits(
                tf.concat([tf.repeat(features, tf.shape(fusion_rows)[0], axis=0),
                           tf.cast(self._fusion_blank, features.dtype)], axis=0),
                tf.concat([fusion_rows, fusion_rows[:1]], axis=0))
        ter = tf.cast(models.ter_network(ter_rows, training=False), tf.float32)
        fusion_probabilities = tf.nn.softmax(fusion_logits)
        weights = tf.constant(models.weights / models.weights.sum(), tf.float32)
        both = weights[0] * ter[0] + weights[1] * tf.nn.softmax(ier_logits[0]) + weights[2] * fusion_probabilities[0]
        prediction = tf.argmax(both)
        choose = tf.one_hot([prediction], tf.shape(both)[0])  # the gradient of the predicted class's logit ...
        cams = {}
        for phase, logits in (("IER", ier_logits), ("Intermediate_fusion", fusion_logits)):
            # ... on the tweet's own row only (the fusion batch's other rows hold no gradient)
            chosen = tf.pad(choose, [[0, tf.shape(logits)[0] - 1], [0, 0]])
            convolution = maps[phase][0]
            gradients = tf.cast(tape.gradient(logits, convolution, output_gradients=chosen), tf.float32)
            channel_weights = tf.reduce_mean(gradients[0], axis=(0, 1))
            cams[phase] = tf.nn.relu(tf.reduce_sum(tf.cast(convolution[0], tf.float32) * channel_weights, axis=-1))
        return {"ier_logits": ier_logits, "ter": ter, "fusion": fusion_probabilities, "prediction": prediction,
                "cams": cams}

    def warm_up(self) -> None:
        """Trace the explanation's graph now (a few seconds), on an empty tweet, so the first real one is quick."""
        self.explain("", self._blank)

    def explain(self, text: str, pixels: np.ndarray, image: str = "") -> Explanation:
        """Explain the tweet ``text`` with the image ``pixels`` ((size, size, 3) RGB, 0-255, as
        :func:`emorec.images.load_image` gives them); ``image`` names the image in the outputs."""
        models = self.models
        (ter_ids,), (fusion_ids,) = models.token_ids([text])
        # Every row a text model needs, in one batch each: the text, the empty text (the image alone), and the text
        # with each token deleted (as many rows as the sequence is long, past the tokens all padding).
        out = self._run(np.asarray(pixels, np.float32)[None], _text_rows(ter_ids), _text_rows(fusion_ids))
        ter, fusion = np.asarray(out["ter"], np.float64), np.asarray(out["fusion"], np.float64)
        ier = _softmax(out["ier_logits"])
        # Per member: both modalities, the text alone (the blank image), the image alone (the empty text).
        members = {
            "TER": np.stack([ter[0], ter[0], ter[1]]),
            "IER": np.stack([ier, self._ier_blank, ier]),
            "Intermediate_fusion": np.stack([fusion[0], fusion[-1], fusion[1]]),
        }
        modalities = dict(zip(MODALITIES, models.fuse(members)))
        prediction = int(out["prediction"])  # the class the heat maps are for: the fused one, computed in float32
        probabilities = {phase: members[phase][0] for phase in MEMBERS} | {"Late_fusion": modalities["both"]}

        tokens = _tokens(text)
        read = {"TER": len(ter_ids), "Intermediate_fusion": len(fusion_ids)}  # each vectorizer's --seq-len
        text_cut = {"tokens": len(tokens), "read": read} if len(tokens) > min(read.values()) else None
        words = {}
        for phase, ids, deleted in (("TER", ter_ids, ter[2:]), ("Intermediate_fusion", fusion_ids, fusion[2:-1])):
            count = int(np.count_nonzero(ids))
            words[phase] = (_shown_tokens(tokens, ids, count, models, phase),
                            probabilities[phase][prediction] - deleted[:count, prediction])
        heat_maps, peaks = {}, {}
        for phase in HEAT_MODELS:
            cam = np.asarray(out["cams"][phase], np.float64)
            peaks[phase] = float(cam.max())
            heat_maps[phase] = cam / peaks[phase] if peaks[phase] > 0 else cam
        return Explanation(text=text, image=image, class_names=models.class_names, prediction=prediction,
                           probabilities=probabilities, modalities=modalities, words=words, heat_maps=heat_maps,
                           peaks=peaks, heat_layer=self._image_models["IER"].layer_name,
                           pixels=np.asarray(pixels).astype(np.uint8), text_cut=text_cut)


class _ImageModel:
    """A frozen extractor (preprocess layer, then a backbone model) and the network on its features, taken apart
    for Grad-CAM: the backbone's last convolution's maps, and the network's logits (before the softmax)."""

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

    def features(self, pixels, tape):
        """(last convolution's maps, features) of ``pixels`` (1, size, size, 3), recorded on ``tape`` (the backbone
        is frozen: without watching its input the tape records none of its operations)."""
        x = self.preprocess(pixels)
        tape.watch(x)
        maps, features = self.maps_and_features(x, training=False)
        return maps, features

    def logits(self, features, token_ids=None):
        """The network's class logits (rows, classes), float32, on ``features`` (and ``token_ids`` for a fusion
        network)."""
        import tensorflow as tf

        inputs = {"token_ids": token_ids, "image_features": features} if self.fusion else features
        hidden = tf.cast(self.hidden(inputs, training=False), tf.float32)
        return tf.matmul(hidden, tf.cast(self.kernel, tf.float32)) + tf.cast(self.bias, tf.float32)


def _text_rows(ids: np.ndarray) -> np.ndarray:
    """Token-id rows: ``ids``, the empty text (all padding), then ``ids`` with each position deleted in turn (the
    later tokens move up one place, padding after; rows past the text's tokens are all padding)."""
    rows = np.zeros((2 + len(ids), len(ids)), np.int32)
    rows[0] = ids
    for i in range(int(np.count_nonzero(ids))):
        rows[2 + i, : len(ids) - 1] = np.delete(ids, i)
    return rows


def _softmax(logits) -> np.ndarray:
    logits = np.asarray(logits, np.float64)[0]
    exp = np.exp(logits - logits.max())
    return exp / exp.sum()


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
        "prediction": explanation.predicted_class, **({"label": explanation.label} if explanation.label is not None else {}),
        "text_cut": explanation.text_cut,
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
    truth = f", true class: {explanation.label}" if explanation.label is not None else ""
    figure.suptitle(f"prediction: {explanation.predicted_class} "
                    f"({explanation.probabilities['Late_fusion'][explanation.prediction]:.2f}){truth}\n{title}",
                    fontsize=11)

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
    axes.set_yticks(range(len(MODALITIES)), ["both", "text alone", "image alone"], fontsize=9)
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


def explain_file(explainer: Explainer, text: str, path: str, stem: Path, image: str = "",
                 label: str | None = None) -> tuple[Explanation, tuple[Path, Path]]:
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
    lines = ["fused probability of {}: both {:.3f}, text alone {:.3f}, image alone {:.3f}".format(
        explanation.predicted_class, *(explanation.modalities[m][c] for m in MODALITIES))]
    if explanation.text_cut:
        lines.append(cut_note(explanation.text_cut))
    for phase, (tokens, importance) in explanation.words.items():
        order = np.argsort(-np.abs(importance), kind="stable")[:top]
        lines.append(f"{_model_name(phase)} words for {explanation.predicted_class}: "
                     + (", ".join(f"{tokens[i]} {importance[i]:+.3f}" for i in order) or "(no tokens)"))
    for phase, cam in explanation.heat_maps.items():
        row, column = np.unravel_index(int(cam.argmax()), cam.shape)
        lines.append(f"{_model_name(phase)} heat map ({cam.shape[0]}x{cam.shape[1]} on {explanation.heat_layer}): "
                     f"hottest cell row {row}, column {column}" + ("" if explanation.peaks[phase] > 0 else " (all zero)"))
    return lines


def cut_note(text_cut: dict) -> str:
    """One sentence saying that a text was cut (``Explanation.text_cut``): how many tokens each model read."""
    read = text_cut["read"]
    counts = (f"the first {read['TER']}" if len(set(read.values())) == 1 else
              f"the first {read['TER']} (TER) and {read['Intermediate_fusion']} (fusion model)")
    return (f"the text was cut: it has {text_cut['tokens']:,} tokens and the text models read only {counts} "
            "(their --seq-len); the words after those change nothing")


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
