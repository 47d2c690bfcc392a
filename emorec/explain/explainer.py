"""The explanation of one tweet's prediction, computed: each model's and the late-fused probabilities, the
modalities' parts, each word's importance by occlusion and each image heat map by Grad-CAM (see
:mod:`emorec.explain`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from emorec.fusion import MEMBERS

WORD_METHOD = (
    "occlusion: importance = the predicted class's probability with the whole text minus with that "
    "word deleted (from the token ids, the later tokens moving up one place; for a pretrained encoder, "
    "from the text, tokenised again)"
)
HEAT_METHOD = (
    "Grad-CAM: the last convolution's feature maps weighted by the mean gradient of the predicted "
    "class's logit, summed, cut at zero and scaled to a peak of 1"
)
OCCLUSION_CELLS = 7  # the image cut into 7x7 cells: VGG16's last feature map at 224 px, a ViT-B/32's patch grid
OCCLUSION_METHOD = (
    f"occlusion (a KerasHub transformer, such as a ViT): the predicted class's probability with the "
    f"whole image minus with one of {OCCLUSION_CELLS}x{OCCLUSION_CELLS} cells blanked to the blank "
    "image's colour, cut at zero and scaled to a peak of 1"
)
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
    heat_method: str = HEAT_METHOD
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
        self._image_models = {
            phase: _ImageModel(extractor, network)
            for phase, extractor, network in (
                ("IER", models.ier_extractor, models.ier_head),
                ("Intermediate_fusion", models.fusion_extractor, models.fusion_network),
            )
        }
        self._blank = np.broadcast_to(np.array(BLANK_RGB, np.float32), (models.image_size, models.image_size, 3))
        self._cells = occlusion_masks(models.image_size, OCCLUSION_CELLS)
        ier_blank, self._fusion_blank = models.image_features(self._blank[None], direct=True)  # for every tweet
        self._ier_blank = np.asarray(models.ier_head(ier_blank, training=False), np.float64)[0]
        # Every model of a tweet's explanation in one graph, traced on the first tweet (seconds) and then run as
        # such (the recurrent text networks run eagerly take most of a second each).
        self._run = tf.function(self._graph)

    def _graph(self, pixels, ter_rows, fusion_rows):
        """Every number of an explanation, as tensors: IER's logits on the image, TER's probabilities on its
        deletion rows (:class:`emorec.text_readers.TextRows`), the fusion network's on its rows with the image and
        then on the text with the blank image, the late-fused prediction and each image model's Grad-CAM, or
        occlusion map for a KerasHub backbone (before scaling), for it."""
        import tensorflow as tf

        models, ier, fusion = self.models, self._image_models["IER"], self._image_models["Intermediate_fusion"]
        with tf.GradientTape(persistent=True, watch_accessed_variables=False) as tape:  # the image, recorded
            maps = {"IER": ier.features(pixels, tape)}
            maps["Intermediate_fusion"] = maps["IER"] if models.shared_extractor else fusion.features(pixels, tape)
            ier_logits = ier.logits(maps["IER"][1])
            # The fusion network on the deletion rows with the tweet's image, and the text with the blank image
            # appended: one batch, so the whole text and its deletions are scored alike.
            features = maps["Intermediate_fusion"][1]
            text_rows = tf.nest.map_structure(lambda rows: tf.concat([rows, rows[:1]], axis=0), fusion_rows)
            fusion_logits = fusion.logits(
                tf.concat(
                    [
                        tf.repeat(features, tf.shape(tf.nest.flatten(fusion_rows)[0])[0], axis=0),
                        tf.cast(self._fusion_blank, features.dtype),
                    ],
                    axis=0,
                ),
                models.fusion_reader.fusion_inputs(text_rows),
            )
        ter = tf.cast(models.ter_network(ter_rows, training=False), tf.float32)
        fusion_probabilities = tf.nn.softmax(fusion_logits)
        weights = tf.constant(models.weights["both"] / models.weights["both"].sum(), tf.float32)
        both = weights[0] * ter[0] + weights[1] * tf.nn.softmax(ier_logits[0]) + weights[2] * fusion_probabilities[0]
        prediction = tf.argmax(both)
        choose = tf.one_hot([prediction], tf.shape(both)[0])  # the gradient of the predicted class's logit ...
        cams, occluded = {}, {}
        for phase, logits in (("IER", ier_logits), ("Intermediate_fusion", fusion_logits)):
            if self._image_models[phase].occlusion:
                extractor = "IER" if models.shared_extractor else phase  # one batch of blanked images for both
                if extractor not in occluded:
                    occluded[extractor] = self._occluded_features(extractor, pixels)
                cams[phase] = self._occlusion(phase, occluded[extractor], logits[0], fusion_rows, prediction)
                continue
            # ... on the tweet's own row only (the fusion batch's other rows hold no gradient)
            chosen = tf.pad(choose, [[0, tf.shape(logits)[0] - 1], [0, 0]])
            convolution = maps[phase][0]
            gradients = tf.cast(tape.gradient(logits, convolution, output_gradients=chosen), tf.float32)
            channel_weights = tf.reduce_mean(gradients[0], axis=(0, 1))
            cams[phase] = tf.nn.relu(tf.reduce_sum(tf.cast(convolution[0], tf.float32) * channel_weights, axis=-1))
        return {
            "ier_logits": ier_logits,
            "ter": ter,
            "fusion": fusion_probabilities,
            "prediction": prediction,
            "cams": cams,
        }

    def _occluded_features(self, phase: str, pixels):
        """``phase``'s extractor on the image with each cell blanked: one batch of one image per cell."""
        import tensorflow as tf

        cells = self._cells
        occluded = tf.where(cells, tf.constant(self._blank[None]), tf.repeat(pixels, cells.shape[0], axis=0))
        return self._image_models[phase].extractor(occluded, training=False)

    def _occlusion(self, phase: str, features, logits, fusion_rows, prediction):
        """The drop in ``phase``'s probability of ``prediction`` (from its ``logits`` on the whole image) when each
        cell of the image is blanked (``features``: :meth:`_occluded_features`), cut at zero: (cells, cells)."""
        import tensorflow as tf

        model, cells = self._image_models[phase], self._cells
        if model.fusion:
            text = tf.nest.map_structure(lambda rows: tf.repeat(rows[:1], cells.shape[0], axis=0), fusion_rows)
            occluded_logits = model.logits(features, self.models.fusion_reader.fusion_inputs(text))
        else:
            occluded_logits = model.logits(features)
        whole = tf.nn.softmax(logits)[prediction]
        drop = whole - tf.gather(tf.nn.softmax(occluded_logits), prediction, axis=1)
        return tf.reshape(tf.nn.relu(drop), (OCCLUSION_CELLS, OCCLUSION_CELLS))

    def warm_up(self) -> None:
        """Trace the explanation's graph now (a few seconds), on an empty tweet, so the first real one is quick."""
        self.explain("", self._blank)

    def explain(self, text: str, pixels: np.ndarray, image: str = "") -> Explanation:
        """Explain the tweet ``text`` with the image ``pixels`` ((size, size, 3) RGB, 0-255, as
        :func:`emorec.images.load_image` gives them); ``image`` names the image in the outputs."""
        models = self.models
        # Every row a text model needs, in one batch each: the text, the empty text (the image alone), and the text
        # with each word deleted (as many rows as the sequence is long, past the words padding).
        ter_rows, fusion_rows = models.ter_reader.deletion_rows(text), models.fusion_reader.deletion_rows(text)
        out = self._run(np.asarray(pixels, np.float32)[None], ter_rows.rows, fusion_rows.rows)
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

        read = {"TER": ter_rows.read, "Intermediate_fusion": fusion_rows.read}  # each text model's --seq-len
        text_cut = {"tokens": ter_rows.tokens, "read": read} if ter_rows.tokens > min(read.values()) else None
        words = {}
        for phase, rows, deleted in (("TER", ter_rows, ter[2:]), ("Intermediate_fusion", fusion_rows, fusion[2:-1])):
            count = len(rows.words)
            words[phase] = (rows.words, probabilities[phase][prediction] - deleted[:count, prediction])
        heat_maps, peaks = {}, {}
        for phase in HEAT_MODELS:
            cam = np.asarray(out["cams"][phase], np.float64)
            peaks[phase] = float(cam.max())
            heat_maps[phase] = cam / peaks[phase] if peaks[phase] > 0 else cam
        return Explanation(
            text=text,
            image=image,
            class_names=models.class_names,
            prediction=prediction,
            probabilities=probabilities,
            modalities=modalities,
            words=words,
            heat_maps=heat_maps,
            peaks=peaks,
            heat_layer=self._image_models["IER"].layer_name,
            pixels=np.asarray(pixels).astype(np.uint8),
            text_cut=text_cut,
            heat_method=OCCLUSION_METHOD if self._image_models["IER"].occlusion else HEAT_METHOD,
        )


def occlusion_masks(image_size: int, cells: int) -> np.ndarray:
    """(cells², size, size, 1) booleans: mask ``k`` is True on cell ``k`` (row ``k // cells``, column
    ``k % cells``) of an image cut into ``cells`` x ``cells`` nearly equal cells."""
    edges = np.arange(cells + 1) * image_size // cells
    masks = np.zeros((cells * cells, image_size, image_size, 1), bool)
    for k in range(cells * cells):
        row, column = divmod(k, cells)
        masks[k, edges[row] : edges[row + 1], edges[column] : edges[column + 1]] = True
    return masks


class _ImageModel:
    """A frozen extractor (preprocess layer, then a backbone model) and the network on its features, taken apart
    for Grad-CAM: the backbone's last convolution's maps (a KerasHub CNN's: its last feature map), and the network's
    logits (before the softmax). A KerasHub backbone without a feature map (:class:`emorec.image_encoders.
    HubVisionModel`: a ViT, CLIP's tower) is explained by occlusion (``occlusion``)."""

    def __init__(self, extractor, network):
        import keras

        backbone = next(layer for layer in extractor.layers if isinstance(layer, keras.Model))
        from emorec.image_encoders import HubVisionModel, convolutional_maps

        convolutions = [layer for layer in backbone.layers if isinstance(layer, keras.layers.Conv2D)]
        hub = isinstance(backbone, HubVisionModel)
        hub_maps = convolutional_maps(backbone) if hub else None
        self.extractor, self.preprocess = extractor, extractor.get_layer("preprocess")
        self.occlusion = hub_maps is None if hub else not convolutions
        if self.occlusion:
            self.layer_name = f"{OCCLUSION_CELLS}x{OCCLUSION_CELLS} image cells (occlusion)"
        elif hub_maps is not None:  # a KerasHub CNN: its last feature map, the convolutions inside its own layers
            self.layer_name, self.maps_and_features = hub_maps
        else:
            self.layer_name = convolutions[-1].name
            self.maps_and_features = keras.Model(backbone.inputs, [convolutions[-1].output, backbone.output])
        self.fusion = isinstance(network.input, dict)
        if self.fusion and "fusion_head" in [layer.name for layer in network.layers]:
            # A pretrained encoder's fusion network: the text encoder, then the head, each a model of its own.
            inputs, head_model = network.input, network.get_layer("fusion_head")
            head = head_model.get_layer("probabilities")
            hidden_head = keras.Model(head_model.input, head.input)
            tokens = {name: tensor for name, tensor in inputs.items() if name != "image_features"}
            text_features = network.get_layer("text_encoder")(tokens)
            self.hidden = keras.Model(
                inputs, hidden_head({"text_features": text_features, "image_features": inputs["image_features"]})
            )
        else:
            head = network.get_layer("probabilities")
            self.hidden = keras.Model(network.input, head.input)
        self.kernel, self.bias = head.kernel, head.bias

    def features(self, pixels, tape):
        """(last convolution's maps, features) of ``pixels`` (1, size, size, 3), recorded on ``tape`` (the backbone
        is frozen: without watching its input the tape records none of its operations)."""
        if self.occlusion:
            return None, self.extractor(pixels, training=False)
        x = self.preprocess(pixels)
        tape.watch(x)
        maps, features = self.maps_and_features(x, training=False)
        return maps, features

    def logits(self, features, text=None):
        """The network's class logits (rows, classes), float32, on ``features`` (and, for a fusion network, the
        text's inputs as a dict: ``{"token_ids": ...}`` or an encoder's token arrays)."""
        import tensorflow as tf

        inputs = {**text, "image_features": features} if self.fusion else features
        hidden = tf.cast(self.hidden(inputs, training=False), tf.float32)
        return tf.matmul(hidden, tf.cast(self.kernel, tf.float32)) + tf.cast(self.bias, tf.float32)


def _softmax(logits) -> np.ndarray:
    logits = np.asarray(logits, np.float64)[0]
    exp = np.exp(logits - logits.max())
    return exp / exp.sum()


def model_name(phase: str) -> str:
    """The short name of a phase in a picture or a line of text."""
    return {"TER": "TER", "IER": "IER", "Intermediate_fusion": "fusion", "Late_fusion": "late fusion"}[phase]
