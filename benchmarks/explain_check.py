"""How well the explanations point at what the demo put there: tone words in the text, the light in the image.

    .venv/bin/python benchmarks/explain_check.py            # after `make demo`: its run in model_checkpoints/

On the demo's test rows (the first --rows with a readable image), with the run's models:

- **words**: the demo's texts carry two to four *tone* words (calm: "memories", "quiet", ...; hostile:
  "idiots", "pathetic", ...) among topic and function words. For TER and the fusion model: the mean occlusion
  importance of tone words against the other words, and how often the most important word is a tone word
  (against the share of tone words among the tokens: what a random pick would give);
- **regions**: the demo's light is spread over the whole image, so each test image gets a known decisive region:
  one half (left or right, in turn) is blanked to ImageNet's mean colour, the other keeps the picture. For IER
  and the fusion model: the share of the Grad-CAM heat on the kept half (0.5: no preference);
- **deletion**: on the whole image, the drop in IER's probability of the predicted class when the hottest
  quarter of the image is blanked, against blanking the coldest quarter;
- seconds per explanation, after the first.

Prints one JSON object. Not a test: its numbers depend on how well the run learnt.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint-dir", default="model_checkpoints")
    parser.add_argument("--manifest", default="data_t4sa/demo/image_labels.csv")
    parser.add_argument("--image-root", default="data_t4sa/demo")
    parser.add_argument("--rows", type=int, default=100, help="test rows explained")
    args = parser.parse_args()

    from emorec.data.dataset import load_dataset
    from emorec.demo_content import TONE_WORDS
    from emorec.explain.explainer import BLANK_RGB, Explainer
    from emorec.images import load_image
    from emorec.predictor import RunModels

    tone = set(TONE_WORDS[0]) | set(TONE_WORDS[1])
    explainer = Explainer(RunModels.load(args.checkpoint_dir))
    size = explainer.models.image_size
    frame = load_dataset(args.manifest, args.image_root, draw=False).frame
    test = frame[frame["split"] == "test"]
    words = {
        phase: {"tone": [], "other": [], "top_is_tone": [], "tone_share": []}
        for phase in ("TER", "Intermediate_fusion")
    }
    kept_share = {"IER": [], "Intermediate_fusion": []}
    drops = {"hottest": [], "coldest": []}
    right, seconds, done = 0, [], 0
    for text, path, label in zip(test["text"], test["image_path"], test["label"]):
        if done == args.rows:
            break
        pixels, ok = load_image(path, size)
        if not ok:
            continue
        start = time.perf_counter()
        full = explainer.explain(text, pixels)
        seconds.append(time.perf_counter() - start)
        right += int(full.prediction == label)
        for phase, record in words.items():
            tokens, importance = full.words[phase]
            is_tone = np.array([token in tone for token in tokens], bool)
            if is_tone.any() and (~is_tone).any():
                record["tone"] += importance[is_tone].tolist()
                record["other"] += importance[~is_tone].tolist()
                record["top_is_tone"].append(bool(is_tone[int(importance.argmax())]))
                record["tone_share"].append(float(is_tone.mean()))

        half = pixels.astype(np.float32)
        keep_left = done % 2 == 0
        half[:, size // 2 :] = BLANK_RGB if keep_left else half[:, size // 2 :]
        half[:, : size // 2] = half[:, : size // 2] if keep_left else BLANK_RGB
        halved = explainer.explain(text, half)
        for phase in kept_share:
            cam = halved.heat_maps[phase]
            if cam.sum() > 0:
                middle = cam.shape[1] / 2
                columns = np.arange(cam.shape[1]) + 0.5
                kept = cam[:, columns < middle] if keep_left else cam[:, columns > middle]
                kept_share[phase].append(float(kept.sum() / cam.sum()))

        cam, c = full.heat_maps["IER"], full.prediction
        quarters = {
            (r, q): cam[
                r * cam.shape[0] // 2 : (r + 1) * cam.shape[0] // 2, q * cam.shape[1] // 2 : (q + 1) * cam.shape[1] // 2
            ].mean()
            for r in (0, 1)
            for q in (0, 1)
        }
        for name, (r, q) in (
            ("hottest", max(quarters, key=quarters.get)),
            ("coldest", min(quarters, key=quarters.get)),
        ):
            blanked = pixels.astype(np.float32)
            blanked[r * size // 2 : (r + 1) * size // 2, q * size // 2 : (q + 1) * size // 2] = BLANK_RGB
            drops[name].append(
                float(full.probabilities["IER"][c] - explainer.explain(text, blanked).probabilities["IER"][c])
            )
        done += 1

    def mean(values):
        return round(float(np.mean(values)), 4) if values else None

    print(
        json.dumps(
            {
                "rows": done,
                "fused_accuracy_on_them": round(right / max(done, 1), 3),
                "words": {
                    phase: {
                        "tweets": len(r["top_is_tone"]),
                        "mean_importance_tone": mean(r["tone"]),
                        "mean_importance_other": mean(r["other"]),
                        "top_word_is_tone": mean(r["top_is_tone"]),
                        "tone_share_of_tokens": mean(r["tone_share"]),
                    }
                    for phase, r in words.items()
                },
                "heat_on_the_kept_half": {phase: mean(v) for phase, v in kept_share.items()},
                "IER_drop_blanking_quarter": {name: mean(v) for name, v in drops.items()},
                "seconds_per_explanation": {
                    "first": round(seconds[0], 2),
                    "median_after": round(float(np.median(seconds[1:])), 2),
                }
                if len(seconds) > 1
                else None,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
