"""Backpropagation: a two-layer network's gradients by hand, proved against autodiff.

Writes the activations (sigmoid, tanh, ReLU, softmax) and the losses (MSE, binary
and categorical cross-entropy) from their formulas and checks them against Keras;
then a two-layer network whose backward pass applies the chain rule layer by layer.
Its gradients are checked three ways in float64 (by hand, `tf.GradientTape`,
central finite differences), then used to train the network on two interleaved
spirals, which no linear model can separate. Keras trains the same network from
the same start and has to land on the same weights.

Text: chapters/backprop.md. Ports 000 §3.2/§4.2, 001 §3.2/§4, 002 §3.1.1-3.1.2 and
003 §4.1 of the source primers (chapters/SOURCES.md).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import keras
import numpy as np
import tensorflow as tf
from keras import layers
from matplotlib.figure import Figure

from tfguide import cli, datasets, plotting
from tfguide.config import Config
from tfguide.results import Experiment

DTYPE = tf.float64  # everything from scratch runs in float64 so the checks can be tight
MOMENTUM = float(np.float32(0.9))  # a β float32 holds exactly, so Keras's SGD uses the same one


# --- Prepare the data ---------------------------------------------------------------
# Code between [start:…]/[end:…] markers is shown in chapters/backprop.md; after editing it,
# refresh the text with python -m tfguide.excerpts chapters/backprop.md.
# [start:data]
def make_spirals(n: int, seed: int, noise: float = 0.1, turns: float = 1.5):
    """Two interleaved spiral arms in the plane; the label says which arm a point is on."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, size=n)  # (n,)
    t = np.sqrt(rng.uniform(size=n)) * turns * 2 * np.pi  # angle along the arm
    r = 2 * t / (turns * 2 * np.pi)  # the radius grows with the angle, from 0 to 2
    angle = t + np.pi * y  # arm 1 is arm 0 turned by half a circle
    X = r[:, None] * np.stack([np.cos(angle), np.sin(angle)], axis=1)  # (n, 2)
    return X + rng.normal(0.0, noise, size=X.shape), y.astype(np.int32)
# [end:data]


# --- From scratch: activations and losses ---------------------------------------------
# [start:activations]
def sigmoid(z):
    """σ(z) = 1 / (1 + e^(−z)), arranged so that e^(...) never overflows."""
    # e^(−|z|), in (0, 1] for any z. Not tf.abs(z): its gradient at 0 is 0, so σ′(0) would be
    # 0 instead of 1/4 wherever TensorFlow differentiates this function for us.
    e = tf.exp(-tf.where(z >= 0, z, -z))
    return tf.where(z >= 0, 1 / (1 + e), e / (1 + e))


def tanh(z):
    """tanh(z) = (e^z − e^(−z)) / (e^z + e^(−z)), which equals 2σ(2z) − 1."""
    return 2 * sigmoid(2 * z) - 1


def relu(z):
    """ReLU(z) = max(0, z)."""
    return tf.maximum(z, tf.zeros_like(z))


def softmax_naive(z):
    """softmax(z)_i = e^(z_i) / Σ_j e^(z_j), straight from the formula: it overflows."""
    e = tf.exp(z)  # inf once z > 709 in float64 (88 in float32), and then inf / inf = nan
    return e / tf.reduce_sum(e, axis=-1, keepdims=True)


def softmax(z):
    """softmax(z)_i = e^(z_i) / Σ_j e^(z_j), after subtracting each row's maximum from z,
    which changes nothing but keeps every e^(...) at most 1."""
    e = tf.exp(z - tf.reduce_max(z, axis=-1, keepdims=True))  # the largest term is e^0 = 1
    return e / tf.reduce_sum(e, axis=-1, keepdims=True)


def log_softmax(z):
    """log softmax(z)_i = (z_i − m) − log Σ_j e^(z_j − m), with m the row maximum."""
    shifted = z - tf.reduce_max(z, axis=-1, keepdims=True)
    return shifted - tf.math.log(tf.reduce_sum(tf.exp(shifted), axis=-1, keepdims=True))
# [end:activations]


# [start:losses]
def mse(y, y_hat):
    """Mean squared error: mean of (y − ŷ)²."""
    return tf.reduce_mean((y - y_hat) ** 2)


def binary_cross_entropy(y, p):
    """−mean(y·log p + (1 − y)·log(1 − p)), with p the predicted probability of a 1."""
    return -tf.reduce_mean(y * tf.math.log(p) + (1 - y) * tf.math.log(1 - p))


def categorical_cross_entropy(Y, P):
    """−mean over examples of Σ_k Y_k·log P_k, with Y one-hot and P probabilities."""
    return -tf.reduce_mean(tf.reduce_sum(Y * tf.math.log(P), axis=-1))


def cross_entropy_from_logits(Y, Z):
    """−mean over examples of Σ_k Y_k·log softmax(Z)_k, from the logits Z (scores before the
    softmax) through the stable log-softmax."""
    return -tf.reduce_mean(tf.reduce_sum(Y * log_softmax(Z), axis=-1))
# [end:losses]


def compare_with_keras(seed: int = 0) -> tuple[float, float]:
    """Return the largest |ours − Keras| over the activations and over the losses."""
    rng = np.random.default_rng(seed)
    scale = np.ones((64, 1))
    scale[0] = 300.0  # one row of huge logits, up to about ±3000: the naive softmax fails there
    z = tf.constant(rng.normal(0.0, 3.0, (64, 10)) * scale)  # (64, 10)
    acts = [(sigmoid, keras.activations.sigmoid), (tanh, keras.activations.tanh),
            (relu, keras.activations.relu), (softmax, keras.activations.softmax),
            (log_softmax, keras.activations.log_softmax)]
    act_err = max(float(tf.reduce_max(tf.abs(ours(z) - theirs(z)))) for ours, theirs in acts)

    f64 = dict(dtype="float64")  # Keras losses compute in float32 unless told otherwise
    y, y_hat = tf.constant(rng.normal(size=(64, 3))), tf.constant(rng.normal(size=(64, 3)))
    y01 = tf.constant(rng.integers(0, 2, (64, 1)), DTYPE)  # (64, 1) binary targets
    p = sigmoid(tf.constant(rng.normal(0.0, 2.0, (64, 1))))  # (64, 1) probabilities
    Y = tf.one_hot(rng.integers(0, 10, 64), 10, dtype=DTYPE)  # (64, 10)
    logits = tf.constant(rng.normal(0.0, 2.0, (64, 10)))
    losses = [
        (mse(y, y_hat), keras.losses.MeanSquaredError(**f64)(y, y_hat)),
        (binary_cross_entropy(y01, p), keras.losses.BinaryCrossentropy(**f64)(y01, p)),
        (categorical_cross_entropy(Y, softmax(logits)),
         keras.losses.CategoricalCrossentropy(**f64)(Y, softmax(logits))),
        (cross_entropy_from_logits(Y, z),
         keras.losses.CategoricalCrossentropy(from_logits=True, **f64)(Y, z)),
    ]
    loss_err = max(abs(float(ours) - float(theirs)) for ours, theirs in losses)
    return act_err, loss_err


# --- From scratch: a two-layer network ------------------------------------------------
# Each hidden activation, and its derivative written in terms of its output a = f(z).
ACTIVATIONS = {"tanh": tanh, "sigmoid": sigmoid, "relu": relu}
DERIVATIVES = {
    "tanh": lambda a: 1 - a**2,
    "sigmoid": lambda a: a * (1 - a),
    "relu": lambda a: tf.cast(a > 0, a.dtype),
}


# [start:network]
def init_params(n_in: int, n_hidden: int, n_out: int, seed: int) -> dict:
    """Weights of variance 1/fan-in (LeCun-style scaling) and zero biases."""
    rng = np.random.default_rng(seed)
    return {
        "W1": tf.constant(rng.normal(0, 1 / np.sqrt(n_in), (n_in, n_hidden)), DTYPE),
        "b1": tf.zeros(n_hidden, DTYPE),
        "W2": tf.constant(rng.normal(0, 1 / np.sqrt(n_hidden), (n_hidden, n_out)), DTYPE),
        "b2": tf.zeros(n_out, DTYPE),
    }


def forward(params: dict, X, activation: str = "tanh"):
    """X → Z1 = X·W1 + b1 → A1 = f(Z1) → Z2 = A1·W2 + b2; returns A1 and the logits Z2."""
    f = ACTIVATIONS[activation]
    Z1 = X @ params["W1"] + params["b1"]  # (n, d) @ (d, d_h) -> (n, d_h)
    A1 = f(Z1)  # (n, d_h)
    Z2 = A1 @ params["W2"] + params["b2"]  # (n, d_h) @ (d_h, C) -> (n, C)
    return A1, Z2


def loss_fn(params: dict, X, Y, activation: str = "tanh"):
    """L = mean cross-entropy between softmax(Z2) and the one-hot targets Y."""
    _, Z2 = forward(params, X, activation)
    return cross_entropy_from_logits(Y, Z2)


def backward(params: dict, X, Y, A1, Z2, activation: str = "tanh") -> dict:
    """∂L/∂θ for every parameter, by the chain rule from the loss back to the input.

    Takes everything it needs as arguments: the parameters, the batch (X, Y) and
    what the forward pass computed (A1, Z2). Returns a dict shaped like `params`.
    """
    f_prime = DERIVATIVES[activation]
    n = tf.cast(tf.shape(X)[0], X.dtype)
    dZ2 = (softmax(Z2) - Y) / n  # (n, C): softmax + cross-entropy, averaged over n
    dW2 = tf.transpose(A1) @ dZ2  # (d_h, n) @ (n, C) -> (d_h, C)
    db2 = tf.reduce_sum(dZ2, axis=0)  # (C,): b2 is added to every row
    dA1 = dZ2 @ tf.transpose(params["W2"])  # (n, C) @ (C, d_h) -> (n, d_h)
    dZ1 = dA1 * f_prime(A1)  # (n, d_h): through the activation, element by element
    dW1 = tf.transpose(X) @ dZ1  # (d, n) @ (n, d_h) -> (d, d_h)
    db1 = tf.reduce_sum(dZ1, axis=0)  # (d_h,)
    return {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2}
# [end:network]


# [start:tiny]
def tiny_network() -> tuple[dict, tf.Tensor, tf.Tensor]:
    """Two examples, two inputs, two hidden units, two classes: small enough to follow."""
    params = {"W1": tf.constant([[0.5, -0.3], [0.2, 0.4]], DTYPE),
              "b1": tf.constant([0.0, 0.1], DTYPE),
              "W2": tf.constant([[1.0, -1.0], [0.5, 0.3]], DTYPE),
              "b2": tf.constant([0.0, 0.0], DTYPE)}
    X = tf.constant([[1.0, -1.0], [0.5, 2.0]], DTYPE)  # (n, d) = (2, 2)
    Y = tf.constant([[0.0, 1.0], [1.0, 0.0]], DTYPE)  # (n, C): one-hot targets
    return params, X, Y


def one_weight_by_hand(params: dict, X, Y, i: int = 0, k: int = 1) -> tuple[float, float]:
    """∂L/∂W2[i, k] as the sum over examples Σ_n A1[n, i]·dZ2[n, k], and backward's value."""
    A1, Z2 = forward(params, X)
    dZ2 = (softmax(Z2) - Y) / X.shape[0]  # (n, C)
    by_sum = sum(float(A1[n, i] * dZ2[n, k]) for n in range(X.shape[0]))
    return by_sum, float(backward(params, X, Y, A1, Z2)["W2"][i, k])
# [end:tiny]


# [start:tape]
def tape_demo() -> dict:
    """What tf.GradientTape watches, and one step of gradient descent taken with it."""
    w = tf.Variable(0.5, dtype=DTYPE)  # a Variable: the tape watches it by itself
    x = tf.constant(2.0, DTYPE)  # a constant: watched only when asked
    with tf.GradientTape(persistent=True) as tape:  # persistent: we may ask it twice
        tape.watch(x)
        a = tanh(w * x)  # z = w·x = 1, a = tanh(1)
        L = (a - 1.0) ** 2  # a scalar loss
    dL_dw = tape.gradient(L, w)  # the chain rule: 2(a − 1) · (1 − a²) · x
    dL_dx = tape.gradient(L, x)  # the same with w in place of x
    del tape  # a persistent tape keeps its record until it is deleted
    with tf.GradientTape() as plain:
        square = x * x
    unwatched = plain.gradient(square, x)  # None: nothing told this tape to watch x
    w.assign_sub(0.1 * dL_dw)  # one step of gradient descent on the Variable, in place
    return {"a": float(a), "L": float(L), "dL_dw": float(dL_dw), "dL_dx": float(dL_dx),
            "by_hand": float(2 * (a - 1) * (1 - a**2) * x), "unwatched": str(unwatched),
            "w_after": float(w.numpy())}
# [end:tape]


# [start:check]
def tape_gradients(params: dict, X, Y, activation: str = "tanh") -> dict:
    """The same gradients from TensorFlow's automatic differentiation."""
    with tf.GradientTape() as tape:
        tape.watch(params)
        loss = loss_fn(params, X, Y, activation)
    return tape.gradient(loss, params)


def numerical_gradients(params: dict, X, Y, activation: str = "tanh",
                        delta: float = 1e-6) -> dict:
    """Central finite differences: ∂L/∂θ_i ≈ (L(θ + Δ·e_i) − L(θ − Δ·e_i)) / 2Δ."""
    grads, L = {}, tf.function(lambda p: loss_fn(p, X, Y, activation))  # traced once
    for name, value in params.items():
        theta, g = value.numpy(), np.zeros(value.shape)

        def loss_at(i, nudge):
            nudged = theta.copy()
            nudged[i] += nudge
            return float(L({**params, name: tf.constant(nudged)}))

        for i in np.ndindex(theta.shape):  # one entry at a time, both directions
            g[i] = (loss_at(i, delta) - loss_at(i, -delta)) / (2 * delta)
        grads[name] = g
    return grads


def relative_error(a, b) -> float:
    """max |a − b| / max(|a|, |b|): 1e-6 means the two agree to about six digits."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(a)), np.max(np.abs(b)), 1e-300))


def gradient_check(grads: dict, params: dict, X, Y, activation: str = "tanh") -> dict:
    """Compare `grads` with GradientTape and finite differences, parameter by parameter."""
    tape, numeric = tape_gradients(params, X, Y, activation), numerical_gradients(
        params, X, Y, activation)
    return {name: {"tape": relative_error(grads[name], tape[name]),
                   "finite differences": relative_error(grads[name], numeric[name])}
            for name in params}
# [end:check]


# [start:train]
def make_train(learning_rate: float, batch_size: int, activation: str = "tanh",
               beta: float = MOMENTUM):
    """Gradient descent with momentum, driven by the hand-written gradients."""

    @tf.function  # AutoGraph turns the Python loop into a graph loop: no Python per step
    def train(params, velocity, X, Y, first_step, steps):
        """Take `steps` steps; step i uses batch number i mod (n // batch_size)."""
        n_batches = tf.shape(X)[0] // batch_size
        losses = tf.TensorArray(DTYPE, size=steps)
        for i in tf.range(steps):
            start = (first_step + i) % n_batches * batch_size
            Xb, Yb = X[start:start + batch_size], Y[start:start + batch_size]  # (B, d), (B, C)
            A1, Z2 = forward(params, Xb, activation)
            grads = backward(params, Xb, Yb, A1, Z2, activation)
            # v ← βv − α∇L, then θ ← θ + v
            velocity = {k: beta * velocity[k] - learning_rate * grads[k] for k in params}
            params = {k: params[k] + velocity[k] for k in params}
            losses = losses.write(i, cross_entropy_from_logits(Yb, Z2))
        return params, velocity, losses.stack()

    return train
# [end:train]


def accuracy(params: dict, X, y, activation: str = "tanh") -> float:
    """The fraction of points whose largest logit is the true class."""
    _, Z2 = forward(params, tf.constant(X, DTYPE), activation)
    return float(np.mean(np.argmax(Z2.numpy(), axis=1) == np.asarray(y)))


# --- The Keras way ----------------------------------------------------------------------
# [start:keras]
def build_model(n_in: int, n_hidden: int, n_out: int, activation: str = "tanh",
                dtype: str = "float64") -> keras.Model:
    """The same network as layers; n_hidden=0 leaves a linear model (logistic regression)."""
    inputs = keras.Input(shape=(n_in,), dtype=dtype)
    x = inputs
    if n_hidden:
        x = layers.Dense(n_hidden, activation=activation, dtype=dtype, name="hidden")(x)
    logits = layers.Dense(n_out, dtype=dtype, name="logits")(x)  # softmax lives in the loss
    return keras.Model(inputs, logits, name="two_layer_net" if n_hidden else "linear")


def compile_model(n_hidden: int, learning_rate: float, start: dict | None = None,
                  activation: str = "tanh", dtype: str = "float64") -> keras.Model:
    """Build the network on the plane (from our `start` weights, if given) and compile it:
    gradient descent with momentum on the cross-entropy of the logits, one-hot targets."""
    model = build_model(2, n_hidden, 2, activation, dtype)
    if start is not None:  # the same first step as our own loop
        model.set_weights([start[k] for k in ("W1", "b1", "W2", "b2")])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate, momentum=MOMENTUM),
                  loss=keras.losses.CategoricalCrossentropy(from_logits=True, dtype=dtype),
                  metrics=["accuracy"])
    return model
# [end:keras]


# [start:fit]
def fit_model(model: keras.Model, batches, steps: int, callbacks=()) -> keras.callbacks.History:
    """Take `steps` steps of `fit` on `batches`, in order, split into at most 10 epochs."""
    epochs = math.gcd(steps, 10)
    return model.fit(batches, epochs=epochs, steps_per_epoch=steps // epochs, shuffle=False,
                     callbacks=callbacks)


def evaluate_model(model: keras.Model, X_test, Y_test):
    """Return the test loss and accuracy by name, and the logits of every test point."""
    test = model.evaluate(X_test, Y_test, verbose=0, return_dict=True)  # {"loss", "accuracy"}
    logits = model.predict(X_test, verbose=0)  # (n, classes)
    return test, logits
# [end:fit]


# --- Run ------------------------------------------------------------------------------
N_HIDDEN, ACTIVATION = 32, "tanh"
PARAMS = ("W1", "b1", "W2", "b2")


class Spirals(NamedTuple):
    X_train: np.ndarray  # (n, 2) points
    y_train: np.ndarray  # (n,) arm 0 or 1
    X_test: np.ndarray
    y_test: np.ndarray

    @property
    def Y_train(self) -> np.ndarray:
        return np.eye(2)[self.y_train]  # (n, 2) one-hot, float64

    @property
    def Y_test(self) -> np.ndarray:
        return np.eye(2)[self.y_test]


class Trained(NamedTuple):
    params: dict  # our network after training
    losses: np.ndarray  # (steps,) batch loss per step
    model: keras.Model  # Keras's network, trained from the same start
    linear: keras.Model  # the linear baseline


def prepare_data(cfg: Config, ex: Experiment) -> Spirals:
    """Draw the spirals; the second half of the points is the test set."""
    n_train, n_test = (400, 400) if cfg.quick else (1000, 1000)
    X, y = make_spirals(n_train + n_test, cfg.seed)
    ex.record_data(cfg.data, "synthetic", n_train, n_test, classes=2, features=2)
    return Spirals(X[:n_train], y[:n_train], X[n_train:], y[n_train:])


def check_from_scratch(cfg: Config, ex: Experiment, data: Spirals, params0: dict) -> dict:
    """Activations and losses against Keras, then the gradients three ways; log the errors."""
    act_err, loss_err = compare_with_keras(cfg.seed)
    Xc, Yc = tf.constant(data.X_train[:64]), tf.constant(data.Y_train[:64])
    A1, Z2 = forward(params0, Xc, ACTIVATION)
    check = gradient_check(backward(params0, Xc, Yc, A1, Z2, ACTIVATION), params0, Xc, Yc,
                           ACTIVATION)
    ex.log(activation_max_abs_err=act_err, loss_max_abs_err=loss_err,
           grad_max_rel_err=max(e for errs in check.values() for e in errs.values()),
           grad_tape_rel_err=max(errs["tape"] for errs in check.values()),
           grad_fd_rel_err=max(errs["finite differences"] for errs in check.values()))
    ex.details["gradient_check"] = check
    tiny, Xt, Yt = tiny_network()
    A1, Z2 = forward(tiny, Xt)
    dZ2 = (softmax(Z2) - Yt) / 2  # (n, C), n = 2
    by_sum, by_backward = one_weight_by_hand(tiny, Xt, Yt)
    ex.details["tiny"] = {"A1_00": float(A1[0, 0]), "A1_10": float(A1[1, 0]),
                          "dZ2_01": float(dZ2[0, 1]), "dZ2_11": float(dZ2[1, 1]),
                          "by_sum": by_sum, "backward": by_backward,
                          "loss": float(loss_fn(tiny, Xt, Yt))}
    ex.details["tape"] = tape_demo()
    return check


def train_by_hand(cfg: Config, data: Spirals, params0: dict):
    """Our own gradients and momentum: full batches unless --batch-size is smaller."""
    steps, batch = cfg.epochs, min(cfg.batch_size, len(data.X_train))
    train_steps = make_train(cfg.learning_rate, batch, ACTIVATION)
    params, velocity = params0, {k: tf.zeros_like(v) for k, v in params0.items()}
    X, Y, losses = tf.constant(data.X_train), tf.constant(data.Y_train), np.zeros(0)
    print(f"Hand-written backprop: {steps} steps of gradient descent with momentum")
    bar = keras.utils.Progbar(steps, stateful_metrics=["loss"])  # show the latest, not a mean
    while len(losses) < steps:  # in chunks of 100 steps, to show progress
        params, velocity, chunk = train_steps(params, velocity, X, Y, tf.constant(len(losses)),
                                              tf.constant(min(100, steps - len(losses))))
        losses = np.concatenate([losses, chunk.numpy()])
        bar.update(len(losses), [("loss", losses[-1])])
    return params, losses


def train(cfg: Config, ex: Experiment, data: Spirals, params0: dict) -> Trained:
    """Train by hand, then the Keras way: same network, start, batches and optimizer."""
    params, losses = train_by_hand(cfg, data, params0)
    steps, batch = cfg.epochs, min(cfg.batch_size, len(data.X_train))
    batches = datasets.pipeline(data.X_train, data.Y_train, batch, drop_remainder=True).repeat()
    model = ex.runtime.build(compile_model, N_HIDDEN, cfg.learning_rate, params0, ACTIVATION)
    linear = ex.runtime.build(compile_model, 0, cfg.learning_rate)
    print(f"Keras fit: the same {steps} steps")
    fit_model(model, batches, steps, callbacks=ex.callbacks())
    print(f"Keras fit: the linear model, {steps} steps too")
    fit_model(linear, batches, steps)
    ex.save_model(model)
    ex.save_history({"loss": losses}, tag="scratch")
    return Trained(params, losses, model, linear)


def evaluate(ex: Experiment, data: Spirals, trained: Trained) -> None:
    """Test both ways and the linear model; how far Keras's weights are from ours."""
    params = trained.params
    keras_test, _ = evaluate_model(trained.model, data.X_test, data.Y_test)
    linear_test, _ = evaluate_model(trained.linear, data.X_test, data.Y_test)
    keras_params = dict(zip(PARAMS, trained.model.get_weights()))
    ex.log(
        final_loss=trained.losses[-1],
        test_loss=loss_fn(params, tf.constant(data.X_test), tf.constant(data.Y_test), ACTIVATION),
        train_accuracy=accuracy(params, data.X_train, data.y_train, ACTIVATION),
        test_accuracy=accuracy(params, data.X_test, data.y_test, ACTIVATION),
        keras_param_max_abs_err=max(float(np.max(np.abs(keras_params[k] - params[k])))
                                    for k in params),
        keras_test_accuracy=keras_test["accuracy"],
        linear_test_accuracy=linear_test["accuracy"],
    )


def decision_boundaries(models: dict, X, y) -> Figure:
    """Draw P(class 1) over the plane for each model, with the data on top."""
    lo, hi = X.min(axis=0) - 0.4, X.max(axis=0) + 0.4
    xs, ys = np.meshgrid(np.linspace(lo[0], hi[0], 150), np.linspace(lo[1], hi[1], 150))
    grid = np.stack([xs.ravel(), ys.ravel()], axis=1)  # (150*150, 2)
    fig = Figure(figsize=(5.2 * len(models), 4.6), layout="constrained")
    for i, (title, predict) in enumerate(models.items()):
        ax = fig.add_subplot(1, len(models), i + 1)
        p1 = np.asarray(predict(grid)).reshape(xs.shape)
        filled = ax.contourf(xs, ys, p1, levels=np.linspace(0, 1, 11), cmap="RdBu_r", alpha=0.75)
        ax.contour(xs, ys, p1, levels=[0.5], colors="black", linewidths=1.2)
        ax.scatter(X[:, 0], X[:, 1], c=y, cmap="RdBu_r", s=10, edgecolors="black",
                   linewidths=0.3)
        ax.set(title=title, xlabel="x₁", ylabel="x₂", aspect="equal")
    fig.colorbar(filled, ax=fig.axes, label="P(class 1)", shrink=0.8)
    return fig


def draw(ex: Experiment, data: Spirals, check: dict, trained: Trained) -> None:
    """Decision boundaries, the training loss, the gradient check."""
    m, params = ex.metrics, trained.params
    ex.save_figure(decision_boundaries({
        f"linear model (test acc {m['linear_test_accuracy']:.2f})":
            lambda g: softmax(trained.linear.predict(g, verbose=0))[:, 1],
        f"two-layer net, our backprop (test acc {m['test_accuracy']:.2f})":
            lambda g: softmax(forward(params, tf.constant(g), ACTIVATION)[1])[:, 1],
    }, data.X_test, data.y_test), "decision_boundary")
    ex.save_figure(plotting.line_plot(
        {"training batch": trained.losses}, xlabel="step", ylabel="cross-entropy", logy=True,
        title=f"Training with hand-written backprop (test loss {m['test_loss']:.3f})"),
        "loss_curve")
    bars = {f"{name} vs {way}": max(err, 1e-18)  # an exact 0 is drawn at 1e-18
            for name, errs in check.items() for way, err in errs.items()}
    ex.save_figure(plotting.bar_chart(
        bars, ylabel="relative error", logy=True, threshold=1e-6,
        title="Hand-written gradients vs GradientTape and finite differences"),
        "gradient_check")


# --- Concept diagrams (no training: drawn from the chapter's own functions) -----------------
def graph_concept() -> Figure:
    """The two-layer network's computational graph on `tiny_network`: values forward (black),
    gradients backward (red), each the chapter's own forward and backward."""
    params, X, Y = tiny_network()
    A1, Z2 = forward(params, X)
    grads = backward(params, X, Y, A1, Z2)
    dZ2 = (softmax(Z2) - Y) / 2
    dA1 = dZ2 @ tf.transpose(params["W2"])
    Z1 = X @ params["W1"] + params["b1"]
    nodes = {  # name: (x, y, value, gradient or None)
        "X": (0, 0, X, None), "W1": (1.2, -1.9, params["W1"], grads["W1"]),
        "b1": (2.8, -1.9, params["b1"], grads["b1"]), "Z1": (2.4, 0, Z1, dA1 * (1 - A1**2)),
        "A1": (4.8, 0, A1, dA1), "W2": (6.0, -1.9, params["W2"], grads["W2"]),
        "b2": (7.6, -1.9, params["b2"], grads["b2"]), "Z2": (7.2, 0, Z2, dZ2),
        "L": (9.6, 0, loss_fn(params, X, Y), None)}
    edges = [("X", "Z1", "X·W1 + b1"), ("W1", "Z1", ""), ("b1", "Z1", ""),
             ("Z1", "A1", "tanh"), ("A1", "Z2", "A1·W2 + b2"), ("W2", "Z2", ""),
             ("b2", "Z2", ""), ("Z2", "L", "softmax,\ncross-entropy")]
    fig = Figure(figsize=(12, 4.6), layout="constrained")
    ax = fig.add_subplot()
    for a, b, op in edges:
        (xa, ya), (xb, yb) = nodes[a][:2], nodes[b][:2]
        ax.annotate("", (xb - 0.55 * (ya == yb), yb - 0.55 * (ya != yb)), (xa, ya),
                    arrowprops=dict(arrowstyle="-|>", color="gray", shrinkA=38))
        ax.text((xa + xb) / 2, 0.75, op, ha="center", fontsize=9, color="gray") if op else None
    for name, (x, y, value, grad) in nodes.items():
        text = f"{name}  {tuple(value.shape)}\n" + np.array2string(
            np.asarray(value), precision=2, suppress_small=True)
        if grad is not None:
            text += f"\nd{name} =\n" + np.array2string(np.asarray(grad), precision=3,
                                                          suppress_small=True)
        ax.text(x, y, text, ha="center", va="center", fontsize=8, family="monospace",
                bbox=dict(boxstyle="round", fc="white", ec="C3" if grad is not None else "black"))
    ax.annotate("", (0.8, -0.9), (8.8, -0.9), arrowprops=dict(arrowstyle="-|>", color="C3"))
    ax.text(4.8, -1.05, "backward: dZ2 = (P − Y)/n,  dW2 = A1ᵀ·dZ2,  dA1 = dZ2·W2ᵀ,  "
            "dZ1 = dA1 ⊙ (1 − A1²),  dW1 = Xᵀ·dZ1", ha="center", va="top", color="C3",
            fontsize=9)
    ax.set(xlim=(-0.9, 10.4), ylim=(-2.5, 1.1), title="Forward values and backward gradients "
           "on a tiny network (n = 2 examples, d = 2, 2 hidden units, C = 2)")
    ax.axis("off")
    return fig


def activation_concept() -> Figure:
    """Each hidden activation and its derivative, from ACTIVATIONS and DERIVATIVES."""
    z = tf.constant(np.linspace(-4, 4, 401), DTYPE)
    fig = Figure(figsize=(9, 3.4), layout="constrained")
    left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for name, f in ACTIVATIONS.items():
        a = f(z)
        left.plot(z, a, label=name)
        right.plot(z, DERIVATIVES[name](a), label=f"{name}′")
    right.axhline(0.25, color="C1", ls=":", lw=1)
    right.text(-4, 0.28, "σ′ ≤ 1/4", color="C1")
    left.set(title="f(z)", xlabel="z", ylim=(-1.2, 2))
    right.set(title="f′(z), written in terms of a = f(z)", xlabel="z")
    left.legend(), right.legend()
    return fig


def concept_figures() -> dict[str, Figure]:
    """The chapter's diagrams of its idea."""
    return {"concept_graph": graph_concept(), "concept_activations": activation_concept()}


def run(cfg: Config) -> dict:
    """Check the pieces, train with hand-written backprop, then the Keras way."""
    with Experiment(cfg) as ex:
        data = prepare_data(cfg, ex)
        params0 = init_params(2, N_HIDDEN, 2, cfg.seed)  # one start for every check and run
        check = check_from_scratch(cfg, ex, data, params0)
        trained = train(cfg, ex, data, params0)
        evaluate(ex, data, trained)
        draw(ex, data, check, trained)
    return ex.metrics


def main(argv=None):
    cli.main(__name__, run, argv)


if __name__ == "__main__":
    main()
