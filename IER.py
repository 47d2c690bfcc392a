"""Image emotion recognition (IER), the paper's second phase.

    python IER.py --epoch=100

Arguments -> data (the manifest and its shared split) -> features (the frozen
backbone, by default ImageNet VGG16, run once per image into a float16 feature
store that later runs and Intermediate_fusion.py reuse) -> model (the paper's dense
head on the cached features) -> training (the best validation epoch kept, by --monitor) ->
evaluation -> outputs: ``model_checkpoints/IER.keras`` (backbone and head:
RGB pixels in, probabilities out; ``import emorec.models`` before loading it),
``IER.args.json``, ``IER.metrics.json``, ``IER.epochs.csv``, TensorBoard curves
in ``tb_logs/IER/`` and ``data_files/img_prob.csv`` (empty probabilities for
images that could not be read).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from emorec.cli import (
    ArgumentParser,
    TrainingDefaults,
    phase_parser,
    positive_int,
    run,
    run_folders,
    setup_logging,
    training_options,
)
from emorec.data.manifest import manifest_fix
from emorec.feature_store import CACHE_KEYS, POOLINGS
from emorec.precision import PRECISIONS
from emorec.presets import HUB_REQUIREMENTS, IMAGE_PRESET_FORMS, require_local_preset
from emorec.runs import require_files, writable_outputs

log = logging.getLogger("emorec")
PHASE = "IER"
PROB_FILE = "img_prob.csv"
# The keras.applications backbones, each with the smallest image side it is built for; any other --backbone is a
# KerasHub preset (emorec.image_encoders), which brings its own image size.
MIN_IMAGE_SIZE = {"vgg16": 32, "resnet50": 32, "efficientnetb0": 32}


def build_parser() -> ArgumentParser:
    """IER's command line: the shared phase flags plus the image model's own."""
    # docs/phases.md: the defaults that differ from the paper
    parser = phase_parser(
        PHASE,
        "Train the paper's image emotion recognition model.",
        TrainingDefaults(batch_size=20, lr=1e-4, class_weight="balanced", monitor="val_macro_f1"),
    )
    image = parser.add_argument_group("image model")
    _add_backbone_flags(image)
    _add_store_flags(parser, image)
    return parser


def _add_backbone_flags(image) -> None:
    """The image model's backbone: which network, its weights, the image size, pooling and precision."""
    image.add_argument(
        "--backbone",
        default="vgg16",
        metavar="NAME_OR_PRESET",
        help="the frozen backbone: a keras.applications CNN (vgg16, the paper's; resnet50; efficientnetb0), or a "
        "KerasHub image preset with its own weights and preprocessing (clip_vit_base_patch16, "
        "vit_base_patch16_224_imagenet, dinov2_base, resnet_50_imagenet, an hf:// or kaggle:// handle, or a local "
        "folder, timm's checkpoints among them; "
        f"pip install -r {HUB_REQUIREMENTS}; docs/image_encoders.md)",
    )
    image.add_argument(
        "--image-weights",
        default=None,
        help="a CNN's weights: imagenet (the default: Keras' download and cache), none (random), or a weights file "
        "(a preset carries its own)",
    )
    image.add_argument(
        "--backbone-seed",
        type=int,
        default=0,
        help="seed of the random backbone of --image-weights none; apart from --seed, so that runs with "
        "different seeds share one feature cache, as they do with real weights",
    )
    image.add_argument(
        "--image-size",
        type=int,
        default=None,
        help="images are resized to SIZE x SIZE: 224 by default for a CNN (at least 32); a preset's "
        "own size, which is the only one it takes",
    )
    image.add_argument(
        "--pooling",
        choices=(*POOLINGS, "embedding"),
        default=None,  # embedding: emorec.image_encoders
        help="a CNN's last feature map: kept whole and flattened (the default, the paper's; VGG16 at 224 px: 25,088 "
        "numbers per image) or pooled over space by average or maximum (512): a 49x smaller store and head. A "
        "preset: its own image embedding (the default: CLIP's projected class token, SigLIP's pooled output, the "
        "class token of ViT and DINOv2, a CNN's spatial average), or the average or maximum over its patch tokens "
        "or over space; a CNN preset's whole last feature map by flatten",
    )
    image.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="arithmetic of the backbone and the head: float32, or Keras' mixed bfloat16 / float16 (weights "
        "float32); auto: bfloat16 where this machine's CPU or GPU runs it natively, else float32 (the log says "
        "which); stored features are float16 whatever it is",
    )


def _add_store_flags(parser: ArgumentParser, image) -> None:
    """Where and how the backbone's features are stored and extracted, and what an unreadable image does."""
    parser.add_outside_training(
        image,
        "--cache-key",
        choices=CACHE_KEYS,
        default="stat",
        help="how the feature store recognises an image it has: its path under --image-root with its size and "
        "modification time (stat), or a hash of its bytes (content: for copies that do not keep modification "
        "times; reads every image once per run)",
    )
    parser.add_outside_training(
        image, "--extract-batch-size", type=positive_int, default=32, help="images per backbone batch when extracting"
    )
    image.add_argument(
        "--num-shards",
        type=positive_int,
        default=1,
        metavar="K",
        help="extract only share --shard-index of K of the images into the feature store, then stop without "
        "training: K processes (or machines sharing the store's folder, or a job array) fill one store at once; "
        "IER.py without it then finds every image stored and computes nothing",
    )
    image.add_argument(
        "--shard-index",
        type=int,
        default=0,
        metavar="I",
        help="which share this process extracts under --num-shards K: 0 to K-1",
    )
    parser.add_outside_training(
        image,
        "--cache-dir",
        default="data_files/features",
        help="where the image feature stores are kept, one per backbone configuration (read-only: a store "
        "already there is read, a new one goes to $EMOREC_CACHE_DIR, else ~/.cache/emorec, as the log "
        "says)",
    )
    image.add_argument(
        "--on-bad-image",
        choices=("skip", "error"),
        default="skip",
        help="an unreadable image: leave its row out (with one warning listing them) or stop the run",
    )


def parse_args(argv: Sequence[str] | None = None):
    """Parse IER's command line (:func:`build_parser`), checked."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not 0 <= args.shard_index < args.num_shards:
        parser.error(
            f"--shard-index must be 0 to {args.num_shards - 1} under --num-shards {args.num_shards}, "
            f"got {args.shard_index}"
        )
    if args.num_shards > 1 and args.strategy == "multiworker":
        parser.error(
            "--num-shards with --strategy multiworker: the workers share the extraction among "
            "themselves; leave --num-shards out"
        )
    if args.backbone in MIN_IMAGE_SIZE:
        if args.image_size is not None and args.image_size < MIN_IMAGE_SIZE[args.backbone]:
            parser.error(
                f"--image-size must be at least {MIN_IMAGE_SIZE[args.backbone]} for {args.backbone}, "
                f"got {args.image_size}"
            )
        if args.pooling == "embedding":
            parser.error(f"--pooling embedding is a KerasHub preset's; {args.backbone} pools by flatten, avg or max")
    elif args.image_weights is not None:
        parser.error(
            f"--image-weights is a CNN's ({', '.join(MIN_IMAGE_SIZE)}); the preset {args.backbone} "
            "carries its own weights"
        )
    return args


def image_settings(args) -> tuple[str, str]:
    """The weights and the pooling that ``--image-weights`` and ``--pooling`` leave to the backbone: a CNN's
    ImageNet weights and whole feature map (the paper's), a preset's own weights and image embedding."""
    cnn = args.backbone in MIN_IMAGE_SIZE
    return args.image_weights or ("imagenet" if cnn else "preset"), args.pooling or ("flatten" if cnn else "embedding")


def main(argv: Sequence[str] | None = None) -> int:
    """Train IER and write its model, metrics and probabilities; returns 0."""
    args = parse_args(argv)
    setup_logging()
    require_files({args.manifest: manifest_fix(args.manifest)})
    if args.backbone not in MIN_IMAGE_SIZE:
        require_local_preset(args.backbone, "--backbone", IMAGE_PRESET_FORMS)
    outputs = writable_outputs(run_folders(args), PHASE)  # every output folder writable, before any work

    from emorec.data.dataset import load_dataset
    from emorec.data.splits import fit_rows, select_training_rows
    from emorec.metrics import probability_table
    from emorec.models import build_ier_head, image_model
    from emorec.precision import dtype_policy, resolve_precision
    from emorec.runs import RunRecord, save_phase
    from emorec.training.backup import training_config
    from emorec.training.batches import ArrayBatches
    from emorec.training.fit import evaluate_readable, fit_best, seed_everything, start_training

    strategy, outputs, distribution = start_training(args.strategy, args.seed, args.deterministic, outputs)
    precision = resolve_precision(args.precision)  # auto resolved: the run record says what ran
    _, pooling = image_settings(args)

    # Data: the same manifest and split as every phase.
    dataset = load_dataset(
        args.manifest,
        args.image_root,
        seed=args.seed,
        resplit=args.resplit,
        class_names=args.classes,
        strict_split=args.strict_split,
    )
    frame, class_names = dataset.frame, dataset.class_names

    # Features: the frozen backbone runs once per image into the feature store; later runs read them there.
    extractor, weights_identity, image_features = extract_features(args, dataset, strategy, pooling, precision)
    if image_features is None:  # --num-shards: this process's share is done
        return 0
    labels = frame["label"].to_numpy()
    training_rows = select_training_rows(frame, class_names, args.label_fraction, args.labels_per_class, args.seed)
    rows = fit_rows(frame, training_rows.mask, image_features.ok)
    record = RunRecord(
        data=dataset.fingerprint,
        split_leakage=dataset.split_leakage,
        training_ids=training_rows.ids,
        distribution=distribution,
        precision=precision,
        pooling=pooling,
    )

    # Model and training, on the cached features.
    seed_everything(args.seed, args.deterministic)
    with dtype_policy(precision), strategy.scope():
        head = build_ier_head(image_features.features.shape[1:], len(class_names))
    config = training_config(build_parser().training_flags(args), record)
    train = ArrayBatches(image_features.features, labels, rows["train"], args.batch_size, seed=args.seed)
    val = ArrayBatches(image_features.features, labels, rows["val"], 256)
    training = fit_best(head, train, val, training_options(args, args.lr), outputs, config, strategy)

    # Evaluation on every readable image, on this process's device; unreadable ones keep empty probabilities.
    probabilities, metrics = evaluate_readable(head, image_features.features, dataset, image_features.ok)
    save_phase(
        outputs,
        image_model(extractor, head),
        flags=vars(args),
        argv=argv,
        record=record,
        metrics={
            "phase": PHASE,
            "class_names": list(class_names),
            "training_labels": len(rows["train"]),
            "feature_store": str(image_features.folder),
            "weights_identity": weights_identity,
            "image_size": int(extractor.input_shape[1]),
            "posts_without_image": int((~image_features.ok).sum()),
            "unreadable_images": int((~image_features.ok & (frame["image_path"] != "").to_numpy()).sum()),
            "split_leakage": dataset.split_leakage,
            **training,
            **metrics,
        },
        probabilities=probability_table(frame, probabilities, class_names),
        prob_file=PROB_FILE,
    )
    return 0


def extract_features(args, dataset, strategy, pooling: str, precision: str):
    """The backbone of the flags and its features of ``dataset``'s images, from the feature store, computed there
    where missing: by this process, its share under --num-shards (then the features are None), or each worker
    of multiworker its share on its own device, waiting for the others. Returns (extractor, weights identity,
    features)."""
    import tensorflow as tf

    from emorec.distribute import wait_for_all, worker_count, worker_index
    from emorec.extraction import Extraction, ensure_features, open_image_store, read_features
    from emorec.feature_store import image_keys
    from emorec.images import build_extractor

    workers = worker_count(strategy)
    share = (worker_index(strategy), workers) if workers > 1 else (args.shard_index, args.num_shards)
    extraction = strategy if workers == 1 else None
    weights = image_settings(args)[0]
    with (extraction or tf.distribute.get_strategy()).scope():
        extractor, identity = build_extractor(
            args.backbone, weights, args.image_size, args.backbone_seed, pooling, precision
        )
    store = open_image_store(args.cache_dir, args.backbone, identity, extractor, pooling, precision)
    frame = dataset.frame
    paths, keys = frame["image_path"].tolist(), image_keys(frame["image_path"], dataset.image_root, args.cache_key)
    image_features = ensure_features(
        store,
        paths,
        keys,
        Extraction(extractor, args.extract_batch_size, strategy=extraction),
        args.on_bad_image,
        share,
    )
    if args.num_shards > 1:
        log.info(
            "share %d of %d done. Once every share is, run IER.py without --num-shards: it finds the images "
            "in the store and trains.",
            args.shard_index,
            args.num_shards,
        )
        return extractor, identity, None
    if workers > 1:
        wait_for_all(strategy)  # every worker's share is in the store
        store.reload()
        image_features = read_features(store, paths, keys, args.on_bad_image)
    return extractor, identity, image_features


if __name__ == "__main__":
    sys.exit(run(main))
