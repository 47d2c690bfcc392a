"""The zero-label baseline: a CLIP-style model (an image tower and a text tower trained together) scores each post
against one prompt per class, with no training label at all.

Each class has a prompt (or a few, whose embeddings are averaged), in a JSON
file the user can edit: :data:`DEFAULT_PROMPTS` holds the defaults for the
IIT-R TIER emotions (happy, sad, hate, anger) and B-T4SA's sentiments
(negative, neutral, positive). A post's image and its text are each embedded
by the model, and compared with the prompts' embeddings by cosine similarity
times the model's own learnt logit scale; a softmax over the classes gives
probabilities:

- ``ZeroShot_image``: the image against the prompts (CLIP's zero-shot classification);
- ``ZeroShot_text``: the post's text against the prompts, both through the text tower;
- ``ZeroShot_both``: the mean of the two.

Only test rows are scored (nothing is chosen on validation). The image
embeddings come from the feature store: IER's own when IER ran on the same
preset with ``--pooling embedding`` (its stored vectors are the model's image
embeddings), else a store of their own beside IER's, filled here.

KerasHub is optional (``Requirements-hub.txt``); presets are loaded only when a zero-label row is asked for.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emorec.errors import InputError

log = logging.getLogger("emorec")

DEFAULT_PROMPTS = Path(__file__).with_name("zero_shot_prompts.json")
ZERO_SHOT_NAMES = {
    "ZeroShot_image": "Zero labels: CLIP image vs class prompts",
    "ZeroShot_text": "Zero labels: CLIP text vs class prompts",
    "ZeroShot_both": "Zero labels: CLIP image and text",
}
ZERO_SHOT_PROB_FILES = {name: f"zero_shot_{name.removeprefix('ZeroShot_')}_prob.csv" for name in ZERO_SHOT_NAMES}
# The architectures with an image tower and a text tower in one embedding space, and their text preprocessors.
TEXT_PREPROCESSORS = {"CLIPBackbone": "CLIPPreprocessor", "SigLIPBackbone": "SigLIPPreprocessor"}


def read_prompts(path: str | Path, class_names: Sequence[str]) -> dict[str, list[str]]:
    """The prompts of ``class_names`` from the JSON file ``path`` (an object: class name -> a prompt or a list of
    prompts; other classes in it are left aside). Raises :class:`InputError` when the file cannot be read or lacks
    a class."""
    try:
        found = json.loads(Path(path).read_text(encoding="utf-8"))
        if not isinstance(found, dict):
            raise ValueError("not a JSON object of class name -> prompt")
    except (OSError, ValueError) as error:
        raise InputError(
            f"--prompts {path}: cannot be read ({error}); it holds a JSON object of class name -> "
            f"prompt or list of prompts, as {DEFAULT_PROMPTS.name} does"
        ) from error
    missing = [name for name in class_names if not found.get(name)]
    if missing:
        raise InputError(
            f"--prompts {path} has no prompt for {', '.join(missing)}: add one per class (copy "
            f"{DEFAULT_PROMPTS} and edit it)"
        )
    return {
        name: [found[name]] if isinstance(found[name], str) else [str(p) for p in found[name]] for name in class_names
    }


def has_text_tower(preset: str) -> bool:
    """Whether ``preset`` is a CLIP-style model (its configuration read, no weights loaded); False when it cannot be
    read or is not one."""
    from emorec.presets import import_keras_hub, is_local, preset_location

    if is_local(preset) and not Path(preset).expanduser().is_dir():
        return False
    import_keras_hub()
    from keras_hub.src.utils.preset_utils import get_preset_loader

    try:
        return get_preset_loader(preset_location(preset)).check_backbone_class().__name__ in TEXT_PREPROCESSORS
    except Exception:  # not a preset KerasHub can read
        return False


@dataclass
class ZeroShotModel:
    """A CLIP-style preset loaded for zero-label scoring: its ``backbone`` (both towers), its text ``preprocessor``
    and its ``logit_scale`` (the learnt temperature, exponentiated)."""

    preset: str
    backbone: object
    preprocessor: object
    logit_scale: float
    _text_tower: object = None

    def text_embeddings(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """Each text's embedding through the text tower, unit length: (n, dim) float32."""
        import keras
        import tensorflow as tf

        if self._text_tower is None:
            tokens = keras.Input(shape=(None,), dtype="int32", name="token_ids")
            self._text_tower = keras.Model(tokens, self.backbone.get_text_embeddings(tokens))
        embed, parts = self._text_tower, []
        bar = keras.utils.Progbar(len(texts), unit_name="text") if len(texts) > batch_size else None
        for start in range(0, len(texts), batch_size):
            batch = tf.constant([str(text) for text in texts[start : start + batch_size]])
            token_ids = self.preprocessor({"images": None, "prompts": batch})["token_ids"]
            parts.append(np.asarray(embed.predict_on_batch(token_ids), np.float32))
            if bar is not None:
                bar.update(start + len(batch))
        return unit(np.concatenate(parts))

    def class_embeddings(self, prompts: dict[str, list[str]]) -> np.ndarray:
        """One unit vector per class: the mean of its prompts' unit embeddings, made unit again."""
        return unit(np.stack([self.text_embeddings(texts).mean(axis=0) for texts in prompts.values()]))

    def probabilities(self, embeddings: np.ndarray, classes: np.ndarray) -> np.ndarray:
        """Softmax over classes of the logit scale times the cosine of each embedding with each class's."""
        logits = self.logit_scale * unit(embeddings.astype(np.float64)) @ classes.T.astype(np.float64)
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        return exp / exp.sum(axis=1, keepdims=True)


def load_zero_shot(preset: str) -> ZeroShotModel:
    """Load both towers and the text preprocessor of the CLIP-style ``preset`` (float32). Raises
    :class:`InputError` when it cannot be loaded or has no text tower."""
    import keras

    from emorec.presets import IMAGE_PRESET_FORMS, import_keras_hub, load_failure, preset_location, require_local_preset

    hub = import_keras_hub()
    require_local_preset(preset, "--zero-shot", IMAGE_PRESET_FORMS)
    location = preset_location(preset)
    try:
        backbone = hub.models.Backbone.from_preset(location, dtype="float32")
    except Exception as error:
        raise load_failure("--zero-shot", preset, error, IMAGE_PRESET_FORMS) from error
    architecture = type(backbone).__name__
    if architecture not in TEXT_PREPROCESSORS:
        raise InputError(
            f"--zero-shot {preset!r}: {architecture} has no text tower beside its image tower; choose a "
            "CLIP or SigLIP preset (clip_vit_base_patch16, siglip_base_patch16_224, ...)"
        )
    try:
        preprocessor = getattr(hub.models, TEXT_PREPROCESSORS[architecture]).from_preset(location)
    except Exception as error:
        raise InputError(
            f"--zero-shot {preset!r}: its tokenizer could not be loaded ({type(error).__name__}: "
            f"{error}); the preset needs its text preprocessor's files (or pass --zero-shot none)"
        ) from error
    preprocessor.image_converter = (
        None  # texts only here (SigLIP's would convert images=None): images are embedded apart
    )
    head = next(layer for layer in backbone.layers if hasattr(layer, "logit_scale"))
    scale = float(np.exp(keras.ops.convert_to_numpy(head.logit_scale)))
    return ZeroShotModel(preset, backbone, preprocessor, scale)


def unit(vectors: np.ndarray) -> np.ndarray:
    """Each row divided by its length (rows of zeros stay zeros)."""
    lengths = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.where(lengths == 0, 1, lengths)


def zero_shot_scores(
    model: ZeroShotModel,
    prompts: dict[str, list[str]],
    texts: Sequence[str],
    image_embeddings: np.ndarray,
    image_ok: np.ndarray,
    rows: np.ndarray,
) -> dict[str, np.ndarray]:
    """The three zero-label methods' probabilities (all rows x classes, NaN outside ``rows``, and for the image where
    its image could not be read): ``texts`` and ``image_embeddings`` (the model's image embeddings) are every row's;
    ``rows`` are the row numbers scored (the test rows)."""
    shape = (len(texts), len(prompts))
    scores = {name: np.full(shape, np.nan) for name in ZERO_SHOT_NAMES}
    if not len(rows):
        return scores
    classes = model.class_embeddings(prompts)
    log.info(
        "zero labels: %s's text tower on %d texts and %d class prompts",
        model.preset,
        len(rows),
        sum(map(len, prompts.values())),
    )
    scores["ZeroShot_text"][rows] = model.probabilities(model.text_embeddings([texts[i] for i in rows]), classes)
    readable = rows[image_ok[rows]]
    scores["ZeroShot_image"][readable] = model.probabilities(
        np.asarray(image_embeddings[readable], np.float32), classes
    )
    scores["ZeroShot_both"][rows] = (scores["ZeroShot_text"][rows] + scores["ZeroShot_image"][rows]) / 2
    return scores


def zero_shot_rows(
    preset: str, prompts_file: str | Path, dataset, ier_features, ier_config
) -> tuple[dict[str, np.ndarray], dict | None]:
    """A run's zero-label rows: each method's probabilities (:func:`zero_shot_scores`) on ``dataset``'s test rows,
    and what scored them (preset, prompts, logit scale); nothing and None without a CLIP-style model.

    ``preset`` is ``Late_fusion.py --zero-shot``: a preset, ``none``, or ``auto`` (IER's ``--backbone`` when it is
    CLIP-style); ``prompts_file`` the prompts' JSON. The image embeddings are IER's stored features of
    ``dataset``'s rows (``ier_features``, :func:`emorec.extraction.phase_features`'; ``ier_config``, IER's
    ``.args.json`` as a :class:`~emorec.runs.RunConfig`) when IER ran the preset with ``--pooling embedding``, else
    computed into a store of their own in IER's ``--cache-dir``. Raises :class:`InputError` for a prompts file
    without a class, or a preset that cannot be loaded or has no text tower.
    """
    from emorec.images import BACKBONES

    backbone = ier_config.flags.get("backbone", "vgg16")
    if preset == "auto":
        preset = backbone if backbone not in BACKBONES and has_text_tower(backbone) else "none"
    if preset == "none":
        return {}, None
    prompts = read_prompts(prompts_file, dataset.class_names)
    model = load_zero_shot(preset)
    frame = dataset.frame
    test = np.flatnonzero((frame["split"] == "test").to_numpy())
    if preset == backbone and ier_config.run.get("pooling") == "embedding":
        embeddings, ok = ier_features.features, ier_features.ok
    else:
        stored = _image_embeddings(preset, frame.iloc[test], dataset.image_root, ier_config.flags)
        embeddings, ok = np.zeros((len(frame), *stored.features.shape[1:]), np.float32), np.zeros(len(frame), bool)
        embeddings[test], ok[test] = stored.features[:], stored.ok
    scores = zero_shot_scores(model, prompts, frame["text"].tolist(), embeddings, ok, test)
    return scores, {
        "preset": preset,
        "prompts": str(prompts_file),
        "class_prompts": prompts,
        "logit_scale": model.logit_scale,
        "test_rows": len(test),
    }


def _image_embeddings(preset: str, rows, image_root, ier_flags: dict):
    """The image embeddings of ``preset`` for ``rows`` (a manifest's rows), from a feature store of their own in
    IER's ``--cache-dir``, computed there first where missing (float32; the store's resume and locks)."""
    from emorec.extraction import Extraction, ensure_features, open_image_store
    from emorec.feature_store import image_keys
    from emorec.images import build_extractor

    extractor, identity = build_extractor(preset, "preset", None, 0, "embedding", "float32")
    cache_dir = ier_flags.get("cache_dir", "data_files/features")
    store = open_image_store(cache_dir, preset, identity, extractor, "embedding", "float32")
    keys = image_keys(rows["image_path"], image_root, ier_flags.get("cache_key", "stat"))
    return ensure_features(store, rows["image_path"].tolist(), keys, Extraction(extractor))
