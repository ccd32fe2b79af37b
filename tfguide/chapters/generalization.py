"""Generalization: a network that overfits on purpose, and the cures, each built by hand.

MLPs trained on a few labelled digits show the gap between training and validation open.
Then the cures, each from scratch and proved equal to its Keras twin: L2, decoupled weight
decay, dropout, batch normalisation, Glorot and He initialisation, early stopping and
augmentation. Last, each cure and the best combination compared over several seeds.

Text: chapters/generalization.md. New in tfguide: the source primers never taught it.
"""
from __future__ import annotations

import dataclasses
import time

import keras
import numpy as np
import tensorflow as tf
from keras import layers
from matplotlib.figure import Figure

from tfguide import cli, datasets, plotting
from tfguide.config import Config
from tfguide.results import Experiment

WIDTH = 256  # units in each of the two hidden layers


# --- From scratch -------------------------------------------------------------------
# Code between [start:…]/[end:…] markers is shown in chapters/generalization.md; after
# editing it, refresh the text with python -m tfguide.excerpts chapters/generalization.md.
# [start:few_labels]
def few_labels(x: np.ndarray, y: np.ndarray, per_class: int, seed: int):
    """A class-balanced subset: `per_class` examples of each class, drawn at random."""
    rng = np.random.default_rng(seed)
    idx = np.concatenate([rng.choice(np.flatnonzero(y == c), per_class, replace=False)
                          for c in np.unique(y)])  # (classes · per_class,)
    return x[idx], y[idx]
# [end:few_labels]


# [start:l2]
def l2_penalty(kernels: list, lam: float) -> float:
    """λ Σ W² over the kernels: what keras.regularizers.L2(λ) adds to the loss."""
    return lam * sum(float(np.sum(np.square(W))) for W in kernels)


def l2_gradients(weights: list, grads: list, lam: float) -> list:
    """Gradients of loss + l2_penalty: each kernel's gains 2λW, each bias's stays as it is.

    `weights` and the data loss's `grads` are [(W1, b1), (W2, b2), ...], a pair per layer.
    """
    return [(g_W + 2 * lam * W, g_b) for (W, _), (g_W, g_b) in zip(weights, grads)]
# [end:l2]


# [start:adamw]
def adam_step(W, g, m, v, t: int, lr=1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
    """One Adam step, as Keras writes it (the bias corrections folded into the step size)."""
    m = beta_1 * m + (1 - beta_1) * g  # running mean of the gradient
    v = beta_2 * v + (1 - beta_2) * g * g  # running mean of its square
    alpha = lr * np.sqrt(1 - beta_2 ** t) / (1 - beta_1 ** t)
    return W - alpha * m / (np.sqrt(v) + epsilon), m, v


def adamw_step(W, g, m, v, t: int, lr=1e-3, weight_decay=0.004, **adam):
    """Decoupled weight decay: shrink W by lr·wd·W, then Adam on the data gradient alone."""
    W = W - lr * weight_decay * W  # the decay never enters m or v
    return adam_step(W, g, m, v, t, lr, **adam)
# [end:adamw]


# [start:dropout]
def dropout(x: np.ndarray, rate: float, training: bool, rng: np.random.Generator):
    """Inverted dropout: zero each unit with probability `rate`, scale the rest by 1/(1 − rate).

    The scaling keeps every unit's expected value as it was, so at inference
    (training=False) dropout is simply left out: the identity.
    """
    if not training or rate == 0:
        return x
    keep = rng.uniform(size=x.shape) >= rate  # same shape as x: True with probability 1 − rate
    return np.where(keep, x / (1 - rate), 0.0)
# [end:dropout]


# [start:batch_norm]
def batch_norm(x, gamma, beta, moving_mean, moving_var, training: bool,
               momentum=0.99, epsilon=1e-3):
    """Normalise each feature, then scale by γ and shift by β; return (y, moving stats).

    Training: the batch's own mean and variance (divided by n, not n − 1), and
    the moving averages take one step toward them. Inference: the moving
    averages, so an example's output no longer depends on the rest of its batch.
    """
    if training:
        mu, var = x.mean(axis=0), x.var(axis=0)  # (features,) each
        moving_mean = momentum * moving_mean + (1 - momentum) * mu
        moving_var = momentum * moving_var + (1 - momentum) * var
    else:
        mu, var = moving_mean, moving_var
    x_hat = (x - mu) / np.sqrt(var + epsilon)  # (n, features): mean 0, variance ≈ 1
    return gamma * x_hat + beta, moving_mean, moving_var


def batch_norm_backward(dy, x, gamma, epsilon=1e-3):
    """Training mode's gradients (dL/dx, dL/dγ, dL/dβ) from dL/dy, through the batch stats."""
    mu, var = x.mean(axis=0), x.var(axis=0)
    x_hat = (x - mu) / np.sqrt(var + epsilon)  # (n, features)
    d_xhat = dy * gamma  # (n, features)
    dx = (d_xhat - d_xhat.mean(axis=0) - x_hat * (d_xhat * x_hat).mean(axis=0)) \
        / np.sqrt(var + epsilon)  # every x moves every mean and variance: two extra terms
    return dx, (dy * x_hat).sum(axis=0), dy.sum(axis=0)
# [end:batch_norm]


# [start:init]
def init_limit(fan_in: int, fan_out: int, kind: str = "glorot") -> float:
    """The bound a of U(−a, a) whose variance a²/3 keeps the signal's size from layer to layer.

    Glorot: Var(W) = 2 / (fan_in + fan_out), between what the forward pass
    wants (1 / fan_in) and what the backward pass wants (1 / fan_out).
    He: Var(W) = 2 / fan_in, twice 1 / fan_in, because a ReLU zeroes half its inputs.
    """
    variance = {"glorot": 2 / (fan_in + fan_out), "he": 2 / fan_in}[kind]
    return float(np.sqrt(3 * variance))


def activation_spread(kernels: list, x: np.ndarray) -> list[float]:
    """The standard deviation of each layer's ReLU outputs in a plain deep MLP (no biases)."""
    h, spread = x, []
    for W in kernels:
        h = np.maximum(h @ W, 0.0)  # (n, d_in) @ (d_in, d_out) -> (n, d_out)
        spread.append(float(h.std()))
    return spread
# [end:init]


# [start:patience]
def early_stopping(val_losses, patience: int, min_delta: float = 0.0) -> tuple[int, int]:
    """The patience rule: (epoch training stops after, epoch whose weights are kept), from 1.

    An epoch improves when its loss beats the best so far by more than
    `min_delta`; after `patience` epochs in a row without improvement, stop.
    """
    best, best_epoch, wait = np.inf, 0, 0
    for epoch, loss in enumerate(val_losses, start=1):
        if loss < best - min_delta:
            best, best_epoch, wait = loss, epoch, 0
        else:
            wait += 1
            if wait >= patience:
                return epoch, best_epoch
    return len(val_losses), best_epoch
# [end:patience]


# --- The Keras way ------------------------------------------------------------------
# [start:augment]
def augmentation() -> keras.Sequential:
    """Random moves of up to half a pixel, small turns and zooms; active only when training."""
    return keras.Sequential([
        layers.RandomTranslation(1 / 16, 1 / 16, fill_mode="constant"),  # ≤ half a pixel of 8
        layers.RandomRotation(0.02, fill_mode="constant"),  # up to ±0.02 turn: ±7°
        layers.RandomZoom(0.05, fill_mode="constant"),  # up to 5 % in or out
    ], name="augment")
# [end:augment]


# [start:keras]
def build_model(input_shape: tuple, num_classes: int, width: int = WIDTH, depth: int = 2,
                l2: float = 0.0, dropout: float = 0.0, batch_norm: bool = False,
                augment: bool = False, initializer="glorot_uniform") -> keras.Model:
    """An MLP with each cure as a switch: L2, dropout, batch norm, augmentation, initialiser."""
    regularizer = keras.regularizers.L2(l2) if l2 else None  # adds λ Σ W² to the loss
    model = keras.Sequential(name="mlp")
    model.add(keras.Input(shape=input_shape))  # (8, 8, 1)
    if augment:
        model.add(augmentation())
    model.add(layers.Flatten())  # (64,)
    for _ in range(depth):
        model.add(layers.Dense(width, kernel_initializer=initializer,
                               kernel_regularizer=regularizer, use_bias=not batch_norm))
        if batch_norm:  # normalise before the ReLU; its β does the bias's job
            model.add(layers.BatchNormalization())
        model.add(layers.Activation("relu"))
        if dropout:
            model.add(layers.Dropout(dropout))
    model.add(layers.Dense(num_classes, activation="softmax", kernel_regularizer=regularizer,
                           dtype="float32"))
    return model


RECIPES = {"plain": {}, "l2": {"l2": 1e-3}, "dropout": {"dropout": 0.5},  # each cure alone,
           "batch_norm": {"batch_norm": True}, "augment": {"augment": True},
           "combined": {"dropout": 0.5, "augment": True}}  # then two together


def compile_model(input_shape: tuple, num_classes: int, learning_rate: float,
                  **recipe) -> keras.Model:
    """Build the MLP with a recipe's cures and compile it: Adam, integer-label cross-entropy."""
    model = build_model(input_shape, num_classes, **recipe)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model
# [end:keras]


# [start:fit]
def make_datasets(x, y, x_val, y_val, batch_size: int, seed: int):
    """The input pipeline: shuffled training batches, fixed validation batches."""
    train_ds = (tf.data.Dataset.from_tensor_slices((x, y))
                .cache()  # keep the decoded examples in memory
                .shuffle(len(x), seed=seed)  # a new order every epoch
                .batch(batch_size)
                .prefetch(tf.data.AUTOTUNE))  # prepare the next batch while this one trains
    val_ds = tf.data.Dataset.from_tensor_slices((x_val, y_val)).batch(512).cache()
    return train_ds, val_ds


def fit_model(model: keras.Model, train_ds, val_ds, epochs: int, callbacks=()) -> dict:
    """Train with `fit`, scoring the validation set after every epoch."""
    history = model.fit(train_ds, epochs=epochs, validation_data=val_ds, verbose=0,
                        callbacks=list(callbacks))
    return history.history  # {"loss": [...], "accuracy": [...], "val_loss": [...], ...}
# [end:fit]


# [start:early_stopping]
def fit_with_early_stopping(model: keras.Model, train_ds, val_ds, epochs: int, patience: int,
                            checkpoint: str, callbacks=()) -> tuple[dict, keras.callbacks.Callback]:
    """Stop once the validation loss has not improved for `patience` epochs; keep the best."""
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience,
                                         restore_best_weights=True)
    keep_best = keras.callbacks.ModelCheckpoint(checkpoint, monitor="val_loss",
                                                save_best_only=True, save_weights_only=True)
    history = model.fit(train_ds, epochs=epochs, validation_data=val_ds, verbose=0,
                        callbacks=[stop, keep_best, *callbacks])
    return history.history, stop
# [end:early_stopping]


# --- Checks: each piece from scratch against its Keras twin, in float64 ------------------
# λ, lr, wd and the βs are sums of powers of 2: Keras keeps them in float32, where 0.01 is not.
def _max_err(ours, theirs) -> float:
    return float(max(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)))
                     for a, b in zip(ours, theirs)))


def check_l2(lam: float = 2 ** -7, seed: int = 0) -> tuple[float, float]:
    """Loss and gradients with kernel_regularizer=L2(λ) vs data loss + l2_penalty, l2_gradients."""
    model = keras.Sequential([keras.Input((6,), dtype="float64")] + [layers.Dense(
        units, "tanh", dtype="float64", kernel_regularizer=keras.regularizers.L2(lam),
        bias_initializer=keras.initializers.RandomNormal(0, 0.3, seed)) for units in (5, 3)])
    x = np.random.default_rng(seed).normal(size=(8, 6))  # (8, 6)
    with tf.GradientTape(persistent=True) as tape:
        data_loss = tf.reduce_mean(tf.square(model(x)))
        total = data_loss + tf.add_n(model.losses)  # what fit minimises
    pairs = lambda t: [(t[i].numpy(), t[i + 1].numpy()) for i in range(0, len(t), 2)]  # noqa: E731
    weights, variables = pairs(model.trainable_weights), model.trainable_weights
    ours = l2_gradients(weights, pairs(tape.gradient(data_loss, variables)), lam)
    loss_err = abs(float(data_loss) + l2_penalty([W for W, _ in weights], lam) - float(total))
    return loss_err, _max_err(sum(ours, ()), sum(pairs(tape.gradient(total, variables)), ()))


def check_adamw(steps: int = 5, seed: int = 0, lr=2 ** -6, wd=2 ** -3, betas=(0.875, 0.9921875)):
    """`steps` steps of adamw_step vs keras.optimizers.AdamW on the same gradients."""
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(4, 3))
    variable = keras.Variable(W, dtype="float64")
    optimizer = keras.optimizers.AdamW(lr, weight_decay=wd, beta_1=betas[0], beta_2=betas[1])
    m = v = np.zeros_like(W)
    for t in range(1, steps + 1):
        g = rng.normal(size=W.shape)
        W, m, v = adamw_step(W, g, m, v, t, lr, wd, beta_1=betas[0], beta_2=betas[1])
        optimizer.apply([tf.constant(g)], [variable])
    return _max_err([W], [variable.numpy()])


def check_dropout(rate: float = 0.5, seed: int = 0) -> dict:
    """Keras's Dropout: the identity at inference, exactly; in training, what share it keeps."""
    x = np.random.default_rng(seed).uniform(0.5, 1.5, size=(200, 500))  # no zeros to confuse
    theirs = (layer := layers.Dropout(rate, seed=seed, dtype="float64"))(x, training=True).numpy()
    return {"dropout_eval_max_err": _max_err([layer(x, training=False)], [x]),
            "dropout_keep_fraction": np.mean(theirs != 0),
            "dropout_mean_ratio": theirs.mean() / x.mean()}


def check_batch_norm(steps: int = 3, seed: int = 0) -> tuple[float, float]:
    """batch_norm (both modes, moving stats after `steps` batches) and its gradient vs Keras."""
    rng = np.random.default_rng(seed)
    layer = layers.BatchNormalization(momentum=0.9, dtype="float64")
    layer.build((None, 5))
    gamma, beta = rng.normal(1, 0.3, 5), rng.normal(0, 0.3, 5)
    layer.set_weights([gamma, beta, np.zeros(5), np.ones(5)])
    mean, var = np.zeros(5), np.ones(5)
    errors, grad_errors = [], []
    for _ in range(steps):
        x, dy = tf.constant(rng.normal(2.0, 3.0, (16, 5))), rng.normal(size=(16, 5))
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(y * dy)  # so that dL/dy = dy
        theirs = tape.gradient(loss, [x, layer.gamma, layer.beta])
        ours, mean, var = batch_norm(x.numpy(), gamma, beta, mean, var, True, momentum=0.9)
        errors.append(_max_err([ours, mean, var], [y, layer.moving_mean, layer.moving_variance]))
        grad_errors.append(_max_err(batch_norm_backward(dy, x.numpy(), gamma), theirs))
    x = rng.normal(2.0, 3.0, size=(7, 5))
    errors.append(_max_err([batch_norm(x, gamma, beta, mean, var, False)[0]],
                           [layer(x, training=False)]))
    return max(errors), max(grad_errors)


def check_init(fan_in: int = 512, fan_out: int = 256, seed: int = 0) -> float:
    """Worst relative gap between a Keras initialiser's sample variance and init_limit's a²/3."""
    init = keras.initializers
    return float(max(
        abs(np.var(make(seed)((fan_in, fan_out))) / (init_limit(fan_in, fan_out, kind) ** 2 / 3)
            - 1) for kind, make in (("glorot", init.GlorotUniform), ("glorot", init.GlorotNormal),
                                    ("he", init.HeUniform), ("he", init.HeNormal))))


# --- Run ----------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Task:
    """The digits (training split to draw labels from, test split to validate) and the plan."""
    data: datasets.LoadedData
    per_class: int  # training examples of each class
    seeds: tuple[int, ...]  # one model per seed and recipe
    recipes: tuple[str, ...]  # which of RECIPES to compare
    widths: tuple[int, ...]  # the capacity sweep; WIDTH is the comparison's plain model
    sizes: tuple[int, ...]  # the training-set sweep, examples per class (full run only)
    deep_epochs: int  # training of the 20-layer networks (0: only their forward pass)
    patience: int = 10


def prepare_data(cfg: Config, ex: Experiment) -> Task:
    """Load the digits and plan the run; the quick one is a smaller version of the full one."""
    data, per_class = ex.load_data(), cfg.options.get("per_class", 10)
    fewest = int(np.bincount(data.y_train).min())
    if per_class > fewest:
        raise cli.UsageError(f"--per-class must be at most {fewest}, the training examples of "
                             f"the rarest digit. Received: --per-class={per_class}")
    ex.data_info.update(fit=per_class * data.num_classes, per_class=per_class)
    if cfg.quick:
        return Task(data, per_class, (cfg.seed,), ("plain", "augment", "combined"), (), (), 0)
    return Task(data, per_class, tuple(range(cfg.seed, cfg.seed + 10)), tuple(RECIPES),
                (16, 64, 1024), (5, 20, 40), 60)


def train_one(cfg: Config, ex: Experiment, task: Task, recipe: str, seed: int,
              per_class: int | None = None, tag: str = "", **changes) -> dict:
    """Fit one recipe on one seed's few labels; score it on them (clean) and on validation."""
    data = task.data
    x, y = few_labels(data.x_train, data.y_train, per_class or task.per_class, seed)
    keras.utils.set_random_seed(seed)
    model = ex.runtime.build(compile_model, data.input_shape, data.num_classes,
                             cfg.learning_rate, **{**RECIPES[recipe], **changes})
    history = fit_model(model, *make_datasets(x, y, data.x_test, data.y_test, cfg.batch_size,
                                              seed), cfg.epochs, ex.callbacks(tag) if tag else ())
    train = model.evaluate(x, y, verbose=0, return_dict=True)["accuracy"]  # no dropout, no noise
    val = history["val_accuracy"][-1]
    print(f"  {recipe:<10} {len(x):>4} examples {str(changes or ''):<14} seed {seed}: train "
          f"{train:.3f}, validation {val:.3f}")
    return {"history": history, "train": train, "val": val, "gap": train - val}


def paired_gain(val: np.ndarray, plain: np.ndarray) -> dict:
    """The mean of each seed's gain over plain on the same digits, and its standard error."""
    gain = np.asarray(val) - plain  # (seeds,)
    return {"gain": gain.mean(), "gain_se": gain.std(ddof=1) / np.sqrt(len(gain))}


def compare_recipes(cfg: Config, ex: Experiment, task: Task) -> dict:
    """Each recipe on each seed: its mean accuracy and gap, and its paired gain over plain."""
    print("The comparison: each cure, and the best combination")
    runs = {r: [train_one(cfg, ex, task, r, s, tag=f"{r}_seed{s}") for s in task.seeds]
            for r in task.recipes}
    for recipe, results in runs.items():
        val, gap = [r["val"] for r in results], [r["gap"] for r in results]
        ex.log(**{f"{recipe}_val_accuracy": np.mean(val), f"{recipe}_gap": np.mean(gap)})
        if len(task.seeds) > 1:  # a seed draws the digits: compare recipes seed by seed
            gain = paired_gain(val, [r["val"] for r in runs["plain"]]) if recipe != "plain" else {}
            ex.log(**{f"{recipe}_val_accuracy_std": np.std(val), f"{recipe}_gap_std": np.std(gap),
                      **{f"{recipe}_{key}": value for key, value in gain.items()}})
    best = max(task.recipes[1:], key=lambda r: ex.metrics[f"{r}_val_accuracy"])
    ex.details["best_recipe"] = best  # a name: beside the metrics, which are numbers
    ex.log(best_val_accuracy=ex.metrics[f"{best}_val_accuracy"], best_gap=ex.metrics[f"{best}_gap"])
    return runs


def overfit_on_purpose(cfg: Config, ex: Experiment, task: Task, plain: dict) -> dict:
    """The capacity sweep (widths, first seed); the training-set sweep (sizes, every seed)."""
    print("Capacity: the plain MLP at growing width; then the training-set size, full run only")
    widths = {w: train_one(cfg, ex, task, "plain", task.seeds[0], width=w) for w in task.widths}
    widths = dict(sorted({**widths, WIDTH: plain}.items()))
    ex.details["widths"] = {str(w): {k: r[k] for k in ("train", "val")} for w, r in widths.items()}
    for n in task.sizes:  # plain and combined on the same n digits per class, seed by seed
        val = np.array([[train_one(cfg, ex, task, r, s, per_class=n)["val"] for s in task.seeds]
                        for r in ("plain", "combined")])  # (2, seeds)
        ex.details.setdefault("sizes", {})[str(n)] = {
            "plain": val[0].mean(), "combined": val[1].mean(), **paired_gain(val[1], val[0])}
    return widths


def stop_early(cfg: Config, ex: Experiment, task: Task) -> dict:
    """The plain model with EarlyStopping and ModelCheckpoint; the patience rule by hand agrees."""
    data, seed = task.data, task.seeds[0]
    x, y = few_labels(data.x_train, data.y_train, task.per_class, seed)
    keras.utils.set_random_seed(seed)
    model = ex.runtime.build(compile_model, data.input_shape, data.num_classes, cfg.learning_rate)
    weights = []  # every epoch's weights, to see which ones Keras restores
    keep = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda *_: weights.append(model.get_weights()))
    checkpoint = str(ex.dir / "best.weights.h5")
    history, stop = fit_with_early_stopping(
        model, *make_datasets(x, y, data.x_test, data.y_test, cfg.batch_size, seed),
        cfg.epochs, task.patience, checkpoint, [keep, *ex.callbacks("early_stopping")])
    stop_epoch, best_epoch = early_stopping(history["val_loss"], task.patience)
    (saved := build_model(data.input_shape, data.num_classes)).load_weights(checkpoint)
    ex.log(early_stopping_epoch=stop_epoch, keras_early_stopping_epoch=len(history["loss"]),
           early_stopping_best_epoch=best_epoch, keras_best_epoch=stop.best_epoch + 1,
           restored_weights_max_err=_max_err(model.get_weights(), weights[best_epoch - 1]),
           checkpoint_weights_max_err=_max_err(saved.get_weights(), weights[best_epoch - 1]))
    return history


def check_from_scratch(cfg: Config, ex: Experiment, task: Task) -> None:
    """Prove every cure's from-scratch piece against Keras before training with it."""
    (l2_loss, l2_grad), (bn, bn_grad), x = check_l2(), check_batch_norm(), task.data.x_test[:64]
    ex.log(l2_loss_err=l2_loss, l2_grad_max_err=l2_grad, adamw_step_max_err=check_adamw(),
           **check_dropout(), batchnorm_max_err=bn, batchnorm_grad_max_err=bn_grad,
           init_variance_rel_err=check_init(),
           augment_eval_max_err=_max_err([augmentation()(x, training=False)], [x]))  # identity


def deep_network(cfg: Config, ex: Experiment, task: Task, depth=20, width=128) -> dict:
    """A 20-layer ReLU MLP: activations per layer at three scales; trained in a full run."""
    data, rng = task.data, np.random.default_rng(cfg.seed)
    x = data.x_train.reshape(len(data.x_train), -1)  # (n, 64): every training digit
    sizes = list(zip([x.shape[1]] + [width] * (depth - 1), [width] * depth))  # (fan_in, fan_out)
    spreads, few = {}, few_labels(data.x_train, data.y_train, task.per_class, cfg.seed)
    for name, scale in {"small": 0.05, "he": None, "large": 0.2}.items():  # None: He uniform
        kernels = [rng.uniform(-init_limit(i, o, "he"), init_limit(i, o, "he"), (i, o))
                   if scale is None else rng.normal(0, scale, (i, o)) for i, o in sizes]
        spreads[name] = activation_spread(kernels, x)
        ex.log(**{f"deep_{name}_last_std": spreads[name][-1]})
        if task.deep_epochs:
            keras.utils.set_random_seed(cfg.seed)
            model = ex.runtime.build(
                compile_model, data.input_shape, data.num_classes, cfg.learning_rate,
                width=width, depth=depth, initializer="he_uniform" if scale is None else
                keras.initializers.RandomNormal(0, scale, cfg.seed))
            history = fit_model(model, *make_datasets(*few, data.x_test, data.y_test,
                                                      cfg.batch_size, cfg.seed), task.deep_epochs)
            ex.log(**{f"deep_{name}_val_accuracy": history["val_accuracy"][-1]})
    return spreads


def weight_decay_figure(steps: int = 200, lr: float = 1e-2, wd: float = 1.0) -> Figure:
    """Weights of 1 whose data gradients flip sign each step, ±s: what L2-in-Adam and AdamW leave."""
    scales = np.logspace(-3, 1, 9)  # s: how loud each weight's gradient is
    l2 = decoupled = (np.ones(9), 0.0, 0.0)  # (W, m, v)
    for t in range(1, steps + 1):
        g = scales * (-1.0) ** t  # the data's gradient: mean 0, it pulls neither way
        l2 = adam_step(l2[0], g + wd * l2[0], *l2[1:], t, lr)  # the penalty's 2λW, λ = wd / 2
        decoupled = adamw_step(decoupled[0], g, *decoupled[1:], t, lr, wd)
    fig = plotting.line_plot({"L2 in Adam": l2[0], "AdamW": decoupled[0]}, "size of the "
                             "weight's gradient", f"the weight after {steps} steps (from 1)",
                             "L2 in Adam vs AdamW, the same nominal strength", x=scales, logx=True)
    return fig


def draw(ex: Experiment, task: Task, runs: dict, widths: dict, history: dict,
         spreads: dict) -> None:
    """The curves, the width sweep, the comparison, early stopping, the deep net, the digits."""
    plain, line = runs["plain"][0]["history"], plotting.line_plot
    ex.save_figure(plotting.history_curves(plain, "The plain MLP"), "overfitting_curves")
    if len(widths) > 1:  # the full run's sweep
        ex.save_figure(line({k: [r[k] for r in widths.values()] for k in ("train", "val")},
                            "hidden units per layer", "accuracy after the last epoch",
                            "Capacity", x=list(widths), logx=True), "capacity")
    ex.save_figure(comparison_figure(runs, "val", "validation accuracy"), "comparison")
    ex.save_figure(comparison_figure(runs, "gap", "training − validation accuracy"), "gaps")
    ex.save_figure(line({r: rs[0]["history"]["val_loss"] for r, rs in runs.items()}, "epoch",
                        "validation loss", "Validation loss of each recipe (first seed)",
                        x=np.arange(1, len(plain["loss"]) + 1)), "val_loss_by_recipe")
    ex.save_figure(early_stopping_figure(history, task.patience), "early_stopping")
    ex.save_figure(line(spreads, "layer", "std of its ReLU outputs", "small: N(0, 0.05²), "
                        "large: N(0, 0.2²)", True, np.arange(1, 21)), "activation_spread")
    ex.save_figure(weight_decay_figure(), "weight_decay")
    ex.save_figure(augmented_digits(task.data, task.seeds[0]), "augmented_digits")


def comparison_figure(runs: dict, key: str, label: str) -> Figure:
    """One bar per recipe: the mean over seeds of `key` ("val" or "gap"), ± its spread."""
    values = np.array([[r[key] for r in rs] for rs in runs.values()])  # (recipes, seeds)
    mean, spread = values.mean(axis=1), values.std(axis=1)
    fig = plotting.bar_chart(dict(zip(runs, mean)), label, f"Each cure: mean ± spread over "
                             f"{values.shape[1]} seed(s)", errors=dict(zip(runs, spread)))
    fig.axes[0].set_ylim(max(0, values.min() - 0.05) if key == "val" else 0, None)
    return fig


def early_stopping_figure(history: dict, patience: int) -> Figure:
    """The losses Keras saw, the best epoch and the epoch it stopped after."""
    stop, best = early_stopping(history["val_loss"], patience)
    fig = plotting.line_plot({"training loss": history["loss"],
                              "validation loss": history["val_loss"]}, "epoch", "loss",
                             "Early stopping", logy=True, x=np.arange(1, len(history["loss"]) + 1))
    fig.axes[0].axvline(best, color="C2", ls="--", label=f"best epoch {best}: weights kept")
    fig.axes[0].axvline(stop, color="C3", ls=":", label=f"stopped after {stop}, patience {patience}")
    fig.axes[0].legend()
    return fig


def augmented_digits(data: datasets.LoadedData, seed: int, n: int = 6, copies: int = 7) -> Figure:
    """Each row: one training digit, then `copies` random augmentations of it."""
    keras.utils.set_random_seed(seed)
    x, augment = data.x_train[:n], augmentation()  # (n, 8, 8, 1)
    grid = np.stack([x] + [augment(x, training=True).numpy() for _ in range(copies)], axis=1)
    titles = ["original"] + [f"random {j}" for j in range(1, copies + 1)] + [""] * copies * n
    return plotting.image_grid(grid.reshape(-1, *x.shape[1:]), titles, ncols=copies + 1,
                               title="Augmentation: moved, turned, zoomed")


# --- Concept diagrams (saved as chapters/figures/generalization/concept_*.png) -------------
def capacity_concept(seed: int = 0) -> Figure:
    """Polynomials of growing degree fitted to 10 noisy points: too simple, right, too flexible."""
    rng, truth = np.random.default_rng(seed), lambda x: np.sin(2 * np.pi * x)  # noqa: E731
    x, x_val, grid = np.sort(rng.uniform(0, 1, 10)), rng.uniform(0, 1, 200), np.linspace(0, 1, 99)
    y, y_val = truth(x) + rng.normal(0, 0.2, 10), truth(x_val) + rng.normal(0, 0.2, 200)
    fits = [np.polynomial.Polynomial.fit(x, y, d) for d in range(10)]  # degree 9: through all 10
    fig, axes = Figure(figsize=(13, 3.2), layout="constrained"), []
    for i, (d, name) in enumerate(((1, "underfit"), (3, "about right"), (9, "overfit"))):
        axes.append(ax := fig.add_subplot(1, 4, i + 1))
        ax.plot(grid, truth(grid), "--", color="grey", label="the rule behind the data")
        ax.plot(grid, fits[d](grid), color="C3", label="the fitted curve")
        ax.plot(x, y, "o", color="C0", label="training points")
        ax.set(ylim=(-2, 2), title=f"degree {d}: {name}", xticks=[], yticks=[])
    axes[0].legend(fontsize=7, loc="lower left")
    ax = fig.add_subplot(1, 4, 4)
    for name, (a, b) in (("training", (x, y)), ("validation", (x_val, y_val))):
        ax.plot(range(10), [max(np.mean((f(a) - b) ** 2), 1e-4) for f in fits], "o-", label=name)
    ax.set(yscale="log", xlabel="capacity: polynomial degree", ylabel="mean squared error")
    ax.legend(fontsize=7)
    return fig


def dropout_concept(sizes=(4, 6, 6, 3), rate: float = 0.5, seed: int = 3) -> Figure:
    """A small network at two training steps, units dropped by `dropout`'s own masks."""
    rng, fig = np.random.default_rng(seed), Figure(figsize=(11, 3.4), layout="constrained")
    masks = [[dropout(np.ones(n), rate, 0 < i < len(sizes) - 1, rng) != 0  # hidden units only
              for i, n in enumerate(sizes)] for _ in range(2)] + [[np.ones(n) for n in sizes]]
    at = [[(i, j - (n - 1) / 2) for j in range(n)] for i, n in enumerate(sizes)]  # (x, y) each
    for panel, kept in enumerate(masks):
        ax = fig.add_subplot(1, 3, panel + 1)
        for i in range(len(sizes) - 1):
            for a, b in np.argwhere(np.outer(kept[i], kept[i + 1])):
                ax.plot(*zip(at[i][a], at[i + 1][b]), color="C0", lw=0.8, alpha=0.6)
        for (px, py), on in zip(sum(at, []), np.concatenate(kept)):
            ax.scatter(px, py, s=260, zorder=3, color="C0" if on else "white", edgecolors="C0")
            ax.plot(*([px, py, "x"] if not on else [[], []]), color="C3", ms=10, zorder=4)
        ax.set(title=["training step 1", "training step 2", "prediction: every unit"][panel],
               xticks=range(4), xticklabels=["input", "hidden", "hidden", "output"], yticks=[])
    fig.suptitle(f"Dropout, rate {rate}: each step trains another thinned network (kept units "
                 f"× {1 / (1 - rate):g})")
    return fig


def concept_figures() -> dict[str, Figure]:
    """The chapter's diagrams of its ideas, drawn from its own functions."""
    return {"concept_capacity": capacity_concept(), "concept_dropout": dropout_concept()}


def run(cfg: Config) -> dict:
    """Prove the cures by hand, compare them, overfit on purpose, stop early, go deep, draw."""
    with Experiment(cfg) as ex:
        task = prepare_data(cfg, ex)
        check_from_scratch(cfg, ex, task)
        start = time.perf_counter()
        runs = compare_recipes(cfg, ex, task)
        widths = overfit_on_purpose(cfg, ex, task, runs["plain"][0])
        history = stop_early(cfg, ex, task)
        spreads = deep_network(cfg, ex, task)
        ex.log(train_s=time.perf_counter() - start)
        draw(ex, task, runs, widths, history, spreads)
    return ex.metrics


def main(argv=None):
    cli.main(__name__, run, argv)


if __name__ == "__main__":
    main()
