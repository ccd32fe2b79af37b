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
        strategy: tf.distribute.Strategy, validation_data=None,
        verbose: int = 1) -> keras.callbacks.History:
    """Train a compiled `model` on `dataset` (global batches) with `strategy`.

    Args:
        model: built and compiled inside `strategy.scope()`.
        dataset: a `tf.data.Dataset` of (x, y) global batches.
        epochs: passes over `dataset`.
        strategy: usually a `MultiWorkerMirroredStrategy`; any strategy works.
        validation_data: optional (x, y) arrays, evaluated on each worker after every epoch.
        verbose: 0 silent, 1 progress bar, 2 one line per epoch.

    Returns:
        A `History` whose `.history` has `loss` (and `val_loss`, `val_accuracy`
        for a classifier) per epoch, like `fit`'s.
    """
    per_example = _per_example_loss(model)
    distributed = strategy.experimental_distribute_dataset(dataset)
    steps = int(dataset.cardinality())

    def replica_step(x, y):
        with tf.GradientTape() as tape:
            y_pred = model(x, training=True)
            loss = tf.nn.compute_average_loss(per_example(y, y_pred))  # ÷ global batch
            loss += tf.add_n(model.losses) / strategy.num_replicas_in_sync if model.losses \
                else 0.0
        grads = tape.gradient(loss, model.trainable_variables)
        model.optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    @tf.function
    def train_step(batch):
        per_replica = strategy.run(replica_step, args=batch)
        return strategy.reduce("SUM", per_replica, axis=None)  # the global mean loss

    history = keras.callbacks.History()
    history.set_model(model)
    history.on_train_begin()
    for epoch in range(epochs):
        if verbose:
            print(f"Epoch {epoch + 1}/{epochs}")
        bar = keras.utils.Progbar(steps if steps > 0 else None, verbose=verbose)
        losses = []
        for step, batch in enumerate(distributed):
            losses.append(float(train_step(batch)))
            bar.update(step + 1, [("loss", losses[-1])])
        logs = {"loss": float(np.mean(losses))}
        if validation_data is not None:
            logs |= evaluate(model, *validation_data)
        history.on_epoch_end(epoch, {k: v for k, v in logs.items()})
    return history


def evaluate(model: keras.Model, x, y, batch_size: int = 512) -> dict[str, float]:
    """Compute the compiled loss (and accuracy, for a classifier) on this worker alone."""
    per_example = _per_example_loss(model)
    losses, correct = [], []
    for start in range(0, len(x), batch_size):
        xb, yb = x[start:start + batch_size], y[start:start + batch_size]
        y_pred = model(xb, training=False)
        losses.append(per_example(yb, y_pred).numpy())
        if y_pred.shape[-1] > 1 and np.ndim(yb) == 1:  # integer labels, class scores
            correct.append(np.argmax(y_pred, axis=-1) == yb)
    logs = {"val_loss": float(np.mean(np.concatenate(losses)))}
    if correct:
        logs["val_accuracy"] = float(np.mean(np.concatenate(correct)))
    return logs
