"""The robustness table: every fused method and its members scored again on the test posts with one side removed or
damaged, as real posts come (a deleted image, an empty text, a recompressed or blurred photo, a hurried text).

The image damages are applied to the pixels the backbone reads (at its input size, so that a level means the same
whatever the photo's resolution), each seeded per image; their features go into IER's feature store under keys of
their own (``<damage>@<seed>|<clean key>``), so the clean features are never overwritten and a second report reads
them back. The text damages are seeded per text. A removed side is what a post without it gets from the run's models
(:meth:`emorec.predictor.RunModels.score_posts`): the members that need it drop out of the late fusion, whose
weights are renormalised over the others; the fusion model scores a one-sided post only if it learnt with
``--modality-dropout``.
"""

from __future__ import annotations

import io
import logging
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

from emorec.fusion import MEMBERS, fuse, stacking_features
from emorec.intervals import evaluate_test, paired_difference
from emorec.metrics import class_probabilities

log = logging.getLogger("emorec")

SHARE = 0.3  # of a text's words dropped or misspelt


def _noise(sigma: float) -> Callable:
    def damage(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return np.clip(pixels + rng.normal(0, sigma, pixels.shape), 0, 255)

    return damage


def _jpeg(quality: int) -> Callable:
    def damage(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        encoded = io.BytesIO()
        Image.fromarray(pixels).save(encoded, "JPEG", quality=quality)
        return np.asarray(Image.open(encoded).convert("RGB"))

    return damage


def _blur(share_of_side: float) -> Callable:
    def damage(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        radius = share_of_side * pixels.shape[0]
        return np.asarray(Image.fromarray(pixels).filter(ImageFilter.GaussianBlur(radius)))

    return damage


# Each damage: its key in the feature store, how the table names it and what it does to uint8 pixels.
IMAGE_DAMAGES = {
    "noise40": ("image: Gaussian noise (sigma 40 of 255)", _noise(40.0)),
    "jpeg10": ("image: JPEG quality 10", _jpeg(10)),
    "blur2pc": ("image: Gaussian blur (radius 2% of the side)", _blur(0.02)),
}


def drop_words(text: str, rng: np.random.Generator) -> str:
    """``text`` without :data:`SHARE` of its words (each dropped at that rate; one is always kept)."""
    words = text.split()
    kept = [word for word in words if rng.random() >= SHARE]
    return " ".join(kept or words[: min(1, len(words))])


def misspell_words(text: str, rng: np.random.Generator) -> str:
    """``text`` with :data:`SHARE` of its words misspelt (each at that rate): two neighbouring letters swapped."""
    words = text.split()
    for i, word in enumerate(words):
        if rng.random() < SHARE and len(word) > 1:
            at = int(rng.integers(len(word) - 1))
            words[i] = word[:at] + word[at + 1] + word[at] + word[at + 2 :]
    return " ".join(words)


TEXT_DAMAGES = {
    "dropped": (f"text: {SHARE:.0%} of words dropped", drop_words),
    "misspelt": (f"text: {SHARE:.0%} of words misspelt", misspell_words),
}
CONDITIONS = {
    "clean": "clean",
    "image_removed": "image removed",
    "text_removed": "text removed",
    **{name: label for name, (label, _) in IMAGE_DAMAGES.items()},
    **{name: label for name, (label, _) in TEXT_DAMAGES.items()},
}
METHODS = (*MEMBERS, "Average", "Late_fusion", "Stacker")


def _rng(seed: int, kind: str, item: str) -> np.random.Generator:
    """The draws of one damage of one image or text: from (seed, damage, the item) alone."""
    return np.random.default_rng([seed, zlib.crc32(kind.encode()), zlib.crc32(item.encode())])


def damage_texts(texts: list[str], kind: str, seed: int) -> list[str]:
    """``texts`` damaged by ``kind`` (a key of :data:`TEXT_DAMAGES`); an empty text stays empty."""
    damage = TEXT_DAMAGES[kind][1]
    return [damage(text, _rng(seed, kind, text)) if text.strip() else text for text in texts]


def damaged_image_batches(kind: str, seed: int) -> Callable:
    """A loader of ``kind``'s damaged pixels for :class:`emorec.extraction.Extraction` (``batches``): each image
    decoded at the backbone's size, then damaged, seeded by its path."""
    import tensorflow as tf

    from emorec.images import load_image

    damage = IMAGE_DAMAGES[kind][1]

    def batches(paths, image_size: int, batch_size: int):
        for start in range(0, len(paths), batch_size):
            loaded = [load_image(path, image_size) for path in paths[start : start + batch_size]]
            pixels = [
                damage(image, _rng(seed, kind, path)).astype(np.uint8) if ok else image
                for (image, ok), path in zip(loaded, paths[start : start + batch_size])
            ]
            yield tf.constant(np.stack(pixels), tf.float32), tf.constant([ok for _, ok in loaded])

    return batches


@dataclass
class Robustness:
    """The inputs of the table: the run's models (:class:`emorec.predictor.RunModels`), the posts (their texts,
    image paths, image store keys, clean features and whether each image was read), IER's feature store, the late
    fusion's stacker, the seed of the damages and the members' ``clean`` probabilities of the posts (the phases'
    probability files': what a member that does not see a changed side keeps)."""

    run: object
    texts: list
    paths: list
    keys: list
    features: object  # a FeatureView of the posts' rows, read on demand
    image_ok: np.ndarray
    store: object
    stacker: object
    seed: int
    clean: dict

    def members(self, condition: str) -> dict[str, np.ndarray]:
        """The members' probabilities on the posts under ``condition`` (a key of :data:`CONDITIONS` but clean):
        the members that do not see the side it changes keep their ``clean`` ones; a removed side's member has
        none; the others run again."""
        members = {member: np.array(self.clean[member], dtype=np.float64) for member in MEMBERS}
        texts, features, image_ok = self.texts, self.features, self.image_ok
        again = ["Intermediate_fusion"]
        if condition in ("image_removed", "text_removed"):
            members["IER" if condition == "image_removed" else "TER"][:] = np.nan
            if condition == "image_removed":
                image_ok = np.zeros_like(image_ok)
            else:
                texts = [""] * len(texts)
            if not self.run.fusion_takes_one_modality:  # it scores only posts with both sides
                members["Intermediate_fusion"][:] = np.nan
                return members
        elif condition in TEXT_DAMAGES:
            texts, again = damage_texts(texts, condition, self.seed), ["TER", "Intermediate_fusion"]
        else:
            (features, read), again = self.damaged_features(condition), ["IER", "Intermediate_fusion"]
            image_ok = image_ok & read
        return members | self.score(texts, features, image_ok, again)

    def damaged_features(self, kind: str) -> tuple[object, np.ndarray]:
        """The backbone's features of the damaged images (read on demand), from the store or computed into it,
        and which of them were read."""
        from emorec.extraction import Extraction, ensure_features

        rows = np.flatnonzero(self.image_ok)
        keys = [f"{kind}@{self.seed}|{self.keys[row]}" for row in rows]
        extraction = Extraction(self.run.ier_extractor, batches=damaged_image_batches(kind, self.seed))
        stored = ensure_features(self.store, [self.paths[row] for row in rows], keys, extraction)
        where, read = np.full(len(self.texts), -1), np.zeros(len(self.texts), dtype=bool)
        where[rows], read[rows] = np.arange(len(rows)), stored.ok
        return stored.features.take(where), read

    def score(self, texts, features, image_ok, members, batch_size: int = 128) -> dict[str, np.ndarray]:
        """The probabilities of ``members`` on the posts (``texts``, image ``features``, ``image_ok``), by batch."""
        parts = []
        for start in range(0, len(texts), batch_size):
            rows = slice(start, start + batch_size)
            batch = np.asarray(features[rows], np.float32)
            parts.append(self.run.score_posts(texts[rows], batch, batch, image_ok[rows], batch_size, members))
        return {member: np.concatenate([part[member] for part in parts]) for member in members}

    def methods(self, members: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The members and their fusions (equal weights, the chosen weights, the stacker)."""
        stacked = np.stack([members[member] for member in MEMBERS])
        scored = ~np.isnan(stacked).all(axis=(0, 2))
        stacker = np.full(stacked.shape[1:], np.nan)
        stacker[scored] = class_probabilities(self.stacker, stacking_features(stacked[:, scored]), stacked.shape[2])
        return {
            **members,
            "Average": fuse(np.full(len(MEMBERS), 1 / len(MEMBERS)), stacked),
            "Late_fusion": self.run.fuse(members),
            "Stacker": stacker,
        }


def robustness_table(robustness: Robustness, clean: dict, labels, tweets, n_classes: int, seed: int) -> dict:
    """Every condition's scores of :data:`METHODS` on the test posts, with bootstrap intervals over the tweets,
    and the late fusion against the model that still sees the post's remaining side (image removed: TER; text
    removed: IER), on the rows both scored, paired.

    ``clean`` holds the report's own test probabilities of each method. Returns ``{"conditions": {condition:
    {"label", "scores": {method: {"n", "accuracy", "macro_f1", "weighted_f1" and their "_ci"}}}},
    "late_fusion_against_one_side": {condition: paired difference}, "damage_seed", "text_share"}``.
    """
    result = {"conditions": {}, "late_fusion_against_one_side": {}, "damage_seed": seed, "text_share": SHARE}
    for condition, label in CONDITIONS.items():
        log.info("robustness: %s", label)
        methods = (
            {m: clean[m] for m in METHODS}
            if condition == "clean"
            else robustness.methods(robustness.members(condition))
        )
        scored = {m: p for m, p in methods.items() if not np.isnan(p).any(axis=1).all()}
        evaluation = evaluate_test(scored, labels, tweets, n_classes, seed=seed)
        scores = {method: evaluation["scores"][method]["test"] if method in scored else {"n": 0} for method in METHODS}
        result["conditions"][condition] = {"label": label, "scores": scores}
        other = {"image_removed": "TER", "text_removed": "IER"}.get(condition)
        if other:
            pair = {m: methods[m] for m in ("Late_fusion", other)}
            compared = evaluate_test(pair, labels, tweets, n_classes, seed=seed)
            result["late_fusion_against_one_side"][condition] = paired_difference(
                compared, ["Late_fusion"], [other], chosen_by={"Late_fusion": 1.0, other: 0.0}
            )
    return result


def robustness_markdown(table: dict, names: dict[str, str]) -> str:
    """The table as Markdown: macro-F1 with its interval per condition and method, then accuracy and weighted-F1,
    then the late fusion against the remaining side's model."""
    methods = METHODS
    header = "| condition | " + " | ".join(names.get(m, m) for m in methods) + " |\n"
    rule = "|---|" + "---:|" * len(methods) + "\n"

    def cell(score, ci):
        if not score.get("n"):
            return "-"
        low, high = score[f"{ci}_ci"]
        return f"{score[ci]:.3f} [{low:.3f}, {high:.3f}]"

    lines = ["## Robustness: the test posts with a side removed or damaged", ""]
    lines.append(
        "Test macro-F1 [95 % interval over the test tweets] of each method when every test post loses its image or "
        "its text, or has it damaged (damage seed "
        f"{table['damage_seed']}; '-': the method cannot score such posts). A removed side drops the members "
        "that need it from the fusions, their weights renormalised; the intermediate-fusion model scores a "
        "one-sided post only if it learnt with --modality-dropout."
    )
    lines += ["", header + rule.rstrip("\n")]
    for condition in table["conditions"].values():
        cells = [cell(condition["scores"][m], "macro_f1") for m in methods]
        lines.append(f"| {condition['label']} | " + " | ".join(cells) + " |")
    lines += ["", "Accuracy / weighted-F1 of the same predictions:", "", header + rule.rstrip("\n")]
    for condition in table["conditions"].values():
        cells = [
            f"{s['accuracy']:.3f} / {s['weighted_f1']:.3f}" if s.get("n") else "-"
            for s in (condition["scores"][m] for m in methods)
        ]
        lines.append(f"| {condition['label']} | " + " | ".join(cells) + " |")
    lines.append("")
    for condition, difference in table["late_fusion_against_one_side"].items():
        low, high = difference["macro_f1_ci"]
        verdict = "excludes 0" if difference["macro_f1_beyond_interval"] else "includes 0"
        lines.append(
            f"- {CONDITIONS[condition]}: late fusion minus {names.get(difference['than'], difference['than'])} "
            f"on the posts both scored: macro-F1 {difference['macro_f1']:+.3f} [{low:+.3f}, {high:+.3f}] "
            f"(its interval {verdict}), accuracy {difference['accuracy']:+.3f}."
        )
    return "\n".join(lines) + "\n"


def posts(run, dataset, split: str, members, image_features, cache_key: str, stacker, seed: int) -> Robustness:
    """The :class:`Robustness` inputs of ``dataset``'s posts in ``split``: ``run`` the loaded
    :class:`~emorec.predictor.RunModels`, ``members`` the members' probabilities of every row (members, rows,
    classes, in :data:`~emorec.fusion.MEMBERS` order), ``image_features`` IER's stored features of the rows
    (:func:`emorec.extraction.phase_features`), ``cache_key`` how IER keyed the images, ``stacker`` the late
    fusion's fitted stacker (None: not needed) and ``seed`` the damages' seed."""
    from emorec.feature_store import FeatureStore, image_keys

    frame = dataset.frame
    rows = np.flatnonzero((frame["split"] == split).to_numpy())
    paths = frame["image_path"].to_numpy()[rows]
    return Robustness(
        run,
        frame["text"].to_numpy()[rows].tolist(),
        paths.tolist(),
        image_keys(paths, dataset.image_root, cache_key),
        image_features.features.take(rows),
        image_features.ok[rows],
        FeatureStore.open(image_features.folder),
        stacker,
        seed,
        {member: members[i][rows] for i, member in enumerate(MEMBERS)},
    )


def one_sided_members(robustness: Robustness) -> dict[str, np.ndarray]:
    """The members' probabilities (members, rows, classes) of the posts with their image taken away
    (``without_image``) and with their text taken away (``without_text``), for
    :func:`emorec.fusion.one_sided_weights`."""
    cases = {"without_image": "image_removed", "without_text": "text_removed"}
    return {case: np.stack([p for p in robustness.members(condition).values()]) for case, condition in cases.items()}


def measure_robustness(test_posts: Robustness, dataset, clean: dict, seed: int) -> dict:
    """The robustness table (:func:`robustness_table`) of the test posts (:func:`posts`) of ``dataset``; ``clean``
    holds each method's probabilities on every row."""
    frame = dataset.frame
    test = (frame["split"] == "test").to_numpy()
    labels, tweets = frame["label"].to_numpy()[test], frame["group"].to_numpy()[test]
    clean_test = {method: p[test] for method, p in clean.items() if method in METHODS}
    return robustness_table(test_posts, clean_test, labels, tweets, len(dataset.class_names), seed)
