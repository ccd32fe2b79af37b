"""The exercises of chapter gradient_descent: how `python -m tfguide check gradient_descent` proves a learner's
version of each from-scratch function, and the known mistakes it can name.

The functions themselves, and the text that explains them, are the chapter's:
tfguide/chapters/gradient_descent.py and chapters/gradient_descent.md.
"""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from tfguide.chapters.gradient_descent import (DTYPE, adam, gradient, loss_fn, make_regression,
                                               replay_keras, stable_lr_limit)
from tfguide.exercises import Exercise, Proof, worst


def _problem(n: int, d: int, seed: int):
    """A random least-squares problem in float64: X (n, d), y (n,) and a θ (d,)."""
    rng = np.random.default_rng(seed)
    return (tf.constant(rng.normal(size=(n, d))), tf.constant(rng.normal(size=n)),
            tf.constant(rng.normal(size=d)))


SHAPES = ((5, 1), (40, 2), (17, 6))  # (points, parameters) of the problems each proof uses


def prove_loss_fn(loss_fn_) -> Proof:
    """loss_fn vs keras.losses.MeanSquaredError, in float64."""
    mse = keras.losses.MeanSquaredError(dtype="float64")
    errors = []
    for n, d in SHAPES:
        X, y, theta = _problem(n, d, seed=n)
        errors.append((f"{n} points, {d} parameters",
                       abs(float(loss_fn_(theta, X, y)) - float(mse(y, tf.linalg.matvec(X, theta))))))
    return worst(errors, 1e-12)


def prove_gradient(gradient_) -> Proof:
    """The hand-written gradient vs tf.GradientTape on the chapter's loss_fn, in float64."""
    errors = []
    for n, d in SHAPES:
        X, y, theta = _problem(n, d, seed=n)
        with tf.GradientTape() as tape:
            tape.watch(theta)
            loss = loss_fn(theta, X, y)
        ours = tf.convert_to_tensor(gradient_(theta, X, y), DTYPE)
        error = (float(tf.reduce_max(tf.abs(ours - tape.gradient(loss, theta))))
                 if ours.shape == theta.shape else float("inf"))
        errors.append((f"{n} points, {d} parameters", error))
    return worst(errors, 1e-12)


# Learning rates and βs that float32 holds exactly: Keras rounds them to float32, and with
# these both sides use the same numbers, so the two paths must agree to the last bits.
EXACT = {"lr": (float(np.float32(0.1)), float(np.float32(0.01))), "beta": float(np.float32(0.9)),
         "beta_2": float(np.float32(0.999))}


def _prove_rule(make_rule, make_keras, tolerance: float) -> Proof:
    """Replay a rule and its Keras twin on the same gradients for 50 steps, at two rates."""
    X, y = make_regression(200, seed=2)
    return worst([(f"learning rate {lr:.3g}", replay_keras(
        make_keras(lr), make_rule(lr), [-1.0, 2.0], X, y)) for lr in EXACT["lr"]], tolerance)


def prove_gd(gd_) -> Proof:
    """gd vs keras.optimizers.SGD (no momentum), step for step."""
    return _prove_rule(gd_, keras.optimizers.SGD, 1e-12)


def prove_momentum(momentum_) -> Proof:
    """momentum vs keras.optimizers.SGD(momentum=β), step for step."""
    beta = EXACT["beta"]
    return _prove_rule(lambda lr: momentum_(lr, beta=beta),
                       lambda lr: keras.optimizers.SGD(lr, momentum=beta), 1e-12)


def prove_adam(adam_) -> Proof:
    """adam vs keras.optimizers.Adam, step for step. The paper's ordering (correct m and v,
    then step) puts ε in a slightly different place and lands within 3e-7: it passes too."""
    betas = dict(beta_1=EXACT["beta"], beta_2=EXACT["beta_2"])
    return _prove_rule(lambda lr: adam_(lr, **betas),
                       lambda lr: keras.optimizers.Adam(lr, **betas), 1e-6)


def prove_stable_lr_limit(stable_lr_limit_) -> Proof:
    """The limit vs 2/λ_max of the Hessian (2/n)·XᵀX, from NumPy's eigenvalues."""
    errors = []
    for n, d in SHAPES:
        X, _, _ = _problem(n, d, seed=n)
        hessian = 2.0 / n * X.numpy().T @ X.numpy()  # (d, d)
        expected = 2.0 / np.linalg.eigvalsh(hessian).max()
        errors.append((f"{n} points, {d} parameters",
                       abs(float(stable_lr_limit_(X)) - expected) / expected))
    return worst(errors, 1e-12)


def _probe_rule(make_rule) -> np.ndarray:
    """θ after each of three updates from a fixed start with fixed gradients, rate 0.5."""
    init, update = make_rule(0.5)
    theta = tf.constant([1.0, -2.0], DTYPE)
    state, path = init(theta), []
    for g in ([1.0, 2.0], [0.5, -1.0], [-2.0, 0.25]):
        theta, state = update(theta, tf.constant(g, DTYPE), state)
        path.append(np.asarray(theta))
    return np.array(path)  # (3, 2)


def _loss_summed(theta, X, y):
    return tf.reduce_sum((tf.linalg.matvec(X, theta) - y) ** 2)


def _gradient_without_2(theta, X, y):
    return gradient(theta, X, y) / 2


def _gradient_without_n(theta, X, y):
    return gradient(theta, X, y) * tf.cast(tf.shape(X)[0], X.dtype)


def _gradient_uphill(theta, X, y):
    return -gradient(theta, X, y)


def _gd_ascent(lr):
    return lambda theta: (), lambda theta, g, state: (theta + lr * g, state)


def _momentum_averaged(lr, beta=0.9):
    def update(theta, g, v):
        v = beta * v + (1 - beta) * g
        return theta - lr * v, v

    return tf.zeros_like, update


def _momentum_old_velocity(lr, beta=0.9):
    def update(theta, g, v):
        return theta + v, beta * v - lr * g

    return tf.zeros_like, update


def _adam_uncorrected(lr, beta_1=0.9, beta_2=0.999, eps=1e-7):
    init, _ = adam(lr, beta_1, beta_2, eps)

    def update(theta, g, state):
        m, v, t = state
        m, v = beta_1 * m + (1 - beta_1) * g, beta_2 * v + (1 - beta_2) * g**2
        return theta - lr * m / (tf.sqrt(v) + eps), (m, v, t + 1)

    return init, update


def _adam_without_root(lr, beta_1=0.9, beta_2=0.999, eps=1e-7):
    init, _ = adam(lr, beta_1, beta_2, eps)

    def update(theta, g, state):
        m, v, t = state
        t = t + 1
        m, v = beta_1 * m + (1 - beta_1) * g, beta_2 * v + (1 - beta_2) * g**2
        alpha = lr * np.sqrt(1 - beta_2**t) / (1 - beta_1**t)
        return theta - alpha * m / (v + eps), (m, v, t)

    return init, update


def _limit_one_over_lambda(X):
    return stable_lr_limit(X) / 2


def _limit_hessian_without_2(X):
    return stable_lr_limit(X) * 2


def _probe():
    """The probe problem, made when asked: importing a chapter must not start TensorFlow."""
    return _problem(6, 2, seed=0)  # X (6, 2), y (6,), θ (2,)


EXERCISES = (
    Exercise(
        "loss_fn", prove_loss_fn, "the residual Xθ − y is tf.linalg.matvec(X, theta) - y; "
        "J is the mean of its squares",
        probe=lambda f: f(_probe()[2], *_probe()[:2]),
        mistakes={"J is a mean over the n examples: tf.reduce_mean, not tf.reduce_sum":
                  _loss_summed}),
    Exercise(
        "gradient", prove_gradient, "∇J(θ) = (2/n)·Xᵀ(Xθ − y); "
        "tf.linalg.matvec(X, r, transpose_a=True) computes Xᵀr",
        probe=lambda f: f(_probe()[2], *_probe()[:2]),
        mistakes={"the derivative of r² is 2r: keep the 2 in (2/n)·Xᵀ(Xθ − y)":
                  _gradient_without_2,
                  "J is a mean, so its gradient is one too: divide Xᵀ(Xθ − y) by n":
                  _gradient_without_n,
                  "the residual is prediction minus target, Xθ − y; with y − Xθ the "
                  "gradient points downhill": _gradient_uphill}),
    Exercise(
        "gd", prove_gd, "return (init, update): init(θ) gives the empty state (); "
        "update(θ, g, state) returns (θ − lr·g, state)",
        probe=_probe_rule,
        mistakes={"step against the gradient: θ − lr·g, not θ + lr·g": _gd_ascent}),
    Exercise(
        "momentum", prove_momentum, "the state is the velocity v, starting at 0 "
        "(tf.zeros_like); update: v ← β·v − lr·g, then θ ← θ + v",
        probe=_probe_rule,
        mistakes={"Keras's momentum adds the whole step, v ← β·v − lr·g; the averaged form "
                  "v ← β·v + (1 − β)·g, θ ← θ − lr·v takes steps (1 − β) times as large":
                  _momentum_averaged,
                  "move by the new velocity: first v ← β·v − lr·g, then θ ← θ + v":
                  _momentum_old_velocity}),
    Exercise(
        "adam", prove_adam, "the state is (m, v, t); m and v are running means of g and g²; "
        "step by lr·√(1 − β₂ᵗ)/(1 − β₁ᵗ) · m/(√v + ε)",
        probe=_probe_rule,
        mistakes={"m and v start at 0 and are too small for the first steps: scale the step "
                  "by √(1 − β₂ᵗ)/(1 − β₁ᵗ), the bias correction": _adam_uncorrected,
                  "divide m by √v + ε, the root of the running mean square, not by v":
                  _adam_without_root}),
    Exercise(
        "stable_lr_limit", prove_stable_lr_limit, "the Hessian of J is H = (2/n)·XᵀX; return "
        "2 / its largest eigenvalue (tf.linalg.eigvalsh)",
        probe=lambda f: f(_probe()[0]),
        mistakes={"gradient descent on a quadratic is stable for α < 2/λ_max, not 1/λ_max":
                  _limit_one_over_lambda,
                  "J = mean(r²) has the Hessian (2/n)·XᵀX: the 2 from the square stays":
                  _limit_hessian_without_2}),
)
