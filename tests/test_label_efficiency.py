"""The label-efficiency study: the training subsample and the sweep that draws the curve (issue 7)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from conftest import interrupt_after_epoch

import Intermediate_fusion
import sweep
from emorec import label_efficiency, label_efficiency_report
from emorec.cli import run
from emorec.data.dataset import load_dataset
from emorec.data.splits import labelled_training_rows
from emorec.demo import GLOVE_NAME, MANIFEST_NAME
from emorec.errors import InputError
from emorec.fusion import METHODS, SHORT_METHOD_NAMES
from emorec.zero_shot import ZERO_SHOT_NAMES

# Every method but the zero-label ones, which a VGG16 run (no text tower: --zero-shot auto leaves them out) lacks.
REPORTED = [method for method in METHODS if method not in ZERO_SHOT_NAMES]


@pytest.fixture(scope="module")
def demo_frame(small_demo):
    return load_dataset(small_demo / MANIFEST_NAME, small_demo, seed=0).frame


def test_subsample_is_stratified_seeded_and_leaves_val_and_test_alone(demo_frame):
    train = (demo_frame["split"] == "train").to_numpy()
    labels = demo_frame["label"].to_numpy()
    for fraction in (0.01, 0.1, 0.5):
        rows = labelled_training_rows(demo_frame, fraction=fraction, seed=0)
        assert not (rows & ~train).any()  # never a val or test row
        for label in range(4):
            available = int((train & (labels == label)).sum())
            assert (rows & (labels == label)).sum() == max(1, round(fraction * available))
        np.testing.assert_array_equal(rows, labelled_training_rows(demo_frame, fraction=fraction, seed=0))
        assert (rows != labelled_training_rows(demo_frame, fraction=fraction, seed=1)).any()
    rows = labelled_training_rows(demo_frame, per_class=5, seed=0)
    assert np.bincount(labels[rows], minlength=4).tolist() == [5, 5, 5, 5]
    np.testing.assert_array_equal(labelled_training_rows(demo_frame), train)
    assert labelled_training_rows(demo_frame, fraction=1.0, seed=3).sum() == train.sum()


def test_the_sweep_writes_one_row_per_setting_and_method(small_sweep):
    out, _ = small_sweep
    table = pd.read_csv(out / "results" / "label_efficiency.csv")
    assert len(table) == 2 * len(REPORTED)
    assert set(table["method"]) == set(REPORTED) and set(table["fraction"]) == {0.25, 1.0}
    labels = table.groupby("fraction")["training_labels"].first()
    assert labels[0.25] < labels[1.0]
    summary = json.loads((out / "results" / "t-f0.25-s0" / "summary.json").read_text())
    row = table[(table["fraction"] == 0.25) & (table["method"] == "Late_fusion")].iloc[0]
    assert row["accuracy"] == summary["methods"]["Late_fusion"]["test"]["accuracy"]
    markdown = (out / "results" / "label_efficiency.md").read_text()
    assert "Test accuracy" in markdown and "Test macro-F1" in markdown and "| 0.25 |" in markdown
    weighted = markdown.split("**Test weighted-F1**")[1].split("**")[0]
    header, *rows = (line.split("|") for line in weighted.splitlines() if line.startswith("| "))
    fraction_row = next(cells for cells in rows if cells[1].strip() == "0.25")
    late_cell = fraction_row[[cell.strip() for cell in header].index(SHORT_METHOD_NAMES["Late_fusion"])]
    assert float(late_cell.split()[0]) == pytest.approx(row["weighted_f1"], abs=5e-4)
    assert "redraws both the seeds and the test tweets" in markdown and "+ val labels" in markdown
    assert (table["validation_labels"] == summary["split_sizes"]["val"]).all()
    row_of_table = next(line for line in markdown.splitlines() if line.startswith("| 0.25 |"))
    cells = [cell.strip() for cell in row_of_table.strip("|").split("|")]
    assert cells[1:4] == [f"{labels[0.25]:,}", f"{summary['split_sizes']['val']:,}", "1"]
    for cell in cells[4:]:  # "mean [low, high]": one seed, so the interval is the test tweets' bootstrap
        mean, low, high = map(float, cell.replace("[", "").replace("]", "").replace(",", "").split())
        assert low <= mean <= high and high - low > 0.01, cell
    # The fusions against the better modality: one seed, so each difference is the two methods' test scores'.
    means = table[table["fraction"] == 0.25].set_index("method")["macro_f1"]
    modality = "TER" if means["TER"] >= means["IER"] else "IER"
    gains = markdown.split("**Fusion minus the better single modality**")[1]
    gain_row = next(line for line in gains.splitlines() if line.startswith("| 0.25 |"))
    cells = [cell.strip() for cell in gain_row.strip("|").split("|")]
    assert cells[1] == SHORT_METHOD_NAMES[modality]
    late = cells[2:][["Intermediate_fusion", "Average", "Late_fusion", "Stacker"].index("Late_fusion")]
    assert float(late.split()[0]) == pytest.approx(means["Late_fusion"] - means[modality], abs=5e-4)
    low, high = (float(v) for v in late.split("/")[0].split("[")[1].rstrip("] ").split(","))
    assert low <= float(late.split()[0]) <= high and high - low > 0.005
    assert (out / "results" / "label_efficiency.png").stat().st_size > 10_000
    # The whole-split setting ran first; its GloVe cache served the subsample without a second parse.
    assert len(list(out.glob(f"{GLOVE_NAME}.*.cache.npz"))) == 1


def test_the_three_phases_of_a_setting_train_on_the_same_examples(small_sweep, tmp_path):
    out, _ = small_sweep
    from emorec.data.fingerprints import read_training_ids

    ckpt = out / "ckpt" / "t-f0.25-s0"
    recorded = {
        phase: json.loads((ckpt / f"{phase}.args.json").read_text())["run"]
        for phase in ("TER", "IER", "Intermediate_fusion")
    }
    ids = {phase: read_training_ids(ckpt / f"{phase}.args.json", facts) for phase, facts in recorded.items()}
    assert ids["TER"] and ids["TER"] == ids["IER"] == ids["Intermediate_fusion"]
    assert recorded["TER"]["training_ids"]["count"] == len(ids["TER"])  # the JSON keeps the fingerprint, not the ids
    whole = json.loads((out / "ckpt" / "t-f1-s0" / "TER.args.json").read_text())
    assert whole["run"]["training_ids"] is None and whole["flags"]["label_fraction"] is None
    assert not (out / "ckpt" / "t-f1-s0" / "TER.training_ids.txt").exists()
    metrics = json.loads((ckpt / "TER.metrics.json").read_text())
    assert metrics["training_labels"] == len(ids["TER"])
    copy = tmp_path / "TER.args.json"
    shutil.copy(ckpt / "TER.args.json", copy)
    (tmp_path / "TER.training_ids.txt").write_text("\n".join(ids["TER"][1:]) + "\n")  # one id lost
    with pytest.raises(InputError, match="is not the list of training ids"):
        read_training_ids(copy, recorded["TER"])
    baselines = json.loads((out / "results" / "t-f0.25-s0" / "summary.json").read_text())["baselines"]
    assert {name: b["training_rows"] for name, b in baselines.items()} == {  # the baselines learn from them too
        "Baseline_text": len(ids["TER"]),
        "Baseline_image": len(ids["TER"]),
        "Baseline_both": len(ids["TER"]),
    }
    assert (
        metrics["splits"]["test"]["n"]
        == json.loads((out / "ckpt" / "t-f1-s0" / "TER.metrics.json").read_text())["splits"]["test"]["n"]
    )


def test_fusion_refuses_unimodal_runs_on_other_examples(small_sweep, small_demo, capsys):
    out, _ = small_sweep
    argv = [
        "--manifest",
        str(small_demo / MANIFEST_NAME),
        "--image-root",
        str(small_demo),
        "--run-name",
        "t-f0.25-s0",
        "--label-fraction",
        "0.5",
        "--checkpoint-dir",
        str(out / "ckpt"),
        "--log-dir",
        str(out / "tb2"),
        "--prob-dir",
        str(out / "probs2"),
    ]
    assert run(Intermediate_fusion.main, argv) == 2
    assert "trained on other examples" in capsys.readouterr().err


def test_an_interrupted_sweep_resumes_without_rerunning_finished_work(small_sweep, monkeypatch):
    out, argv = small_sweep
    calls = []
    monkeypatch.setattr(
        sweep, "PHASES", {phase: lambda phase_argv, phase=phase: calls.append(phase) or 0 for phase in sweep.PHASES}
    )
    assert sweep.main(argv) == 0
    assert calls == []  # both settings finished: nothing runs
    (out / "results" / "t-f0.25-s0" / "summary.json").unlink()  # as if killed during late fusion
    monkeypatch.undo()
    recorded = []
    monkeypatch.setattr(
        sweep,
        "PHASES",
        {
            phase: lambda phase_argv, phase=phase, main=main: recorded.append(phase) or main(phase_argv)
            for phase, main in sweep.PHASES.items()
        },
    )
    assert sweep.main(argv) == 0
    assert recorded == ["Late_fusion"]
    assert len(pd.read_csv(out / "results" / "label_efficiency.csv")) == 2 * len(REPORTED)


def test_a_sweep_killed_inside_a_phase_resumes_from_its_training_backup(small_sweep, monkeypatch, capsys):
    """Killed once Intermediate_fusion's epoch is backed up, the sweep resumes inside that phase: the rerun restores
    the backup instead of training, and writes the same probabilities."""
    out, argv = small_sweep
    probabilities = out / "probs" / "t-f0.25-s0" / "inter_prob.csv"
    before = probabilities.read_bytes()
    probabilities.unlink()
    (out / "results" / "t-f0.25-s0" / "summary.json").unlink()
    with monkeypatch.context() as patch:
        interrupt_after_epoch(patch, 1)  # the sweep's phases train one epoch: Intermediate_fusion's is the first to run
        with pytest.raises(KeyboardInterrupt):
            sweep.main(argv)
    assert (out / "ckpt" / "t-f0.25-s0" / ".Intermediate_fusion.backup" / "state.json").exists()
    capsys.readouterr()
    assert sweep.main(argv) == 0
    assert "resuming from the training backup" in capsys.readouterr().err
    assert probabilities.read_bytes() == before
    assert not (out / "ckpt" / "t-f0.25-s0" / ".Intermediate_fusion.backup").exists()


def test_the_sweep_refuses_to_tabulate_settings_on_different_splits(small_sweep, capsys):
    out, argv = small_sweep
    path = out / "results" / "t-f1-s0" / "summary.json"
    original = path.read_text()
    summary = json.loads(original)
    summary["data"]["split_sha256"] = "f" * 64
    path.write_text(json.dumps(summary))
    try:
        assert run(sweep.main, argv) == 2
    finally:
        path.write_text(original)
    error = capsys.readouterr().err
    assert "used different manifests or splits" in error and "t-f1-s0: split sha256 ffffffffffff" in error


def test_time_left_grows_with_the_fractions_still_to_run():
    done = [(0.1, 100.0), (0.5, 300.0)]  # a line: 50 s fixed, 500 s per whole training split
    assert label_efficiency.time_left(done, [1.0, 0.05]) == pytest.approx(550.0 + 100.0)  # never below the fastest seen
    assert label_efficiency.time_left([(0.1, 100.0)], [0.1, 0.1]) == pytest.approx(200.0)


def test_the_sweep_refuses_fractions_outside_zero_to_one():
    for bad in ("0", "1.5", "-0.1"):
        with pytest.raises(SystemExit):
            sweep.parse_args(["--fractions", "0.5", bad])
    assert sweep.parse_args(["--fractions", "0.05", "1"]).fractions == [0.05, 1.0]


def test_the_curve_keeps_its_legend_clear_of_the_lines_and_tells_equal_curves_apart():
    """Nine methods with the same scores: one marker each, their points side by side, the legend outside both axes
    (inside it covered the lines)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(METHODS)[:9]
    stats = pd.DataFrame(
        [
            {
                "method": method,
                "labels": labels,
                **{
                    f"{metric}{end}": 0.5 + shift
                    for metric in ("accuracy", "macro_f1")
                    for end, shift in (("", 0), ("_low", -0.1), ("_high", 0.1))
                },
            }
            for method in methods
            for labels in (30, 300, 3000)
        ]
    )
    figure = label_efficiency_report.curve_figure(stats, methods)
    figure.canvas.draw()
    (legend,) = figure.legends
    assert [text.get_text() for text in legend.get_texts()] == [SHORT_METHOD_NAMES[m] for m in methods]
    box = legend.get_window_extent()
    for axis in figure.axes:
        assert axis.get_legend() is None and not box.overlaps(axis.get_window_extent())
        lines = [line for line in axis.get_lines() if line.get_marker() not in (None, "None", "", "_")]
        assert len({line.get_marker() for line in lines}) == len(methods)
        assert len({tuple(line.get_xdata()) for line in lines}) == len(methods)  # not drawn on one another
    plt.close(figure)
