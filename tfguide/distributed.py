"""Training across machines: Keras models under MultiWorkerMirroredStrategy.

Keras 3's `fit`, `evaluate` and `predict` cannot run under
`tf.distribute.MultiWorkerMirroredStrategy` (keras-team/keras#20585, open).
This module is tfguide's one route around that: `route(model, strategy)` makes
a model's own `fit`, `evaluate` and `predict` (and its sub-models') run
through the short loops below, so a chapter's code stays the plain Keras call
whatever the strategy. `runtime.Runtime.build` routes every model it builds
under `--strategy multiworker`; nothing else changes.

The loops keep `fit`'s arithmetic: every worker takes its shard of each global
batch and `strategy.run` calls the model's own `train_step` (a chapter's custom
one included) on each replica. Keras scales each replica's loss by the number
of replicas and the optimizer all-reduces (sums) the gradients before it
updates the weights, so all workers keep identical weights. Metrics are summed
across replicas when they are read.
"""
from __future__ import annotations

import functools
import itertools
import os
import socket
import time

import keras
import numpy as np
import tensorflow as tf

from tfguide import datasets


def _as_dataset(x, y=None, batch_size: int | None = None, shuffle: bool = False,
                seed: int = 0) -> tf.data.Dataset:
    """Return `x` if it is a dataset, else batches of the arrays (x, y)."""
    if isinstance(x, tf.data.Dataset):
        return x
    return datasets.pipeline(x, y, batch_size or 32, shuffle=shuffle, seed=seed)


def _logs(model: keras.Model) -> dict[str, float]:
    """Read the model's metrics (summed over every replica of every worker)."""
    logs = {}
    for metric in model.metrics:
        result = metric.result()
        if isinstance(result, dict):
            logs.update({k: float(v) for k, v in result.items()})
        else:
            logs[metric.name] = float(result)
    return logs


def _build_state(model: keras.Model, dataset: tf.data.Dataset,
                 strategy: tf.distribute.Strategy) -> None:
    """Create the optimizer's and compiled metrics' variables before the first step, as `fit` does.

    Variables cannot be created inside `strategy.run`; Keras's trainer builds
    them from the shapes of one batch (`_symbolic_build`), and so does this.
    """
    batch = next(iter(dataset))
    x, y = batch if isinstance(batch, tuple) else (batch, None)
    with strategy.scope():
        model._symbolic_build(data_batch=(x, y, None))


def fit(model: keras.Model, x=None, y=None, batch_size: int | None = None, epochs: int = 1,
        verbose="auto", callbacks=None, validation_data=None, shuffle: bool = True,
        steps_per_epoch: int | None = None, *, strategy: tf.distribute.Strategy
        ) -> keras.callbacks.History:
    """Train a compiled `model` like `model.fit`, with `strategy`.

    Takes `fit`'s common arguments: a `tf.data.Dataset` of (x, y) global
    batches (or arrays with `batch_size`), `epochs`, `validation_data`,
    `callbacks`, `verbose` and `steps_per_epoch` (steps are taken from one
    stream across epochs, as `fit` does with a repeating dataset).

    Returns:
        The `History`, with the compiled loss and metrics (and `val_` ones) per epoch.
    """
    dataset = _as_dataset(x, y, batch_size, shuffle)
    if steps_per_epoch is not None:
        dataset = dataset.repeat()
    _build_state(model, dataset, strategy)
    distributed = strategy.experimental_distribute_dataset(dataset)
    stream = iter(distributed) if steps_per_epoch else None  # one stream across epochs
    steps = steps_per_epoch or int(dataset.cardinality())  # < 0: unknown
    verbose = 1 if verbose == "auto" else verbose

    @tf.function
    def train_step(batch):
        strategy.run(model.train_step, args=(batch,))

    history = keras.callbacks.History()
    hooks = keras.callbacks.CallbackList([*(callbacks or []), history], model=model,
                                         epochs=epochs, steps=steps, verbose=0)
    hooks.on_train_begin()
    for epoch in range(epochs):
        model.reset_metrics()
        hooks.on_epoch_begin(epoch)
        if verbose:
            print(f"Epoch {epoch + 1}/{epochs}")
        bar = keras.utils.Progbar(steps if steps > 0 else None, verbose=verbose)
        batches = stream or iter(distributed)
        for step, batch in zip(range(steps) if steps > 0 else itertools.count(), batches):
            hooks.on_train_batch_begin(step)
            train_step(batch)
            hooks.on_train_batch_end(step, _logs(model))  # the running means, as fit gives
            bar.update(step + 1)
        logs = _logs(model)
        if validation_data is not None:
            logs |= {f"val_{k}": v for k, v in evaluate(
                model, validation_data, batch_size=batch_size, return_dict=True,
                strategy=strategy).items()}
        hooks.on_epoch_end(epoch, logs)
    hooks.on_train_end()
    return history


def evaluate(model: keras.Model, x=None, y=None, batch_size: int | None = None, verbose=0,
             return_dict: bool = False, *, strategy: tf.distribute.Strategy):
    """Compute the compiled loss and metrics like `model.evaluate`, with `strategy`.

    `x` is a dataset of (x, y) batches, arrays with `y`, or an (x, y) tuple.
    """
    if isinstance(x, tuple) and y is None:
        x, y = x
    dataset = _as_dataset(x, y, batch_size)
    _build_state(model, dataset, strategy)

    @tf.function
    def test_step(batch):
        strategy.run(model.test_step, args=(batch,))

    model.reset_metrics()
    for batch in strategy.experimental_distribute_dataset(dataset):
        test_step(batch)
    logs = _logs(model)
    model.reset_metrics()
    return logs if return_dict else (list(logs.values()) if len(logs) > 1
                                     else next(iter(logs.values())))


def predict(model: keras.Model, x, batch_size: int | None = None, verbose=0):
    """Run the model forward like `model.predict`, on this worker alone, batch by batch."""
    batches = (_as_dataset(x, batch_size=batch_size or 32) if not isinstance(x, tf.data.Dataset)
               else x)
    outputs = [tf.nest.map_structure(np.asarray, model(batch, training=False))
               for batch in batches]
    return tf.nest.map_structure(lambda *parts: np.concatenate(parts), *outputs)


def route(model: keras.Model, strategy: tf.distribute.Strategy) -> keras.Model:
    """Make `model.fit/evaluate/predict` (and its sub-models') run through this module."""
    for m in [model, *(layer for layer in model._flatten_layers(include_self=False)
                       if isinstance(layer, keras.Model))]:
        object.__setattr__(m, "fit", functools.partial(fit, m, strategy=strategy))
        object.__setattr__(m, "evaluate", functools.partial(evaluate, m, strategy=strategy))
        object.__setattr__(m, "predict", functools.partial(predict, m))
    return model


# --- Before the strategy starts ----------------------------------------------------------
CONNECT_TIMEOUT_S = 120.0  # TFGUIDE_CONNECT_TIMEOUT overrides it


def connect_timeout() -> float:
    """Seconds to wait for the other workers: TFGUIDE_CONNECT_TIMEOUT, or 120."""
    raw = os.environ.get("TFGUIDE_CONNECT_TIMEOUT", "")
    try:
        value = float(raw) if raw else CONNECT_TIMEOUT_S
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        raise WorkerError(f"TFGUIDE_CONNECT_TIMEOUT must be a number of seconds > 0. "
                          f"Received: TFGUIDE_CONNECT_TIMEOUT={raw}")
    return value


class WorkerError(RuntimeError):
    """The cluster cannot start: a busy port, or workers that never connect."""


def wait_for_workers(addresses: list[str], own: str, timeout_s: float,
                     say=print) -> None:
    """Wait until every other worker answers on its port; say what is awaited.

    TensorFlow's own start-up blocks in C++ while it waits for the cluster, deaf
    to Ctrl-C and without a time limit, so tfguide meets the other workers
    first: each worker listens on its own port and connects to everyone
    else's, until all have answered (then TensorFlow takes the port over).
    Ctrl-C stops the wait at once.

    Raises:
        WorkerError: this worker's port is taken, or a worker did not answer in time.
    """
    _, _, port = own.rpartition(":")
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(("", int(port)))
    except OSError as err:
        listener.close()
        raise WorkerError(f"this worker's port {port} (TF_CONFIG task {own}) cannot be used: "
                          f"{err.strerror}; stop what holds it or give this task another port"
                          ) from None
    listener.listen(len(addresses))
    listener.settimeout(0.2)
    waiting = [a for a in addresses if a != own]
    say(f"Waiting for {len(waiting)} other worker(s) to connect: {', '.join(waiting)} "
        f"(gives up after {timeout_s:g} s; TFGUIDE_CONNECT_TIMEOUT changes it; Ctrl-C stops)")
    deadline = time.monotonic() + timeout_s
    try:
        while waiting:
            for address in list(waiting):
                host, _, peer_port = address.rpartition(":")
                try:
                    socket.create_connection((host, int(peer_port)), timeout=0.5).close()
                    waiting.remove(address)
                except OSError:
                    pass
            try:  # answer the others' knocks while we wait
                listener.accept()[0].close()
            except (TimeoutError, OSError):
                pass
            if waiting and time.monotonic() > deadline:
                raise WorkerError(f"worker(s) {', '.join(waiting)} did not connect within "
                                  f"{timeout_s:g} s: start the same command on each of them "
                                  f"with its own TF_CONFIG task, or raise "
                                  f"TFGUIDE_CONNECT_TIMEOUT")
        grace = time.monotonic() + 1.0  # a last moment to answer the slowest worker's knock
        while time.monotonic() < grace:
            try:
                listener.accept()[0].close()
            except (TimeoutError, OSError):
                pass
    finally:
        listener.close()
    say("All workers connected.")
