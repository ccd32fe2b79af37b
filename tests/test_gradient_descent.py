"""Gradient descent: hand-written gradients and update rules against TensorFlow and Keras."""
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfguide.chapters import gradient_descent as gdc
import tfguide.bench.gradient_descent as gdc_bench


def test_quick_run_reaches_the_closed_form(quick_run):
    metrics, _ = quick_run("gradient_descent")
    assert metrics["param_error"] <= 1e-3
    assert metrics["keras_param_error"] <= 1e-2
    assert metrics["optimizer_max_abs_err"] <= 1e-5
    assert metrics["final_loss"] == pytest.approx(metrics["closed_form_loss"], rel=1e-6)
    assert metrics["sgd_param_error"] > metrics["param_error"], "mini-batches leave noise"
    assert metrics["diverged_growth"] == pytest.approx(metrics["predicted_growth"], rel=1e-3), \
        "past the limit the loss grows by (αλ_max − 1)² per step"
    assert metrics["predicted_param_error"] == pytest.approx(metrics["param_error"], rel=1e-6)
    assert metrics["condition_number"] == pytest.approx(
        metrics["lambda_max"] / metrics["lambda_min"])
    assert metrics["keras_test_mse"] == pytest.approx(metrics["test_mse"], rel=1e-3)


def test_quick_run_draws_each_lesson_and_the_model_reloads(quick_run):
    _, run_dir = quick_run("gradient_descent")
    results = json.loads((run_dir / "results.json").read_text())
    assert results["data"]["source"] == "synthetic"
    assert results["details"]["theta_star"] == pytest.approx([2.0, -1.0], abs=0.1)
    figures = {p.stem for p in (run_dir / "figures").glob("*.png")}
    assert {"loss_surface", "convergence", "learning_rates", "keras_history",
            "fitted_line"} <= figures
    assert (run_dir / "history.csv").read_text().startswith("epoch,loss")
    header = (run_dir / "history_scratch.csv").read_text().splitlines()[0]
    assert header == "step,gd,momentum,adam,sgd"
    model = keras.saving.load_model(run_dir / "model.keras", safe_mode=True)
    assert model.get_layer("line").get_weights()[0].shape == (1, 1)


def test_keras_fit_on_the_whole_set_is_gradient_descent_step_for_step():
    X, y = gdc.make_regression(120, seed=4)
    model = gdc.compile_model(0.1)
    model.get_layer("line").set_weights([np.array([[gdc.START[0]]]), gdc.START[1:]])
    history = gdc.fit_line(model, X[:, :1], y, steps=20)  # 20 epochs of one step
    assert len(history.history["loss"]) == 20
    kernel, bias = model.get_layer("line").get_weights()
    path, _ = gdc.minimize(gdc.gd(0.1), gdc.START, X, y, steps=20)
    np.testing.assert_allclose([kernel[0, 0], bias[0]], path[-1], rtol=1e-5)
    test, y_hat = gdc.evaluate_line(model, X[:, :1], y)
    assert y_hat.shape == (120, 1)
    assert test["loss"] == pytest.approx(float(np.mean((y_hat[:, 0] - y) ** 2)), rel=1e-5)


def test_bench_workload_times_the_chapter_model_on_the_chapter_line():
    work = gdc_bench.workload(quick=True, seed=0)
    assert work.x.shape == (16384, 1) and work.y.shape == (16384, 1) and work.batch_size == 256
    slope, intercept = np.polyfit(work.x[:, 0], work.y[:, 0], 1)
    assert slope == pytest.approx(2.0, abs=0.05) and intercept == pytest.approx(-1.0, abs=0.1)
    model = work.build()
    assert model.compiled and model.get_layer("line").get_weights()[0].shape == (1, 1)


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


def test_worked_example_is_the_hand_computation():
    worked = gdc.worked_example(0.1)
    assert worked["loss"] == pytest.approx(35 / 3)  # (1² + 3² + 5²) / 3
    assert [worked["grad_w"], worked["grad_b"]] == pytest.approx([-44 / 3, -6])
    assert [worked["w"], worked["b"]] == pytest.approx([4.4 / 3, 0.6])
    assert worked["loss_after"] < worked["loss"]


@pytest.mark.parametrize("lr", [0.05, 0.15, 0.19])
def test_eigen_decomposition_predicts_every_step_of_gradient_descent(lr):
    X, y = gdc.make_regression(300, seed=5)
    theta_star = gdc.closed_form(X, y)
    path, _ = gdc.minimize(gdc.gd(lr), gdc.START, X, y, steps=30)
    for t in (1, 10, len(path) - 1):
        np.testing.assert_allclose(path[t] - theta_star,
                                   gdc.gd_error(gdc.START, theta_star, X, lr, t), atol=1e-9)


def test_stability_limit_separates_convergence_from_divergence():
    X, y = gdc.make_regression(300, seed=3)
    limit = gdc.stable_lr_limit(X)
    _, below = gdc.minimize(gdc.gd(0.95 * limit), [0.0, 0.0], X, y, steps=300)
    _, above = gdc.minimize(gdc.gd(1.05 * limit), [0.0, 0.0], X, y, steps=2000)
    assert below[-1] < below[0]
    assert above[-1] > 1e12 or not np.isfinite(above[-1]), "stops early once it blows up"
    assert len(above) < 2001


@pytest.fixture(scope="module")
def quick_problem():
    X, y = gdc.make_regression(500, seed=42)
    return X[:400], y[:400], gdc.closed_form(X[:400], y[:400]).numpy()


def distance(path, theta_star):
    """Max |θ − θ*| after each step, as param_error measures it."""
    return np.max(np.abs(np.asarray(path) - theta_star), axis=1)


def test_exercise_too_much_momentum_has_not_arrived_after_400_steps(quick_problem):
    X, y, theta_star = quick_problem
    path, _ = gdc.minimize(gdc.momentum(0.05, beta=0.99), gdc.START, X, y, steps=400)
    assert distance(path, theta_star)[-1] > 0.1


def test_exercise_a_rate_just_under_the_limit_is_faster(quick_problem):
    X, y, theta_star = quick_problem
    assert 0.17 < gdc.stable_lr_limit(X)
    fast, _ = gdc.minimize(gdc.gd(0.17), gdc.START, X, y, steps=400)
    slow, _ = gdc.minimize(gdc.gd(0.1), gdc.START, X, y, steps=400)
    assert np.argmax(distance(fast, theta_star) < 1e-6) < 300
    assert distance(slow, theta_star)[-1] > 1e-6


def test_exercise_centring_makes_the_limit_1_and_descent_fast(quick_problem):
    X, y, _ = quick_problem
    x = X[:, 0] - tf.reduce_mean(X[:, 0])
    assert float(tf.math.reduce_variance(x)) < 1
    Xc = tf.stack([x, X[:, 1]], axis=1)
    assert gdc.stable_lr_limit(Xc) == pytest.approx(1.0, rel=1e-12)
    path, _ = gdc.minimize(gdc.gd(0.5), gdc.START, Xc, y, steps=9)
    assert distance(path, gdc.closed_form(Xc, y).numpy())[-1] < 1e-6


def test_exercise_adam_with_a_small_rate_is_still_far_away(quick_problem):
    X, y, theta_star = quick_problem
    path, _ = gdc.minimize(gdc.adam(0.01), gdc.START, X, y, steps=400)
    assert distance(path, theta_star)[-1] > 1
