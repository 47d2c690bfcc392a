"""What a training run measures: macro-F1 over a whole split, and a training model whose measures are the whole
batch's and split's under a distribution strategy too."""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops


class MacroF1(keras.metrics.Metric):
    """Macro-averaged F1 of the argmax predictions over every batch since the last reset (not a mean of batches).

    Accumulates the confusion matrix of sparse labels against
    ``argmax(y_pred)``, so an epoch's validation value is scikit-learn's
    ``f1_score(average="macro", labels=<the classes present>, zero_division=0)``
    on the whole validation split: the mean over the classes with true rows
    (:func:`emorec.metrics.method_scores`' rule). Sample weights (from
    ``class_weight`` during training) weight the counts.
    """

    def __init__(self, num_classes: int, name: str = "macro_f1", **kwargs):
        super().__init__(name=name, **kwargs)
        self.num_classes = num_classes
        self.confusion = self.add_variable(shape=(num_classes, num_classes), initializer="zeros", name="confusion")

    def update_state(self, y_true, y_pred, sample_weight=None):
        truth = ops.one_hot(ops.cast(ops.reshape(y_true, (-1,)), "int32"), self.num_classes, dtype=self.dtype)
        predicted = ops.one_hot(ops.argmax(y_pred, axis=-1), self.num_classes, dtype=self.dtype)
        if sample_weight is not None:
            truth = truth * ops.reshape(ops.cast(sample_weight, self.dtype), (-1, 1))
        self.confusion.assign_add(ops.matmul(ops.transpose(truth), predicted))

    def result(self):
        true_positive = ops.diagonal(self.confusion)
        denominator = ops.sum(self.confusion, axis=0) + ops.sum(self.confusion, axis=1)  # 2tp + fp + fn
        f1 = ops.where(denominator > 0, 2 * true_positive / ops.maximum(denominator, 1e-12), 0.0)
        present = ops.cast(ops.sum(self.confusion, axis=1) > 0, self.dtype)
        return ops.sum(f1 * present) / ops.maximum(ops.sum(present), 1.0)

    def reset_state(self):
        self.confusion.assign(ops.zeros_like(self.confusion))

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes}


class Trainer(keras.Model):
    """The training twin of a phase's network (see :func:`fit_best`): a functional model whose logged measures
    are over the whole batch and split, also under a distribution strategy.

    Keras computes each replica's measures from its own part of the data and averages them across replicas: a
    macro-F1 averaged over parts is not the macro-F1 of the whole, and under MultiWorkerMirroredStrategy Keras 3
    cannot average them at all (tensorflow/tensorflow#72388). Here every replica sums the metrics' variables
    (totals, counts, the confusion matrix) across replicas first, so each holds the measures of the whole,
    identical on every worker: the best epoch is then the same everywhere, and so are the weights restored.
    """

    def get_metrics_result(self):
        context = tf.distribute.get_replica_context()
        if context is None or context.num_replicas_in_sync == 1:
            return super().get_metrics_result()
        results = {}
        for metric in self.metrics:
            totals = [context.all_reduce("SUM", tf.identity(variable.value)) for variable in metric.variables]
            result = metric.stateless_result(totals)
            results.update(result if isinstance(result, dict) else {metric.name: result})
        if isinstance(tf.distribute.get_strategy(), tf.distribute.MultiWorkerMirroredStrategy):
            # Keras averages the replicas' logs along axis 0 there, which a scalar lacks: one value, one axis.
            results = {name: tf.reshape(value, (1,)) for name, value in results.items()}
        return results
