"""Recurrent networks: a simple RNN and an LSTM from scratch, why gates matter, a forecast.

Unrolls h_t = tanh(x_t W_xh + h_{t-1} W_hh + b) over [batch, time, features] and
writes an LSTM cell by hand, checks both against keras.layers.SimpleRNN and
keras.layers.LSTM given the same weights, makes back-propagation through time
visible (the product of Jacobians dh_t/dh_{t-1}, and how much the loss still
feels each earlier input), shows an LSTM remembering a symbol across 120 steps
of distractors, and forecasts the yearly sunspot numbers beside two baselines.

Text: chapters/rnn.md. Ports 000 §2.3/§3.4/§4.4, 001 §3.4 and 002 §3.4 of the source
primers (chapters/SOURCES.md).
"""
from __future__ import annotations

from typing import NamedTuple

import keras
import numpy as np
import tensorflow as tf
from keras import layers
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch

from tfguide import cli, datasets, plotting
from tfguide.config import Config
from tfguide.results import BatchAccuracy, Experiment

# The memory task: remember the first of 120 symbols (see make_memory_task; --time-steps).
TIME_STEPS, N_CLASSES, N_DISTRACTORS, UNITS = 120, 2, 4, 32
FORGET_BIAS = 4.0  # LSTM forget-gate bias at the start: sigmoid(4) = 0.982 kept per step
WINDOW = 20  # forecast: 20 past years in, the next year out
VAL_YEAR, SPLIT_YEAR = 1929, 1949  # train up to 1928, validate 1929-1948, test 1949-2008


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


# [start:jacobian]
def step_jacobian(h_t, W_hh):
    """∂h_t/∂h_{t-1} = diag(1 - h_t²) W_hhᵀ for one example's state h_t (units,)."""
    return (1.0 - h_t**2)[:, None] * tf.transpose(W_hh)  # (units, units)


def bptt_toy(w_hh: float = 0.9, steps: int = 5) -> dict:
    """A one-unit RNN fed a 1 and then zeros: ∂h_T/∂h_0 by the chain rule and by the tape."""
    W_xh, W_hh = tf.ones((1, 1), tf.float64), tf.fill((1, 1), np.float64(w_hh))  # (1, 1)
    b, h0 = tf.zeros(1, tf.float64), tf.zeros((1, 1), tf.float64)
    x = tf.constant([[[1.0]] + [[0.0]] * (steps - 1)], tf.float64)  # (1, steps, 1)
    with tf.GradientTape() as tape:
        tape.watch(h0)
        states, h_T = simple_rnn(x, W_xh, W_hh, b, h0)  # states: (1, steps, 1)
    factors = [float(step_jacobian(h_t, W_hh)[0, 0]) for h_t in states[0]]  # one per step
    return {"h": [float(h) for h in states[0, :, 0]], "factors": factors,
            "chain_rule": float(np.prod(factors)), "tape": float(tape.gradient(h_T, h0)[0, 0])}
# [end:jacobian]


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


# [start:linear]
def fit_linear_ar(series: np.ndarray, window: int) -> tuple[np.ndarray, float]:
    """The linear baseline: next value = x·w + b over the last `window` values,
    w and b by least squares on every window of `series`."""
    x = np.lib.stride_tricks.sliding_window_view(series[:-1], window)  # (n, window)
    x1 = np.hstack([x, np.ones((len(x), 1))])  # a column of ones carries b
    coef, *_ = np.linalg.lstsq(x1, series[window:], rcond=None)  # (window + 1,)
    return coef[:-1], float(coef[-1])
# [end:linear]


# --- The Keras way --------------------------------------------------------------------
# [start:keras]
def build_classifier(kind: str, input_shape: tuple[int, int], num_classes: int,
                     units: int = UNITS, forget_bias: float = FORGET_BIAS) -> keras.Model:
    """A SimpleRNN or LSTM layer reads the sequence; a Dense layer classifies its last h."""
    inputs = keras.Input(shape=input_shape)  # (time, features)
    rnn = (layers.LSTM if kind == "lstm" else layers.SimpleRNN)(units, name="rnn")
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32")(rnn(inputs))
    model = keras.Model(inputs, outputs, name=kind)
    if kind == "lstm":  # start with the forget gates open and the input gates nearly shut
        bias = rnn.cell.bias.numpy()  # (4·units,) in the order i, f, c, o
        bias[:units], bias[units:2 * units] = -forget_bias, forget_bias
        rnn.cell.bias.assign(bias)
    return model


def build_model(input_shape: tuple[int, int] = (WINDOW, 1), units: int = UNITS) -> keras.Model:
    """The forecaster: an LSTM reads `window` past values, a Dense unit says the next one."""
    inputs = keras.Input(shape=input_shape)  # (window, 1)
    h = layers.LSTM(units, name="lstm")(inputs)  # (batch, units): the last hidden state
    outputs = layers.Dense(1, dtype="float32", name="next")(h)  # (batch, 1)
    return keras.Model(inputs, outputs, name="sunspot_forecaster")


def compile_classifier(kind: str, input_shape: tuple[int, int], learning_rate: float,
                       forget_bias: float = FORGET_BIAS) -> keras.Model:
    """Build a memory-task classifier and compile it: Adam with each weight's gradient
    clipped to norm 1, on the cross-entropy of integer labels."""
    model = build_classifier(kind, input_shape, N_CLASSES, forget_bias=forget_bias)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate, clipnorm=1.0),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def compile_model(learning_rate: float) -> keras.Model:
    """Build the forecaster and compile it: Adam on the mean squared error of the next value."""
    model = build_model((WINDOW, 1))
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="mse")
    return model
# [end:keras]


def cell_memory(forget_bias: float, steps: int) -> float:
    """The share of its content an LSTM cell keeps over `steps` steps at forget gate σ(bias)."""
    return float(1.0 / (1.0 + np.exp(-forget_bias))) ** steps


# [start:fit]
def fit_model(model: keras.Model, train_ds, val_ds, epochs: int, callbacks=()) -> dict:
    """Train with `fit`, scoring `val_ds` after every epoch; return the history by name."""
    history = model.fit(train_ds, epochs=epochs, validation_data=val_ds, callbacks=callbacks)
    return history.history  # {"loss": [...], "val_loss": [...], ...} one value per epoch


def keep_best(patience: int = 10) -> keras.callbacks.Callback:
    """Early stopping on the validation loss; the best epoch's weights are kept."""
    return keras.callbacks.EarlyStopping("val_loss", patience=patience, restore_best_weights=True)


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
    scaled: np.ndarray  # (time,) standardised with the training years' mean and deviation
    val: int  # index of the first validation year
    split: int  # index of the first test year
    mu: float  # mean and standard deviation of the training years
    sigma: float
    train_ds: object  # tf.data.Dataset of (window, next value) batches, shuffled
    val_ds: object  # the validation years' windows, one batch
    test_ds: object  # the test years' windows, one batch


def prepare_data(cfg: Config, ex: Experiment) -> tuple[Memory, Sunspots]:
    """The memory task's sequences and the sunspot series cut into windows."""
    n_train, steps = (1024 if cfg.quick else 4096), cfg.options.get("time_steps", TIME_STEPS)
    memory = Memory(*make_memory_task(n_train, cfg.seed, steps),
                    *make_memory_task(1000, cfg.seed + 1, steps))
    ex.details["memory_task"] = {
        "source": "synthetic", "train": n_train, "test": 1000, "time_steps": steps,
        "classes": N_CLASSES, "distractors": N_DISTRACTORS, "units": UNITS,
        "task": "one-hot symbols; step 0 shows the class, the other steps distractors"}
    years, values, provenance = datasets.load_series("sunspots")
    val, split = (int(np.searchsorted(years, y)) for y in (VAL_YEAR, SPLIT_YEAR))
    mu, sigma = values[:val].mean(), values[:val].std()  # training years only
    scaled = (values - mu) / sigma
    train_ds = make_windows(scaled[:val], WINDOW, cfg.batch_size, shuffle=True, seed=cfg.seed)
    val_ds = make_windows(scaled[val - WINDOW:split], WINDOW, batch_size=len(values))
    test_ds = make_windows(scaled[split - WINDOW:], WINDOW, batch_size=len(values))
    ex.record_data("sunspots", "offline-standin", val - WINDOW, len(values) - split,
                   provenance=provenance, window=WINDOW, validation=split - val,
                   train_years=f"{years[WINDOW]}-{years[val - 1]} (targets)",
                   validation_years=f"{years[val]}-{years[split - 1]}",
                   test_years=f"{years[split]}-{years[-1]}")
    return memory, Sunspots(years, values, scaled, val, split, mu, sigma, train_ds, val_ds,
                            test_ds)


def check_from_scratch(cfg: Config, ex: Experiment) -> None:
    """Our cells against Keras's layers in float32 (the tests also check float64); BPTT by
    hand on a one-unit RNN; how much of its cell an LSTM keeps at two forget biases."""
    x = tf.constant(np.random.default_rng(cfg.seed).normal(size=(4, 7, 3)), tf.float32)
    ex.log(rnn_max_abs_err=compare_with_keras("simple_rnn", x, units=5, seed=cfg.seed),
           lstm_max_abs_err=compare_with_keras("lstm", x, units=5, seed=cfg.seed))
    toy = bptt_toy()
    ex.log(bptt_toy_err=abs(toy["chain_rule"] - toy["tape"]))
    ex.details["bptt_toy"] = {"chain_rule": toy["chain_rule"], "tape": toy["tape"],
                              **{f"h_{t}": h for t, h in enumerate(toy["h"], 1)},
                              **{f"factor_{t}": f for t, f in enumerate(toy["factors"], 1)}}
    steps = ex.details["memory_task"]["time_steps"] - 1  # from step 0 to the last step
    ex.details["cell_memory"] = {"steps": steps, "keras_default": cell_memory(1.0, steps),
                                 "chapter": cell_memory(cfg.options.get("forget_bias",
                                                                        FORGET_BIAS), steps)}


def train_memory(cfg: Config, ex: Experiment, memory: Memory, kind: str):
    """Train one classifier on the memory task; return it, its histories and gradient norms."""
    m, per_batch = memory, BatchAccuracy()
    model = ex.runtime.build(compile_classifier, kind, m.x.shape[1:], cfg.learning_rate,
                             cfg.options.get("forget_bias", FORGET_BIAS))
    probe = (m.x_test[:256], m.y_test[:256])
    before = input_gradient_norms(model, *probe)
    print(f"Memory task, {kind}: {len(m.x)} sequences of {m.x.shape[1]} steps, "
          f"{cfg.epochs} epochs")
    history = fit_model(model, datasets.pipeline(m.x, m.y, cfg.batch_size, shuffle=True,
                                                 seed=cfg.seed),
                        datasets.pipeline(m.x_test, m.y_test, 256), cfg.epochs,
                        callbacks=ex.callbacks(kind) + [per_batch])
    history["batch_accuracy"] = per_batch.values
    return model, history, (before, input_gradient_norms(model, *probe))


def train_forecaster(cfg: Config, ex: Experiment, sunspots: Sunspots):
    """Fit the LSTM forecaster to the training years; the validation years pick its epoch."""
    model = ex.runtime.build(compile_model, cfg.learning_rate)
    print(f"Sunspots: {WINDOW}-year windows, {4 * cfg.epochs} epochs")
    history = fit_model(model, sunspots.train_ds, sunspots.val_ds, 4 * cfg.epochs,
                        callbacks=ex.callbacks() + [keep_best()])
    ex.save_model(model)
    return model, history


def evaluate(ex: Experiment, memory: Memory, trained: dict, sunspots: Sunspots,
             forecaster: keras.Model) -> dict:
    """Log both cells' memory and gradient ratio; forecast the test years against the
    naive and the linear forecast."""
    ex.log(**{f"{kind}_accuracy": evaluate_classifier(model, memory.x_test, memory.y_test)
              for kind, (model, _, _) in trained.items()})
    ex.log(**{f"{kind}_grad_ratio": before[0] / before[-1]  # step 0 vs the last step
              for kind, (_, _, (before, _)) in trained.items()})
    (x_test, y_test), = sunspots.test_ds.as_numpy_iterator()  # (n, window, 1), (n,)
    w, b = fit_linear_ar(sunspots.scaled[:sunspots.val], WINDOW)  # the training years
    mu, sigma = sunspots.mu, sunspots.sigma
    lines = {"truth": y_test * sigma + mu,  # back to sunspot units
             "LSTM forecast": forecast(forecaster, x_test) * sigma + mu,
             "linear forecast": (x_test[:, :, 0] @ w + b) * sigma + mu,
             "naive (last year)": x_test[:, -1, 0] * sigma + mu}
    lstm_mse, linear_mse, naive_mse = (np.mean((lines[k] - lines["truth"]) ** 2) for k in (
        "LSTM forecast", "linear forecast", "naive (last year)"))
    ex.log(lstm_mse=lstm_mse, linear_mse=linear_mse, naive_mse=naive_mse,
           mse_vs_naive=lstm_mse / naive_mse, linear_vs_naive=linear_mse / naive_mse)
    return lines


def draw(ex: Experiment, trained: dict, sunspots: Sunspots, lines: dict,
         forecast_history: dict) -> None:
    """Gradient flow, memory-task accuracy, the forecast and its training curve."""
    steps = ex.details["memory_task"]["time_steps"]
    grads = {f"{KINDS[kind]}, {when}": norms[i] for kind, (_, _, norms) in trained.items()
             for i, when in enumerate(("untrained", "trained"))}
    ex.save_figure(plotting.line_plot(
        grads, xlabel="time step t of the input", ylabel="‖∂L/∂x_t‖", logy=True,
        x=np.arange(steps), title="How much the loss at the end feels each input"),
        "gradient_flow")
    smooth = np.ones(8) / 8  # a running mean over 8 batches
    curves = {f"{KINDS[kind]}, training batches": np.convolve(h["batch_accuracy"], smooth, "valid")
              for kind, (_, h, _) in trained.items()}
    fig = plotting.line_plot(curves, xlabel="training step (batch)", ylabel="accuracy",
                             x=np.arange(8, 8 + len(next(iter(curves.values())))),
                             title=f"Remember step 0 across {steps} steps "
                                   f"(chance {1 / N_CLASSES:.2f})")
    per_epoch = len(trained["lstm"][1]["batch_accuracy"]) // len(trained["lstm"][1]["loss"])
    for i, (kind, (_, h, _)) in enumerate(trained.items()):
        fig.axes[0].plot(per_epoch * np.arange(1, len(h["val_accuracy"]) + 1), h["val_accuracy"],
                         "o", color=f"C{i}", label=f"{KINDS[kind]}, test (end of epoch)")
    fig.axes[0].legend()
    ex.save_figure(fig, "memory_history")
    ex.save_figure(plotting.line_plot(
        lines, xlabel="year", ylabel="sunspot number", x=sunspots.years[sunspots.split:],
        title=f"One-year-ahead forecast on the test years (MSE ratio "
              f"{ex.metrics['mse_vs_naive']:.2f})"), "forecast")
    ex.save_figure(plotting.history_curves(forecast_history, "Sunspot forecaster"),
                   "forecast_history")


# --- Concept diagrams (saved as chapters/figures/rnn/concept_*.png) -------------------
def _node(ax, x, y, text, color="C0", w=0.8, h=0.5, size=9):
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.05",
                                fc=color, ec="black", alpha=0.25 if color != "white" else 1))
    ax.text(x, y, text, ha="center", va="center", fontsize=size)


def _arrow(ax, start, end, text="", color="black", offset=(0, 0.12), size=8, **kw):
    ax.annotate("", end, start, arrowprops=dict(arrowstyle="->", color=color, lw=1.3, **kw))
    mid = (start[0] + end[0]) / 2 + offset[0], (start[1] + end[1]) / 2 + offset[1]
    ax.text(*mid, text, ha="center", va="center", fontsize=size, color=color)


def unrolled_concept(steps: int = 5) -> Figure:
    """The one-unit RNN of `bptt_toy`, unrolled: its states forward, its Jacobians backward."""
    toy = bptt_toy(steps=steps)
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    ax = fig.add_subplot()
    _node(ax, 0, 1, "$h_0$ = 0", "white")
    for t in range(1, steps + 1):
        _node(ax, 2 * t, 0, f"$x_{t}$ = {1 if t == 1 else 0}", "C2")
        _node(ax, 2 * t, 1, f"$h_{t}$ = {toy['h'][t - 1]:.3f}")
        _arrow(ax, (2 * t, 0.25), (2 * t, 0.72), "$W_{xh}$", offset=(0.3, 0))
        _arrow(ax, (2 * t - 1.55, 1), (2 * t - 0.45, 1), "$W_{hh}$ = 0.9")
        _arrow(ax, (2 * t - 0.2, 1.6), (2 * t - 1.8, 1.6), f"×{toy['factors'][t - 1]:.3f}",
               "C3", offset=(0, 0.15), connectionstyle="arc3,rad=0.3")
    ax.text(steps + 1, 2.25, "backward: $\\partial h_t/\\partial h_{t-1} = (1 - h_t^2)\\,W_{hh}$,"
            f" so $\\partial h_{steps}/\\partial h_0$ = product = {toy['chain_rule']:.4f} "
            f"(GradientTape: {toy['tape']:.4f})", ha="center", color="C3", fontsize=10)
    ax.text(steps + 1, -0.7, "forward: $h_t = \\tanh(x_t W_{xh} + h_{t-1} W_{hh} + b)$, "
            "the same weights at every step", ha="center", fontsize=10)
    ax.set(xlim=(-0.8, 2 * steps + 0.8), ylim=(-1, 2.6), aspect="equal")
    ax.axis("off")
    return fig


def lstm_concept() -> Figure:
    """One LSTM step as `lstm_step` computes it: four gates, the cell path along the top."""
    fig = Figure(figsize=(10, 5), layout="constrained")
    ax = fig.add_subplot()
    gates = [("f", "sigmoid", "forget"), ("i", "sigmoid", "input"),
             ("g", "tanh", "candidate"), ("o", "sigmoid", "output")]
    for k, (name, fn, what) in enumerate(gates):
        _node(ax, 2 + 1.6 * k, 0.8, f"${name}_t$ = {fn}(·)\n{what}", "C1", w=1.2, h=0.7)
        _arrow(ax, (2 + 1.6 * k, -0.15), (2 + 1.6 * k, 0.4))
    ax.plot([0.2, 7.5], [-0.2, -0.2], color="black", lw=1.3)
    ax.text(3.85, -0.55, "$[x_t, h_{t-1}]$: each gate is $x_t W + h_{t-1} U + b$, one quarter "
            "of lstm_step's z", ha="center", fontsize=9)
    _node(ax, 0, 3, "$c_{t-1}$", "white")
    _node(ax, 2, 3, "×", "C3", w=0.5)
    _node(ax, 4.2, 3, "+", "C3", w=0.5)
    _node(ax, 4.2, 2.1, "×", "C3", w=0.5)
    _node(ax, 9.8, 3, "$c_t$", "white")
    _node(ax, 8.2, 2.3, "tanh", "C0", w=0.7)
    _node(ax, 8.2, 1.6, "×", "C3", w=0.5)
    _node(ax, 9.8, 1.6, "$h_t$", "white")
    _arrow(ax, (0.45, 3), (1.72, 3), "cell path", "C3")
    _arrow(ax, (2.28, 3), (3.92, 3), "$f_t \\odot c_{t-1}$", "C3")
    _arrow(ax, (4.48, 3), (9.3, 3), "$c_t = f_t \\odot c_{t-1} + i_t \\odot g_t$", "C3")
    _arrow(ax, (2, 1.18), (2, 2.72))
    _arrow(ax, (3.6, 1.18), (4.0, 1.82))
    _arrow(ax, (5.2, 1.18), (4.4, 1.82))
    _arrow(ax, (4.2, 2.38), (4.2, 2.72), "$i_t \\odot g_t$", offset=(0.55, 0))
    _arrow(ax, (8.2, 3), (8.2, 2.58))
    _arrow(ax, (8.2, 2.05), (8.2, 1.88))
    _arrow(ax, (6.8, 1.18), (7.92, 1.55))
    _arrow(ax, (8.48, 1.6), (9.35, 1.6), "$h_t$", offset=(0, 0.15))
    ax.text(8.9, 0.9, "$h_t = o_t \\odot \\tanh(c_t)$", ha="center", fontsize=9)
    ax.set(xlim=(-0.6, 10.5), ylim=(-0.8, 3.6), aspect="equal")
    ax.axis("off")
    fig.suptitle("An LSTM step: along the cell path, only a multiplication by $f_t$ and an "
                 "addition")
    return fig


def concept_figures() -> dict[str, Figure]:
    """The chapter's diagrams of its ideas, drawn from its own functions."""
    return {"concept_unrolled": unrolled_concept(), "concept_lstm": lstm_concept()}


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
