"""How a phase trains: the values its flags give, gathered once."""

from __future__ import annotations

from dataclasses import dataclass

# What picks the best epoch: the validation measure and whether lower or higher is better.
MONITORS = {"val_loss": "min", "val_macro_f1": "max"}
OPTIMIZERS = ("adam", "adamw_warmup")


@dataclass(frozen=True)
class TrainingOptions:
    """How :func:`emorec.training.fit.fit_best` trains.

    ``epochs`` and ``lr`` (Adam's, or AdamW's peak); ``class_weight`` "none"
    or "balanced" (:func:`emorec.training.fit.class_weights`); ``monitor``
    picks the best epoch and ``patience`` stops after that many epochs without
    a better one (None: every epoch runs); ``deterministic`` TensorFlow ops
    (and so no XLA); ``optimizer`` "adam" (the paper's) or "adamw_warmup"
    (fine-tuning a transformer: warmed up, then decayed).
    """

    epochs: int
    lr: float
    class_weight: str = "none"
    monitor: str = "val_loss"
    patience: int | None = None
    deterministic: bool = True
    optimizer: str = "adam"

    def __post_init__(self):
        if self.monitor not in MONITORS:
            raise ValueError(f"unknown monitor {self.monitor!r}: one of {', '.join(MONITORS)}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}: one of {', '.join(OPTIMIZERS)}")
