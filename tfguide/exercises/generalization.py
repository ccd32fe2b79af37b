"""Exercises for chapter generalization: `python -m tfguide exercise generalization`, `check`.

Each proof runs the learner's function beside its Keras twin: the gradient of a
model with `kernel_regularizer=L2`, `keras.layers.Dropout`,
`keras.layers.BatchNormalization` (in float64, both modes), Keras's Glorot and
He initialisers, and `keras.callbacks.EarlyStopping` driven epoch by epoch over
recorded validation losses. The deliberately wrong variants below are the
mistakes the checker recognises, by their answer on one fixed probe input.
"""
from __future__ import annotations

import numpy as np

from tfguide.exercises import Exercise, Proof, worst


def _max_err(ours, theirs) -> float:
    """The largest |difference|, or inf when the shapes differ."""
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    return float(np.max(np.abs(ours - theirs))) if ours.shape == theirs.shape else float("inf")


# --- L2: the gradient of the penalised loss ----------------------------------------------
def _regularized_mlp(lam: float, sizes: tuple, seed: int):
    import keras

    model = keras.Sequential([keras.Input((sizes[0],), dtype="float64")])
    for i, units in enumerate(sizes[1:]):
        model.add(keras.layers.Dense(
            units, "tanh", dtype="float64", kernel_regularizer=keras.regularizers.L2(lam),
            bias_initializer=keras.initializers.RandomNormal(0, 0.3, seed + i)))
    return model


def prove_l2_gradients(l2_gradients_fn) -> Proof:
    """Data gradients + l2_gradients vs GradientTape through kernel_regularizer=L2(λ), float64."""
    import tensorflow as tf

    errors = []
    for lam, sizes in ((2 ** -7, (6, 5, 3)), (2 ** -3, (4, 8, 8, 2)), (0.0, (3, 2))):
        model = _regularized_mlp(lam, sizes, seed=len(sizes))
        x = np.random.default_rng(len(sizes)).normal(size=(5, sizes[0]))
        with tf.GradientTape(persistent=True) as tape:
            data_loss = tf.reduce_mean(tf.square(model(x)))
            total = data_loss + tf.add_n(model.losses)
        variables = model.trainable_weights
        pair = lambda t: [(t[i].numpy(), t[i + 1].numpy())  # noqa: E731
                          for i in range(0, len(t), 2)]
        ours = l2_gradients_fn(pair(variables), pair(tape.gradient(data_loss, variables)), lam)
        theirs = pair(tape.gradient(total, variables))
        error = max(_max_err(a, b) for p, q in zip(ours, theirs) for a, b in zip(p, q)) \
            if len(ours) == len(theirs) else float("inf")
        errors.append((f"λ = {lam:g}, layers {sizes}", error))
    return worst(errors, 1e-12)


def _l2_no_two(weights, grads, lam):
    return [(g_W + lam * W, g_b) for (W, _), (g_W, g_b) in zip(weights, grads)]


def _l2_on_biases_too(weights, grads, lam):
    return [(g_W + 2 * lam * W, g_b + 2 * lam * b) for (W, b), (g_W, g_b) in zip(weights, grads)]


def _l2_penalty_only(weights, grads, lam):
    return [(2 * lam * W, np.zeros_like(g_b)) for (W, _), (_, g_b) in zip(weights, grads)]


_PROBE_WEIGHTS = [(np.array([[1.0, -2.0], [0.5, 3.0]]), np.array([0.5, -1.0]))]
_PROBE_GRADS = [(np.array([[0.1, 0.2], [-0.3, 0.4]]), np.array([0.05, -0.05]))]


# --- Dropout: exact where it can be, statistical where Keras draws its own mask --------------
def prove_dropout(dropout_fn) -> Proof:
    """Inverted dropout's three promises, each as a share of what is allowed (pass: ≤ 1).

    At inference: x itself, exactly. In training: every output is 0 or x / (1 − rate)
    (to 1e-12), and the share kept is 1 − rate within 4 standard errors of a
    binomial share, sqrt(rate · (1 − rate) / n). The mask is random, so only its
    statistics can be proved: Keras's Dropout passes the same three checks.
    """
    x = np.random.default_rng(0).uniform(0.5, 1.5, size=(200, 500))  # no zeros: a 0 is a drop
    errors = []
    for rate in (0.2, 0.5, 0.8):
        eval_out = np.asarray(dropout_fn(x, rate, False, np.random.default_rng(1)), np.float64)
        errors.append((f"rate {rate}, training=False: the identity",
                       _max_err(eval_out, x) / 1e-12))
        y = np.asarray(dropout_fn(x, rate, True, np.random.default_rng(2)), np.float64)
        if y.shape != x.shape:
            errors.append((f"rate {rate}, training: output shape {y.shape}", float("inf")))
            continue
        off = np.minimum(np.abs(y), np.abs(y - x / (1 - rate)))  # 0 for a dropped or kept unit
        errors.append((f"rate {rate}, training: each output 0 or x / (1 − rate)",
                       float(off.max()) / 1e-12))
        sigma = np.sqrt(rate * (1 - rate) / x.size)
        errors.append((f"rate {rate}, training: share kept {np.mean(y != 0):.3f}, "
                       f"expected {1 - rate:g}", abs(np.mean(y != 0) - (1 - rate)) / (4 * sigma)))
    return worst(errors, 1.0)


def _dropout_unscaled(x, rate, training, rng):
    return x * (rng.uniform(size=x.shape) >= rate) if training else x


def _dropout_scaled_at_inference(x, rate, training, rng):  # the original, "non-inverted" form
    return x * (rng.uniform(size=x.shape) >= rate) if training else x * (1 - rate)


def _dropout_keeps_rate(x, rate, training, rng):
    return np.where(rng.uniform(size=x.shape) < rate, x / (1 - rate), 0.0) if training else x


def _dropout_always(x, rate, training, rng):
    rng = rng or np.random.default_rng(0)
    return np.where(rng.uniform(size=x.shape) >= rate, x / (1 - rate), 0.0)


def _dropout_probe(f):
    """Facts on ones that do not depend on the draws: in training the share kept (to 0.1) and
    the largest output; at inference the largest output and the share zeroed (to 0.1)."""
    x = np.ones((100, 100))
    y = np.asarray(f(x, 0.2, True, np.random.default_rng(0)), np.float64)
    y_eval = np.asarray(f(x, 0.2, False, np.random.default_rng(1)), np.float64)
    return [round(float(np.mean(y != 0)), 1), float(y.max()), float(y_eval.max()),
            round(float(np.mean(y_eval == 0)), 1)]


# --- Batch normalisation, both modes ---------------------------------------------------------
def prove_batch_norm(batch_norm_fn) -> Proof:
    """batch_norm vs keras.layers.BatchNormalization in float64: outputs and moving statistics
    over three training batches, then the inference output, for two momenta."""
    import keras

    errors = []
    for momentum, epsilon, features in ((0.9, 1e-3, 5), (0.99, 1e-2, 3)):
        rng = np.random.default_rng(features)
        layer = keras.layers.BatchNormalization(momentum=momentum, epsilon=epsilon,
                                                dtype="float64")
        layer.build((None, features))
        gamma, beta = rng.normal(1, 0.3, features), rng.normal(0, 0.3, features)
        layer.gamma.assign(gamma)
        layer.beta.assign(beta)
        mean, var = np.zeros(features), np.ones(features)
        for step in range(3):
            x = rng.normal(2.0, 3.0, size=(16, features))  # far from mean 0, variance 1
            out = batch_norm_fn(x, gamma, beta, mean, var, True, momentum, epsilon)
            y, mean, var = out
            errors.append((f"momentum {momentum}, training batch {step + 1}: output",
                           _max_err(y, layer(x, training=True))))
            errors.append((f"momentum {momentum}, after batch {step + 1}: moving mean, variance",
                           max(_max_err(mean, layer.moving_mean),
                               _max_err(var, layer.moving_variance))))
        x = rng.normal(2.0, 3.0, size=(7, features))
        y, _, _ = batch_norm_fn(x, gamma, beta, mean, var, False, momentum, epsilon)
        errors.append((f"momentum {momentum}, inference", _max_err(y, layer(x, training=False))))
    return worst(errors, 1e-12)


def _bn_unbiased(x, gamma, beta, moving_mean, moving_var, training, momentum=0.99, epsilon=1e-3):
    if training:
        mu, var = x.mean(axis=0), x.var(axis=0, ddof=1)
        moving_mean = momentum * moving_mean + (1 - momentum) * mu
        moving_var = momentum * moving_var + (1 - momentum) * var
    else:
        mu, var = moving_mean, moving_var
    return gamma * (x - mu) / np.sqrt(var + epsilon) + beta, moving_mean, moving_var


def _bn_batch_stats_always(x, gamma, beta, moving_mean, moving_var, training, momentum=0.99,
                           epsilon=1e-3):
    mu, var = x.mean(axis=0), x.var(axis=0)
    if training:
        moving_mean = momentum * moving_mean + (1 - momentum) * mu
        moving_var = momentum * moving_var + (1 - momentum) * var
    return gamma * (x - mu) / np.sqrt(var + epsilon) + beta, moving_mean, moving_var


def _bn_momentum_swapped(x, gamma, beta, moving_mean, moving_var, training, momentum=0.99,
                         epsilon=1e-3):
    if training:
        mu, var = x.mean(axis=0), x.var(axis=0)
        moving_mean = (1 - momentum) * moving_mean + momentum * mu
        moving_var = (1 - momentum) * moving_var + momentum * var
    else:
        mu, var = moving_mean, moving_var
    return gamma * (x - mu) / np.sqrt(var + epsilon) + beta, moving_mean, moving_var


def _bn_epsilon_outside(x, gamma, beta, moving_mean, moving_var, training, momentum=0.99,
                        epsilon=1e-3):
    if training:
        mu, var = x.mean(axis=0), x.var(axis=0)
        moving_mean = momentum * moving_mean + (1 - momentum) * mu
        moving_var = momentum * moving_var + (1 - momentum) * var
    else:
        mu, var = moving_mean, moving_var
    return gamma * (x - mu) / (np.sqrt(var) + epsilon) + beta, moving_mean, moving_var


_PROBE_BN_X = np.array([[1.0, 4.0], [2.0, -1.0], [6.0, 0.5], [3.0, 2.0]])  # (4, 2)


def _batch_norm_probe(f):
    """One training step and one inference step on a fixed batch, everything flattened."""
    gamma, beta = np.array([1.5, 0.5]), np.array([0.1, -0.2])
    y, mean, var = f(_PROBE_BN_X, gamma, beta, np.zeros(2), np.ones(2), True, 0.9, 0.1)
    y_eval, _, _ = f(_PROBE_BN_X, gamma, beta, mean, var, False, 0.9, 0.1)
    return np.concatenate([np.ravel(y), mean, var, np.ravel(y_eval)])


# --- Glorot and He limits ----------------------------------------------------------------------
def prove_init_limit(init_limit_fn) -> Proof:
    """init_limit vs the largest |w| of many draws of Keras's GlorotUniform and HeUniform.

    Keras never draws outside its limit, and among n ≥ 20,000 uniform draws the
    largest |w| falls short of it by about limit / n, so |max|w| / a − 1| is
    below 1e-3 exactly when a is Keras's bound.
    """
    import keras

    errors = []
    for fan_in, fan_out in ((64, 400), (256, 256), (1000, 30)):
        for kind, make in (("glorot", keras.initializers.GlorotUniform),
                           ("he", keras.initializers.HeUniform)):
            w = np.asarray(make(seed=fan_in)((fan_in, fan_out)), np.float64)
            a = float(init_limit_fn(fan_in, fan_out, kind))
            errors.append((f"{kind}, fan_in {fan_in}, fan_out {fan_out}",
                           abs(np.max(np.abs(w)) / a - 1)))
    return worst(errors, 1e-3)


def _limit_fan_in_only(fan_in, fan_out, kind="glorot"):
    return float(np.sqrt(6 / fan_in))


def _limit_is_the_std(fan_in, fan_out, kind="glorot"):
    return float(np.sqrt({"glorot": 2 / (fan_in + fan_out), "he": 2 / fan_in}[kind]))


def _he_with_fan_out(fan_in, fan_out, kind="glorot"):
    return float(np.sqrt({"glorot": 6 / (fan_in + fan_out), "he": 6 / (fan_in + fan_out)}[kind]))


def _he_without_the_two(fan_in, fan_out, kind="glorot"):
    return float(np.sqrt({"glorot": 6 / (fan_in + fan_out), "he": 3 / fan_in}[kind]))


# --- Early stopping's patience rule -----------------------------------------------------------
def _keras_early_stopping(val_losses, patience: int, min_delta: float) -> tuple[int, int]:
    """Drive keras.callbacks.EarlyStopping epoch by epoch; return (epochs run, epoch restored)."""
    import keras

    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    stop = keras.callbacks.EarlyStopping(patience=patience, min_delta=min_delta,
                                         restore_best_weights=True)
    model.stop_training = False  # what fit sets before the first epoch
    stop.set_model(model)
    stop.on_train_begin()
    epochs = 0
    for epoch, loss in enumerate(val_losses):
        epochs = epoch + 1
        stop.on_epoch_end(epoch, {"val_loss": float(loss)})
        if model.stop_training:
            break
    return epochs, stop.best_epoch + 1


_HISTORIES = {  # validation losses, epoch by epoch
    "falls, then turns up": [1.0, 0.7, 0.5, 0.45, 0.44, 0.46, 0.5, 0.55, 0.6, 0.7, 0.8],
    "a tie with the best": [0.9, 0.6, 0.6, 0.6, 0.61, 0.62, 0.63, 0.64],
    "a late improvement": [0.9, 0.8, 0.85, 0.86, 0.79, 0.9, 0.91, 0.92, 0.93, 0.94],
    "never stops": [1.0, 0.9, 0.8, 0.7, 0.6],
    "small steps": [1.0, 0.95, 0.947, 0.944, 0.935, 0.933, 0.930, 0.929],  # none within 1e-9
                                                                            # of min_delta
}


def prove_early_stopping(early_stopping_fn) -> Proof:
    """(stop epoch, best epoch) vs keras.callbacks.EarlyStopping on recorded histories:
    the error is the number of epochs the two disagree by."""
    errors = []
    for name, history in _HISTORIES.items():
        for patience in (1, 2, 3):
            for min_delta in (0.0, 0.004):
                ours = tuple(int(e) for e in early_stopping_fn(history, patience, min_delta))
                theirs = _keras_early_stopping(history, patience, min_delta)
                errors.append((f"{name}, patience {patience}, min_delta {min_delta:g}: "
                               f"(stop, best) {ours}, Keras {theirs}",
                               float(max(abs(a - b) for a, b in zip(ours, theirs)))))
    return worst(errors, 0.0)


def _stop_one_epoch_late(val_losses, patience, min_delta=0.0):
    best, best_epoch, wait = np.inf, 0, 0
    for epoch, loss in enumerate(val_losses, start=1):
        if loss < best - min_delta:
            best, best_epoch, wait = loss, epoch, 0
        else:
            wait += 1
            if wait > patience:
                return epoch, best_epoch
    return len(val_losses), best_epoch


def _ties_improve(val_losses, patience, min_delta=0.0):
    best, best_epoch, wait = np.inf, 0, 0
    for epoch, loss in enumerate(val_losses, start=1):
        if loss <= best - min_delta:
            best, best_epoch, wait = loss, epoch, 0
        else:
            wait += 1
            if wait >= patience:
                return epoch, best_epoch
    return len(val_losses), best_epoch


def _keeps_the_last(val_losses, patience, min_delta=0.0):
    from tfguide.chapters.generalization import early_stopping

    stop, _ = early_stopping(val_losses, patience, min_delta)
    return stop, stop


def _counts_from_zero(val_losses, patience, min_delta=0.0):
    from tfguide.chapters.generalization import early_stopping

    stop, best = early_stopping(val_losses, patience, min_delta)
    return stop - 1, best - 1


_PROBE_HISTORY = [0.9, 0.6, 0.6, 0.62, 0.61, 0.63, 0.7]

EXERCISES = (
    Exercise(
        "l2_gradients", prove_l2_gradients, "the penalty λ Σ W² has gradient 2λW: add it to "
        "each kernel's gradient and leave each bias's gradient as it is",
        probe=lambda f: np.concatenate([np.ravel(a) for pair in f(_PROBE_WEIGHTS, _PROBE_GRADS,
                                                                  0.25) for a in pair]),
        mistakes={"the gradient of λW² is 2λW, not λW": _l2_no_two,
                  "kernel_regularizer penalises the kernels only: a bias's gradient stays the "
                  "data's": _l2_on_biases_too,
                  "add 2λW to the data's gradient, do not replace it": _l2_penalty_only}),
    Exercise(
        "dropout", prove_dropout, "training: keep = rng.uniform(size=x.shape) >= rate, then "
        "np.where(keep, x / (1 - rate), 0); not training: return x",
        probe=_dropout_probe,
        mistakes={"divide the kept units by 1 − rate while training, so the expected output "
                  "is x and inference can return x as it is": _dropout_unscaled,
                  "inverted dropout scales while training and returns x unchanged at "
                  "inference, not x · (1 − rate)": _dropout_scaled_at_inference,
                  "keep a unit with probability 1 − rate (drop when uniform < rate), not "
                  "with probability rate": _dropout_keeps_rate,
                  "with training=False dropout does nothing: return x": _dropout_always}),
    Exercise(
        "batch_norm", prove_batch_norm, "training: the batch's mean and np.var (divide by n), "
        "moving = momentum·moving + (1 − momentum)·batch; inference: the moving ones; "
        "then γ(x − μ)/sqrt(σ² + ε) + β",
        probe=_batch_norm_probe,
        mistakes={"the batch variance divides by n (np.var's default), not n − 1":
                      _bn_unbiased,
                  "at inference use the moving mean and variance, not the batch's own":
                      _bn_batch_stats_always,
                  "the moving average keeps momentum of the old value: "
                  "momentum·moving + (1 − momentum)·batch": _bn_momentum_swapped,
                  "ε goes inside the square root: sqrt(σ² + ε)": _bn_epsilon_outside}),
    Exercise(
        "init_limit", prove_init_limit, "U(−a, a) has variance a²/3: set it to 2 / (fan_in + "
        "fan_out) for Glorot and 2 / fan_in for He, and solve for a",
        probe=lambda f: [f(100, 400, "glorot"), f(100, 400, "he")],
        mistakes={"Glorot averages both fans: Var = 2 / (fan_in + fan_out)": _limit_fan_in_only,
                  "the limit a is sqrt(3) times the standard deviation: a²/3 = Var":
                      _limit_is_the_std,
                  "He counts the inputs only: Var = 2 / fan_in": _he_with_fan_out,
                  "He doubles 1 / fan_in because a ReLU zeroes half its inputs: "
                  "Var = 2 / fan_in": _he_without_the_two}),
    Exercise(
        "early_stopping", prove_early_stopping, "count the epochs since the best loss (an "
        "improvement must beat it by more than min_delta); stop when the count reaches "
        "patience; epochs count from 1",
        probe=lambda f: [f(_PROBE_HISTORY, 2, 0.0), f(_PROBE_HISTORY, 3, 0.0),
                         f([1.0, 0.9, 0.8], 2, 0.0)],
        mistakes={"stop as soon as `patience` epochs have passed without improvement, "
                  "not one epoch later": _stop_one_epoch_late,
                  "a loss equal to the best is no improvement: use <, not <=": _ties_improve,
                  "restore_best_weights keeps the best epoch's weights, not the last "
                  "epoch's": _keeps_the_last,
                  "count epochs from 1, as Keras prints them": _counts_from_zero}),
)
