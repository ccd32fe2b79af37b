"""Training clocks: time the training steps alone, apart from tracing and validation.

A fair race between two recipes, or two models given the same seconds, must
not count the seconds TensorFlow spends tracing a training step into a graph
(`trace_untimed` does that first and undoes it) nor those spent on validation
(`TrainClock` counts training only). Used by the language model's lesson (an
LSTM given the GPT's seconds) and by bench's races.
"""
from __future__ import annotations

import time

import keras
import tensorflow as tf
from keras import ops


class TrainClock(keras.callbacks.Callback):
    """Time training (not validation); stop at a target val_loss or after some seconds."""

    def __init__(self, target: float | None = None, seconds: float | None = None):
        super().__init__()
        self.target, self.limit = target, seconds
        self.train_s, self.times, self.val_loss, self.steps = 0.0, [], [], 0
        self.reached: tuple[float, int] | None = None  # (seconds, steps) at the target
        self._start = None

    def per_second(self, per_step: float) -> float:
        """A rate over the training seconds: e.g. characters/s with per_step = batch × window."""
        return self.steps * per_step / self.train_s

    def on_epoch_begin(self, epoch, logs=None):
        self._start, self._epoch_steps = time.perf_counter(), 0

    def on_train_batch_end(self, batch, logs=None):  # batch: the last step just run
        self._epoch_steps = batch + 1
        elapsed = self.train_s + time.perf_counter() - self._start
        if self.limit is not None and elapsed >= self.limit:
            self.model.stop_training = True

    def on_test_begin(self, logs=None):  # validation starts: this epoch's training is over
        if self._start is not None:
            self.train_s += time.perf_counter() - self._start
            self._start = None

    def on_epoch_end(self, epoch, logs=None):
        self.on_test_begin()
        self.steps += self._epoch_steps
        self.times.append(self.train_s)
        self.val_loss.append(float(logs["val_loss"]))
        if self.target is not None and self.val_loss[-1] <= self.target and not self.reached:
            self.reached = (self.train_s, self.steps)
            self.model.stop_training = True


def trace_untimed(model: keras.Model, stream: tf.data.Dataset, calls: int = 1,
                  callbacks: tuple = ()) -> None:
    """Run compiled calls of training steps and undo them: the step is traced, nothing learned.

    The first call of `fit` traces the training step into a graph (seconds, more for a loop
    of steps_per_execution steps); doing it here keeps that out of the training clocks.
    """
    weights = model.get_weights()
    model.fit(stream, epochs=1, steps_per_epoch=calls * model.steps_per_execution,
              callbacks=list(callbacks), verbose=0)
    model.set_weights(weights)
    for v in model.optimizer.variables:  # step count, Adam's moments: back to a fresh start
        if not v.path.endswith("learning_rate"):
            v.assign(ops.zeros_like(v))


def steps_in(seconds: float, model: keras.Model, stream: tf.data.Dataset) -> int:
    """How many training steps `model` runs in `seconds`, timed between compiled calls.

    The calls are undone, so the model is left as it was, its training step traced.
    """
    ends = []  # when each compiled call of steps_per_execution steps returned
    stamp = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: ends.append(time.perf_counter()))
    trace_untimed(model, stream, calls=3, callbacks=(stamp,))  # the first call traces
    return round(seconds * 2 * model.steps_per_execution / (ends[-1] - ends[0]))
