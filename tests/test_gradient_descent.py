"""Gradient descent: hand-written gradients and update rules against TensorFlow and Keras."""
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfguide.chapters import gradient_descent as gdc
from tests.conftest import run_quick


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    return run_quick(gdc, tmp_path_factory)


def test_quick_run_reaches_the_closed_form(quick_run):
    metrics, _ = quick_run
    assert metrics["param_error"] <= 1e-3
    assert metrics["keras_param_error"] <= 1e-2
    assert metrics["optimizer_max_abs_err"] <= 1e-5
    assert metrics["final_loss"] == pytest.approx(metrics["closed_form_loss"], rel=1e-6)
    assert metrics["sgd_param_error"] > metrics["param_error"], "mini-batches leave noise"
    assert metrics["diverged_lr_final_loss"] > 1e6, "a rate past the limit diverges"


def test_quick_run_writes_its_files(quick_run):
    metrics, run_dir = quick_run
    results = json.loads((run_dir / "results.json").read_text())
    assert results["chapter"] == "gradient_descent" and results["status"] == "ok"
    assert results["metrics"] == pytest.approx(metrics)
    assert results["data"]["source"] == "synthetic" and results["wall_s"] > 0
    assert {"device", "precision", "jit", "strategy", "replicas", "tensorflow", "keras",
            "numpy", "python"} <= set(results["runtime"])
    assert results["config"]["quick"] is True and "created" in results
    figures = {p.stem for p in (run_dir / "figures").glob("*.png")}
    assert {"loss_surface", "convergence", "learning_rates", "keras_history"} <= figures
    assert (run_dir / "history.csv").read_text().startswith("epoch,loss")
    model = keras.saving.load_model(run_dir / "model.keras", safe_mode=True)
    assert model.get_layer("line").get_weights()[0].shape == (1, 1)


@pytest.mark.parametrize("n,d", [(5, 1), (40, 2), (17, 6)])
def test_hand_gradient_matches_gradient_tape(n, d):
    rng = np.random.default_rng(n)
    X = tf.constant(rng.normal(size=(n, d)))
    y = tf.constant(rng.normal(size=n))
    theta = tf.Variable(rng.normal(size=d))
    with tf.GradientTape() as tape:
        loss = gdc.loss_fn(theta, X, y)
    np.testing.assert_allclose(gdc.gradient(theta, X, y), tape.gradient(loss, theta),
                               rtol=1e-12, atol=1e-12)


def test_gradient_descent_reaches_the_closed_form():
    X, y = gdc.make_regression(300, seed=1)
    path, losses = gdc.minimize(gdc.gd(0.1), [0.0, 0.0], X, y, steps=600)
    np.testing.assert_allclose(path[-1], gdc.closed_form(X, y), atol=1e-6)
    assert np.all(np.diff(losses) <= 1e-12), "full-batch GD below the limit never goes up"


@pytest.mark.parametrize("lr", [0.01, 0.1])
@pytest.mark.parametrize("name", ["momentum", "adam"])
def test_update_rules_follow_keras_step_for_step(name, lr):
    X, y = gdc.make_regression(200, seed=2)
    betas = dict(beta_1=float(np.float32(0.9)), beta_2=float(np.float32(0.999)))
    keras_opt, ours = {
        "momentum": (keras.optimizers.SGD(lr, momentum=0.9), gdc.momentum(lr)),
        "adam": (keras.optimizers.Adam(lr, **betas), gdc.adam(lr, **betas)),
    }[name]
    assert gdc.replay_keras(keras_opt, ours, [-1.0, 2.0], X, y, steps=50) <= 1e-5


def test_replay_detects_a_different_rule():
    X, y = gdc.make_regression(200, seed=2)
    wrong = gdc.adam(0.1, beta_1=0.5)  # not what Keras does
    assert gdc.replay_keras(keras.optimizers.Adam(0.1), wrong, [-1.0, 2.0], X, y) > 1e-3


def test_stability_limit_separates_convergence_from_divergence():
    X, y = gdc.make_regression(300, seed=3)
    limit = gdc.stable_lr_limit(X)
    _, below = gdc.minimize(gdc.gd(0.95 * limit), [0.0, 0.0], X, y, steps=300)
    _, above = gdc.minimize(gdc.gd(1.05 * limit), [0.0, 0.0], X, y, steps=2000)
    assert below[-1] < below[0]
    assert above[-1] > 1e12 or not np.isfinite(above[-1]), "stops early once it blows up"
    assert len(above) < 2001
