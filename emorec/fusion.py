"""Late (score-level) fusion: join the phases' probability files, search the weights, stack.

The weight search follows the paper (a grid of 0.1 ... 0.9 per member,
normalised to sum to 1) but chooses on the validation split, never on test,
and evaluates every candidate at once with numpy. A row that a member could
not score (an image IER could not read) is fused from the members that did,
with their weights renormalised.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Mapping, Sequence

import numpy as np
from sklearn.linear_model import LogisticRegression

from emorec.baselines import BASELINE_NAMES
from emorec.errors import InputError, list_some
from emorec.intervals import confusion_scores, evaluate_test, paired_difference
from emorec.metrics import class_probabilities, method_scores
from emorec.zero_shot import ZERO_SHOT_NAMES

# The fused members, in the order of the weights: the phase that writes each, and its probability file.
MEMBERS = {"TER": "text_prob.csv", "IER": "img_prob.csv", "Intermediate_fusion": "inter_prob.csv"}
# Every method Late_fusion.py reports: the members alone, the baselines, the zero-label baseline (with a CLIP-style
# model), then the ways of fusing the members (and, with --with-baselines, of fusing the members and the baselines).
FUSIONS = ("Average", "Late_fusion", "Stacker")
FUSIONS_WITH_BASELINES = ("Late_fusion_with_baselines", "Stacker_with_baselines")
METHODS = (*MEMBERS, *BASELINE_NAMES, *ZERO_SHOT_NAMES, *FUSIONS, *FUSIONS_WITH_BASELINES)
# How reports name them.
METHOD_NAMES = {
    "TER": "TER (text)",
    "IER": "IER (image)",
    "Intermediate_fusion": "Intermediate fusion",
    **BASELINE_NAMES,
    **ZERO_SHOT_NAMES,
    "Average": "Average of the three",
    "Late_fusion": "Late fusion (weights chosen on val)",
    "Stacker": "Logistic-regression stacker (fitted on val)",
    "Late_fusion_with_baselines": "Late fusion of the three and the baselines (weights chosen on val)",
    "Stacker_with_baselines": "Stacker on the three and the baselines (fitted on val)",
}
# The same names, shorter where they would not fit a table column or a legend (the sweep's).
SHORT_METHOD_NAMES = {
    **METHOD_NAMES,
    "Late_fusion": "Late fusion",
    "Stacker": "LR stacker",
    "Baseline_text": "TF-IDF + LR",
    "Baseline_image": "Linear probe",
    "Baseline_both": "LR text + image",
    "Late_fusion_with_baselines": "Late fusion + baselines",
    "Stacker_with_baselines": "LR stacker + baselines",
    "ZeroShot_image": "0 labels: image",
    "ZeroShot_text": "0 labels: text",
    "ZeroShot_both": "0 labels: both",
}
# The comparison the summary makes: the best fusion of text and image against the best single modality, each the
# best by validation macro-F1 (the test rows choose nothing).
SINGLE_MODALITY = ("TER", "IER", "Baseline_text", "Baseline_image")
FUSION_METHODS = ("Intermediate_fusion", "Baseline_both", *FUSIONS, *FUSIONS_WITH_BASELINES)
# What the validation split chose for each method, so that its validation scores are in-sample.
VALIDATION_USE = {
    **{member: "best epoch chosen on val" for member in MEMBERS},
    **{name: "C chosen on val" for name in BASELINE_NAMES},
    **{name: "nothing: no label at all" for name in ZERO_SHOT_NAMES},
    "Average": "the members' best epochs chosen on val",
    "Late_fusion": "weights (and the members' best epochs) chosen on val",
    "Stacker": "fitted on val",
    "Late_fusion_with_baselines": "weights (and the members' best epochs and C) chosen on val",
    "Stacker_with_baselines": "fitted on val",
}
log = logging.getLogger("emorec")
WEIGHT_CHUNK = 2**24  # candidates x rows x classes evaluated at once by choose_weights (128 MB of float64)


def weight_grid(n_members: int, step: float = 0.1) -> np.ndarray:
    """Every combination of weights step, 2*step, ... < 1 per member, normalised to sum to 1, duplicates dropped.

    Returns (candidates, n_members), in the grid's order.
    """
    if not 0 < step < 1:
        raise InputError(f"--grid-step must be between 0 and 1, got {step}")
    # k * step for k = 1, 2, ... while below 1 (the tolerance keeps 0.1 * 10 from counting as below 1);
    # a step of 0.5 or more leaves one value, hence one candidate: equal weights.
    values = np.arange(1, int(np.ceil(1 / step - 1e-9))) * step
    grid = np.array(list(itertools.product(values, repeat=n_members)))
    grid = grid / grid.sum(axis=1, keepdims=True)
    _, first = np.unique(np.round(grid, 9), axis=0, return_index=True)
    return grid[np.sort(first)]


def fuse(weights: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """Weighted averages of the members' probabilities, for many weight vectors at once.

    ``weights`` is (candidates, members) or (members,); ``probabilities`` is
    (members, rows, classes) with NaN rows where a member has no score: those
    rows are averaged over the members that have one, their weights
    renormalised. Returns (candidates, rows, classes) (or (rows, classes)).
    """
    single = weights.ndim == 1
    weights = np.atleast_2d(weights)
    scored = ~np.isnan(probabilities).any(axis=2)  # (members, rows)
    totals = np.einsum("km,mnc->knc", weights, np.nan_to_num(probabilities))
    mass = np.einsum("km,mn->kn", weights, scored.astype(float))[:, :, None]
    fused = totals / np.where(mass > 0, mass, np.nan)
    return fused[0] if single else fused


def fuse_by_sides(weights: Mapping[str, np.ndarray], probabilities: np.ndarray) -> np.ndarray:
    """:func:`fuse` with ``weights["both"]``, but a post IER could not score (no image) with
    ``weights["without_image"]`` and one TER could not score (no text) with ``weights["without_text"]`` where
    those are given (:func:`one_sided_weights`); ``probabilities`` is (members, rows, classes) in
    :data:`MEMBERS` order."""
    fused = fuse(weights["both"], probabilities)
    missing = {member: np.isnan(probabilities[i]).any(axis=1) for i, member in enumerate(MEMBERS)}
    for case, lacking, other in (("without_image", "IER", "TER"), ("without_text", "TER", "IER")):
        if case in weights:
            rows = missing[lacking] & ~missing[other]
            fused[rows] = fuse(weights[case], probabilities[:, rows])
    return fused


def one_sided_weights(one_sided: Mapping[str, np.ndarray], labels: np.ndarray, step: float = 0.1) -> dict:
    """The weights of the late fusion for posts without an image and without a text, each chosen on validation
    posts with that side taken away: ``one_sided`` maps ``without_image`` and ``without_text`` to the members'
    probabilities there (members, rows, classes), ``labels`` the rows'. The candidates run from the remaining
    unimodal member alone to the fusion model alone in ``step``s (0 included: the fusion model's one-sided
    predictions join only where they help on val). Returns {case: {member: weight}}."""
    chosen = {}
    for case, probabilities in one_sided.items():
        alone = "TER" if case == "without_image" else "IER"
        shares = np.round(np.arange(0, 1 + step / 2, step), 9)
        grid = np.zeros((len(shares), len(MEMBERS)))
        grid[:, list(MEMBERS).index(alone)], grid[:, list(MEMBERS).index("Intermediate_fusion")] = 1 - shares, shares
        scored = ~np.isnan(probabilities).all(axis=(0, 2))  # a val post with neither side left has no say
        best, accuracy, macro_f1 = choose_weights(grid, probabilities[:, scored], labels[scored])
        chosen[case] = {
            alone: float(grid[best, list(MEMBERS).index(alone)]),
            "Intermediate_fusion": float(shares[best]),
        }
        log.info(
            "late fusion %s: weights chosen on val posts with that side taken away (accuracy %.3f, macro-F1 %.3f): %s",
            case.replace("_", " "),
            accuracy[best],
            macro_f1[best],
            listed(chosen[case]),
        )
    return chosen


def confusion_matrices(fused: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Each candidate's confusion matrix (candidates, true class, predicted class) of ``fused`` (candidates, rows,
    classes) against ``labels`` (rows,)."""
    n_classes = fused.shape[2]
    truth = np.eye(n_classes, dtype=np.float32)[labels]  # (rows, classes)
    predicted = np.eye(n_classes, dtype=np.float32)[fused.argmax(axis=2)]  # (candidates, rows, classes)
    return np.einsum("nt,knp->ktp", truth, predicted)


def accuracy_and_macro_f1(fused: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Accuracy and macro-F1 (over the classes with true rows, as everywhere here) per candidate.

    ``fused`` is (candidates, rows, classes), ``labels`` (rows,). Returns two (candidates,) arrays, computed from
    each candidate's confusion matrix (:func:`emorec.intervals.confusion_scores`).
    """
    scores = confusion_scores(confusion_matrices(fused, labels))
    return scores["accuracy"], scores["macro_f1"]


def choose_weights(
    grid: np.ndarray, probabilities: np.ndarray, labels: np.ndarray
) -> tuple[int, np.ndarray, np.ndarray]:
    """Pick the candidate with the best accuracy; ties go to higher macro-F1, then to the most even weights.

    Returns (index into ``grid``, accuracy per candidate, macro-F1 per candidate). The candidates are scored
    in blocks of candidates and of rows of at most about :data:`WEIGHT_CHUNK` fused probabilities, their
    confusion matrices summed over the row blocks, so memory stays bounded whatever the rows.
    """
    _, n_rows, n_classes = probabilities.shape
    row_block = max(1, min(n_rows, WEIGHT_CHUNK // n_classes))
    block = max(1, WEIGHT_CHUNK // (row_block * n_classes))
    confusion = np.zeros((len(grid), n_classes, n_classes))
    for first in range(0, n_rows, row_block):
        rows = slice(first, first + row_block)
        for start in range(0, len(grid), block):
            confusion[start : start + block] += confusion_matrices(
                fuse(grid[start : start + block], probabilities[:, rows]), labels[rows]
            )
    scores = confusion_scores(confusion)
    accuracy, macro_f1 = scores["accuracy"], scores["macro_f1"]
    unevenness = ((grid - 1 / grid.shape[1]) ** 2).sum(axis=1)
    order = np.lexsort((np.round(unevenness, 9), -np.round(macro_f1, 9), -accuracy))
    return int(order[0]), accuracy, macro_f1


def stacking_features(probabilities: np.ndarray) -> np.ndarray:
    """Members' probabilities side by side (rows, members*classes); a missing member takes the others' mean (NaN
    where no member scored the row)."""
    scored = ~np.isnan(probabilities)
    counts = scored.sum(axis=0)
    mean = np.where(counts > 0, np.nansum(probabilities, axis=0) / np.maximum(counts, 1), np.nan)
    filled = np.where(scored, probabilities, mean[None])
    return np.concatenate(list(filled), axis=1)


def fit_stacker(features: np.ndarray, labels: np.ndarray, seed: int) -> LogisticRegression:
    """Fit a logistic-regression stacker (scikit-learn, L2, lbfgs) on validation features and labels."""
    if len(np.unique(labels)) < 2:
        raise InputError("the validation split holds a single class: the stacker cannot be fitted")
    return LogisticRegression(max_iter=2000, random_state=seed).fit(features, labels)


def rows_fused_from_fewer(probabilities: np.ndarray, rows: Sequence[bool] | np.ndarray) -> int:
    """How many of ``rows`` lack a score from at least one member (and were fused from fewer)."""
    return int((np.isnan(probabilities).any(axis=2).any(axis=0) & np.asarray(rows)).sum())


def warn_fewer(fewer: dict, probabilities: np.ndarray, ids) -> None:
    """Warn of the rows fused from fewer than all the members (``fewer``: their count per split), and name the
    posts no member could score (no text, and an image that could not be read: found only when IER read it)."""
    if any(fewer.values()):
        log.warning("rows fused from fewer than all three members (a member could not score them): %s", fewer)
    unscored = np.isnan(probabilities).any(axis=2).all(axis=0)
    if unscored.any():
        log.warning(
            "%d post(s) with neither side any member could score, left out of every score (no text, and an image "
            "that could not be read):\n%s",
            unscored.sum(),
            list_some(np.asarray(ids)[unscored].tolist()),
        )


def score_methods(
    methods: Mapping[str, np.ndarray],
    labels: np.ndarray,
    splits: np.ndarray,
    tweets: np.ndarray,
    n_classes: int,
    seed: int = 0,
) -> dict:
    """Every reported method's scores: per split, and on test with intervals, on the same rows and per tweet.

    ``methods`` maps each method to its probabilities (rows, classes; NaN
    where it scored nothing), aligned with ``labels``, ``splits`` and
    ``tweets`` (each row's tweet). Returns ``{"methods": {method: {split:
    scores (:func:`emorec.metrics.method_scores`; val marked ``in_sample`` with
    what val chose), "test" with ``accuracy_ci``, ``macro_f1_ci`` and ``weighted_f1_ci``,
    "test_same_rows", "test_per_tweet"}}, "evaluation": the test rows, tweets,
    same rows left out and the bootstrap's settings, "fusion_vs_single": the
    paired difference of the best fusion and the best single modality, each chosen by validation macro-F1}`` (see
    :mod:`emorec.intervals`).
    """
    test = splits == "test"
    evaluation = evaluate_test(
        {method: p[test] for method, p in methods.items()}, labels[test], tweets[test], n_classes, seed=seed
    )
    scores = {}
    for method, p in methods.items():
        scores[method] = method_scores(labels, p, splits)
        if "val" in scores[method]:
            scores[method]["val"]["in_sample"] = VALIDATION_USE[method]
        tested = evaluation["scores"][method]
        scores[method]["test"] |= {key: tested["test"][key] for key in ("accuracy_ci", "macro_f1_ci", "weighted_f1_ci")}
        scores[method] |= {way: tested[way] for way in ("test_same_rows", "test_per_tweet")}
    return {
        "methods": scores,
        "evaluation": {key: value for key, value in evaluation.items() if key not in ("scores", "replicates")},
        "fusion_vs_single": paired_difference(
            evaluation,
            FUSION_METHODS,
            SINGLE_MODALITY,
            chosen_by={method: score["val"]["macro_f1"] for method, score in scores.items() if "val" in score},
        ),
    }


def search_and_stack(members: list[str], probabilities, labels, val, step: float, seed: int) -> dict:
    """The weight search on validation and the stacker fitted there, over ``members`` (their probabilities stacked
    as members x rows x classes). Returns the chosen weights, the fused and stacked probabilities of every row,
    the grid and the chosen candidate's validation scores."""
    grid = weight_grid(len(members), step)
    best, val_accuracy, val_macro_f1 = choose_weights(grid, probabilities[:, val], labels[val])
    weights = dict(zip(members, map(float, grid[best])))
    log.info(
        "late fusion of %d members: %d weight candidates; chosen on val (accuracy %.3f, macro-F1 %.3f): %s",
        len(members),
        len(grid),
        val_accuracy[best],
        val_macro_f1[best],
        listed(weights),
    )
    features = stacking_features(probabilities)
    scored = ~np.isnan(features).any(axis=1)  # a row no member scored has no stacked prediction either
    stacker = fit_stacker(features[val & scored], labels[val & scored], seed)
    stacked = np.full(probabilities.shape[1:], np.nan)
    stacked[scored] = class_probabilities(stacker, features[scored], probabilities.shape[2])
    return {
        "weights": weights,
        "late": fuse(grid[best], probabilities),
        "stacker": stacked,
        "stacker_model": stacker,
        "grid_step": step,
        "candidates": len(grid),
        "val_accuracy": float(val_accuracy[best]),
        "val_macro_f1": float(val_macro_f1[best]),
    }


def listed(weights: dict) -> str:
    """``{member: weight}`` as one line: ``TER 0.400, IER 0.200, ...``."""
    return ", ".join(f"{member} {weight:.3f}" for member, weight in weights.items())
