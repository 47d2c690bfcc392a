"""docs/real_data.md's commands, as a user runs them, on a tiny folder in MVSA-Single's distributed layout with
tiny random weights in the real formats where the page reads them (issue 43).

The page's study runs on the real MVSA-Single with all-MiniLM-L6-v2, the TF-ported EfficientNet-Lite0 and GloVe 6B
50-d, which cannot be downloaded here: the test writes a tiny BERT in the Hugging Face layout, a tiny timm checkpoint
and a 50-d GloVe file in the real one, each at the path the page names, converts the folder with docs/data.md's
command, then runs the page's block; test_readme's SMALL appends ``--fractions 0.5 --seeds 0 --epoch 1`` to each sweep.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from emorec.baselines import BASELINE_NAMES
from emorec.fusion import FUSIONS, MEMBERS

TWEETS_PER_CLASS = 20  # 60 tweets: 48 / 6 / 6 by the converter's 8:1:1 split, 24 training labels at fraction 0.5


def write_glove(path, words, dimensions=50):
    """A GloVe file as Stanford's: one word and its ``dimensions`` values per line, space-separated, no header."""
    rng = np.random.default_rng(0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{word} {' '.join(f'{v:.5f}' for v in rng.normal(0, 0.4, dimensions))}\n"
                            for word in words), encoding="utf-8")


@pytest.fixture(scope="module")
def studied(tmp_path_factory):
    """A clone-like folder after the page's block: the MVSA fixture converted, every sweep run."""
    from conftest import write_timm_checkpoint
    from test_mvsa import plain_tweets, write_mvsa
    from test_readme import REPO, block, commands, run_block, run_command
    from test_text_encoders import SPECIAL, write_hugging_face_folder

    root = tmp_path_factory.mktemp("real")
    for path in REPO.iterdir():
        if path.suffix == ".py" or path.name in ("emorec", "docs"):
            (root / path.name).symlink_to(path)
    tweets = plain_tweets(200, per_class=TWEETS_PER_CLASS)
    write_mvsa(root / "data_mvsa/MVSA_Single", tweets, unlabelled=())
    words = sorted({word for _, text in tweets.values() for word in text.decode().split()})
    lines = commands(block("real-data")) + commands(block("real-data-defaults"))
    models = {words_[words_.index(flag) + 1] for words_ in lines for flag in ("--text-encoder",) if flag in words_}
    (text_folder,) = models
    write_hugging_face_folder(root / text_folder, list(dict.fromkeys(SPECIAL + list("abcdefghijklmnopqrstuvwxyz")
                                                                      + words)))
    write_timm_checkpoint(root / "models/tf_efficientnet_lite0", image_size=32)
    write_glove(root / "data_files/glove.6B.50d.txt", words)
    run_block("mvsa", root)
    for words in lines:  # the control's VGG16 at 32 pixels, not 224 (the last value of a flag holds)
        if "vgg16" in words[words.index("--ier-args") + 1]:
            words[words.index("--ier-args") + 1] += " --image-size 32"
    # One after another: started together, the sweeps' thread pools fight over the cores and cost more in all.
    return root, lines, [run_command(words, root) for words in lines]


def test_the_real_data_block_runs_every_configuration_of_the_study(studied):
    root, lines, _ = studied
    prefixes = [words[words.index("--run-prefix") + 1] for words in lines]
    # The curve, GloVe, fine-tuned, the control; class weighting twice and the monitor, for the defaults.
    assert len(prefixes) == len(set(prefixes)) >= 7
    for words, prefix in zip(lines, prefixes):
        results = root / words[words.index("--results-dir") + 1]
        table = pd.read_csv(results / "label_efficiency.csv")
        assert set(table["method"]) == {*MEMBERS, *BASELINE_NAMES, *FUSIONS}, prefix
        summary = json.loads((results / f"{prefix}-f0.5-s0" / "summary.json").read_text())
        assert summary["split_sizes"] == {"train": 48, "val": 6, "test": 6}  # the converter's 8:1:1 split
        markdown = (results / "label_efficiency.md").read_text()
        assert "**Test weighted-F1**" in markdown and "**Fusion minus the better single modality**" in markdown


def test_each_configuration_ran_the_encoders_the_page_names(studied):
    root, lines, _ = studied
    text_models = {}
    for words in lines:
        prefix = words[words.index("--run-prefix") + 1]
        ter = json.loads((root / "model_checkpoints" / f"{prefix}-f0.5-s0" / "TER.metrics.json").read_text())
        ier = json.loads((root / "model_checkpoints" / f"{prefix}-f0.5-s0" / "IER.metrics.json").read_text())
        text_models[prefix] = ter.get("text_model", {}).get("model", "paper")
        store = ier["feature_store"].split("/")[-1]
        ier_flags = words[words.index("--ier-args") + 1]
        assert (ier["class_weights"] is not None) == ("--class-weight balanced" in ier_flags), prefix
        assert ter["monitor"] == ("val_loss" if "--monitor val_loss" in words[words.index("--ter-args") + 1]
                                  else "val_macro_f1"), prefix
        if "vgg16" in ier_flags:
            assert store.startswith("vgg16_32px_") and ier["weights_identity"] == "none-seed0", store
        else:
            assert store.startswith("tf_efficientnet_lite0_32px_embedding_float32_"), store
    assert sorted(text_models.values()).count("frozen") >= 2 and "fine-tuned" in text_models.values()
    assert "paper" in text_models.values()
