"""Text emotion recognition (TER), the paper's first phase.

    python TER.py --epoch=100

Arguments -> data (the manifest and its shared split) -> text pipeline (tweet
normalisation and vocabulary from the training split, GloVe vectors) -> model
(two GloVe channels, BiLSTM and convolution paths) -> training (the best
validation epoch kept, by --monitor) -> evaluation -> outputs: ``model_checkpoints/TER.keras``
(raw strings in, probabilities out; ``import emorec.models`` before loading it),
``TER.args.json``, ``TER.metrics.json``, ``TER.epochs.csv``, TensorBoard curves
in ``tb_logs/TER/`` and ``data_files/text_prob.csv``.
"""

from __future__ import annotations

import logging
import sys
from typing import Sequence

from emorec.cli import at_least, phase_parser, positive_int, run, setup_logging
from emorec.data.manifest import manifest_fix
from emorec.glove import DEFAULT_GLOVE, check_glove_dimension, glove_fix
from emorec.runs import require_files, writable_outputs

log = logging.getLogger("emorec")
PHASE = "TER"
PROB_FILE = "text_prob.csv"
MIN_SEQ_LEN = 4  # the network max-pools the sequence by 4 (emorec.models.build_ter_network)


def parse_args(argv: Sequence[str] | None = None):
    """Parse TER's command line: the shared phase flags plus the text model's own."""
    parser = phase_parser(PHASE, "Train the paper's text emotion recognition model.", batch_size=256, lr=1e-3,
                          class_weight="balanced", monitor="val_macro_f1")  # docs/phases.md: defaults that differ from the paper
    text = parser.add_argument_group("text model")
    text.add_argument(
        "--glove", default=DEFAULT_GLOVE,
        help="GloVe text file (glove.twitter.27B.200d.txt from glove.twitter.27B.zip); 'none' for random initialisation",
    )
    text.add_argument("--embedding-dim", type=positive_int, default=200,
                      help="embedding dimension; must match the GloVe file")
    text.add_argument("--max-words", type=positive_int, default=40000,
                      help="vocabulary size: the most frequent training words")
    text.add_argument("--seq-len", type=at_least(MIN_SEQ_LEN), default=30,
                      help=f"tokens per text (longer texts are cut, shorter padded); at least {MIN_SEQ_LEN}, the "
                      "model's pooling width")
    args = parser.parse_args(argv)
    args.glove = None if args.glove.lower() == "none" else args.glove
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Train TER and write its model, metrics and probabilities; returns 0."""
    args = parse_args(argv)
    setup_logging()
    # Every missing input at once, before any work.
    needed = {args.manifest: manifest_fix(args.manifest)}
    if args.glove is not None:
        needed[args.glove] = glove_fix(args.glove)
    require_files(needed)
    if args.glove is not None:
        check_glove_dimension(args.glove, args.embedding_dim)
    outputs = writable_outputs(args, PHASE)  # every output folder writable, before any work
    # Heavy imports after parsing, so --help and argument errors answer at once.
    import numpy as np
    import tensorflow as tf

    from emorec.data.dataset import load_dataset
    from emorec.data.splits import select_training_rows
    from emorec.glove import embedding_matrix
    from emorec.models import build_ter_network, text_model
    from emorec.report import classification_metrics, probability_table
    from emorec.runs import RunRecord, save_phase
    from emorec.text import adapt_vectorizer, build_vectorizer, vectorize
    from emorec.training.backup import training_config
    from emorec.training.batches import ArrayBatches
    from emorec.training.fit import class_weights, fit_best, start_training, use_xla

    strategy, outputs, distribution = start_training(args.strategy, args.seed, args.deterministic, outputs)

    # Data: every phase reads the same manifest and the same split. TER also runs on text alone (empty image cells).
    dataset = load_dataset(args.manifest, args.image_root, seed=args.seed, resplit=args.resplit,
                           class_names=args.classes, strict_split=args.strict_split, images_required=False)
    frame, class_names = dataset.frame, dataset.class_names
    training_rows = select_training_rows(frame, class_names, args.label_fraction, args.labels_per_class, args.seed)
    train, val = training_rows.mask, (frame["split"] == "val").to_numpy()
    record = RunRecord(data=dataset.fingerprint, split_leakage=dataset.split_leakage,
                       training_ids=training_rows.ids, distribution=distribution)  # later phases check it

    # Text pipeline: the vocabulary comes from the training rows only.
    vectorizer = build_vectorizer(args.max_words, args.seq_len)
    vocabulary = adapt_vectorizer(vectorizer, frame["text"][train])
    log.info("vocabulary: %s words from %s training texts", f"{len(vocabulary) - 2:,}", f"{train.sum():,}")
    embeddings = embedding_matrix(args.glove, vocabulary, args.embedding_dim, args.seed)
    token_ids = vectorize(vectorizer, frame["text"])
    labels = frame["label"].to_numpy()

    # Model and training, on the devices of --strategy.
    with strategy.scope():
        network = build_ter_network(embeddings, args.seq_len, len(class_names))
    training = fit_best(
        network, train=ArrayBatches(token_ids, labels, np.flatnonzero(train), args.batch_size, seed=args.seed),
        val=ArrayBatches(token_ids, labels, np.flatnonzero(val), 1024), epochs=args.epochs, lr=args.lr,
        outputs=outputs, class_weight=class_weights(labels[train], args.class_weight), monitor=args.monitor,
        patience=args.patience, config=training_config(args, record), strategy=strategy,
        jit_compile=use_xla(args, network),
    )

    # Evaluation, with the saved model itself (made outside the strategy: it predicts on one device).
    model = text_model(vectorizer, network)
    probabilities = model.predict(tf.constant(frame["text"].tolist()), batch_size=1024, verbose=0)
    metrics = classification_metrics(labels, probabilities, frame["split"], class_names)
    save_phase(
        outputs, PHASE, model, args=args, argv=argv, record=record,
        metrics={"class_names": list(class_names), "training_labels": int(train.sum()),
                 "split_leakage": dataset.split_leakage, **training, **metrics},
        probabilities=probability_table(frame, probabilities, class_names), prob_file=PROB_FILE,
    )
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
