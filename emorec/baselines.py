"""The simple baselines beside every result: scikit-learn logistic regressions on the run's own rows.

A reviewer's first question of a deep model is whether it beats a linear one
on the same data. Each baseline trains on exactly the training rows of the run
(the whole train split, or its ``--label-fraction``/``--labels-per-class``
subsample), chooses its regularisation C on the validation split by
macro-F1, and scores every row, like a phase:

- text: TF-IDF of word 1- and 2-grams (sublinear tf, fitted on the training
  texts) -> logistic regression;
- image: a linear probe, logistic regression on the cached backbone features
  of IER.py, average-pooled over the spatial axes and standardised;
- both: logistic regression on the two side by side.

Each baseline's class weighting follows the ``--class-weight`` of the phase it
is compared with (text: TER, image: IER, both: Intermediate_fusion). Everything is sparse
or pooled, so 100,000 rows take minutes on a CPU, not hours.

Memory grows with the rows only by what must: the pooled image features
(2 KB a row for 512 channels, standardised in place), the TF-IDF rows and, while
fitting, the training and validation rows' design matrix (for the both
baseline about 6 KB per training row, in float64). The matrices of every row are
float32, and no design matrix of every row is built (:class:`ImageRows` and
:class:`SideBySide` give the rows asked for, in float64, as lbfgs fits best);
every row is scored in blocks of :data:`SCORE_CHUNK`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from emorec.data.manifest import texts_given
from emorec.metrics import class_probabilities

log = logging.getLogger("emorec")

# The baselines, in report order, with how reports name them.
BASELINE_NAMES = {
    "Baseline_text": "Baseline: TF-IDF + logistic regression (text)",
    "Baseline_image": "Baseline: linear probe on pooled image features",
    "Baseline_both": "Baseline: logistic regression on TF-IDF + image features",
}
# The phase each baseline is compared with (and whose --class-weight it follows).
COMPARED_PHASE = {"Baseline_text": "TER", "Baseline_image": "IER", "Baseline_both": "Intermediate_fusion"}
# Each baseline's probability file, in the run's prob folder (the phases' layout).
BASELINE_PROB_FILES = {
    "Baseline_text": "baseline_text_prob.csv",
    "Baseline_image": "baseline_image_prob.csv",
    "Baseline_both": "baseline_both_prob.csv",
}
C_GRID = (0.25, 1.0, 4.0, 16.0)  # inverse regularisation strengths tried, chosen on val
MIN_DF_FROM = 100  # training texts from which a term must occur in two of them
POOL_CHUNK = 4096  # feature-cache rows pooled at once, so a 470,000-row memmap never loads whole
SCORE_CHUNK = 8192  # rows scored at once, so no design matrix of every row is built for scoring


@dataclass
class Baseline:
    """One fitted baseline: ``probabilities`` (rows x classes; NaN where it has no input), the C chosen on val,
    that C's validation macro-F1 and the number of rows it learnt from."""

    probabilities: np.ndarray
    C: float
    val_macro_f1: float
    training_rows: int


def text_features(texts: Sequence[str], train: np.ndarray) -> sparse.csr_matrix:
    """TF-IDF of word 1- and 2-grams with sublinear tf, its vocabulary fitted on the ``train`` rows' texts.

    Terms in fewer than two training texts are dropped (on 3,440 real tweets
    this raised the baseline's macro-F1 from 0.81 to 0.86), except below
    :data:`MIN_DF_FROM` training texts, where that could leave nothing.
    Returns a sparse float32 (rows x terms) matrix for every text, each row L2-normalised.
    """
    texts = np.asarray(texts, dtype=object)
    min_df = 2 if train.sum() >= MIN_DF_FROM else 1
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=min_df, dtype=np.float32)
    vectorizer.fit(texts[train])
    return vectorizer.transform(texts).tocsr()


def pooled_features(features: np.ndarray, chunk: int = POOL_CHUNK) -> np.ndarray:
    """Average a feature array (rows x ... x channels, for example VGG16's 7 x 7 x 512) over every axis between
    the first and the last; read in chunks of rows, so a memory-mapped cache never loads whole.

    Returns (rows, channels) float32; a (rows, channels) array comes back as float32 unchanged.
    """
    axes = tuple(range(1, features.ndim - 1))
    pooled = np.empty((len(features), features.shape[-1]), dtype=np.float32)
    for start in range(0, len(features), chunk):
        block = np.asarray(features[start : start + chunk], dtype=np.float32)
        pooled[start : start + chunk] = block.mean(axis=axes) if axes else block
    return pooled


def image_features(pooled: np.ndarray, train: np.ndarray) -> ImageRows:
    """Standardise pooled features in place with the ``train`` rows' mean and deviation (``pooled`` float32, as
    :func:`pooled_features` gives it); return them as :class:`ImageRows`, the image baseline's design matrix."""
    StandardScaler(copy=False).fit(pooled[train]).transform(pooled)
    return ImageRows(pooled)


@dataclass
class ImageRows:
    """Standardised pooled image features (float32, every row) that give, for an array of row indices, those
    rows in float64 scaled by 1/sqrt(channels), so a row's norm is about 1, like a TF-IDF row's, and neither
    block of :class:`SideBySide` drowns the other. Scaled as the rows are taken, they hold the values of a float64
    matrix without one for every row (on the demo, float32-rounded values moved the C=16 fit by up to 0.02 in
    probability: the fit is that flat)."""

    standardised: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return self.standardised.shape

    def __getitem__(self, rows: np.ndarray) -> np.ndarray:
        return self.standardised[rows] / np.sqrt(self.standardised.shape[1])  # float32 / float64 scalar: float64


def both_features(text: sparse.csr_matrix, image: np.ndarray) -> sparse.csr_matrix:
    """The text and image features side by side (sparse, in the wider of their dtypes), built as CSR directly:
    converting the dense image block with ``csr_matrix`` would first list its every value's row and column (16
    bytes each: 8 KB per row for 512 channels), and ``hstack`` would copy both blocks once more."""
    rows, width = image.shape
    text_counts = np.diff(text.indptr)
    indptr = text.indptr + width * np.arange(rows + 1)
    image_starts = indptr[:-1] + text_counts  # each row: its text entries, then its image values
    data = np.empty(indptr[-1], dtype=np.result_type(text.dtype, image.dtype))
    indices = np.empty(indptr[-1], dtype=np.int32)
    text_positions = np.arange(text.nnz) + np.repeat(indptr[:-1] - text.indptr[:-1], text_counts)
    data[text_positions], indices[text_positions] = text.data, text.indices
    del text_positions
    for column in range(width):  # one image column at a time: no rows x width index array
        data[image_starts + column], indices[image_starts + column] = image[:, column], text.shape[1] + column
    return sparse.csr_matrix((data, indices, indptr), shape=(rows, text.shape[1] + width))


@dataclass
class SideBySide:
    """The design matrix of the both-modalities baseline, without building it for every row: ``side_by_side[rows]``
    (an index array) gives :func:`both_features` of those rows' text and image features, in float64 (the image
    rows' dtype)."""

    text: sparse.csr_matrix
    image: ImageRows

    def __getitem__(self, rows: np.ndarray) -> sparse.csr_matrix:
        return both_features(self.text[rows], self.image[rows])


def fit_baseline(
    x,
    labels: np.ndarray,
    train: np.ndarray,
    val: np.ndarray,
    scored: np.ndarray,
    n_classes: int,
    class_weight: str,
    seed: int,
) -> Baseline:
    """Fit logistic regression on the ``train`` rows of ``x`` for each C of :data:`C_GRID`; keep the C with the
    best macro-F1 on the ``val`` rows (the smaller C on a tie).

    ``x`` is a (rows x features) matrix, dense or sparse, or anything that
    gives one for an array of row indices (:class:`ImageRows`, :class:`SideBySide`): only the
    training and validation rows are taken at once, the scored rows go in
    blocks of :data:`SCORE_CHUNK`. ``train``, ``val`` and ``scored`` are
    boolean masks over the rows (rows outside ``scored``, such as unreadable
    images, are left out of all three and get NaN probabilities).
    ``class_weight`` is "none" or "balanced" (scikit-learn's). Returns a :class:`Baseline`.
    """
    train_rows, val_rows = np.flatnonzero(train & scored), np.flatnonzero(val & scored)
    # Taken once for every C; the training rows in float64, as scikit-learn fits them best (ImageRows and
    # SideBySide give float64 already: no copy then).
    x_train = x[train_rows].astype(np.float64, copy=False)
    x_val = x[val_rows]
    best, val_classes = None, np.unique(labels[val_rows])
    # One BLAS thread: lbfgs makes many small products (rows x features by features x classes), where threads
    # cost more than they give (benchmarks/baselines_scale.py; figures in docs/phases.md).
    with threadpool_limits(1):
        for C in C_GRID:
            model = LogisticRegression(
                C=C, max_iter=2000, class_weight=None if class_weight == "none" else class_weight, random_state=seed
            )
            model.fit(x_train, labels[train_rows])
            score = f1_score(  # over the classes val has, as every macro-F1 here (emorec.metrics.method_scores)
                labels[val_rows], model.predict(x_val), average="macro", labels=val_classes, zero_division=0
            )
            if best is None or score > best[1]:
                best = (model, score, C)
    del x_train, x_val
    model, score, C = best
    probabilities = np.full((len(labels), n_classes), np.nan)
    rows = np.flatnonzero(scored)
    for start in range(0, len(rows), SCORE_CHUNK):
        block = rows[start : start + SCORE_CHUNK]
        probabilities[block] = class_probabilities(model, x[block], n_classes)
    return Baseline(probabilities, C, float(score), len(train_rows))


def run_baselines(
    frame,
    train: np.ndarray,
    n_classes: int,
    image: tuple[np.ndarray, np.ndarray] | None,
    class_weights: dict[str, str] | None = None,
    seed: int = 0,
) -> dict[str, Baseline]:
    """Fit the three baselines (the text one alone when ``image`` is None).

    ``frame`` holds every row's ``text``, ``label`` and ``split``; ``train``
    marks the rows to learn from (within the train split); ``image`` is IER's
    stored features (rows x ...) and which of its rows hold a readable image;
    ``class_weights`` gives each baseline's class weighting by name ("none" or
    "balanced"; "none" where not given), so that it can follow the phase it is
    compared with. Returns ``{name: Baseline}`` in :data:`BASELINE_NAMES` order.
    """
    weighting = {name: (class_weights or {}).get(name, "none") for name in BASELINE_NAMES}
    texts, labels, splits = frame["text"].tolist(), frame["label"].to_numpy(), frame["split"].to_numpy()
    val, with_text = splits == "val", texts_given(frame)
    if not val.any():
        raise ValueError("the baselines choose C on the validation split, which is empty")
    text = text_features(texts, train & with_text)
    inputs = {"Baseline_text": (text, with_text)}
    if image is not None:
        features, features_ok = image
        pooled = image_features(pooled_features(features), train & features_ok)
        both = SideBySide(text, pooled)
        inputs |= {"Baseline_image": (pooled, features_ok), "Baseline_both": (both, features_ok & with_text)}
    fitted = {
        name: fit_baseline(x, labels, train, val, scored, n_classes, weighting[name], seed)
        for name, (x, scored) in inputs.items()
    }
    for name, baseline in fitted.items():
        log.info("%s: C %g chosen on val (macro-F1 %.3f)", name, baseline.C, baseline.val_macro_f1)
    return fitted


def phase_weighting(recorded: dict) -> dict[str, str]:
    """Each baseline's class weighting: the --class-weight of the phase it is compared with, from that phase's
    recorded flags (``recorded``: {phase: :class:`~emorec.runs.RunConfig`}; "none" for runs from before the flag)."""
    return {name: recorded[phase].flags.get("class_weight", "none") for name, phase in COMPARED_PHASE.items()}


def baseline_record(baselines: dict[str, Baseline], weighting: dict[str, str], prob_files: dict[str, str]) -> dict:
    """What a run's metrics and summary record of each baseline: C, validation macro-F1, training rows, class
    weighting and probability file."""
    return {
        name: {
            "C": b.C,
            "val_macro_f1": b.val_macro_f1,
            "training_rows": b.training_rows,
            "class_weight": weighting[name],
            "prob_file": prob_files[name],
        }
        for name, b in baselines.items()
    }
