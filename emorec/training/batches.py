"""The input of a training run: batches of rows read on demand from (memory-mapped) arrays, as a tf.data pipeline."""

from __future__ import annotations

import threading

import keras
import numpy as np
import tensorflow as tf


class ArrayBatches(keras.utils.PyDataset):
    """Batches of ``(inputs[rows], labels[rows])`` read on demand, so a memory-mapped array never loads whole.

    ``inputs`` is an array or a dict of arrays (a multi-input model's); a
    float16 array (the feature store's) comes out as float32. With ``seed``,
    epoch ``e`` takes the rows in an order drawn from ``(seed, e)`` alone, so
    a run resumed at epoch ``e`` sees the batches an uninterrupted one would.
    :func:`fit_best` trains on :meth:`dataset`, which reads batches in
    parallel ahead of the training step; indexing (``batches[i]``, as Keras'
    ``predict`` does) gives epoch 0's batches.
    """

    def __init__(
        self, inputs, labels, rows, batch_size: int, seed: int | None = None, dropout: ModalityDropout | None = None
    ):
        super().__init__()
        self.inputs, self.labels, self.batch_size, self.seed = inputs, labels, batch_size, seed
        self.dropout = dropout
        self.rows = np.array(rows)
        self._orders: dict[int, np.ndarray] = {}
        self._orders_lock = threading.Lock()

    def __len__(self) -> int:
        return -(-len(self.rows) // self.batch_size)

    def __getitem__(self, index: int):
        return self.batch(0, index)

    def batch(self, epoch: int, index: int):
        """Batch ``index`` of epoch ``epoch``: (inputs, labels) of its rows, in the store's order within it."""
        rows = np.sort(self.order_of(epoch)[index * self.batch_size : (index + 1) * self.batch_size])
        if isinstance(self.inputs, dict):
            inputs = {name: _rows_of(array, rows) for name, array in self.inputs.items()}
            if self.dropout is not None:
                self.dropout.apply(inputs, rows, (epoch, index))
            return inputs, self.labels[rows]
        return _rows_of(self.inputs, rows), self.labels[rows]

    def order_of(self, epoch: int) -> np.ndarray:
        """The rows in epoch ``epoch``'s order (as given without ``seed``); the last few epochs' are kept."""
        if self.seed is None:
            return self.rows
        with self._orders_lock:  # parallel reads of two neighbouring epochs share the cache
            if epoch not in self._orders:
                self._orders = {e: order for e, order in self._orders.items() if e >= epoch - 1}
                self._orders[epoch] = np.random.default_rng([self.seed, epoch]).permutation(self.rows)
            return self._orders[epoch]

    def dataset(
        self,
        first_epoch: int = 0,
        epochs: int = 1,
        class_weight: dict[int, float] | None = None,
        strategy: tf.distribute.Strategy | None = None,
    ):
        """Epochs ``first_epoch`` to ``epochs - 1`` of these batches, one after another, as a ``tf.data``
        pipeline: each batch read by a ``tf.numpy_function`` in parallel map calls and prefetched, so reading
        (a gather from memory-mapped shards, float16 to float32) overlaps the training steps instead of
        running between them. Train with ``fit(..., steps_per_epoch=len(self))``, whose one iterator then runs
        through every epoch, each in its (seed, epoch) order whatever the prefetching.

        With ``class_weight`` (class -> weight) each batch carries its rows' weights, as Keras' ``fit(...,
        class_weight=...)`` would make them. With a ``strategy`` of R > 1 replicas, it is that strategy's
        distributed dataset: each batch (the global batch) is cut into R nearly equal parts in row order, and
        each worker's pipeline reads only the parts of its own replicas.
        """
        replicas = 1 if strategy is None else strategy.num_replicas_in_sync
        weights = (
            None
            if class_weight is None
            else np.array([class_weight.get(c, 1.0) for c in range(max(class_weight) + 1)], np.float32)
        )
        if replicas == 1:
            return self._pipeline(first_epoch, epochs, weights, 1, range(1))

        def pipeline(context: tf.distribute.InputContext) -> tf.data.Dataset:
            local = replicas // context.num_input_pipelines
            return self._pipeline(
                first_epoch,
                epochs,
                weights,
                replicas,
                range(context.input_pipeline_id * local, (context.input_pipeline_id + 1) * local),
            )

        return strategy.distribute_datasets_from_function(pipeline)

    def _pipeline(
        self, first_epoch: int, epochs: int, weights: np.ndarray | None, parts: int, own_parts: range
    ) -> tf.data.Dataset:
        """The batches of epochs ``first_epoch`` to ``epochs - 1``, each cut into ``parts`` parts of which the
        ``own_parts`` come out in turn; with per-class ``weights``, each with its rows' weights."""

        def read(epoch, index, part):
            inputs, labels = self.batch(int(epoch), int(index))
            if parts > 1:
                cut = np.array_split(np.arange(len(labels)), parts)[int(part)]
                inputs = {name: array[cut] for name, array in inputs.items()} if names else inputs[cut]
                labels = labels[cut]
            out = [*(inputs.values() if names else [inputs]), labels]
            return out if weights is None else [*out, weights[labels]]

        example_inputs, example_labels = self.batch(first_epoch, 0)
        names = list(example_inputs) if isinstance(example_inputs, dict) else None
        examples = [*(example_inputs.values() if names else [example_inputs]), example_labels]
        if weights is not None:
            examples.append(weights[example_labels])

        def load(epoch, index, part):
            arrays = tf.numpy_function(read, [epoch, index, part], [tf.as_dtype(array.dtype) for array in examples])
            for array, example in zip(arrays, examples):
                array.set_shape((None, *example.shape[1:]))
            inputs_count = len(names) if names else 1
            inputs = dict(zip(names, arrays[:inputs_count])) if names else arrays[0]
            return (inputs, *arrays[inputs_count:])

        steps, first_part, own = len(self), own_parts.start, len(own_parts)
        batches = tf.data.Dataset.range(first_epoch, epochs).flat_map(
            lambda epoch: tf.data.Dataset.range(steps * own).map(lambda i: (epoch, i // own, first_part + i % own))
        )
        return (
            batches.apply(tf.data.experimental.assert_cardinality((epochs - first_epoch) * steps * own))
            .map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            .prefetch(tf.data.AUTOTUNE)
        )


class ModalityDropout:
    """Modality dropout for a fusion network's training batches: each training row that has both its text and its
    image loses one of them (text or image, even odds) with ``probability``, replaced by the ``absent`` inputs
    (``{"text": {input name: one row}, "image": {...}}``) that also stand for a post's missing side, so that the
    network learns to score a post from one modality. The draws come from (``seed``, epoch, batch) alone: a
    resumed run sees the batches an uninterrupted one would."""

    def __init__(self, probability: float, absent: dict, complete: np.ndarray, seed: int):
        self.probability, self.absent, self.complete, self.seed = probability, absent, complete, seed

    def apply(self, inputs: dict, rows: np.ndarray, batch: tuple[int, int]) -> None:
        """Drop a side of some of ``rows`` (the batch's row numbers) in ``inputs`` (its arrays), in place."""
        draws = np.random.default_rng([self.seed, *batch, 7])
        dropped = (draws.random(len(rows)) < self.probability) & self.complete[rows]
        image_side = draws.random(len(rows)) < 0.5
        for side, where in (("text", dropped & ~image_side), ("image", dropped & image_side)):
            for name, row in self.absent[side].items():
                inputs[name][where] = row


def _rows_of(array: np.ndarray, rows: np.ndarray) -> np.ndarray:
    return np.asarray(array[rows], dtype=np.float32 if array.dtype == np.float16 else array.dtype)
