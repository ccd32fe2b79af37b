"""Recurrent networks: a simple RNN and an LSTM from scratch, why gates matter, a forecast.

Unrolls h_t = tanh(x_t W_xh + h_{t-1} W_hh + b) over [batch, time, features] and
writes an LSTM cell by hand, checks both against keras.layers.SimpleRNN and
keras.layers.LSTM given the same weights, makes back-propagation through time
visible (how much the loss still feels each earlier input), shows an LSTM
remembering a symbol across 120 steps of distractors where a simple RNN of the
same size does not, and forecasts the yearly sunspot numbers.

Text: chapters/rnn.md. Ports 000 §2.3/§3.4/§4.4, 001 §3.4 and 002 §3.4 of the source
primers (chapters/SOURCES.md).
"""
from __future__ import annotations

from typing import NamedTuple

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from tfguide import cli, datasets, plotting
from tfguide.config import Config
from tfguide.results import Experiment

# The memory task: remember the first of 120 symbols (see make_memory_task).
TIME_STEPS, N_CLASSES, N_DISTRACTORS, UNITS = 120, 2, 4, 32
FORGET_BIAS = 4.0  # LSTM forget-gate bias at the start: sigmoid(4) = 0.982 kept per step
WINDOW, SPLIT_YEAR = 20, 1949  # forecast: 20 past years in, the next year out; test from 1949


# --- From scratch -------------------------------------------------------------------
# Code between [start:…]/[end:…] markers is shown in chapters/rnn.md; after editing it,
# refresh the text with python -m tfguide.excerpts chapters/rnn.md.
# [start:rnn]
def rnn_step(x_t, h_prev, W_xh, W_hh, b):
    """One step of a simple RNN: h_t = tanh(x_t W_xh + h_{t-1} W_hh + b)."""
    return tf.tanh(x_t @ W_xh + h_prev @ W_hh + b)  # (batch, units)


def simple_rnn(x, W_xh, W_hh, b, h0=None):
    """Unroll `rnn_step` over time; return every h_t and the last one.

    Args:
        x: inputs, (batch, time, features).
        W_xh: (features, units); W_hh: (units, units); b: (units,).
        h0: the state before the first step, (batch, units); zeros when None.
    """
    h = tf.zeros((tf.shape(x)[0], W_hh.shape[0]), x.dtype) if h0 is None else h0  # (batch, units)
    outputs = []
    for t in range(x.shape[1]):
        h = rnn_step(x[:, t], h, W_xh, W_hh, b)  # x[:, t]: (batch, features)
        outputs.append(h)
    return tf.stack(outputs, axis=1), h  # (batch, time, units), (batch, units)
# [end:rnn]


# [start:lstm]
def lstm_step(x_t, h_prev, c_prev, W, U, b):
    """One LSTM step; the four gates sit side by side in Keras's order i, f, c, o.

    W: (features, 4·units), U: (units, 4·units), b: (4·units,).
    """
    z = x_t @ W + h_prev @ U + b  # (batch, 4·units)
    z_i, z_f, z_c, z_o = tf.split(z, 4, axis=-1)  # each (batch, units)
    i, f, o = tf.sigmoid(z_i), tf.sigmoid(z_f), tf.sigmoid(z_o)  # input, forget, output gates
    c = f * c_prev + i * tf.tanh(z_c)  # cell state: keep a share f, write a share i
    h = o * tf.tanh(c)  # what the cell shows the next layer and the next step
    return h, c


def lstm(x, W, U, b, h0=None, c0=None):
    """Unroll `lstm_step` over x (batch, time, features); return every h_t, the last h and c."""
    units = U.shape[0]
    zeros = tf.zeros((tf.shape(x)[0], units), x.dtype)  # (batch, units)
    h = zeros if h0 is None else h0
    c = zeros if c0 is None else c0
    outputs = []
    for t in range(x.shape[1]):
        h, c = lstm_step(x[:, t], h, c, W, U, b)
        outputs.append(h)
    return tf.stack(outputs, axis=1), h, c  # (batch, time, units), (batch, units) twice
# [end:lstm]


def max_abs_err(ours, theirs) -> float:
    """The largest |difference| over matching outputs (a tensor, or a tuple of them);
    inf when their number or any shape differs."""
    ours = (ours,) if tf.is_tensor(ours) or isinstance(ours, np.ndarray) else tuple(ours)
    theirs = (theirs,) if tf.is_tensor(theirs) else tuple(theirs)
    if len(ours) != len(theirs) or any(tuple(np.shape(a)) != tuple(np.shape(b))
                                       for a, b in zip(ours, theirs)):
        return float("inf")
    return max(float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in zip(ours, theirs))


# [start:check]
def compare_with_keras(kind: str, x, units: int, seed: int = 0, unroll=None) -> float:
    """Run our cell and Keras's layer on `x` with the same weights and start state.

    Returns the largest |difference| over the whole output sequence and the final
    state(s): h for SimpleRNN, h and c for LSTM. `unroll` is the function to check
    (default: this chapter's `simple_rnn` or `lstm`).
    """
    rng = np.random.default_rng(seed)
    layer_cls = layers.LSTM if kind == "lstm" else layers.SimpleRNN
    layer = layer_cls(units, return_sequences=True, return_state=True, dtype=x.dtype)
    layer.build(x.shape)
    weights = [rng.normal(0.0, 0.5, w.shape) for w in layer.get_weights()]  # kernel, rec., bias
    layer.set_weights(weights)
    states = [tf.constant(rng.normal(size=(x.shape[0], units)), x.dtype)
              for _ in range(2 if kind == "lstm" else 1)]  # h0 (and c0)
    theirs = layer(x, initial_state=states)  # [sequence, h_T] or [sequence, h_T, c_T]
    weights = [tf.constant(w, x.dtype) for w in weights]
    unroll = unroll or (lstm if kind == "lstm" else simple_rnn)
    ours = unroll(x, *weights, *states)  # (sequence, h_T) or (sequence, h_T, c_T)
    return max_abs_err(ours, theirs)  # over every output; inf if a shape differs
# [end:check]


# [start:gradients]
def input_gradient_norms(model: keras.Model, x, y) -> np.ndarray:
    """‖∂L/∂x_t‖ for every time step t, averaged over the examples.

    Back-propagation through time, made visible: how strongly the loss at the end
    of the sequence still responds to the input t steps earlier.
    """
    x = tf.convert_to_tensor(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        losses = keras.losses.sparse_categorical_crossentropy(y, model(x))  # (batch,)
        loss = tf.reduce_sum(losses)  # a sum, so each example gets its own gradient
    grads = tape.gradient(loss, x)  # (batch, time, features)
    return tf.reduce_mean(tf.norm(grads, axis=-1), axis=0).numpy()  # (time,)
# [end:gradients]


# --- The data -------------------------------------------------------------------------
# [start:memory]
def make_memory_task(n: int, seed: int, time_steps: int = TIME_STEPS,
                     n_classes: int = N_CLASSES, n_distractors: int = N_DISTRACTORS):
    """Sequences of one-hot symbols: step 0 shows one of `n_classes` symbols, the other
    steps show random distractor symbols; the label is the symbol seen at step 0."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, size=n)  # (n,)
    symbols = rng.integers(n_classes, n_classes + n_distractors, size=(n, time_steps))
    symbols[:, 0] = y
    x = np.eye(n_classes + n_distractors, dtype=np.float32)[symbols]  # (n, time, symbols)
    return x, y.astype(np.int32)
# [end:memory]


# [start:windows]
def make_windows(series: np.ndarray, window: int, batch_size: int, shuffle: bool = False,
                 seed: int = 0) -> tf.data.Dataset:
    """Every run of `window` values as input, the value right after it as target."""
    return keras.utils.timeseries_dataset_from_array(
        series[:-1, None],  # (time - 1, 1): the last value is only ever a target
        targets=series[window:],  # targets[i] follows the window that starts at i
        sequence_length=window, batch_size=batch_size, shuffle=shuffle, seed=seed)
# [end:windows]


# --- The Keras way --------------------------------------------------------------------
# [start:keras]
def build_classifier(kind: str, input_shape: tuple[int, int], num_classes: int,
                     units: int = UNITS) -> keras.Model:
    """A SimpleRNN or LSTM layer reads the sequence; a Dense layer classifies its last h."""
    inputs = keras.Input(shape=input_shape)  # (time, features)
    rnn = (layers.LSTM if kind == "lstm" else layers.SimpleRNN)(units, name="rnn")
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32")(rnn(inputs))
    model = keras.Model(inputs, outputs, name=kind)
    if kind == "lstm":  # start with the forget gates open and the input gates nearly shut
        bias = rnn.cell.bias.numpy()  # (4·units,) in the order i, f, c, o
        bias[:units], bias[units:2 * units] = -FORGET_BIAS, FORGET_BIAS
        rnn.cell.bias.assign(bias)
    return model


def build_model(input_shape: tuple[int, int] = (WINDOW, 1), units: int = UNITS) -> keras.Model:
    """The forecaster: an LSTM reads `window` past values, a Dense unit says the next one."""
    inputs = keras.Input(shape=input_shape)  # (window, 1)
    h = layers.LSTM(units, name="lstm")(inputs)  # (batch, units): the last hidden state
    outputs = layers.Dense(1, dtype="float32", name="next")(h)  # (batch, 1)
    return keras.Model(inputs, outputs, name="sunspot_forecaster")


def compile_classifier(kind: str, input_shape: tuple[int, int],
                       learning_rate: float) -> keras.Model:
    """Build a memory-task classifier and compile it: Adam with every gradient clipped to
    norm 1, on the cross-entropy of integer labels."""
    model = build_classifier(kind, input_shape, N_CLASSES)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate, clipnorm=1.0),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def compile_model(learning_rate: float) -> keras.Model:
    """Build the forecaster and compile it: Adam on the mean squared error of the next value."""
    model = build_model((WINDOW, 1))
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="mse")
    return model
# [end:keras]


# [start:fit]
def fit_model(model: keras.Model, train_ds, val_ds, epochs: int, callbacks=()) -> dict:
    """Train with `fit`, scoring `val_ds` after every epoch; return the history by name."""
    history = model.fit(train_ds, epochs=epochs, validation_data=val_ds, callbacks=callbacks)
    return history.history  # {"loss": [...], "val_loss": [...], ...} one value per epoch


def evaluate_classifier(model: keras.Model, x_test, y_test) -> float:
    """The classifier's accuracy on the test sequences."""
    return model.evaluate(x_test, y_test, verbose=0, return_dict=True)["accuracy"]


def forecast(model: keras.Model, x) -> np.ndarray:
    """The forecaster's next value after each window of `x` (n, window, 1)."""
    return model.predict(x, verbose=0)[:, 0]  # (n,)
# [end:fit]


# --- Run ----------------------------------------------------------------------------
KINDS = {"simple_rnn": "SimpleRNN", "lstm": "LSTM"}


class Memory(NamedTuple):
    x: np.ndarray  # (n, time, symbols) one-hot
    y: np.ndarray  # (n,) the symbol at step 0
    x_test: np.ndarray
    y_test: np.ndarray


class Sunspots(NamedTuple):
    years: np.ndarray  # (time,)
    values: np.ndarray  # (time,) sunspot numbers
    split: int  # index of the first test year
    mu: float  # mean and standard deviation of the training years
    sigma: float
    train_ds: object  # tf.data.Dataset of (window, next value) batches, shuffled
    test_ds: object  # the test years' windows, one batch


def prepare_data(cfg: Config, ex: Experiment) -> tuple[Memory, Sunspots]:
    """The memory task's sequences and the sunspot series cut into windows."""
    n_train = 1024 if cfg.quick else 4096
    memory = Memory(*make_memory_task(n_train, cfg.seed), *make_memory_task(1000, cfg.seed + 1))
    ex.details["memory_task"] = {
        "source": "synthetic", "train": n_train, "test": 1000, "time_steps": TIME_STEPS,
        "classes": N_CLASSES, "distractors": N_DISTRACTORS, "units": UNITS,
        "task": "one-hot symbols; step 0 shows the class, the other steps distractors"}
    years, values, provenance = datasets.load_series("sunspots")
    split = int(np.searchsorted(years, SPLIT_YEAR))  # train on the past, test on the future
    mu, sigma = values[:split].mean(), values[:split].std()  # training years only
    scaled = (values - mu) / sigma
    train_ds = make_windows(scaled[:split], WINDOW, cfg.batch_size, shuffle=True, seed=cfg.seed)
    test_ds = make_windows(scaled[split - WINDOW:], WINDOW, batch_size=len(values))
    ex.record_data("sunspots", "offline-standin", split - WINDOW, len(values) - split,
                   provenance=provenance, window=WINDOW,
                   train_years=f"{years[WINDOW]}-{years[split - 1]} (targets)",
                   test_years=f"{years[split]}-{years[-1]}")
    return memory, Sunspots(years, values, split, mu, sigma, train_ds, test_ds)


def check_from_scratch(cfg: Config, ex: Experiment) -> None:
    """Our cells against Keras's layers, in float32 (the tests also check float64)."""
    x = tf.constant(np.random.default_rng(cfg.seed).normal(size=(4, 7, 3)), tf.float32)
    ex.log(rnn_max_abs_err=compare_with_keras("simple_rnn", x, units=5, seed=cfg.seed),
           lstm_max_abs_err=compare_with_keras("lstm", x, units=5, seed=cfg.seed))


def train_memory(cfg: Config, ex: Experiment, memory: Memory, kind: str):
    """Train one classifier on the memory task; return it, its history and gradient norms."""
    m = memory
    model = ex.runtime.build(compile_classifier, kind, m.x.shape[1:], cfg.learning_rate)
    probe = (m.x_test[:256], m.y_test[:256])
    before = input_gradient_norms(model, *probe)
    print(f"Memory task, {kind}: {len(m.x)} sequences of {m.x.shape[1]} steps, "
          f"{cfg.epochs} epochs")
    history = fit_model(model, datasets.pipeline(m.x, m.y, cfg.batch_size, shuffle=True,
                                                 seed=cfg.seed),
                        datasets.pipeline(m.x_test, m.y_test, 256), cfg.epochs,
                        callbacks=ex.callbacks(kind))
    return model, history, (before, input_gradient_norms(model, *probe))


def train_forecaster(cfg: Config, ex: Experiment, sunspots: Sunspots):
    """Fit the LSTM forecaster to the training years; the test years draw its curve."""
    model = ex.runtime.build(compile_model, cfg.learning_rate)
    print(f"Sunspots: {WINDOW}-year windows, {4 * cfg.epochs} epochs")
    history = fit_model(model, sunspots.train_ds, sunspots.test_ds, 4 * cfg.epochs,
                        callbacks=ex.callbacks())
    ex.save_model(model)
    return model, history


def evaluate(ex: Experiment, memory: Memory, trained: dict, sunspots: Sunspots,
             forecaster: keras.Model) -> dict:
    """Log both cells' memory and gradient ratio; forecast the test years against naive."""
    ex.log(**{f"{kind}_accuracy": evaluate_classifier(model, memory.x_test, memory.y_test)
              for kind, (model, _, _) in trained.items()})
    ex.log(**{f"{kind}_grad_ratio": before[0] / before[-1]  # step 0 vs the last step
              for kind, (_, _, (before, _)) in trained.items()})
    (x_test, y_test), = sunspots.test_ds.as_numpy_iterator()  # (n, window, 1), (n,)
    mu, sigma = sunspots.mu, sunspots.sigma
    lines = {"truth": y_test * sigma + mu,  # back to sunspot units
             "LSTM forecast": forecast(forecaster, x_test) * sigma + mu,
             "naive (last year)": x_test[:, -1, 0] * sigma + mu}
    lstm_mse, naive_mse = (np.mean((lines[k] - lines["truth"]) ** 2)
                           for k in ("LSTM forecast", "naive (last year)"))
    ex.log(lstm_mse=lstm_mse, naive_mse=naive_mse, mse_vs_naive=lstm_mse / naive_mse)
    return lines


def draw(ex: Experiment, trained: dict, sunspots: Sunspots, lines: dict,
         forecast_history: dict) -> None:
    """Gradient flow, memory-task accuracy, the forecast and its training curve."""
    grads = {f"{KINDS[kind]}, {when}": norms[i] for kind, (_, _, norms) in trained.items()
             for i, when in enumerate(("untrained", "trained"))}
    ex.save_figure(plotting.line_plot(
        grads, xlabel="time step t of the input", ylabel="‖∂L/∂x_t‖", logy=True,
        x=np.arange(TIME_STEPS), title="How much the loss at the end feels each input"),
        "gradient_flow")
    curves = {f"{KINDS[kind]}, {split_name}": history[key]
              for kind, (_, history, _) in trained.items()
              for split_name, key in (("train", "accuracy"), ("test", "val_accuracy"))}
    epochs = len(next(iter(curves.values())))
    ex.save_figure(plotting.line_plot(
        curves, xlabel="epoch", ylabel="accuracy", x=np.arange(1, epochs + 1),
        title=f"Remember step 0 across {TIME_STEPS} steps (chance {1 / N_CLASSES:.2f})"),
        "memory_history")
    ex.save_figure(plotting.line_plot(
        lines, xlabel="year", ylabel="sunspot number", x=sunspots.years[sunspots.split:],
        title=f"One-year-ahead forecast on the test years (MSE ratio "
              f"{ex.metrics['mse_vs_naive']:.2f})"), "forecast")
    ex.save_figure(plotting.history_curves(forecast_history, "Sunspot forecaster"),
                   "forecast_history")


def run(cfg: Config) -> dict:
    """Check the cells against Keras, train the memory task, forecast the sunspots."""
    with Experiment(cfg) as ex:
        memory, sunspots = prepare_data(cfg, ex)
        check_from_scratch(cfg, ex)
        # Why gates matter: the same task, size and budget for a SimpleRNN and an LSTM.
        trained = {kind: train_memory(cfg, ex, memory, kind) for kind in KINDS}
        forecaster, forecast_history = train_forecaster(cfg, ex, sunspots)
        lines = evaluate(ex, memory, trained, sunspots, forecaster)
        draw(ex, trained, sunspots, lines, forecast_history)
    return ex.metrics


def main(argv=None):
    cli.main(__name__, run, argv)


if __name__ == "__main__":
    main()
