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


@pytest.fixture(scope="module")
def studied(tmp_path_factory):
    """A clone-like folder after the page's blocks: the MVSA fixture converted, every sweep run; (the folder, the
    blocks' commands as run)."""
    from conftest import link_clone, write_timm_checkpoint
    from test_mvsa import plain_tweets, write_mvsa
    from test_readme import block, commands, run_block, run_command
    from test_text import write_glove
    from test_text_encoders import SPECIAL, write_hugging_face_folder

    root = link_clone(tmp_path_factory.mktemp("real"))
    tweets = plain_tweets(200, per_class=TWEETS_PER_CLASS)
    write_mvsa(root / "data_mvsa/MVSA_Single", tweets, unlabelled=())
    vocabulary = sorted({word for _, text in tweets.values() for word in text.decode().split()})
    lines = commands(block("real-data")) + commands(block("real-data-defaults"))
    (text_folder,) = {words[words.index("--text-encoder") + 1] for words in lines if "--text-encoder" in words}
    write_hugging_face_folder(
        root / text_folder, list(dict.fromkeys(SPECIAL + list("abcdefghijklmnopqrstuvwxyz") + vocabulary))
    )
    write_timm_checkpoint(root / "models/tf_efficientnet_lite0", image_size=32)
    rng = np.random.default_rng(0)
    (root / "data_files").mkdir()
    write_glove(root / "data_files/glove.6B.50d.txt", [(word, rng.normal(0, 0.4, 50)) for word in vocabulary])
    run_block("mvsa", root)
    for words in lines:  # the control's VGG16 at 32 pixels, not 224 (the last value of a flag holds)
        if "vgg16" in words[words.index("--ier-args") + 1]:
            words[words.index("--ier-args") + 1] += " --image-size 32"
        for flag in ("--ter-args", "--inter-args"):  # one epoch, also where the page passes --epoch 4 through
            words[words.index(flag) + 1] += " --epoch 1"
    # One after another: started together, the sweeps' thread pools fight over the cores and cost more in all.
    for words in lines:
        run_command(words, root)
    return root, lines


def test_the_real_data_block_runs_every_configuration_of_the_study(studied):
    root, lines = studied
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
    root, lines = studied
    text_models = {}
    for words in lines:
        prefix = words[words.index("--run-prefix") + 1]
        run = root / "model_checkpoints" / f"{prefix}-f0.5-s0"
        ter, ier, fusion = (
            json.loads((run / f"{phase}.metrics.json").read_text()) for phase in ("TER", "IER", "Intermediate_fusion")
        )
        ter_flags, ier_flags, inter_flags = (
            words[words.index(f"--{phase}-args") + 1] for phase in ("ter", "ier", "inter")
        )
        text_models[prefix] = ter.get("text_model", {}).get("model", "paper")
        store = ier["feature_store"].split("/")[-1]
        # Balanced unless the page says none: IER's and the fusion's default.
        assert (ier["class_weights"] is None) == ("--class-weight none" in ier_flags), prefix
        assert (fusion["class_weights"] is None) == ("--class-weight none" in inter_flags), prefix
        assert ter["monitor"] == ("val_loss" if "--monitor val_loss" in ter_flags else "val_macro_f1"), prefix
        if "vgg16" in ier_flags:
            assert store.startswith("vgg16_32px_") and ier["weights_identity"] == "none-seed0", store
        else:
            assert store.startswith("tf_efficientnet_lite0_32px_embedding_float32_"), store
    assert list(text_models.values()).count("frozen") >= 2 and "fine-tuned" in text_models.values()
    assert "paper" in text_models.values()
