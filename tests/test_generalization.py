"""Generalization: every cure by hand against its Keras twin, the proofs' mistakes, the quick run."""
import json
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfguide import cli, datasets, exercises
from tfguide.chapters import generalization as g
from tfguide.exercises import generalization as gx
from tfguide.results import Experiment


# --- From scratch against Keras --------------------------------------------------------------
@pytest.mark.parametrize("lam", [2 ** -7, 2 ** -3, 0.5])
@pytest.mark.parametrize("seed", [0, 1])
def test_l2_penalty_and_gradients_match_kernel_regularizer(lam, seed):
    loss_err, grad_err = g.check_l2(lam, seed)
    assert loss_err <= 1e-12 and grad_err <= 1e-12


def test_l2_leaves_the_biases_alone():
    W, b = np.ones((2, 3)), np.ones(3)
    ((g_W, g_b),) = g.l2_gradients([(W, b)], [(np.zeros((2, 3)), np.zeros(3))], 0.5)
    np.testing.assert_array_equal(g_W, W)  # 2 · 0.5 · W
    np.testing.assert_array_equal(g_b, 0)
    assert g.l2_penalty([W], 0.5) == 3.0


@pytest.mark.parametrize("steps", [1, 5, 30])
@pytest.mark.parametrize("wd", [0.0, 2 ** -3, 1.0])
def test_adamw_step_matches_keras(steps, wd):
    assert g.check_adamw(steps, seed=steps, wd=wd) <= 1e-12


def test_adam_step_is_keras_adam_with_default_betas_in_float32():
    """With Keras's own β (0.9, 0.999 held in float32), ours agrees to float32 rounding."""
    rng = np.random.default_rng(0)
    W, variable = rng.normal(size=(5, 4)), keras.Variable(np.zeros((5, 4)), dtype="float64")
    variable.assign(W)
    optimizer, m, v = keras.optimizers.Adam(1e-3), 0.0, 0.0
    for t in range(1, 11):
        grad = rng.normal(size=W.shape)
        W, m, v = g.adam_step(W, grad, m, v, t, 1e-3)
        optimizer.apply([tf.constant(grad)], [variable])
    np.testing.assert_allclose(W, variable.numpy(), rtol=0, atol=1e-7)


def test_l2_in_adam_is_not_decoupled_weight_decay():
    """The same nominal strength: Adam rescales the penalty's gradient, AdamW does not."""
    W0, grad = np.array([1.0, 1.0]), np.array([1e-4, 1.0])  # a quiet weight and a busy one
    l2 = adamw = (W0, 0.0, 0.0)
    for t in range(1, 101):
        noisy = grad * (-1) ** t  # mean 0: the data pulls neither way
        l2 = g.adam_step(l2[0], noisy + 1.0 * l2[0], *l2[1:], t, 1e-2)
        adamw = g.adamw_step(adamw[0], noisy, *adamw[1:], t, 1e-2, 1.0)
    assert l2[0][0] < 0.6 * l2[0][1], "L2 in Adam shrinks the quiet weight far more"
    assert adamw[0][0] == pytest.approx(adamw[0][1], abs=0.02), "AdamW shrinks both alike"


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.8])
def test_dropout_is_inverted_and_the_identity_at_inference(rate):
    x = np.random.default_rng(0).uniform(0.5, 1.5, size=(300, 400))
    assert g.dropout(x, rate, False, None) is x
    y = g.dropout(x, rate, True, np.random.default_rng(1))
    kept = y != 0
    np.testing.assert_allclose(y[kept], x[kept] / (1 - rate), rtol=1e-15)
    sigma = np.sqrt(rate * (1 - rate) / x.size)  # the standard error of a binomial share
    assert abs(kept.mean() - (1 - rate)) <= 4 * sigma
    assert abs(y.mean() / x.mean() - 1) <= 4 * sigma / (1 - rate) * 2  # mean kept, loosely


def test_keras_dropout_keeps_the_same_promises():
    metrics = g.check_dropout(rate=0.5, seed=3)
    sigma = np.sqrt(0.25 / 100_000)
    assert metrics["dropout_eval_max_err"] == 0.0
    assert abs(metrics["dropout_keep_fraction"] - 0.5) <= 4 * sigma
    assert abs(metrics["dropout_mean_ratio"] - 1) <= 0.01


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_batch_norm_both_modes_moving_stats_and_gradient_match_keras(seed):
    forward, gradient = g.check_batch_norm(steps=4, seed=seed)
    assert forward <= 1e-12 and gradient <= 1e-12


@pytest.mark.parametrize("momentum,epsilon", [(0.99, 1e-3), (0.5, 0.1)])
def test_batch_norm_in_float32_within_1e_5(momentum, epsilon):
    rng = np.random.default_rng(0)
    layer = keras.layers.BatchNormalization(momentum=momentum, epsilon=epsilon)
    x = rng.normal(3, 2, size=(32, 6)).astype(np.float32)
    ours, mean, var = g.batch_norm(x, 1.0, 0.0, np.zeros(6), np.ones(6), True, momentum, epsilon)
    np.testing.assert_allclose(ours, layer(x, training=True), atol=1e-5)
    np.testing.assert_allclose(mean, layer.moving_mean, atol=1e-5)
    np.testing.assert_allclose(var, layer.moving_variance, atol=1e-5)
    x = rng.normal(3, 2, size=(4, 6)).astype(np.float32)
    np.testing.assert_allclose(g.batch_norm(x, 1.0, 0.0, mean, var, False, momentum, epsilon)[0],
                               layer(x, training=False), atol=1e-5)


@pytest.mark.parametrize("fan_in,fan_out", [(64, 256), (512, 256), (128, 200)])
def test_init_limit_is_keras_bound_and_its_variance_keras_initialisers(fan_in, fan_out):
    for kind, make in (("glorot", keras.initializers.GlorotUniform),
                       ("he", keras.initializers.HeUniform)):
        w = np.asarray(make(seed=1)((fan_in, fan_out)), np.float64)
        limit = g.init_limit(fan_in, fan_out, kind)
        assert limit * (1 - 20 / w.size) <= np.max(np.abs(w)) <= limit * (1 + 1e-6)
    assert g.check_init(fan_in, fan_out) <= 0.03  # four initialisers' sample variances


def test_a_deep_net_vanishes_explodes_or_stays_alive_with_its_scale():
    rng = np.random.default_rng(0)
    x = datasets.load("digits").x_train.reshape(-1, 64)
    sizes = [(64, 128)] + [(128, 128)] * 19
    he = [rng.uniform(-(a := g.init_limit(i, o, "he")), a, (i, o)) for i, o in sizes]
    spread = g.activation_spread(he, x)
    assert len(spread) == 20 and 0.1 < spread[-1] / spread[0] < 10, "He keeps the scale"
    assert g.activation_spread([rng.normal(0, 0.05, s) for s in sizes], x)[-1] < 1e-6
    assert g.activation_spread([rng.normal(0, 0.2, s) for s in sizes], x)[-1] > 1e3


def _keras_stop(history, patience, min_delta=0.0):
    return gx._keras_early_stopping(history, patience, min_delta)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("patience", [1, 3, 10])
def test_patience_rule_is_keras_early_stopping(seed, patience):
    rng = np.random.default_rng(seed)
    epochs = np.arange(60)
    history = 1 / (1 + epochs) + 0.004 * epochs + rng.normal(0, 0.02, 60)  # falls, turns up
    assert g.early_stopping(history, patience) == _keras_stop(history, patience)


def test_augmentation_is_the_identity_at_inference_and_moves_at_most_half_a_pixel():
    x = datasets.load("digits").x_test[:64]  # (64, 8, 8, 1)
    assert np.array_equal(g.augmentation()(x, training=False), x)
    keras.utils.set_random_seed(0)
    move = g.augmentation().layers[0]  # the RandomTranslation
    moved = np.asarray(move(x, training=True))
    rows = np.arange(8.0)[:, None]
    centre = lambda im: np.array([(im[..., 0] * rows).sum((1, 2)), (im[..., 0] * rows.T).sum((1, 2))]) \
        / im[..., 0].sum((1, 2))  # noqa: E731  (2, n): the ink's centre of mass, in pixels
    shift = np.abs(centre(moved) - centre(x))
    assert shift.max() <= 0.55, "half a pixel at most (a little more where ink leaves the frame)"
    assert np.mean(shift > 0.1) > 0.5, "most images do move"


@pytest.mark.parametrize("per_class,seed", [(1, 0), (10, 0), (10, 1), (139, 2)])
def test_few_labels_is_class_balanced_and_seeded(per_class, seed):
    data = datasets.load("digits")
    x, y = g.few_labels(data.x_train, data.y_train, per_class, seed)
    assert np.array_equal(np.bincount(y), [per_class] * 10)
    assert len(np.unique(x.reshape(len(x), -1), axis=0)) == len(x) or per_class == 139
    x2, _ = g.few_labels(data.x_train, data.y_train, per_class, seed)
    assert np.array_equal(x, x2)


def test_a_per_class_larger_than_the_rarest_digit_is_a_usage_error(tmp_path):
    cfg = cli.parse("generalization", ["--quick", "--per-class", "140", "--out", str(tmp_path)])
    with pytest.raises(cli.UsageError, match="--per-class must be at most 139"):
        with Experiment(cfg) as ex:
            g.prepare_data(cfg, ex)


def test_the_gain_is_paired_by_seed_with_its_standard_error(tmp_path, monkeypatch):
    """Seed 1 drew easier digits: every recipe scores higher on it. Paired, the cure's gain of
    0.01, 0.02, 0.03 is clear; the accuracies' spread over seeds alone would hide it."""
    scores = {"plain": [0.80, 0.90, 0.85], "augment": [0.81, 0.92, 0.88]}
    monkeypatch.setattr(g, "train_one", lambda cfg, ex, task, recipe, seed, **_: {
        "val": scores[recipe][seed], "gap": 1 - scores[recipe][seed], "train": 1.0})
    cfg = cli.parse("generalization", ["--quick", "--out", str(tmp_path)])
    with Experiment(cfg) as ex:
        task = g.Task(None, 10, (0, 1, 2), ("plain", "augment"), (), (), 0)
        g.compare_recipes(cfg, ex, task)
    assert ex.metrics["augment_gain"] == pytest.approx(0.02)
    assert ex.metrics["augment_gain_se"] == pytest.approx(0.01 / np.sqrt(3))
    assert ex.metrics["augment_val_accuracy_std"] > 3 * ex.metrics["augment_gain_se"]
    assert "plain_gain" not in ex.metrics and ex.details["best_recipe"] == "augment"


def test_concept_figures_are_drawn_from_the_chapter():
    figures = g.concept_figures()
    assert set(figures) == {"concept_capacity", "concept_dropout"}
    assert all(len(f.axes) >= 3 for f in figures.values())


# --- The exercises: each proof passes the chapter's function and names each mistake ------------
@pytest.mark.parametrize("exercise", gx.EXERCISES, ids=lambda e: e.function)
def test_each_proof_passes_ours_and_fails_each_mistake_with_its_hint(exercise, tmp_path):
    assert exercise.prove(getattr(g, exercise.function)).passed
    for hint, wrong in exercise.mistakes.items():
        module = type(sys)("learner")
        setattr(module, exercise.function, wrong)
        verdict = exercises.check_one(exercise, module, tmp_path / "learner.py")
        assert verdict.status == "FAIL" and verdict.detail.endswith(hint), verdict


# --- The quick run --------------------------------------------------------------------------
def test_quick_run_overfits_proves_every_cure_and_stops_where_keras_stops(quick_run):
    metrics, run_dir = quick_run("generalization")
    assert metrics["plain_gap"] >= 0.05, "the plain network fits its few labels, not the rest"
    assert metrics["plain_val_accuracy"] >= 0.85
    for name in ("l2_loss_err", "l2_grad_max_err", "adamw_step_max_err", "batchnorm_max_err",
                 "batchnorm_grad_max_err"):
        assert metrics[name] <= 1e-12, name
    assert metrics["dropout_eval_max_err"] == metrics["augment_eval_max_err"] == 0.0
    assert abs(metrics["dropout_keep_fraction"] - 0.5) <= 4 * np.sqrt(0.25 / 100_000)
    assert metrics["init_variance_rel_err"] <= 0.03
    assert metrics["early_stopping_epoch"] == metrics["keras_early_stopping_epoch"] < 60
    assert metrics["early_stopping_best_epoch"] == metrics["keras_best_epoch"]
    assert metrics["restored_weights_max_err"] == metrics["checkpoint_weights_max_err"] == 0.0
    assert metrics["deep_small_last_std"] < 1e-6 < 1e3 < metrics["deep_large_last_std"]
    results = json.loads((run_dir / "results.json").read_text())
    assert results["details"]["best_recipe"] in g.RECIPES
    assert metrics["best_val_accuracy"] == metrics[f"{results['details']['best_recipe']}"
                                                   "_val_accuracy"]
    figures = {p.stem for p in (run_dir / "figures").glob("*.png")}
    assert {"overfitting_curves", "comparison", "gaps", "val_loss_by_recipe",
            "early_stopping", "activation_spread", "weight_decay", "augmented_digits"} <= figures
    assert (run_dir / "best.weights.h5").is_file() and (run_dir / "history_plain_seed42.csv").is_file()
