"""Text emotion recognition (TER), the paper's first phase.

    python TER.py --epoch=100

Arguments -> data (the manifest and its shared split) -> text pipeline (tweet
normalisation and vocabulary from the training split, GloVe vectors) -> model
(two GloVe channels, BiLSTM and convolution paths) -> training (the best
validation epoch kept, by --monitor) -> evaluation -> outputs. With
``--text-encoder PRESET`` a pretrained KerasHub encoder replaces the text
pipeline and the network (:mod:`emorec.text_encoders`): fine-tuned with a
softmax head, or, with ``--freeze-text-encoder``, frozen, its features stored
once and only the head trained. Outputs: ``model_checkpoints/TER.keras``
(raw strings in, probabilities out; ``import emorec.models`` before loading it),
``TER.args.json``, ``TER.metrics.json``, ``TER.epochs.csv``, TensorBoard curves
in ``tb_logs/TER/`` and ``data_files/text_prob.csv`` (empty probabilities for
posts without a text, which TER neither learns from nor scores).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from emorec.cli import (
    ArgumentParser,
    TrainingDefaults,
    at_least,
    phase_parser,
    positive_int,
    run,
    run_folders,
    setup_logging,
    training_options,
)
from emorec.data.manifest import manifest_fix, texts_given
from emorec.glove import DEFAULT_GLOVE, check_glove_dimension, glove_fix
from emorec.precision import PRECISIONS
from emorec.presets import require_local_preset
from emorec.runs import require_files, writable_outputs

log = logging.getLogger("emorec")
PHASE = "TER"
PROB_FILE = "text_prob.csv"
PAPER = "paper"  # --text-encoder's value for the paper's GloVe BiLSTM+CNN network
MIN_SEQ_LEN = 4  # the network max-pools the sequence by 4 (emorec.models.build_ter_network)
# The defaults each text model resolves: learning rate, batch size and tokens per text (docs/text_encoders.md).
DEFAULTS = {
    "paper": {"lr": 1e-3, "batch_size": 256, "seq_len": 30},
    "fine-tuned": {"lr": 5e-5, "batch_size": 32, "seq_len": 64},
    "frozen": {"lr": 1e-3, "batch_size": 64, "seq_len": 64},
}


def build_parser() -> ArgumentParser:
    """TER's command line: the shared phase flags plus the text model's own."""
    defaults = {
        key: ", ".join(f"{value[key]:g} ({mode})" for mode, value in DEFAULTS.items())
        for key in ("lr", "batch_size", "seq_len")
    }
    parser = phase_parser(
        PHASE,
        "Train the paper's text emotion recognition model, or a pretrained text encoder.",
        TrainingDefaults(
            batch_size=None,
            lr=None,
            class_weight="balanced",
            monitor="val_macro_f1",
            batch_size_help=f"examples per training batch (default: {defaults['batch_size']})",
            lr_help=f"learning rate: Adam's for the paper's network and a frozen encoder's head, "
            f"AdamW's peak (warmed up over the first 10%% of steps, then cosine decay) when "
            f"fine-tuning an encoder (default: {defaults['lr']})",
        ),
    )  # docs/phases.md: defaults that differ from the paper
    text = parser.add_argument_group(
        "text model",
        "--glove, --embedding-dim and --max-words are the paper's "
        "network's; an encoder brings its own tokenizer and vectors",
    )
    _add_encoder_flags(parser, text)
    text.add_argument(
        "--glove",
        default=DEFAULT_GLOVE,
        help="GloVe text file (glove.twitter.27B.200d.txt from glove.twitter.27B.zip); "
        "'none' for random initialisation",
    )
    text.add_argument(
        "--embedding-dim", type=positive_int, default=200, help="embedding dimension; must match the GloVe file"
    )
    text.add_argument(
        "--max-words", type=positive_int, default=40000, help="vocabulary size: the most frequent training words"
    )
    text.add_argument(
        "--seq-len",
        type=at_least(MIN_SEQ_LEN),
        default=None,
        help=f"tokens per text (longer texts are cut, shorter padded); at least {MIN_SEQ_LEN}, the "
        f"paper's network's pooling width (default: {defaults['seq_len']}); an encoder's tokens "
        "are its tokenizer's word pieces, with its start and end tokens",
    )
    return parser


def _add_encoder_flags(parser: ArgumentParser, text) -> None:
    """A pretrained text encoder instead of the paper's network: which, frozen or not, its store, its precision."""
    text.add_argument(
        "--text-encoder",
        default=PAPER,
        metavar="PRESET",
        help="'paper' (the paper's GloVe BiLSTM+CNN network) or a pretrained KerasHub text encoder: a KerasHub "
        "preset name (bert_base_en_uncased), an hf:// handle (hf://sentence-transformers/all-MiniLM-L6-v2), a "
        "kaggle:// handle or a local folder (KerasHub's or Hugging Face's layout); needs pip install -r "
        "Requirements-hub.txt",
    )
    text.add_argument(
        "--freeze-text-encoder",
        action="store_true",
        help="with --text-encoder: keep the encoder frozen, compute each text's features once into the store "
        "under --cache-dir and train only the head (seconds per epoch) instead of fine-tuning it",
    )
    parser.add_outside_training(
        text,
        "--cache-dir",
        default="data_files/features",
        help="where a frozen text encoder's feature store is kept (one folder per encoder)",
    )
    text.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="float32",
        help="arithmetic of the text model: float32 (the default: the paper's), or Keras' mixed bfloat16 / "
        "float16 (weights float32), which pays for a pretrained encoder where the hardware has it; auto: "
        "bfloat16 where this machine's CPU or GPU runs it natively, else float32 (the log says which)",
    )


def parse_args(argv: Sequence[str] | None = None):
    """Parse TER's command line (:func:`build_parser`), checked."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.glove = None if args.glove.lower() == "none" else args.glove
    if args.freeze_text_encoder and args.text_encoder == PAPER:
        parser.error("--freeze-text-encoder needs --text-encoder PRESET (the paper's network has no encoder to freeze)")
    return args


def text_mode(args) -> str:
    """Which text model the flags ask for: paper, fine-tuned or frozen (the keys of :data:`DEFAULTS`)."""
    return "paper" if args.text_encoder == PAPER else "frozen" if args.freeze_text_encoder else "fine-tuned"


def resolved(args, key: str):
    """A flag's value, or its text model's default where it was left out (None)."""
    value = getattr(args, key)
    return DEFAULTS[text_mode(args)][key] if value is None else value


def main(argv: Sequence[str] | None = None) -> int:
    """Train TER and write its model, metrics and probabilities; returns 0."""
    args = parse_args(argv)
    setup_logging()
    mode = text_mode(args)
    _check_inputs(args, mode)  # every missing input at once, before any work
    outputs = writable_outputs(run_folders(args), PHASE)  # every output folder writable, before any work
    # Heavy imports after parsing, so --help and argument errors answer at once.
    import numpy as np

    from emorec.data.dataset import load_dataset
    from emorec.data.splits import select_training_rows
    from emorec.metrics import classification_metrics, probability_table
    from emorec.precision import dtype_policy, resolve_precision
    from emorec.runs import RunRecord, save_phase
    from emorec.training.backup import training_config
    from emorec.training.batches import ArrayBatches
    from emorec.training.fit import fit_best, start_training

    strategy, outputs, distribution = start_training(args.strategy, args.seed, args.deterministic, outputs)
    precision = resolve_precision(args.precision)  # auto resolved: the run record says what ran

    # Data: every phase reads the same manifest and the same split. TER also runs on text alone (no image column).
    dataset = load_dataset(
        args.manifest,
        args.image_root,
        seed=args.seed,
        resplit=args.resplit,
        class_names=args.classes,
        strict_split=args.strict_split,
        images_required=False,
    )
    frame, class_names, with_text = dataset.frame, dataset.class_names, texts_given(dataset.frame)
    training_rows = select_training_rows(frame, class_names, args.label_fraction, args.labels_per_class, args.seed)
    train, val = training_rows.mask & with_text, (frame["split"] == "val").to_numpy() & with_text
    labels = frame["label"].to_numpy()
    settings = {"model": mode, **{key: resolved(args, key) for key in ("lr", "batch_size", "seq_len")}}

    # Text model: the network to train, its inputs (one row per manifest row) and the model saved around it.
    with dtype_policy(precision), strategy.scope():
        build = paper_text_model if mode == "paper" else encoder_text_model
        network, inputs, model, encoder = build(args, frame, train, settings["seq_len"], len(class_names))
    if encoder is not None:
        settings["encoder"] = encoder
    settings["training_steps"] = args.epochs * -(-int(train.sum()) // settings["batch_size"])
    record = RunRecord(
        data=dataset.fingerprint,
        split_leakage=dataset.split_leakage,
        training_ids=training_rows.ids,
        distribution=distribution,
        precision=precision,
        text_model=settings,
    )  # later phases check it
    # The paper's Adam; fine-tuning a transformer takes AdamW, warmed up, then decayed.
    options = training_options(args, settings["lr"], "adamw_warmup" if mode == "fine-tuned" else "adam")
    config = training_config(build_parser().training_flags(args), record)

    # Training, on the devices of --strategy.
    train_batches = ArrayBatches(inputs, labels, np.flatnonzero(train), settings["batch_size"], seed=args.seed)
    val_batches = ArrayBatches(inputs, labels, np.flatnonzero(val), 1024)
    training = fit_best(network, train_batches, val_batches, options, outputs, config, strategy)

    # Evaluation, with the saved model itself on the texts (made outside the strategy: it predicts on one
    # device); a frozen encoder's head on the stored features, which the saved model computes again.
    if mode == "frozen":
        probabilities = network.predict(ArrayBatches(inputs, labels, np.arange(len(labels)), 1024), verbose=0)
    else:
        probabilities = score_texts(model, frame["text"].tolist(), progress=mode == "fine-tuned")
    probabilities[~with_text] = np.nan  # a post without its text: the other phases' to score
    metrics = classification_metrics(*(a[with_text] for a in (labels, probabilities, frame["split"])), class_names)
    save_phase(
        outputs,
        model,
        flags=vars(args),
        argv=argv,
        record=record,
        metrics={
            "phase": PHASE,
            "class_names": list(class_names),
            "training_labels": int(train.sum()),
            "rows_without_text": int((~with_text).sum()),
            "split_leakage": dataset.split_leakage,
            "text_model": settings,
            **training,
            **metrics,
        },
        probabilities=probability_table(frame, probabilities, class_names),
        prob_file=PROB_FILE,
    )
    return 0


def _check_inputs(args, mode: str) -> None:
    """Every input file of the flags at once (the manifest, GloVe's), then a pretrained encoder's folder and the
    GloVe file's dimension."""
    needed = {args.manifest: manifest_fix(args.manifest)}
    if mode == "paper" and args.glove is not None:
        needed[args.glove] = glove_fix(args.glove)
    require_files(needed)
    if mode != "paper":
        require_local_preset(args.text_encoder, "--text-encoder")
    if mode == "paper" and args.glove is not None:
        check_glove_dimension(args.glove, args.embedding_dim)


def paper_text_model(args, frame, train, seq_len: int, n_classes: int):
    """The paper's text pipeline and network: the vocabulary from the training rows only, GloVe vectors.
    Returns the network, its token ids (one row per manifest row), the saved model (raw strings in) and None
    (no encoder)."""
    from emorec.glove import embedding_matrix
    from emorec.models import build_ter_network, text_model
    from emorec.text import adapt_vectorizer, build_vectorizer, vectorize

    vectorizer = build_vectorizer(args.max_words, seq_len)
    vocabulary = adapt_vectorizer(vectorizer, frame["text"][train])
    log.info("vocabulary: %s words from %s training texts", f"{len(vocabulary) - 2:,}", f"{train.sum():,}")
    embeddings = embedding_matrix(args.glove, vocabulary, args.embedding_dim, args.seed)
    network = build_ter_network(embeddings, seq_len, n_classes)
    return network, vectorize(vectorizer, frame["text"]), text_model(vectorizer, network), None


def score_texts(model, texts: list[str], progress: bool):
    """The saved model's probabilities for ``texts``; with ``progress`` (a fine-tuned encoder, minutes over a few
    thousand texts on a CPU) in batches of 64 under a progress bar, else 1,024 at a time, silently."""
    import tensorflow as tf

    if progress:
        log.info("scoring the %d rows with the trained model", len(texts))
    return model.predict(tf.constant(texts), batch_size=64 if progress else 1024, verbose=1 if progress else 0)


def encoder_text_model(args, frame, train, seq_len: int, n_classes: int):
    """A pretrained encoder (``--text-encoder``) and a softmax head. Fine-tuned: the network is both, on the
    preprocessor's token arrays. Frozen: the head alone, on each text's features from the store. Returns the
    network, its inputs (one row per manifest row), the saved model (raw strings in) and the encoder's record.
    ``train`` is unused: an encoder brings its own vocabulary (the signature is :func:`paper_text_model`'s)."""
    from emorec.storage import beside_or_fallback
    from emorec.text_encoders import (
        EncodedTextModel,
        build_text_features,
        build_text_head,
        ensure_text_features,
        join_text_network,
        load_text_encoder,
        open_text_store,
        preprocess,
        text_store_folder,
    )

    encoder = load_text_encoder(args.text_encoder, seq_len)
    described = encoder.describe()
    log.info(
        "text encoder %s: %s, %s weights, %d-dimensional features, %d tokens per text",
        args.text_encoder,
        encoder.architecture,
        f"{described['weights']:,}",
        encoder.dim,
        seq_len,
    )
    features = build_text_features(encoder)
    head = build_text_head(encoder.dim, n_classes)
    model = EncodedTextModel(encoder.preprocessor, join_text_network(features, head), name=PHASE)
    if not args.freeze_text_encoder:
        return model.network, preprocess(encoder, frame["text"]), model, described
    folder = beside_or_fallback(text_store_folder(args.cache_dir, encoder), "the text feature store")
    features.trainable = False
    described["feature_store"] = str(folder)  # where the fusion reads them
    return (
        head,
        ensure_text_features(open_text_store(folder, encoder), encoder, frame["text"].tolist()),
        model,
        described,
    )


if __name__ == "__main__":
    sys.exit(run(main))
