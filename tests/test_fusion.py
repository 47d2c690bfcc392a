"""Late fusion's pieces: the weight grid and search (against brute force), renormalised fusion, joined files."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, f1_score

from emorec import fusion
from emorec.errors import InputError
from emorec.metrics import class_probabilities
from emorec.probability_files import read_probability_files

CLASSES = ["happy", "sad", "hate", "anger"]


def random_members(seed=0, rows=80, classes=4, missing=(3, 10, 11)):
    """Three members' probabilities on ``rows`` rows; member 1 (the image) has no score on ``missing``."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, rows)
    logits = rng.normal(size=(3, rows, classes)) + 1.2 * np.eye(classes)[labels] * rng.uniform(0, 1.5, (3, 1, 1))
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=2, keepdims=True)
    probabilities[1, list(missing)] = np.nan
    return probabilities, labels


def test_grid_is_the_papers_normalised_and_without_duplicates():
    grid = fusion.weight_grid(3, 0.1)
    np.testing.assert_allclose(grid.sum(axis=1), 1.0)
    raw = {tuple(np.round(np.array(w) / sum(w), 9)) for w in itertools.product(np.arange(1, 10) / 10, repeat=3)}
    assert len(grid) == len(raw) and {tuple(np.round(w, 9)) for w in grid} == raw
    assert len(fusion.weight_grid(3, 0.25)) == len(
        {tuple(np.round(np.array(w) / sum(w), 9)) for w in itertools.product((0.25, 0.5, 0.75), repeat=3)}
    )
    with pytest.raises(InputError):
        fusion.weight_grid(3, 1.5)


@pytest.mark.parametrize("step, values", [(0.3, (0.3, 0.6, 0.9)), (0.5, (0.5,)), (0.7, (0.7,)), (0.9, (0.9,))])
def test_grid_of_a_coarse_step_holds_every_multiple_below_one(step, values):
    grid = fusion.weight_grid(3, step)
    expected = {tuple(np.round(np.array(w) / sum(w), 9)) for w in itertools.product(values, repeat=3)}
    assert {tuple(np.round(w, 9)) for w in grid} == expected  # from 0.5 on: one candidate, equal weights


def test_rows_a_member_could_not_score_are_fused_from_the_others():
    probabilities, _ = random_members()
    weights = np.array([0.2, 0.5, 0.3])
    fused = fusion.fuse(weights, probabilities)
    np.testing.assert_allclose(fused[0], (weights[:, None] * probabilities[:, 0]).sum(axis=0))
    np.testing.assert_allclose(fused[3], (0.2 * probabilities[0, 3] + 0.3 * probabilities[2, 3]) / 0.5)
    np.testing.assert_allclose(fused.sum(axis=1), 1.0)
    assert fusion.rows_fused_from_fewer(probabilities, np.ones(80, bool)) == 3


def brute_force_choice(probabilities, labels, step=0.1):
    """The search written as the plain loop it replaces: fuse row by row, score with scikit-learn."""
    values = np.arange(1, round(1 / step)) * step
    best, seen = None, set()
    for raw in itertools.product(values, repeat=3):
        weights = np.array(raw) / sum(raw)
        if tuple(np.round(weights, 9)) in seen:
            continue
        seen.add(tuple(np.round(weights, 9)))
        predictions = []
        for row in range(len(labels)):
            scored = [m for m in range(3) if not np.isnan(probabilities[m, row]).any()]
            mixed = sum(weights[m] * probabilities[m, row] for m in scored) / sum(weights[m] for m in scored)
            predictions.append(int(np.argmax(mixed)))
        key = (
            accuracy_score(labels, predictions),
            round(f1_score(labels, predictions, average="macro", labels=range(4), zero_division=0), 9),
            -round(float(((weights - 1 / 3) ** 2).sum()), 9),
        )
        if best is None or key > best[0]:
            best = (key, weights)
    return best


@pytest.mark.parametrize("seed, chunk", [(0, fusion.WEIGHT_CHUNK), (1, fusion.WEIGHT_CHUNK), (2, 5000), (3, 37)])
def test_weight_search_matches_a_brute_force_loop(seed, chunk, monkeypatch):
    # 5000: candidates scored a few at a time; 37: one candidate on 9 rows at a time, confusions summed over blocks
    monkeypatch.setattr(fusion, "WEIGHT_CHUNK", chunk)
    probabilities, labels = random_members(seed)
    grid = fusion.weight_grid(3, 0.1)
    index, accuracy, macro_f1 = fusion.choose_weights(grid, probabilities, labels)
    (best_accuracy, best_f1, _), best_weights = brute_force_choice(probabilities, labels)
    assert accuracy[index] == pytest.approx(best_accuracy)
    assert macro_f1[index] == pytest.approx(best_f1)
    np.testing.assert_allclose(grid[index], best_weights)


def test_the_weight_search_at_500k_rows_stays_within_its_blocks(monkeypatch):
    """500,000 validation rows (B-T4SA's size): the search holds about WEIGHT_CHUNK fused values at a time, not
    candidates x rows x classes, and finds what scoring every candidate on all rows at once finds."""
    import tracemalloc

    rng = np.random.default_rng(0)
    rows = 500_000
    labels = rng.integers(0, 4, rows)
    probabilities = rng.dirichlet(np.ones(4), size=(3, rows)) + 0.3 * np.eye(4)[labels][None]
    probabilities[1, :1000] = np.nan  # rows a member could not score
    grid = fusion.weight_grid(3, 0.25)
    monkeypatch.setattr(fusion, "WEIGHT_CHUNK", 2**20)  # 8 MB of float64 fused values at a time
    tracemalloc.start()
    index, accuracy, macro_f1 = fusion.choose_weights(grid, probabilities, labels)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    whole = len(grid) * rows * 4 * 8  # every candidate's fused probabilities at once, float64
    print(
        f"peak {peak / 1e6:.0f} MB traced for {len(grid)} candidates x {rows} rows (all at once: {whole / 1e6:.0f} MB)"
    )
    assert peak < 160e6 < whole
    expected_accuracy, expected_f1 = fusion.accuracy_and_macro_f1(fusion.fuse(grid, probabilities), labels)
    np.testing.assert_allclose(accuracy, expected_accuracy)
    np.testing.assert_allclose(macro_f1, expected_f1)


def test_ties_go_to_the_most_even_weights():
    probabilities = np.tile(np.eye(4)[[0, 1, 2, 3, 0]], (3, 1, 1)).astype(float)  # three identical, perfect members
    grid = fusion.weight_grid(3, 0.1)
    index, accuracy, _ = fusion.choose_weights(grid, probabilities, np.array([0, 1, 2, 3, 0]))
    assert accuracy.min() == 1.0
    np.testing.assert_allclose(grid[index], [1 / 3] * 3)


def write_probs(path, ids, splits, labels, values, classes=CLASSES):
    table = pd.DataFrame({"id": ids, "split": splits, "label": labels})
    for column, name in enumerate(classes):
        table[name] = values[:, column]
    table.to_csv(path, index=False)
    return path


@pytest.fixture
def prob_files(tmp_path):
    """Three agreeing probability files (the second in another row order, with one empty image row)."""
    rng = np.random.default_rng(0)
    ids = [f"1000{i}" for i in range(12)]
    splits = ["train"] * 6 + ["val"] * 3 + ["test"] * 3
    labels = [CLASSES[i % 4] for i in range(12)]
    values = rng.dirichlet(np.ones(4), size=(3, 12))
    values[1, 4] = np.nan
    order = np.arange(12)[::-1]
    paths = {
        "TER": write_probs(tmp_path / "text_prob.csv", ids, splits, labels, values[0]),
        "IER": write_probs(
            tmp_path / "img_prob.csv",
            np.array(ids)[order],
            np.array(splits)[order],
            np.array(labels)[order],
            values[1][order],
        ),
        "Intermediate_fusion": write_probs(tmp_path / "inter_prob.csv", ids, splits, labels, values[2]),
    }
    return paths, values, ids, splits, labels


def test_files_are_joined_on_id(prob_files):
    paths, values, ids, _, labels = prob_files
    rows, class_names, probabilities = read_probability_files(paths)
    assert class_names == CLASSES and rows["id"].tolist() == ids
    assert rows["label"].tolist() == [CLASSES.index(name) for name in labels]
    np.testing.assert_allclose(probabilities, values)  # the reversed file is put back in order, NaN kept


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda t: t.drop(index=2), "different ids"),
        (lambda t: t.assign(id=t["id"].where(t.index != 0, "999")), "different ids"),
        (lambda t: t.assign(split=t["split"].where(t.index != 7, "train")), "disagree on the split"),
        (lambda t: t.assign(label=t["label"].where(t.index != 1, "anger")), "disagree on the label"),
        (lambda t: t.rename(columns={"hate": "fear"}), "different class columns"),
        (lambda t: pd.concat([t, t.iloc[[3]]]), "duplicated id"),
        (lambda t: t.drop(columns=["split"]), "not a probability file"),
    ],
)
def test_files_that_disagree_are_refused(prob_files, change, message):
    paths = prob_files[0]
    table = pd.read_csv(paths["Intermediate_fusion"], dtype={"id": str})
    change(table).to_csv(paths["Intermediate_fusion"], index=False)
    with pytest.raises(InputError, match=message):
        read_probability_files(paths)


@pytest.mark.parametrize("content", [b"", b"\xff\xfe\x00garbage\n", b"id,split,label\n"])
def test_empty_or_unreadable_probability_files_name_the_phase_to_rerun(prob_files, content):
    paths = prob_files[0]
    paths["IER"].write_bytes(content)
    with pytest.raises(InputError, match=r"img_prob.csv.*`python IER.py`"):
        read_probability_files(paths)


def test_stacker_fills_a_missing_member_with_the_others_mean():
    probabilities, labels = random_members()
    features = fusion.stacking_features(probabilities)
    assert features.shape == (80, 12) and not np.isnan(features).any()
    np.testing.assert_allclose(features[3, 4:8], (probabilities[0, 3] + probabilities[2, 3]) / 2)
    stacker = fusion.fit_stacker(features, labels, seed=0)
    out = class_probabilities(stacker, features, 4)
    np.testing.assert_allclose(out.sum(axis=1), 1.0)


def test_the_both_baseline_never_builds_every_rows_matrix_yet_fits_and_scores_as_if_it_did(monkeypatch):
    """fit_baseline on :class:`SideBySide` (rows built on demand, scored in blocks of 7 here) gives what
    scikit-learn gives on the whole side-by-side matrix; unreadable images' rows get NaN."""
    from scipy import sparse
    from sklearn.linear_model import LogisticRegression

    from emorec import baselines

    rng = np.random.default_rng(0)
    rows, labels = 120, rng.integers(0, 3, 120)
    texts = [
        " ".join(rng.choice(["sun", "rain", "grim", "glad", "so", "very"], size=5)) + f" w{label}" for label in labels
    ]
    splits = np.array(["train"] * 80 + ["val"] * 20 + ["test"] * 20)
    ok = rng.random(rows) > 0.1
    train, val = splits == "train", splits == "val"
    text = baselines.text_features(texts, train)
    image = baselines.image_features((rng.normal(size=(rows, 16)) + labels[:, None]).astype(np.float32), train & ok)
    monkeypatch.setattr(baselines, "SCORE_CHUNK", 7)
    fitted = baselines.fit_baseline(baselines.SideBySide(text, image), labels, train, val, ok, 3, "none", 0)
    whole = sparse.hstack([text, image[np.arange(rows)]]).tocsr()
    assert text.dtype == np.float32 and image.standardised.dtype == np.float32 and whole.dtype == np.float64
    assert fitted.training_rows == (train & ok).sum()
    expected = LogisticRegression(C=fitted.C, max_iter=2000, random_state=0).fit(
        whole[train & ok].astype(np.float64), labels[train & ok]
    )
    np.testing.assert_allclose(fitted.probabilities[ok], class_probabilities(expected, whole[ok], 3), atol=1e-6)
    assert np.isnan(fitted.probabilities[~ok]).all()
