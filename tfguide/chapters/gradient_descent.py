"""Gradient descent: batch GD, mini-batch SGD, momentum and Adam, from scratch.

Fits a line y = w·x + b to noisy data by following the gradient of the mean
squared error, checks the answer against the closed-form least-squares
solution, replays Keras's own SGD-with-momentum and Adam step for step, and
shows what a learning rate that is too small or too large does.

Text: chapters/gradient_descent.md. Ports 000 §3.1/§4.1, 002 §3.1.3 and
003 §4.2 (see SEEDS.md).
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from tfguide import cli, datasets, plotting
from tfguide.config import Config
from tfguide.results import Experiment

DTYPE = tf.float64  # the from-scratch parts run in float64 so the checks can be tight


# --- Prepare the data ---------------------------------------------------------------
# [start:data]
def make_regression(n: int, seed: int, w: float = 2.0, b: float = -1.0, noise: float = 0.5):
    """Draw x ~ N(2, 1) and y = w·x + b + noise; return the design matrix X = [x, 1] and y."""
    rng = np.random.default_rng(seed)
    x = rng.normal(2.0, 1.0, size=n)  # not centred: w and b pull against each other
    y = w * x + b + rng.normal(0.0, noise, size=n)
    X = np.stack([x, np.ones(n)], axis=1)  # (n, 2): a column of ones carries the bias
    return tf.constant(X, DTYPE), tf.constant(y, DTYPE)
# [end:data]


# --- From scratch -----------------------------------------------------------------
# [start:loss]
def loss_fn(theta: tf.Tensor, X: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
    """Mean squared error J(θ) = mean((Xθ − y)²)."""
    residual = tf.linalg.matvec(X, theta) - y  # (n,)
    return tf.reduce_mean(residual**2)


def gradient(theta: tf.Tensor, X: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
    """∇J(θ) = (2/n) Xᵀ(Xθ − y), worked out by hand."""
    n = tf.cast(tf.shape(X)[0], X.dtype)
    residual = tf.linalg.matvec(X, theta) - y  # (n,)
    return 2.0 / n * tf.linalg.matvec(X, residual, transpose_a=True)  # (2,)


def closed_form(X: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
    """The least-squares solution θ* = argmin ‖Xθ − y‖², for reference."""
    return tf.linalg.lstsq(X, y[:, None], fast=False)[:, 0]
# [end:loss]


class Optimizer(NamedTuple):
    """An update rule as two pure functions: `init(θ) -> state`, `update(θ, g, state)`."""

    init: Callable
    update: Callable


# [start:rules]
def gd(lr: float) -> Optimizer:
    """Plain gradient descent: θ ← θ − α·∇J(θ)."""
    return Optimizer(
        init=lambda theta: (),
        update=lambda theta, g, state: (theta - lr * g, state),
    )


def momentum(lr: float, beta: float = 0.9) -> Optimizer:
    """Heavy-ball momentum: v ← β·v − α·g, θ ← θ + v (keras.optimizers.SGD's form)."""

    def update(theta, g, v):
        v = beta * v - lr * g
        return theta + v, v

    return Optimizer(init=tf.zeros_like, update=update)


def adam(lr: float, beta_1: float = 0.9, beta_2: float = 0.999, eps: float = 1e-7) -> Optimizer:
    """Adam (Kingma & Ba, 2015) with the bias correction folded into the step size."""

    def update(theta, g, state):
        m, v, t = state
        t = t + 1
        m = beta_1 * m + (1 - beta_1) * g  # running mean of gradients
        v = beta_2 * v + (1 - beta_2) * g**2  # running mean of squared gradients
        alpha = lr * np.sqrt(1 - beta_2**t) / (1 - beta_1**t)  # bias correction
        return theta - alpha * m / (tf.sqrt(v) + eps), (m, v, t)

    return Optimizer(init=lambda theta: (tf.zeros_like(theta), tf.zeros_like(theta), 0),
                     update=update)
# [end:rules]


# [start:minimize]
def minimize(opt: Optimizer, theta0, X, y, steps: int, batch_size: int | None = None,
             seed: int = 0, progress: keras.utils.Progbar | None = None):
    """Run `steps` updates; full batch, or mini-batches of `batch_size` when given.

    Returns the path of θ, shape (steps + 1, 2), and the full-data loss after each step.
    Stops early, keeping what it has, if the loss overflows (a diverging learning rate).
    """
    rng = np.random.default_rng(seed)
    n = int(X.shape[0])
    theta, state = tf.constant(theta0, DTYPE), opt.init(tf.constant(theta0, DTYPE))
    path, losses = [theta.numpy()], [float(loss_fn(theta, X, y))]
    for step in range(steps):
        if batch_size is None:
            Xb, yb = X, y
        else:  # a fresh random mini-batch: a noisy but cheap estimate of the gradient
            idx = rng.choice(n, size=batch_size, replace=False)
            Xb, yb = tf.gather(X, idx), tf.gather(y, idx)
        theta, state = opt.update(theta, gradient(theta, Xb, yb), state)
        path.append(theta.numpy())
        losses.append(float(loss_fn(theta, X, y)))
        if progress is not None:
            progress.update(step + 1, [("loss", losses[-1])])
        if not np.isfinite(losses[-1]) or losses[-1] > 1e12:
            break
    return np.array(path), np.array(losses)
# [end:minimize]


def replay_keras(keras_opt: keras.optimizers.Optimizer, opt: Optimizer, theta0, X, y,
                 steps: int = 50) -> float:
    """Apply a Keras optimizer and our rule to the same gradients; return the max |Δθ|."""
    var = keras.Variable(np.asarray(theta0), dtype="float64")
    theta, state = tf.constant(theta0, DTYPE), opt.init(tf.constant(theta0, DTYPE))
    worst = 0.0
    for _ in range(steps):
        keras_opt.apply_gradients([(gradient(tf.convert_to_tensor(var), X, y), var)])
        theta, state = opt.update(theta, gradient(theta, X, y), state)
        worst = max(worst, float(tf.reduce_max(tf.abs(theta - var))))
    return worst


def stable_lr_limit(X: tf.Tensor) -> float:
    """GD on this loss converges only for α < 2/λ_max of the Hessian H = (2/n)XᵀX."""
    n = float(X.shape[0])
    hessian = 2.0 / n * tf.matmul(X, X, transpose_a=True)  # (2, 2)
    return float(2.0 / tf.reduce_max(tf.linalg.eigvalsh(hessian)))


# --- The Keras way --------------------------------------------------------------------
# [start:keras]
def build_model() -> keras.Model:
    """A linear model y = w·x + b is a single Dense unit on one input feature."""
    inputs = keras.Input(shape=(1,))
    outputs = layers.Dense(1, name="line")(inputs)
    return keras.Model(inputs, outputs, name="linear_regression")
# [end:keras]


# --- Run ----------------------------------------------------------------------------
def _surface(X, y, center, start, n=120):
    span = 1.25 * float(np.max(np.abs(np.asarray(start) - center)))  # keep the start in view
    ws = np.linspace(center[0] - span, center[0] + span, n)
    bs = np.linspace(center[1] - span, center[1] + span, n)
    W, B = np.meshgrid(ws, bs)
    thetas = tf.constant(np.stack([W.ravel(), B.ravel()], axis=1), DTYPE)  # (n*n, 2)
    residual = tf.matmul(X, thetas, transpose_b=True) - y[:, None]  # (samples, n*n)
    return W, B, tf.reduce_mean(residual**2, axis=0).numpy().reshape(W.shape)


def run(cfg: Config) -> dict:
    """Fit the line every way the chapter teaches; log errors against the closed form."""
    with Experiment(cfg) as ex:
        n_train, n_test = (400, 100) if cfg.quick else (1600, 400)
        X, y = make_regression(n_train + n_test, cfg.seed)
        X_test, y_test, X, y = X[n_train:], y[n_train:], X[:n_train], y[:n_train]
        ex.record_data("linreg", "synthetic", n_train, n_test,
                       task="y = 2x - 1 + N(0, 0.5^2), x ~ N(2, 1)")
        theta_star = closed_form(X, y).numpy()
        theta0 = np.array([-1.0, 2.0])  # a start far from the answer
        lr, steps = cfg.learning_rate, cfg.epochs

        # From scratch: the three update rules, full batch, and mini-batch SGD.
        print(f"Batch gradient descent, {steps} steps, learning rate {lr:g}")
        bar = keras.utils.Progbar(steps)
        gd_path, gd_loss = minimize(gd(lr), theta0, X, y, steps, progress=bar)
        mom_path, mom_loss = minimize(momentum(lr / 2), theta0, X, y, steps)
        adam_path, adam_loss = minimize(adam(lr), theta0, X, y, steps)
        sgd_path, sgd_loss = minimize(gd(lr), theta0, X, y, steps,
                                      batch_size=cfg.batch_size, seed=cfg.seed)

        # Checked: our rules against Keras's optimizers, step for step. Keras turns the
        # Python floats β into float32 constants, so use β values float32 holds exactly.
        betas = dict(beta_1=float(np.float32(0.9)), beta_2=float(np.float32(0.999)))
        err_momentum = replay_keras(keras.optimizers.SGD(lr / 2, momentum=0.9),
                                    momentum(lr / 2), theta0, X, y)
        err_adam = replay_keras(keras.optimizers.Adam(lr, **betas), adam(lr, **betas),
                                theta0, X, y)

        # Learning rates: too small, this one, and just past the stability limit.
        limit = stable_lr_limit(X)
        sweep = {f"α = {a:.3g}": minimize(gd(a), theta0, X, y, steps)[1]
                 for a in (lr / 10, lr, 1.1 * limit)}

        # The Keras way: a Dense(1) model trained with fit. One batch holding all the
        # data makes each epoch one step of plain gradient descent: the same algorithm
        # as gd() above, so it must land on the same answer.
        with ex.strategy.scope():
            model = build_model()
            model.compile(optimizer=keras.optimizers.SGD(lr), loss="mse",
                          jit_compile=ex.runtime.jit)
        x_col, x_test_col = X[:, :1].numpy(), X_test[:, :1].numpy()  # (n, 1): the feature x
        full_batches = datasets.pipeline(x_col, y.numpy(), batch_size=n_train).repeat()
        print(f"Keras fit: {steps} full-batch steps, in 10 epochs of {steps // 10}")
        history = model.fit(full_batches, epochs=10, steps_per_epoch=max(1, steps // 10),
                            shuffle=False, callbacks=ex.callbacks())
        keras_test_mse = model.evaluate(x_test_col, y_test.numpy(), verbose=0)
        kernel, bias = model.get_layer("line").get_weights()
        keras_theta = np.array([kernel[0, 0], bias[0]])
        ex.save_model(model)

        ex.log(
            param_error=np.max(np.abs(gd_path[-1] - theta_star)),
            momentum_param_error=np.max(np.abs(mom_path[-1] - theta_star)),
            adam_param_error=np.max(np.abs(adam_path[-1] - theta_star)),
            sgd_param_error=np.max(np.abs(sgd_path[-1] - theta_star)),
            keras_param_error=np.max(np.abs(keras_theta - theta_star)),
            optimizer_max_abs_err=max(err_momentum, err_adam),
            final_loss=gd_loss[-1],
            closed_form_loss=loss_fn(tf.constant(theta_star), X, y),
            test_mse=loss_fn(tf.constant(gd_path[-1]), X_test, y_test),
            keras_test_mse=keras_test_mse,
            stable_lr_limit=limit,
            diverged_lr_final_loss=list(sweep.values())[-1][-1],
        )
        ex.extra["theta_star"] = theta_star.tolist()
        ex.save_history({"gd": gd_loss, "momentum": mom_loss, "adam": adam_loss,
                         "sgd": sgd_loss}, tag="scratch")

        # Figures.
        W, B, Z = _surface(X, y, theta_star, theta0)
        show = 60  # the first steps tell the story; later ones pile up at the optimum
        ex.save_figure(plotting.contour_paths(
            W, B, Z, {"gradient descent": gd_path[:show], "momentum": mom_path[:show],
                      "Adam": adam_path[:show], "mini-batch SGD": sgd_path[:show]},
            title=f"Loss surface and the first {show} steps", xlabel="w (slope)",
            ylabel="b (intercept)", optimum=theta_star), "loss_surface")
        best = float(ex.metrics["closed_form_loss"])
        ex.save_figure(plotting.line_plot(
            {"gradient descent": gd_loss - best, "momentum": mom_loss - best,
             "Adam": adam_loss - best, "mini-batch SGD": sgd_loss - best},
            xlabel="step", ylabel="J(θ) − J(θ*)", logy=True,
            title="Distance to the best loss"), "convergence")
        ex.save_figure(plotting.line_plot(
            sweep, xlabel="step", ylabel="loss J(θ)", logy=True,
            title=f"Learning rates (stable below {limit:.3f})"), "learning_rates")
        ex.save_figure(plotting.history_curves(history.history, "Keras fit"), "keras_history")
    return ex.metrics


def main(argv=None):
    cli.main(__name__, run, argv)


if __name__ == "__main__":
    main()
