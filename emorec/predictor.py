"""A trained run's three models and late-fusion weights, loaded once, for predicting new tweets.

:class:`RunModels` is what ``predict.py`` (one tweet, a CSV, the web page) and
``Late_fusion.py --explain`` share: it checks that the run is whole and that
its phases used one manifest and one split, loads ``TER.keras``,
``IER.keras`` and ``Intermediate_fusion.keras`` and the weights of
``Late_fusion.metrics.json``, and keeps the models' parts apart (text reader:
the paper's vectorizer or a pretrained encoder's preprocessor, see
:mod:`emorec.text_readers`; text network, frozen image extractor, image head,
fusion network) so that :mod:`emorec.explain` can run each one on its own.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emorec.errors import InputError
from emorec.fusion import MEMBERS
from emorec.runs import read_run_config, require_files
from emorec.stored_images import StoredImages

log = logging.getLogger("emorec")


NOTHING_GIVEN = "give the tweet's text, its image, or both (both were empty)"


def has_text(text) -> bool:
    """Whether a tweet has a text: not empty, nor only blanks (the one rule of predict.py and the page)."""
    return bool(str(text).strip())


def require_inputs(texts: Sequence[str], images: Sequence[str], where: str, lines: Sequence[int] | None = None):
    """The one rule for a tweet wherever it comes from (``predict.py --text/--image``, ``--csv``, the page): a
    text (not only blanks), an image, or both; the models that can score what is there do. Raises
    :class:`InputError` naming ``where``, and for a CSV the ``lines`` its rows start on
    (:func:`emorec.fileio.record_lines`, as an editor numbers them), for a tweet with neither."""
    empty = [row for row, (text, image) in enumerate(zip(texts, images)) if not has_text(text) and not str(image)]
    if not empty:
        return
    if lines is None:
        raise InputError(f"{where}: {NOTHING_GIVEN}")
    shown = ", ".join(str(lines[row]) for row in empty[:10]) + (", ..." if len(empty) > 10 else "")
    raise InputError(
        f"{where}: {len(empty)} row(s) with neither a text nor an image (lines {shown}): a tweet needs one "
        "of them; fill them in or leave those rows out"
    )


def run_files(checkpoints: Path) -> dict[Path, str]:
    """The files a run must hold under ``checkpoints`` to predict, each with the phase that writes it."""
    needed = {checkpoints / f"{phase}.keras": phase for phase in MEMBERS}
    needed |= {checkpoints / f"{phase}.args.json": phase for phase in (*MEMBERS, "Late_fusion")}
    needed[checkpoints / "Late_fusion.metrics.json"] = "Late_fusion"
    return needed


def require_run(checkpoints: Path, with_late_fusion: bool = True) -> None:
    """Raise :class:`InputError` naming every file of the run in ``checkpoints`` that is missing, and what writes it
    (without ``with_late_fusion``: the three members' files only, for Late_fusion.py itself)."""
    require_files(
        {
            path: f"written by `python {phase}.py`: run the phases (TER, IER, Intermediate_fusion, "
            "Late_fusion) first, or point --checkpoint-dir/--run-name at their run."
            for path, phase in run_files(checkpoints).items()
            if with_late_fusion or phase != "Late_fusion"
        }
    )


@dataclass
class RunModels:
    """A run's models, split into the parts a prediction runs.

    ``ter_reader``/``ter_network``: TER's raw text -> its inputs (token ids, or an encoder's token arrays; a
    :mod:`emorec.text_readers` reader) -> probabilities;
    ``ier_extractor``/``ier_head``: RGB pixels (0-255) -> frozen backbone features -> probabilities;
    ``fusion_reader``/``fusion_extractor``/``fusion_network``: the same for the intermediate fusion;
    ``weights``: the late-fusion weights (:func:`member_weights`).
    """

    checkpoints: Path
    class_names: list[str]
    weights: dict
    ter_reader: object
    ter_network: object
    ier_extractor: object
    ier_head: object
    fusion_reader: object
    fusion_extractor: object
    fusion_network: object
    shared_extractor: bool
    image_size: int
    stored_images: StoredImages | None = None
    fusion_takes_one_modality: bool = False

    @classmethod
    def load(cls, checkpoints: str | Path, late: dict | None = None) -> RunModels:
        """Load the run in ``checkpoints`` (``model_checkpoints/`` or ``model_checkpoints/<run name>/``).

        ``late``: the late fusion's choices (``class_names``, ``weights`` and the one-sided weights) when
        Late_fusion.py is making them, else read from its ``.metrics.json``. Raises :class:`InputError` when a file
        is missing, or when the phases (TER, IER, Intermediate_fusion, Late_fusion) used different data.
        """
        checkpoints = Path(checkpoints)
        flags = _checked_run(checkpoints, late is None)
        import keras

        import emorec.models  # noqa: F401  (registers the custom objects the saved models hold)
        from emorec.text_readers import text_reader

        late = late or json.loads((checkpoints / "Late_fusion.metrics.json").read_text())
        models = {phase: keras.models.load_model(checkpoints / f"{phase}.keras") for phase in MEMBERS}
        extractors = [
            next(layer for layer in models[phase].layers if layer.name.endswith("_extractor"))
            for phase in ("IER", "Intermediate_fusion")
        ]
        # IER's and the fusion model's frozen extractors are normally one (the fusion phase takes IER's): then the
        # backbone runs once per image and its features feed both heads.
        shared = all(np.array_equal(a, b) for a, b in zip(extractors[0].get_weights(), extractors[1].get_weights()))
        return cls(
            checkpoints=checkpoints,
            class_names=list(late["class_names"]),
            weights=member_weights(late),
            ter_reader=text_reader(models["TER"]),
            ter_network=_network(models["TER"], "ter_network"),
            ier_extractor=extractors[0],
            ier_head=models["IER"].get_layer("ier_head"),
            fusion_reader=text_reader(models["Intermediate_fusion"]),
            fusion_extractor=extractors[1],
            fusion_network=_network(models["Intermediate_fusion"], "fusion_network"),
            shared_extractor=shared,
            image_size=int(models["IER"].input_shape[1]),
            stored_images=StoredImages.of_run(checkpoints, flags["IER"]) if shared else None,
            fusion_takes_one_modality=flags["Intermediate_fusion"].get("modality_dropout", 0) > 0,
        )

    def image_features(self, pixels, direct: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """IER's and the fusion model's backbone features of ``pixels`` (n, size, size, 3), 0-255; ``direct``: call
        the models eagerly (for a few rows: nothing to trace) rather than through ``predict_on_batch``."""

        def run(extractor):
            return np.asarray(extractor(pixels, training=False) if direct else extractor.predict_on_batch(pixels))

        features = run(self.ier_extractor)
        return features, features if self.shared_extractor else run(self.fusion_extractor)

    def score(self, ter_text, fusion_text, ier_features, fusion_features, members=MEMBERS) -> dict[str, np.ndarray]:
        """The class probabilities (float64, (n, classes)) of each of ``members`` (all three by default) from the
        text models' inputs (each reader's ``inputs``; None for a text model not asked) and image features."""
        networks = {
            "TER": lambda: _batched(self.ter_network, ter_text),
            "IER": lambda: _batched(self.ier_head, ier_features),
            "Intermediate_fusion": lambda: _batched(
                self.fusion_network,
                {**self.fusion_reader.fusion_inputs(fusion_text), "image_features": fusion_features},
            ),
        }
        return {member: networks[member]() for member in members}

    def score_posts(self, texts, ier_features, fusion_features, image_given, batch_size: int, members=MEMBERS) -> dict:
        """The probabilities (n, classes) of each of ``members`` (all three by default) for one batch of at most
        ``batch_size`` posts: their texts (empty: none), image features and whether each has an image. A member
        that needs a side a post lacks gives NaN, but the fusion model that learnt with --modality-dropout scores
        a post with one side, the missing image as zero features and the missing text as the empty text, as it
        learnt them."""
        texts_given = np.array([has_text(text) for text in texts])
        image_given = np.asarray(image_given, dtype=bool)
        if self.fusion_takes_one_modality:
            fusion_features = np.where(image_given.reshape(-1, *[1] * (fusion_features.ndim - 1)), fusion_features, 0)
        # Every batch padded to batch_size rows: each network traces once, whatever the last batch's size.
        readers = {"TER": self.ter_reader, "Intermediate_fusion": self.fusion_reader}
        text = [_padded(r.inputs(texts), batch_size) if m in members else None for m, r in readers.items()]
        batch = self.score(*text, _padded(ier_features, batch_size), _padded(fusion_features, batch_size), members)
        scored = {}
        for phase, probabilities in batch.items():
            probabilities = probabilities[: len(texts)]
            if phase == "Intermediate_fusion" and self.fusion_takes_one_modality:
                probabilities[~image_given & ~texts_given] = np.nan
            else:
                probabilities[~image_given if phase == "IER" else ~texts_given] = np.nan
                if phase == "Intermediate_fusion":
                    probabilities[~image_given] = np.nan
            scored[phase] = probabilities
        return scored

    def fuse(self, members: dict[str, np.ndarray]) -> np.ndarray:
        """The late-fused probabilities of the members' ``(n, classes)`` arrays (NaN rows: that member is left out;
        a one-sided post takes its one-sided weights where the run has them)."""
        from emorec.fusion import fuse_by_sides

        return fuse_by_sides(self.weights, np.stack([members[phase] for phase in MEMBERS]))

    def predict(self, texts: Sequence[str], image_paths: Sequence[str], batch_size: int = 64) -> dict:
        """Score tweets (their texts and image files) with the three models and fuse them.

        A tweet may lack its text (empty) or its image (an empty path, or a file that cannot be read): the members
        that need it give NaN (the fusion model scores it all the same when it learnt with --modality-dropout),
        and the late fusion renormalises its weights over the others. Returns
        ``{"class_names", "image_ok" (n,), <member> (n, classes) for each of TER, IER and
        Intermediate_fusion (NaN where the member cannot score the tweet), "Late_fusion" (n, classes),
        "models_used" (n,) (the members that scored each tweet, joined by "+"), "text_cut" (n,)}``:
        ``text_cut`` marks the texts longer than a text model reads (only their first tokens count), with one
        warning giving their count.
        """
        import keras

        texts, paths = list(texts), list(image_paths)
        batch_size = max(1, min(batch_size, len(texts)))
        members = {phase: np.full((len(texts), len(self.class_names)), np.nan) for phase in MEMBERS}
        image_ok = np.zeros(len(texts), dtype=bool)
        bar = keras.utils.Progbar(len(texts), unit_name="tweet", verbose=1 if len(texts) > batch_size else 0)
        for rows, ier_features, fusion_features, ok in self._feature_batches(paths, batch_size):
            batch = self.score_posts([texts[row] for row in rows], ier_features, fusion_features, ok, batch_size)
            for phase, probabilities in batch.items():
                members[phase][rows] = probabilities
            image_ok[rows] = ok
            bar.add(len(rows))
        return {
            "class_names": self.class_names,
            "image_ok": image_ok,
            **members,
            "Late_fusion": self.fuse(members),
            "models_used": models_used(members),
            "text_cut": self.texts_cut(texts),
        }

    def _feature_batches(self, paths: list[str], batch_size: int):
        """Yield (rows, IER's features, the fusion model's, readable) per batch of at most ``batch_size`` rows:
        first the images the run's feature store holds, read from it, then the others through the backbone."""
        from emorec.images import image_batches

        stored, view = self.stored_images.lookup(paths) if self.stored_images else (np.zeros(len(paths), bool), None)
        held = np.flatnonzero(stored)  # the view's rows, in this order
        for start in range(0, len(held), batch_size):
            part = slice(start, start + batch_size)
            features = np.asarray(view.features[part], np.float32)
            yield held[part], features, features, view.ok[part]
        computed = np.flatnonzero(~stored)
        batches = image_batches([paths[row] for row in computed], self.image_size, batch_size)
        for index, (pixels, ok) in enumerate(batches):
            rows = computed[index * batch_size : index * batch_size + len(ok)]
            ier, fusion = self.image_features(_padded(pixels.numpy(), batch_size))
            yield rows, ier[: len(rows)], fusion[: len(rows)], ok.numpy()

    def texts_cut(self, texts: Sequence[str]) -> np.ndarray:
        """Which of ``texts`` are longer than a text model reads (its --seq-len), logged as one warning."""
        reads = {"TER": self.ter_reader.read, "the fusion model": self.fusion_reader.read}
        cut = np.zeros(len(texts), dtype=bool)
        for reader in (self.ter_reader, self.fusion_reader):
            cut |= reader.token_counts(texts) > reader.read
        if cut.any():
            log.warning(
                "%d of %d text(s) are longer than the text models read (%s tokens, their --seq-len): only their "
                "first tokens count (text_cut in the output)",
                cut.sum(),
                len(texts),
                " and ".join(f"{name} {read}" for name, read in reads.items()),
            )
        return cut


def _checked_run(checkpoints: Path, with_late_fusion: bool) -> dict:
    """Check that the run in ``checkpoints`` is whole (``with_late_fusion``: Late_fusion.py's files too) and that
    its phases used one manifest and split; returns each member's recorded flags."""
    from emorec.data.fingerprints import check_same_data

    require_run(checkpoints, with_late_fusion)
    configs = {phase: read_run_config(checkpoints / f"{phase}.args.json") for phase in MEMBERS}
    if with_late_fusion:
        late_config = read_run_config(checkpoints / "Late_fusion.args.json")
        if "data" not in late_config.run:
            raise InputError(
                f"{late_config.path} recorded no data fingerprint (a run from an older version): rerun Late_fusion.py"
            )
        check_same_data(
            late_config.run["data"],
            {phase: (config.path, config.run) for phase, config in configs.items()},
            "TER.py, IER.py, Intermediate_fusion.py and Late_fusion.py",
        )
    return {phase: config.flags for phase, config in configs.items()}


def member_weights(late: dict) -> dict[str, np.ndarray]:
    """The late-fusion weights of a run's choices (``late``: Late_fusion.metrics.json's), each in the order of
    :data:`MEMBERS`: ``both`` (the weights chosen on val) and, where the fusion model scores one-sided posts,
    ``without_image`` and ``without_text`` (chosen on val posts with that side taken away)."""
    chosen = {"both": late["weights"], **late.get("one_sided_weights", {})}
    return {case: np.array([w.get(m, 0.0) for m in MEMBERS], dtype=np.float64) for case, w in chosen.items()}


def models_used(members: dict[str, np.ndarray]) -> list[str]:
    """Per tweet, the members that scored it (their probabilities are not NaN), joined by "+"."""
    scored = {phase: ~np.isnan(p).any(axis=1) for phase, p in members.items()}
    rows = len(next(iter(scored.values())))
    return ["+".join(phase for phase in MEMBERS if scored[phase][row]) for row in range(rows)]


def _padded(inputs, size: int):
    """``inputs`` (an array, or a dict of arrays) with its last row repeated up to ``size`` rows."""
    if isinstance(inputs, dict):
        return {name: _padded(value, size) for name, value in inputs.items()}
    inputs = np.asarray(inputs)
    return inputs if len(inputs) >= size else np.concatenate([inputs, np.repeat(inputs[-1:], size - len(inputs), 0)])


def _network(model, name: str):
    """The network inside a saved model, without its text pipeline and extractor: the layer ``name`` of the
    paper's models, the ``network`` of a model holding a pretrained encoder (emorec.text_encoders)."""
    return model.network if hasattr(model, "preprocessor") else model.get_layer(name)


def _batched(model, inputs) -> np.ndarray:
    return np.asarray(model.predict_on_batch(inputs), np.float64)
