"""Intermediate (feature-level) fusion, the paper's third phase.

    python Intermediate_fusion.py --epoch=100

Arguments -> inputs from the earlier phases of the same run (TER's text
vectorizer and GloVe matrix from ``TER.keras``; IER's image feature store,
never recomputed, and its frozen backbone from ``IER.keras``) -> data (the same
manifest and split) -> model (image features -> Dense(3000) -> Dense(500),
joined with TER's two text paths -> Dense(1000) -> softmax; optionally
warm-started from the unimodal models. When TER trained a pretrained encoder,
its pooled features take the place of the two paths: read from TER's store
when TER kept it frozen, the encoder trained here too when TER fine-tuned it,
see docs/text_encoders.md) -> training (the best validation epoch
kept, by --monitor) -> evaluation -> outputs: ``model_checkpoints/Intermediate_fusion.keras``
(raw text and RGB pixels in, probabilities out; ``import emorec.models``
before loading it), its args/metrics JSON and epochs CSV,
TensorBoard curves in ``tb_logs/Intermediate_fusion/`` and
``data_files/inter_prob.csv`` (empty probabilities where IER could not read the image).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from emorec.cli import (
    ArgumentParser,
    TrainingDefaults,
    phase_parser,
    probability,
    run,
    run_folders,
    setup_logging,
    training_options,
)
from emorec.data.manifest import manifest_fix, texts_given
from emorec.feature_store import POOLINGS
from emorec.precision import PRECISIONS
from emorec.runs import PhaseOutputs, phase_output_fix, require_files, writable_outputs

log = logging.getLogger("emorec")
PHASE = "Intermediate_fusion"
PROB_FILE = "inter_prob.csv"


def build_parser() -> ArgumentParser:
    """The fusion's command line: the shared phase flags plus the fusion model's own."""
    # docs/phases.md: the defaults that differ from the paper
    parser = phase_parser(
        PHASE,
        "Train the paper's intermediate-fusion model on TER's text pipeline and IER's cached image features.",
        TrainingDefaults(
            batch_size=32,
            lr=None,
            lr_help="learning rate: Adam's, or AdamW's peak (warmed up over the first 10%% of steps, "
            "then cosine decay) when TER fine-tuned a text encoder, which trains here too (default: "
            "1e-4; 5e-5 with a fine-tuned encoder)",
            class_weight="balanced",
            monitor="val_macro_f1",
        ),
        resplit=False,
    )
    fusion = parser.add_argument_group("fusion model")
    fusion.add_argument(
        "--init-from-unimodal",
        action="store_true",
        help="start the text layers from TER.keras and the image Dense(3000)'s first 1000 units from IER.keras "
        "(off, as in the paper: random initialisation on top of the GloVe embeddings)",
    )
    fusion.add_argument(
        "--modality-dropout",
        type=probability,
        default=0.0,
        metavar="P",
        help="drop the text or the image (even odds) of each training post that has both, with probability P, "
        "so that the network learns to score a post from one modality: it then learns from and scores the posts "
        "that have only one as well (a missing image as zero features, a missing text as the empty text). 0, the "
        "default and the paper's: the network learns from and scores only posts with both (docs/robustness.md)",
    )
    fusion.add_argument(
        "--pooling",
        choices=POOLINGS,
        default=None,
        help="how the image features enter: as IER.py stored them (the default), or, from a store of whole "
        "feature maps (IER's --pooling flatten), pooled over space by average or maximum",
    )
    fusion.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="arithmetic of the fusion network: float32, or Keras' mixed bfloat16 / float16; auto: bfloat16 where "
        "this machine runs it natively, else float32 (the log says which)",
    )
    return parser


def parse_args(argv: Sequence[str] | None = None):
    """Parse the fusion's command line (:func:`build_parser`)."""
    return build_parser().parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Train the fusion model and write its model, metrics and probabilities; returns 0."""
    args = parse_args(argv)
    setup_logging()
    ter_files, ier_files = _earlier_phases(args)
    outputs = writable_outputs(run_folders(args), PHASE)  # every output folder writable, before any work
    import keras

    import emorec.models  # noqa: F401  (registers what TER.keras and IER.keras hold, before loading them)
    from emorec.data.dataset import load_dataset
    from emorec.data.splits import fit_rows, select_training_rows
    from emorec.extraction import image_pooling, phase_features
    from emorec.metrics import probability_table
    from emorec.precision import dtype_policy, resolve_precision
    from emorec.runs import RunRecord, check_same_training_rows, save_phase
    from emorec.training.backup import training_config
    from emorec.training.batches import ArrayBatches, ModalityDropout
    from emorec.training.fit import evaluate_readable, fit_best, seed_everything, start_training

    strategy, outputs, distribution = start_training(args.strategy, args.seed, args.deterministic, outputs)
    precision = resolve_precision(args.precision)  # auto resolved: the run record says what ran
    dataset = load_dataset(
        args.manifest, args.image_root, class_names=args.classes, strict_split=args.strict_split, draw=False
    )  # TER's and IER's split, never a new one
    frame, class_names, labels = dataset.frame, dataset.class_names, dataset.frame["label"].to_numpy()
    # TER and IER must have read these rows with this split, and learnt from the examples this command would.
    earlier = _earlier_records(dataset, ter_files, ier_files)
    training_rows = select_training_rows(frame, class_names, args.label_fraction, args.labels_per_class, args.seed)
    text_settings = fusion_text_settings(args, earlier["TER"])
    record = RunRecord(
        data=dataset.fingerprint,
        split_leakage=dataset.split_leakage,
        training_ids=training_rows.ids,
        distribution=distribution,
        precision=precision,
        text_model=text_settings,
        pooling=image_pooling(args.pooling, earlier["IER"].run.get("pooling", "flatten")),
    )
    check_same_training_rows(record.training_ids_fingerprint(), earlier)

    # Image: IER's feature store, checked against this manifest's images (never computed here).
    ier = keras.models.load_model(ier_files.model)
    extractor, ier_head = next(x for x in ier.layers if x.name.endswith("_extractor")), ier.get_layer("ier_head")
    image_features = phase_features(dataset, json.loads(ier_files.metrics_json.read_text()), earlier["IER"])
    sides, usable = _posts_used(frame, image_features.ok, args.modality_dropout)
    rows = fit_rows(frame, training_rows.mask, usable)
    features = image_features.features.absent_as_zeros(sides["image"])

    # Text and model: TER's text pipeline (its vectorizer and GloVe matrix, or its encoder), joined with the image.
    ter = keras.models.load_model(ter_files.model)
    seed_everything(args.seed, args.deterministic)
    with dtype_policy(precision), strategy.scope():
        build = paper_fusion if text_settings["model"] == "paper" else encoder_fusion
        fusion = build(args, ter, text_settings, frame, features, len(class_names), record.pooling)
    warm_started = fusion.warm_start(ier_head) if args.init_from_unimodal else []
    if warm_started:
        log.info("warm start from TER and IER: %s", ", ".join(warm_started))
    config = training_config(build_parser().training_flags(args), record)
    dropout = ModalityDropout(args.modality_dropout, fusion.absent, sides["text"] & sides["image"], args.seed)
    train = ArrayBatches(fusion.inputs, labels, rows["train"], args.batch_size, seed=args.seed, dropout=dropout)
    val = ArrayBatches(fusion.inputs, labels, rows["val"], 256)
    options = training_options(args, text_settings["lr"], OPTIMIZER[text_settings["model"]])
    training = fit_best(fusion.network, train, val, options, outputs, config, strategy)

    # Evaluation on every post it can score, on this process's device; the others keep empty probabilities.
    probabilities, metrics = evaluate_readable(fusion.network, fusion.inputs, dataset, usable)
    save_phase(
        outputs,
        fusion.saved_model(extractor),
        flags=vars(args),
        argv=argv,
        record=record,
        metrics={
            "phase": PHASE,
            "class_names": list(class_names),
            "training_labels": len(rows["train"]),
            "feature_store": str(image_features.folder),
            "warm_started_layers": warm_started,
            "text_model": text_settings,
            **_sides_record(args.modality_dropout, sides),
            "split_leakage": dataset.split_leakage,
            **training,
            **metrics,
        },
        probabilities=probability_table(frame, probabilities, class_names),
        prob_file=PROB_FILE,
    )
    return 0


def _posts_used(frame, image_ok, modality_dropout: float) -> tuple[dict, object]:
    """Which side each post has, and the posts the network learns from and scores: those with both, or with
    --modality-dropout those with either (the missing side shown as absent: zero image features, the empty text)."""
    sides = {"text": texts_given(frame), "image": image_ok}
    return sides, (sides["text"] | sides["image"]) if modality_dropout else (sides["text"] & sides["image"])


def _sides_record(modality_dropout: float, sides: dict) -> dict:
    """What the metrics record of the posts' sides: the dropout and how many posts lack each side."""
    return {"modality_dropout": modality_dropout, "posts_without": {s: int((~g).sum()) for s, g in sides.items()}}


def _earlier_phases(args) -> tuple[PhaseOutputs, PhaseOutputs]:
    """TER's and IER's outputs in this run, every file this phase reads checked first (:func:`require_files`)."""
    folders = run_folders(args)
    ter_files, ier_files = PhaseOutputs.of(folders, "TER"), PhaseOutputs.of(folders, "IER")
    needed = {args.manifest: manifest_fix(args.manifest)}
    for path in (ter_files.model, ter_files.args_json):
        needed[path] = phase_output_fix("TER", folders)
    for path in (ier_files.model, ier_files.metrics_json, ier_files.args_json):
        needed[path] = phase_output_fix("IER", folders)
    require_files(needed)
    return ter_files, ier_files


def _earlier_records(dataset, ter_files: PhaseOutputs, ier_files: PhaseOutputs) -> dict:
    """TER's and IER's recorded runs (:func:`emorec.runs.read_run_config`), refused unless they read
    ``dataset``'s rows with its split."""
    from emorec.data.fingerprints import check_same_data
    from emorec.runs import read_run_config

    earlier = {"TER": read_run_config(ter_files.args_json), "IER": read_run_config(ier_files.args_json)}
    runs = {phase: (config.path, config.run) for phase, config in earlier.items()}
    check_same_data(dataset.fingerprint, runs, "TER.py and IER.py (then this phase)")
    return earlier


OPTIMIZER = {"paper": "adam", "frozen": "adam", "fine-tuned": "adamw_warmup"}  # an encoder trained here: AdamW
LR = {"paper": 1e-4, "frozen": 1e-4, "fine-tuned": 5e-5}  # --lr's default by TER's text model (docs/text_encoders.md)


def fusion_text_settings(args, ter_config) -> dict:
    """The text model the fusion takes from TER (``ter_config``, its run config): paper, fine-tuned or frozen,
    with the learning rate resolved (``--lr``, else :data:`LR`'s) and a pretrained encoder's record."""
    ter_model = ter_config.run.get("text_model") or {"model": "paper"}
    settings = {
        "model": ter_model["model"],
        "lr": LR[ter_model["model"]] if args.lr is None else args.lr,
        "batch_size": args.batch_size,
    }
    if ter_model["model"] != "paper":
        settings |= {"seq_len": ter_model["seq_len"], "encoder": ter_model["encoder"]}
    return settings


@dataclass
class FusionParts:
    """What training and saving need of a fusion network: the ``network`` trained, its ``inputs`` (one row per
    manifest row), ``warm_start(ier_head)`` (the layers it changed), ``saved_model(extractor)`` (raw text and
    pixels in) and the ``absent`` inputs of a missing side (``{"text": {input: the empty text's row}, "image":
    {"image_features": zeros}}``, :class:`~emorec.training.batches.ModalityDropout`'s)."""

    network: object
    inputs: dict
    warm_start: Callable
    saved_model: Callable
    absent: dict


def absent_sides(text_inputs: dict, image_features) -> dict:
    """The inputs that stand for a missing side: ``text_inputs`` (the fusion's text inputs of the empty text, one
    row) and zero image features of ``image_features``' shape."""
    import numpy as np

    return {
        "text": {name: np.asarray(array)[0] for name, array in text_inputs.items()},
        "image": {"image_features": np.zeros(image_features.shape[1:], np.float32)},
    }


def paper_fusion(args, ter, text_settings, frame, image_features, n_classes: int, pooling: str) -> FusionParts:
    """The paper's fusion network on TER's vectorizer and GloVe matrix (its frozen channel holds it unchanged)."""
    from emorec.models import build_fusion_network, fusion_model, warm_start
    from emorec.text import vectorize

    vectorizer, ter_network = ter.get_layer("text_vectorization"), ter.get_layer("ter_network")
    glove_matrix = ter_network.get_layer("text_embedding_frozen").get_weights()[0]
    token_ids = vectorize(vectorizer, frame["text"])
    network = build_fusion_network(glove_matrix, token_ids.shape[1], image_features.shape[1:], n_classes, pooling)
    return FusionParts(
        network,
        {"token_ids": token_ids, "image_features": image_features},
        lambda ier_head: warm_start(network, ter_network, ier_head),
        lambda extractor: fusion_model(vectorizer, extractor, network),
        absent_sides({"token_ids": vectorize(vectorizer, [""])}, image_features),
    )


def encoder_fusion(args, ter, text_settings, frame, image_features, n_classes: int, pooling: str) -> FusionParts:
    """The fusion on TER's pretrained encoder: its pooled features in place of the GloVe paths. TER frozen: the
    features from TER's store, the head alone trained. TER fine-tuned: the encoder trained with the head (AdamW,
    warmed up, then decayed), starting from the preset's weights, or TER's with --init-from-unimodal."""
    from emorec.models import build_encoded_fusion_head, join_encoded_fusion, warm_start_image
    from emorec.text_encoders import (
        EncodedFusionModel,
        build_text_features,
        ensure_text_features,
        load_text_encoder,
        open_text_store,
        preprocess,
        saved_text_encoder,
    )

    encoder, ter_features = saved_text_encoder(ter, text_settings["encoder"])
    head = build_encoded_fusion_head(encoder.dim, image_features.shape[1:], n_classes, pooling)
    texts = frame["text"].tolist()
    if text_settings["model"] == "frozen":
        store = open_text_store(Path(text_settings["encoder"]["feature_store"]), encoder)
        inputs = {"text_features": ensure_text_features(store, encoder, texts), "image_features": image_features}
        return FusionParts(
            head,
            inputs,
            lambda ier_head: warm_start_image(head, ier_head),
            lambda extractor: EncodedFusionModel(
                encoder.preprocessor, extractor, join_encoded_fusion(ter_features, head), name=PHASE
            ),
            absent_sides({"text_features": ensure_text_features(store, encoder, [""])}, image_features),
        )
    features = ter_features
    if not args.init_from_unimodal:  # the preset's weights, as TER started from
        pretrained = load_text_encoder(encoder.preset, encoder.seq_len)
        if pretrained.weights_sha256 != encoder.weights_sha256:
            log.warning(
                "text encoder %s: its weights differ from those TER started from (sha256 %s, TER's %s)",
                encoder.preset,
                pretrained.weights_sha256[:12],
                encoder.weights_sha256[:12],
            )
        features = build_text_features(pretrained)
    network = join_encoded_fusion(features, head)

    def warm(ier_head):
        return ["text_encoder (TER's fine-tuned weights)", *warm_start_image(head, ier_head)]

    return FusionParts(
        network,
        {**preprocess(encoder, texts), "image_features": image_features},
        warm,
        lambda extractor: EncodedFusionModel(encoder.preprocessor, extractor, network, name=PHASE),
        absent_sides(preprocess(encoder, [""]), image_features),
    )


if __name__ == "__main__":
    sys.exit(run(main))
