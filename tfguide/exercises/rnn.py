"""The exercises of chapter rnn: how `python -m tfguide check rnn` proves a learner's
version of each from-scratch function, and the known mistakes it can name.

The functions themselves, and the text that explains them, are the chapter's:
tfguide/chapters/rnn.py and chapters/rnn.md.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf
from keras import layers

from tfguide.chapters.rnn import compare_with_keras, lstm_step, max_abs_err, rnn_step, simple_rnn
from tfguide.exercises import Exercise, Proof, worst


CELL_SHAPES = ((1, 1, 1), (3, 2, 4), (2, 6, 3))  # (batch, features, units)
SEQUENCE_SHAPES = ((1, 1, 1, 1), (3, 5, 2, 4), (2, 9, 6, 3))  # (batch, time, features, units)


def _cell_case(kind: str, batch: int, features: int, units: int, seed: int):
    """A Keras cell in float64 with random weights, one input step and a random start state."""
    rng = np.random.default_rng(seed)
    cell = (layers.LSTMCell if kind == "lstm" else layers.SimpleRNNCell)(units, dtype="float64")
    cell.build((None, features))
    cell.set_weights([rng.normal(0.0, 0.5, w.shape) for w in cell.get_weights()])
    x_t = tf.constant(rng.normal(size=(batch, features)))  # (batch, features)
    states = [tf.constant(rng.normal(size=(batch, units)))
              for _ in range(2 if kind == "lstm" else 1)]  # h_prev (and c_prev)
    return cell, x_t, states


def prove_rnn_step(rnn_step_fn) -> Proof:
    """rnn_step vs keras.layers.SimpleRNNCell with the same weights, in float64."""
    errors = []
    for batch, features, units in CELL_SHAPES:
        cell, x_t, (h_prev,) = _cell_case("simple_rnn", batch, features, units, seed=units)
        theirs, _ = cell(x_t, [h_prev])  # (batch, units)
        ours = rnn_step_fn(x_t, h_prev, *[tf.constant(w) for w in cell.get_weights()])
        errors.append((f"batch {batch}, {features} features, {units} units",
                       max_abs_err(ours, theirs)))
    return worst(errors, 1e-12)


def prove_lstm_step(lstm_step_fn) -> Proof:
    """lstm_step vs keras.layers.LSTMCell with the same weights, h and c, in float64."""
    errors = []
    for batch, features, units in CELL_SHAPES:
        cell, x_t, (h_prev, c_prev) = _cell_case("lstm", batch, features, units, seed=units)
        _, theirs = cell(x_t, [h_prev, c_prev])  # [h, c], each (batch, units)
        ours = lstm_step_fn(x_t, h_prev, c_prev, *[tf.constant(w) for w in cell.get_weights()])
        errors.append((f"batch {batch}, {features} features, {units} units",
                       max_abs_err(ours, theirs)))
    return worst(errors, 1e-12)


def _zero_start_error(kind: str, unroll, x, units: int) -> float:
    """Our unroll with h0 (and c0) left out vs the Keras layer's default zero start."""
    layer = (layers.LSTM if kind == "lstm" else layers.SimpleRNN)(
        units, return_sequences=True, return_state=True, dtype="float64")
    theirs = layer(x)  # [sequence, h_T] or [sequence, h_T, c_T]
    return max_abs_err(unroll(x, *[tf.constant(w) for w in layer.get_weights()]), theirs)


def _prove_unroll(kind: str, unroll) -> Proof:
    errors = []
    for batch, time, features, units in SEQUENCE_SHAPES:
        x = tf.constant(np.random.default_rng(batch * 100 + time).normal(
            size=(batch, time, features)))  # (batch, time, features), float64
        case = f"batch {batch}, {time} steps, {features} features, {units} units"
        errors.append((case, compare_with_keras(kind, x, units, seed=time, unroll=unroll)))
        errors.append((case + ", zero start", _zero_start_error(kind, unroll, x, units)))
    return worst(errors, 1e-12)


def prove_simple_rnn(simple_rnn_fn) -> Proof:
    """simple_rnn vs keras.layers.SimpleRNN: every h_t and h_T, given and zero start states."""
    return _prove_unroll("simple_rnn", simple_rnn_fn)


def prove_lstm(lstm_fn) -> Proof:
    """lstm vs keras.layers.LSTM: every h_t, h_T and c_T, given and zero start states."""
    return _prove_unroll("lstm", lstm_fn)


def _rnn_step_tanh_on_input(x_t, h_prev, W_xh, W_hh, b):
    return tf.tanh(x_t @ W_xh) + h_prev @ W_hh + b


def _rnn_step_transposed(x_t, h_prev, W_xh, W_hh, b):
    return tf.tanh(x_t @ W_xh + h_prev @ tf.transpose(W_hh) + b)


def _simple_rnn_no_carry(x, W_xh, W_hh, b, h0=None):
    h0 = tf.zeros((tf.shape(x)[0], W_hh.shape[0]), x.dtype) if h0 is None else h0
    outputs = [rnn_step(x[:, t], h0, W_xh, W_hh, b) for t in range(x.shape[1])]
    return tf.stack(outputs, axis=1), outputs[-1]


def _simple_rnn_time_first(x, W_xh, W_hh, b, h0=None):
    sequence, h = simple_rnn(x, W_xh, W_hh, b, h0)
    return tf.transpose(sequence, (1, 0, 2)), h  # (time, batch, units)


def _lstm_step_gates_swapped(x_t, h_prev, c_prev, W, U, b):
    z_f, z_i, z_c, z_o = tf.split(x_t @ W + h_prev @ U + b, 4, axis=-1)
    c = tf.sigmoid(z_f) * c_prev + tf.sigmoid(z_i) * tf.tanh(z_c)
    return tf.sigmoid(z_o) * tf.tanh(c), c


def _lstm_step_no_tanh(x_t, h_prev, c_prev, W, U, b):
    z_i, z_f, z_c, z_o = tf.split(x_t @ W + h_prev @ U + b, 4, axis=-1)
    c = tf.sigmoid(z_f) * c_prev + tf.sigmoid(z_i) * tf.tanh(z_c)
    return tf.sigmoid(z_o) * c, c


def _lstm_unpacked_c_h(x, W, U, b, h0=None, c0=None):
    h = tf.zeros((tf.shape(x)[0], U.shape[0]), x.dtype) if h0 is None else h0
    c = tf.zeros_like(h) if c0 is None else c0
    outputs = []
    for t in range(x.shape[1]):
        c, h = lstm_step(x[:, t], h, c, W, U, b)  # the pair comes back as (h, c)
        outputs.append(h)
    return tf.stack(outputs, axis=1), h, c


def _lstm_no_cell_carry(x, W, U, b, h0=None, c0=None):
    h = tf.zeros((tf.shape(x)[0], U.shape[0]), x.dtype) if h0 is None else h0
    c0 = tf.zeros_like(h) if c0 is None else c0
    outputs = []
    for t in range(x.shape[1]):
        h, c = lstm_step(x[:, t], h, c0, W, U, b)  # every step starts from c0
        outputs.append(h)
    return tf.stack(outputs, axis=1), h, c


def _probe(fn, *arrays) -> np.ndarray:
    """fn on the probe's arrays as float64 tensors; every output flattened into one vector."""
    outputs = fn(*[tf.constant(a, tf.float64) for a in arrays])
    outputs = (outputs,) if tf.is_tensor(outputs) else outputs
    return np.concatenate([np.ravel(np.asarray(a, np.float64)) for a in outputs])


# NumPy, not tensors: importing a chapter must not start TensorFlow (multi-worker needs that)
_RNG = np.random.default_rng(11)
_PROBE_X = _RNG.normal(size=(2, 3, 2))  # (batch, time, features): batch ≠ time
_PROBE_RNN = [_RNG.normal(0, 0.5, s) for s in ((2, 3), (3, 3), (3,))]  # W_xh, W_hh, b
_PROBE_LSTM = [_RNG.normal(0, 0.5, s) for s in ((2, 12), (3, 12), (12,))]  # W, U, b
_PROBE_H0, _PROBE_C0 = (_RNG.normal(size=(2, 3)) for _ in range(2))  # (batch, units)
EXERCISES = (
    Exercise(
        "rnn_step", prove_rnn_step, "one line: tf.tanh of x_t @ W_xh + h_prev @ W_hh + b",
        probe=lambda f: _probe(f, _PROBE_X[:, 0], _PROBE_H0, *_PROBE_RNN),
        mistakes={"tanh wraps the whole sum x_t W_xh + h_prev W_hh + b, not one term":
                      _rnn_step_tanh_on_input,
                  "multiply the state by W_hh as stored, h_prev @ W_hh, not by its transpose":
                      _rnn_step_transposed}),
    Exercise(
        "simple_rnn", prove_simple_rnn, "start from h0 (zeros when None), call rnn_step on "
        "x[:, t] for each t, keep every h, tf.stack them on axis 1",
        probe=lambda f: _probe(f, _PROBE_X, *_PROBE_RNN, _PROBE_H0),
        mistakes={"carry the state: each step reads the h the step before returned, not h0":
                      _simple_rnn_no_carry,
                  "stack the states on axis 1: Keras's sequences are (batch, time, units)":
                      _simple_rnn_time_first}),
    Exercise(
        "lstm_step", prove_lstm_step, "z = x_t @ W + h_prev @ U + b; split it in 4 (i, f, c, "
        "o); c = f·c_prev + i·tanh(z_c); h = o·tanh(c)",
        probe=lambda f: _probe(f, _PROBE_X[:, 0], _PROBE_H0, _PROBE_C0, *_PROBE_LSTM),
        mistakes={"Keras's four blocks are i, f, c, o: the first quarter is the input gate, "
                  "the second the forget gate": _lstm_step_gates_swapped,
                  "h = o · tanh(c): squash the cell before the output gate scales it":
                      _lstm_step_no_tanh}),
    Exercise(
        "lstm", prove_lstm, "like simple_rnn, but carry two states: h, c = lstm_step(x[:, t], "
        "h, c, W, U, b)",
        probe=lambda f: _probe(f, _PROBE_X, *_PROBE_LSTM, _PROBE_H0, _PROBE_C0),
        mistakes={"lstm_step returns (h, c) in that order: h, c = lstm_step(...)":
                      _lstm_unpacked_c_h,
                  "carry the cell state too: each step reads the c the step before returned":
                      _lstm_no_cell_carry}),
)
