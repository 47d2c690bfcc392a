"""The optimizer of every phase: Keras' Adam, each dense update applied by TensorFlow's fused kernel."""

from __future__ import annotations

import logging

import keras
import numpy as np
import tensorflow as tf

log = logging.getLogger("emorec")


@keras.saving.register_keras_serializable(package="emorec")
class FusedAdam(keras.optimizers.Adam):
    """Keras' Adam, with each dense gradient applied by TensorFlow's fused ``ResourceApplyAdam`` kernel.

    The same update as ``keras.optimizers.Adam`` (same arguments, same
    formula; weights agree to float rounding). Without XLA, which stays off on
    CPU and under op determinism, Keras runs Adam as a dozen elementwise ops
    per weight tensor, each a pass over memory; the fused kernel makes one
    pass, which pays most for the image heads' large Dense layers
    (``benchmarks/fused_adam.py``; figures in docs/phases.md).
    Sparse gradients (the tuned embedding's) and ``amsgrad`` take Keras' path.
    """

    def update_step(self, gradient, variable, learning_rate):
        if self.amsgrad or isinstance(gradient, tf.IndexedSlices):
            return super().update_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        step = tf.cast(self.iterations + 1, dtype)
        index = self._get_variable_index(variable)
        beta_1, beta_2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
        momentums, velocities = (getattr(self, name) for name in ADAM_STATE)
        tf.raw_ops.ResourceApplyAdam(
            var=variable.handle,
            m=momentums[index].handle,
            v=velocities[index].handle,
            beta1_power=tf.pow(beta_1, step),
            beta2_power=tf.pow(beta_2, step),
            lr=tf.cast(learning_rate, dtype),
            beta1=beta_1,
            beta2=beta_2,
            epsilon=tf.cast(self.epsilon, dtype),
            grad=tf.cast(gradient, dtype),
        )


# Where Keras 3 keeps Adam's first and second moments (private attributes of keras.optimizers.Adam): what
# FusedAdam.update_step hands to the fused kernel.
ADAM_STATE = ("_momentums", "_velocities")


def adam(lr: float) -> keras.optimizers.Adam:
    """The optimizer of every phase: :class:`FusedAdam` with learning rate ``lr``, or ``keras.optimizers.Adam``
    on a Keras release that keeps Adam's state elsewhere than FusedAdam reads it (:data:`ADAM_STATE`); one log
    line says which."""
    probe, variable = FusedAdam(lr), keras.Variable(np.zeros(1, np.float32))
    try:
        probe.build([variable])
        index = probe._get_variable_index(variable)
        for name in ADAM_STATE:
            getattr(probe, name)[index]
    except (AttributeError, IndexError, KeyError, TypeError) as error:
        log.info(
            "optimizer: keras.optimizers.Adam, the same update unfused (Keras %s keeps Adam's state elsewhere "
            "than FusedAdam reads it: %s: %s)",
            keras.__version__,
            type(error).__name__,
            error,
        )
        return keras.optimizers.Adam(lr)
    log.info(
        "optimizer: FusedAdam (Keras %s's Adam, each dense update by TensorFlow's fused kernel)", keras.__version__
    )
    return FusedAdam(lr)


def adamw_warmup(
    lr: float, total_steps: int, warmup_fraction: float = 0.1, weight_decay: float = 0.01
) -> keras.optimizers.AdamW:
    """The optimizer for fine-tuning a pretrained transformer: AdamW (decoupled weight decay ``weight_decay``,
    none on biases and layer norms) whose learning rate rises linearly from 0 to ``lr`` over the first
    ``warmup_fraction`` of ``total_steps``, then falls to 0 along a cosine (Keras' ``CosineDecay`` with warm-up).
    """
    warmup = int(round(total_steps * warmup_fraction))
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0,
        decay_steps=max(1, total_steps - warmup),
        alpha=0.0,
        warmup_target=lr,
        warmup_steps=warmup,
    )
    optimizer = keras.optimizers.AdamW(learning_rate=schedule, weight_decay=weight_decay)
    optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    log.info(
        "optimizer: AdamW, learning rate warmed up to %g over %d of %d steps, then cosine decay; weight decay %g",
        lr,
        warmup,
        total_steps,
        weight_decay,
    )
    return optimizer


def make_optimizer(name: str, lr: float, total_steps: int) -> keras.optimizers.Optimizer:
    """The optimizer a phase trains with (:data:`emorec.training.options.OPTIMIZERS`): the paper's Adam
    (:func:`adam`) at ``lr``, or AdamW warmed up to ``lr`` and decayed over ``total_steps`` (:func:`adamw_warmup`)."""
    return adamw_warmup(lr, total_steps) if name == "adamw_warmup" else adam(lr)
