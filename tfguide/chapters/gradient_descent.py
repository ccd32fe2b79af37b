"""Gradient descent: batch GD, mini-batch SGD, momentum and Adam, from scratch.

Fits a line y = w·x + b to noisy data by following the gradient of the mean
squared error, checks the answer against the closed-form least-squares
solution, replays Keras's own SGD-with-momentum and Adam step for step, and
shows what a learning rate that is too small or too large does.

Text: chapters/gradient_descent.md. Ports 000 §3.1/§4.1, 002 §3.1.3 and
003 §4.2 of the source primers (chapters/SOURCES.md).
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import keras
import numpy as np
import tensorflow as tf
from keras import layers
from matplotlib.figure import Figure

from tfguide import cli, plotting
from tfguide.config import Config
from tfguide.results import Experiment

DTYPE = tf.float64  # the from-scratch parts run in float64 so the checks can be tight


# --- Prepare the data ---------------------------------------------------------------
# Code between [start:…]/[end:…] markers is shown in chapters/gradient_descent.md; after
# editing it, refresh the text with python -m tfguide.excerpts chapters/gradient_descent.md.
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
    """Mean squared error L(θ) = mean((Xθ − y)²)."""
    residual = tf.linalg.matvec(X, theta) - y  # (n,)
    return tf.reduce_mean(residual**2)


def gradient(theta: tf.Tensor, X: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
    """∇L(θ) = (2/n) Xᵀ(Xθ − y), worked out by hand."""
    n = tf.cast(tf.shape(X)[0], X.dtype)
    residual = tf.linalg.matvec(X, theta) - y  # (n,)
    return 2.0 / n * tf.linalg.matvec(X, residual, transpose_a=True)  # (2,)


def closed_form(X: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
    """The least-squares solution θ* = argmin ‖Xθ − y‖², for reference."""
    return tf.linalg.lstsq(X, y[:, None], fast=False)[:, 0]
# [end:loss]


# [start:worked]
def worked_example(lr: float = 0.1) -> dict:
    """Three points on the line y = 2x − 1, one step of gradient descent from θ = (0, 0)."""
    X = tf.constant([[1.0, 1.0], [2.0, 1.0], [3.0, 1.0]], DTYPE)  # (3, 2): x = 1, 2, 3 and ones
    y = tf.constant([1.0, 3.0, 5.0], DTYPE)  # (3,): exactly 2x − 1, no noise
    theta = tf.constant([0.0, 0.0], DTYPE)  # (w, b)
    g = gradient(theta, X, y)  # (2,)
    step = theta - lr * g  # one step downhill
    return {"loss": float(loss_fn(theta, X, y)), "grad_w": float(g[0]), "grad_b": float(g[1]),
            "w": float(step[0]), "b": float(step[1]), "loss_after": float(loss_fn(step, X, y))}
# [end:worked]


# An update rule is a pair of pure functions (init, update): init(θ) -> state and
# update(θ, g, state) -> (θ, state).
# [start:rules]
def gd(lr: float) -> tuple[Callable, Callable]:
    """Plain gradient descent: θ ← θ − α·∇L(θ)."""

    def update(theta, g, state):
        return theta - lr * g, state

    # Plain GD carries no state: it stays ().
    return lambda theta: (), update


def momentum(lr: float, beta: float = 0.9) -> tuple[Callable, Callable]:
    """Heavy-ball momentum: v ← β·v − α·g, θ ← θ + v (keras.optimizers.SGD's form)."""

    def update(theta, g, v):
        v = beta * v - lr * g  # (2,): the velocity
        return theta + v, v

    # The state is the velocity, and it starts at 0.
    return tf.zeros_like, update


def adam(lr: float, beta_1: float = 0.9, beta_2: float = 0.999,
         eps: float = 1e-7) -> tuple[Callable, Callable]:
    """Adam (Kingma & Ba, 2015) with the bias correction folded into the step size."""

    def init(theta):
        # m and v start at 0; t counts the steps taken.
        return tf.zeros_like(theta), tf.zeros_like(theta), 0

    def update(theta, g, state):
        m, v, t = state
        t = t + 1
        m = beta_1 * m + (1 - beta_1) * g  # (2,): running mean of gradients
        v = beta_2 * v + (1 - beta_2) * g**2  # (2,): running mean of squared gradients
        alpha = lr * np.sqrt(1 - beta_2**t) / (1 - beta_1**t)  # the step, bias-corrected
        return theta - alpha * m / (tf.sqrt(v) + eps), (m, v, t)

    return init, update
# [end:rules]


# [start:minimize]
def minimize(rule: tuple[Callable, Callable], theta0, X, y, steps: int, batch_size: int | None = None,
             seed: int = 0, progress: keras.utils.Progbar | None = None):
    """Run `steps` updates; full batch, or mini-batches of `batch_size` when given.

    Returns the path of θ, shape (steps + 1, 2), and the full-data loss after each step.
    Stops early, keeping what it has, if the loss overflows (a diverging learning rate).
    """
    init, update = rule
    rng = np.random.default_rng(seed)
    n = int(X.shape[0])
    theta = tf.constant(theta0, DTYPE)  # (2,)
    state = init(theta)
    path, losses = [theta.numpy()], [float(loss_fn(theta, X, y))]
    for step in range(steps):
        if batch_size is None:
            Xb, yb = X, y
        else:  # a fresh random mini-batch: a noisy but cheap estimate of the gradient
            idx = rng.choice(n, size=batch_size, replace=False)
            Xb, yb = tf.gather(X, idx), tf.gather(y, idx)
        theta, state = update(theta, gradient(theta, Xb, yb), state)
        path.append(theta.numpy())
        losses.append(float(loss_fn(theta, X, y)))
        if progress is not None:
            progress.update(step + 1, [("loss", losses[-1])])
        if not np.isfinite(losses[-1]) or losses[-1] > 1e12:
            break
    return np.array(path), np.array(losses)
# [end:minimize]


def replay_keras(keras_opt: keras.optimizers.Optimizer, rule: tuple[Callable, Callable], theta0,
                 X, y, steps: int = 50) -> float:
    """Apply a Keras optimizer and our rule to the same gradients; return the max |Δθ|."""
    init, update = rule
    var = keras.Variable(np.asarray(theta0), dtype="float64")
    theta = tf.constant(theta0, DTYPE)
    state = init(theta)
    worst = 0.0
    for _ in range(steps):
        keras_opt.apply_gradients([(gradient(tf.convert_to_tensor(var), X, y), var)])
        theta, state = update(theta, gradient(theta, X, y), state)
        worst = max(worst, float(tf.reduce_max(tf.abs(theta - var))))
    return worst


# [start:curvature]
def curvature(X: tf.Tensor):
    """The Hessian H = (2/n)·XᵀX of L (the same at every θ) and its eigen-decomposition."""
    n = float(X.shape[0])
    H = 2.0 / n * tf.matmul(X, X, transpose_a=True)  # (2, 2)
    lam, U = tf.linalg.eigh(H)  # λ ascending, (2,); U's columns are the eigenvectors, (2, 2)
    return H, lam, U


def stable_lr_limit(X: tf.Tensor) -> float:
    """GD on this loss converges only for α < 2/λ_max of the Hessian H = (2/n)XᵀX."""
    _, lam, _ = curvature(X)
    return float(2.0 / lam[-1])


def gd_error(theta0, theta_star, X, lr: float, steps: int) -> tf.Tensor:
    """θ_t − θ* of gradient descent without running it: along each eigenvector u_i of H the
    error is multiplied by (1 − α·λ_i) at every step."""
    _, lam, U = curvature(X)
    e0 = tf.linalg.matvec(U, tf.constant(theta0, DTYPE) - theta_star, transpose_a=True)  # (2,)
    return tf.linalg.matvec(U, (1 - lr * lam) ** steps * e0)  # (2,): back to (w, b)


def momentum_factor(lr: float, beta: float, lam) -> float:
    """The slowest per-step factor of momentum: along each eigenvector the pair (error,
    velocity) is multiplied by a 2×2 matrix whose eigenvalues r solve
    r² − (1 + β − αλ)·r + β = 0."""
    return max(float(np.max(np.abs(np.roots([1.0, -(1 + beta - lr * l), beta])))) for l in lam)
# [end:curvature]


# --- The Keras way --------------------------------------------------------------------
# [start:keras]
def build_model() -> keras.Model:
    """A linear model y = w·x + b is a single Dense unit on one input feature."""
    inputs = keras.Input(shape=(1,))  # (batch, 1): the feature x
    outputs = layers.Dense(1, name="line")(inputs)  # (batch, 1): w·x + b
    return keras.Model(inputs, outputs, name="linear_regression")


def compile_model(learning_rate: float) -> keras.Model:
    """Build the line and compile it: plain gradient descent (SGD without momentum), MSE."""
    model = build_model()
    model.compile(optimizer=keras.optimizers.SGD(learning_rate), loss="mse")
    return model
# [end:keras]


# [start:fit]
def fit_line(model: keras.Model, x, y, steps: int, callbacks=()) -> keras.callbacks.History:
    """One batch holds all the data, so each epoch is one step of gradient descent."""
    everything = tf.data.Dataset.from_tensors((x, y))  # one element: all n points, (n, 1), (n,)
    return model.fit(everything, epochs=steps, verbose=0, callbacks=callbacks)


def evaluate_line(model: keras.Model, x_test, y_test):
    """Return the test loss by name and the fitted line's predictions at `x_test`."""
    test = model.evaluate(x_test, y_test, verbose=0, return_dict=True)  # {"loss": MSE}
    y_hat = model.predict(x_test, verbose=0)  # (n_test, 1)
    return test, y_hat
# [end:fit]


# --- Run ----------------------------------------------------------------------------
START = np.array([-1.0, 2.0])  # θ0 = (w, b): a start far from the answer
RULES = {"gd": "gradient descent", "momentum": "momentum", "adam": "Adam",
         "sgd": "mini-batch SGD"}  # history column: figure label


class Data(NamedTuple):
    X: tf.Tensor  # (n, 2): rows (x, 1)
    y: tf.Tensor  # (n,)
    X_test: tf.Tensor
    y_test: tf.Tensor


class Scratch(NamedTuple):
    theta_star: np.ndarray  # (2,): the closed form
    paths: dict  # rule -> θ after each step, (steps + 1, 2)
    losses: dict  # rule -> L(θ) after each step, (steps + 1,)
    optimizer_err: float  # our momentum and Adam vs Keras's, largest |Δθ|
    limit: float  # the largest stable learning rate
    sweep: dict  # figure label -> loss curve, for three learning rates


def prepare_data(cfg: Config, ex: Experiment) -> Data:
    """Draw the noisy line; the last points are the test set."""
    n_train, n_test = (400, 100) if cfg.quick else (1600, 400)
    X, y = make_regression(n_train + n_test, cfg.seed)
    ex.record_data("linreg", "synthetic", n_train, n_test,
                   task="y = 2x - 1 + N(0, 0.5^2), x ~ N(2, 1)")
    return Data(X[:n_train], y[:n_train], X[n_train:], y[n_train:])


def check_from_scratch(cfg: Config, data: Data) -> Scratch:
    """Descend with every rule, replay Keras's optimizers, sweep the learning rate."""
    X, y, lr, steps = data.X, data.y, cfg.learning_rate, cfg.epochs
    print(f"Batch gradient descent, {steps} steps, learning rate {lr:g}")
    runs = {"gd": minimize(gd(lr), START, X, y, steps, progress=keras.utils.Progbar(steps)),
            "momentum": minimize(momentum(lr), START, X, y, steps),
            "adam": minimize(adam(lr), START, X, y, steps),
            "sgd": minimize(gd(lr), START, X, y, steps, batch_size=cfg.batch_size,
                            seed=cfg.seed)}
    # Keras turns the Python floats β into float32 constants: use β values float32 holds exactly.
    betas = dict(beta_1=float(np.float32(0.9)), beta_2=float(np.float32(0.999)))
    optimizer_err = max(
        replay_keras(keras.optimizers.SGD(lr, momentum=0.9), momentum(lr), START, X, y),
        replay_keras(keras.optimizers.Adam(lr, **betas), adam(lr, **betas), START, X, y))
    limit = stable_lr_limit(X)  # too small, this one, and just past the limit:
    sweep = {f"α = {a:.3g}": minimize(gd(a), START, X, y, steps)[1]
             for a in (lr / 10, lr, 1.1 * limit)}
    return Scratch(closed_form(X, y).numpy(), {k: p for k, (p, _) in runs.items()},
                   {k: loss for k, (_, loss) in runs.items()}, optimizer_err, limit, sweep)


def train(cfg: Config, ex: Experiment, data: Data):
    """The Keras way: Dense(1) and full-batch SGD, the same algorithm as gd() above."""
    model = ex.runtime.build(compile_model, cfg.learning_rate)
    print(f"Keras fit: {cfg.epochs} epochs of one full-batch step each")
    history = fit_line(model, data.X[:, :1], data.y, cfg.epochs, callbacks=ex.callbacks())
    ex.save_model(model)
    return model, history.history


def evaluate(cfg: Config, ex: Experiment, data: Data, scratch: Scratch,
             model: keras.Model) -> np.ndarray:
    """Log every way's distance to the closed form; return the Keras line at the test x."""
    test, y_hat = evaluate_line(model, data.X_test[:, :1], data.y_test)
    kernel, bias = model.get_layer("line").get_weights()
    error = {k: np.max(np.abs(path[-1] - scratch.theta_star)) for k, path in scratch.paths.items()}
    lam = curvature(data.X)[1].numpy()  # (λ_min, λ_max)
    lr, steps, slow, diverged = cfg.learning_rate, cfg.epochs, *list(scratch.sweep.values())[::2]
    ex.log(param_error=error["gd"], momentum_param_error=error["momentum"],
           adam_param_error=error["adam"], sgd_param_error=error["sgd"],
           keras_param_error=np.max(np.abs([kernel[0, 0], bias[0]] - scratch.theta_star)),
           optimizer_max_abs_err=scratch.optimizer_err,
           predicted_param_error=float(tf.reduce_max(tf.abs(gd_error(
               START, scratch.theta_star, data.X, lr, steps)))),
           start_loss=scratch.losses["gd"][0], final_loss=scratch.losses["gd"][-1],
           closed_form_loss=loss_fn(tf.constant(scratch.theta_star), data.X, data.y),
           test_mse=loss_fn(tf.constant(scratch.paths["gd"][-1]), data.X_test, data.y_test),
           keras_test_mse=test["loss"], lambda_min=lam[0], lambda_max=lam[-1],
           condition_number=lam[-1] / lam[0], stable_lr_limit=scratch.limit,
           slow_factor=1 - lr * lam[0], momentum_factor=momentum_factor(lr, 0.9, lam),
           slow_lr_final_loss=slow[-1],
           diverged_growth=diverged[-1] / diverged[-2],
           predicted_growth=(1.1 * scratch.limit * lam[-1] - 1) ** 2)
    ex.details["worked"] = worked_example(lr)
    ex.details["theta_star"] = scratch.theta_star.tolist()
    ex.save_history(scratch.losses, tag="scratch")
    return y_hat[:, 0]


def _surface(X, y, center, start, n=120):
    span = 1.25 * float(np.max(np.abs(np.asarray(start) - center)))  # keep the start in view
    ws = np.linspace(center[0] - span, center[0] + span, n)
    bs = np.linspace(center[1] - span, center[1] + span, n)
    W, B = np.meshgrid(ws, bs)
    thetas = tf.constant(np.stack([W.ravel(), B.ravel()], axis=1), DTYPE)  # (n*n, 2)
    residual = tf.matmul(X, thetas, transpose_b=True) - y[:, None]  # (samples, n*n)
    return W, B, tf.reduce_mean(residual**2, axis=0).numpy().reshape(W.shape)


def fitted_line_figure(data: Data, theta_star: np.ndarray, y_hat: np.ndarray) -> Figure:
    """The test points, the closed-form line and the Keras model's predictions."""
    x, y = data.X_test[:, 0].numpy(), data.y_test.numpy()
    order = np.argsort(x)
    fig = Figure(figsize=(6.0, 4.2), layout="constrained")
    ax = fig.add_subplot()
    ax.scatter(x, y, s=12, alpha=0.6, label="test points")
    w, b = theta_star
    ax.plot(x[order], w * x[order] + b, "k--", lw=2,
            label=f"closed form: y = {w:.3f}·x {'+' if b >= 0 else '−'} {abs(b):.3f}")
    ax.plot(x[order], y_hat[order], lw=1.2, label="Keras model.predict")
    ax.set(xlabel="x", ylabel="y", title="The fitted line on the test points")
    ax.legend()
    return fig


def draw(ex: Experiment, data: Data, scratch: Scratch, history: dict, y_hat: np.ndarray):
    """The loss surface with the paths, convergence, learning rates, fit, the fitted line."""
    W, B, Z = _surface(data.X, data.y, scratch.theta_star, START)
    show = 60  # the first steps tell the story; later ones pile up at the optimum
    ex.save_figure(plotting.contour_paths(
        W, B, Z, {RULES[k]: path[:show] for k, path in scratch.paths.items()},
        title=f"Loss surface and the first {show} steps", xlabel="w (slope)",
        ylabel="b (intercept)", optimum=scratch.theta_star), "loss_surface")
    best = float(ex.metrics["closed_form_loss"])
    ex.save_figure(plotting.line_plot(
        {RULES[k]: loss - best for k, loss in scratch.losses.items()},
        xlabel="step", ylabel="L(θ) − L(θ*)", logy=True,
        title="Distance to the best loss"), "convergence")
    ex.save_figure(plotting.line_plot(
        scratch.sweep, xlabel="step", ylabel="loss L(θ)", logy=True,
        title=f"Learning rates (stable below {scratch.limit:.3f})"), "learning_rates")
    ex.save_figure(plotting.history_curves(history, "Keras fit"), "keras_history")
    ex.save_figure(fitted_line_figure(data, scratch.theta_star, y_hat), "fitted_line")


# --- Concept diagrams (no training: drawn from the chapter's own functions) -----------------
def step_concept(X, y, lr: float = 0.1) -> Figure:
    """The loss's contours, one gradient step from START, and H's two eigen-directions."""
    theta_star = closed_form(X, y).numpy()
    _, lam, U = (t.numpy() for t in curvature(X))
    W, B, Z = _surface(X, y, theta_star, START)
    g = gradient(tf.constant(START), X, y).numpy()
    fig = Figure(figsize=(6.4, 5.0), layout="constrained")
    ax = fig.add_subplot()
    ax.contour(W, B, Z, levels=np.geomspace(Z.min() + 1e-3, Z.max(), 18), cmap="viridis",
               linewidths=0.8)
    path, _ = minimize(gd(lr), START, X, y, steps=40)  # where the next steps go
    ax.plot(*path[1:].T, ".", color="C3", ms=4, alpha=0.5, label="the next 40 steps")
    ax.annotate("", START - lr * g, START, arrowprops=dict(arrowstyle="-|>", color="C3", lw=2))
    ax.text(*(START - lr * g / 2 + [0.1, -0.5]), r"$-\alpha\nabla L(\theta_0)$", color="C3")
    ax.plot(*START, "o", color="C3")
    ax.text(*(START + [-0.2, -0.45]), r"$\theta_0$", color="C3")
    for i, name in enumerate([r"\lambda_{min}", r"\lambda_{max}"]):  # H's eigen-directions
        ends = theta_star + np.outer([-1.6, 1.6], U[:, i])
        ax.plot(*ends.T, "--", color="gray", lw=1)
        ax.text(*(ends[0] + [0.1, -0.3]), f"${name} = {lam[i]:.2f}$", color="dimgray")
    ax.plot(*theta_star, "k*", ms=14)
    ax.text(*(theta_star + [0.15, 0.05]), r"$\theta^*$")
    ax.legend(loc="upper right", fontsize=8)
    ax.set(title="The gradient points across the valley, not along it", xlabel="w (slope)",
           ylabel="b (intercept)", aspect="equal")
    return fig


def rate_concept(X, lr: float = 0.1) -> Figure:
    """|1 − α·λ|, the factor by which GD shrinks the error along each eigen-direction."""
    lam = curvature(X)[1].numpy()
    limit = stable_lr_limit(X)
    alphas = np.linspace(0, 1.25 * limit, 400)
    fig = Figure(figsize=(6.4, 4.0), layout="constrained")
    ax = fig.add_subplot()
    for value, name in zip(lam, [r"\lambda_{min}", r"\lambda_{max}"]):
        ax.plot(alphas, np.abs(1 - alphas * value),
                label=f"$|1 - \\alpha {name}|$, ${name} = {value:.2f}$")
    ax.axhline(1, color="black", lw=0.8)
    ax.axvspan(limit, alphas[-1], color="C3", alpha=0.15,
               label=f"diverges: $\\alpha > 2/\\lambda_{{max}} = {limit:.3f}$")
    ax.axvline(lr, color="gray", ls=":", label=f"this chapter's $\\alpha = {lr:g}$")
    ax.set(xlabel=r"learning rate $\alpha$", ylabel="error factor per step", ylim=(0, 1.6),
           title="One learning rate for two curvatures")
    ax.legend(fontsize=8, loc="lower left")
    return fig


def concept_figures() -> dict[str, Figure]:
    """The chapter's diagrams of its idea, on the quick run's data."""
    X, y = make_regression(500, seed=42)
    X, y = X[:400], y[:400]
    return {"concept_gradient_step": step_concept(X, y), "concept_step_size": rate_concept(X)}


def run(cfg: Config) -> dict:
    """Fit the line every way the chapter teaches; log errors against the closed form."""
    with Experiment(cfg) as ex:
        data = prepare_data(cfg, ex)
        scratch = check_from_scratch(cfg, data)
        model, history = train(cfg, ex, data)
        y_hat = evaluate(cfg, ex, data, scratch, model)
        draw(ex, data, scratch, history, y_hat)
    return ex.metrics


def main(argv=None):
    cli.main(__name__, run, argv)


if __name__ == "__main__":
    main()
