"""Training across machines: a compiled Keras model under MultiWorkerMirroredStrategy.

Keras 3's `fit` cannot run under `tf.distribute.MultiWorkerMirroredStrategy`: it
reduces its first batch and its per-step logs with calls that strategy rejects
(keras-team/keras#20585, open). This module trains a compiled model with the
same arithmetic as `fit` through a short custom loop instead: every worker
takes its shard of each global batch, `strategy.run` computes the gradients on
each replica, and the Keras optimizer all-reduces them (sums the replicas'
gradients of the globally averaged loss) before it updates the weights, so all
workers keep identical weights.
"""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf


def _per_example_loss(model: keras.Model):
    """Return the compiled loss as a function giving one value per example."""
    loss = model.loss
    if isinstance(loss, keras.losses.Loss):
        return loss.call
    if isinstance(loss, str) or callable(loss):
        return keras.losses.get(loss)
    raise ValueError(f"multi-worker training needs one compiled loss. Received: {loss!r}")


def fit(model: keras.Model, dataset: tf.data.Dataset, epochs: int,
        strategy: tf.distribute.Strategy, validation_data=None, callbacks=(),
        verbose: int = 1) -> keras.callbacks.History:
    """Train a compiled `model` on `dataset` (global batches) with `strategy`.

    Args:
        model: built and compiled inside `strategy.scope()`.
        dataset: a `tf.data.Dataset` of (x, y) global batches.
        epochs: passes over `dataset`.
        strategy: usually a `MultiWorkerMirroredStrategy`; any strategy works.
        validation_data: optional (x, y) arrays or dataset, evaluated after every epoch.
        callbacks: Keras callbacks; they see the epoch hooks and logs, as under `fit`.
        verbose: 0 silent, 1 progress bar, 2 one line per epoch.

    Returns:
        The `History`, with `loss` (and `accuracy`, `val_loss`, `val_accuracy`
        for a classifier of integer labels) per epoch, like `fit`'s.
    """
    per_example = _per_example_loss(model)
    distributed = strategy.experimental_distribute_dataset(dataset)
    steps = int(dataset.cardinality())

    def replica_step(x, y):
        with tf.GradientTape() as tape:
            y_pred = model(x, training=True)
            loss = tf.nn.compute_average_loss(per_example(y, y_pred))  # ÷ global batch
            if model.losses:  # regularisers, added once across the replicas
                loss += tf.add_n(model.losses) / strategy.num_replicas_in_sync
        grads = tape.gradient(loss, model.trainable_variables)
        model.optimizer.apply_gradients(zip(grads, model.trainable_variables))
        if y.shape.rank == 1 and y_pred.shape[-1] > 1:  # a classifier: count hits too
            hits = tf.reduce_sum(tf.cast(tf.argmax(y_pred, -1) == tf.cast(y, tf.int64), "float32"))
        else:
            hits = tf.constant(-1.0)
        return loss, hits, tf.cast(tf.shape(y)[0], "float32")

    @tf.function
    def train_step(batch):
        per_replica = strategy.run(replica_step, args=batch)
        # the global mean loss, and hits and examples over all replicas
        return tuple(strategy.reduce("SUM", v, axis=None) for v in per_replica)

    history = keras.callbacks.History()
    hooks = keras.callbacks.CallbackList([*callbacks, history], model=model,
                                         epochs=epochs, steps=steps, verbose=0)
    hooks.on_train_begin()
    for epoch in range(epochs):
        hooks.on_epoch_begin(epoch)
        if verbose:
            print(f"Epoch {epoch + 1}/{epochs}")
        bar = keras.utils.Progbar(steps if steps > 0 else None, verbose=verbose)
        losses, hits, seen = [], 0.0, 0.0
        for step, batch in enumerate(distributed):
            loss, batch_hits, batch_size = (float(v) for v in train_step(batch))
            losses.append(loss)
            hits, seen = hits + batch_hits, seen + batch_size
            bar.update(step + 1, [("loss", loss)])
        logs = {"loss": float(np.mean(losses))}
        if hits >= 0:
            logs["accuracy"] = hits / seen
        if validation_data is not None:
            logs |= {f"val_{k}": v for k, v in evaluate(model, validation_data).items()}
        hooks.on_epoch_end(epoch, logs)
    hooks.on_train_end()
    return history


def _batches(data, batch_size: int):
    """Yield the batches of a dataset, or slices of `batch_size` of arrays (or (x, y))."""
    if isinstance(data, tf.data.Dataset):
        yield from data
        return
    n = len(tf.nest.flatten(data)[0])
    for start in range(0, n, batch_size):
        yield tf.nest.map_structure(lambda a: a[start:start + batch_size], data)


def evaluate(model: keras.Model, data, batch_size: int = 512) -> dict[str, float]:
    """Compute the compiled loss (and accuracy, for a classifier) on this worker alone.

    Args:
        data: (x, y) arrays or a dataset of (x, y) batches.
    """
    per_example = _per_example_loss(model)
    losses, correct = [], []
    for xb, yb in _batches(data, batch_size):
        y_pred = model(xb, training=False)
        losses.append(np.asarray(per_example(yb, y_pred)))
        if y_pred.shape[-1] > 1 and np.ndim(yb) == 1:  # integer labels, class scores
            correct.append(np.argmax(y_pred, axis=-1) == np.asarray(yb))
    logs = {"loss": float(np.mean(np.concatenate(losses)))}
    if correct:
        logs["accuracy"] = float(np.mean(np.concatenate(correct)))
    return logs


def predict(model: keras.Model, x, batch_size: int = 512) -> np.ndarray:
    """Run the model forward on this worker alone, batch by batch."""
    return np.concatenate([np.asarray(model(xb, training=False))
                           for xb in _batches(x, batch_size)])
