"""Backpropagation: activations, losses and hand-written gradients against Keras and TF."""
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfguide import datasets
from tfguide.chapters import backprop as bp
import tfguide.bench.backprop as bp_bench


def test_quick_run_meets_the_thresholds(quick_run):
    metrics, _ = quick_run("backprop")
    assert metrics["activation_max_abs_err"] <= 1e-6
    assert metrics["loss_max_abs_err"] <= 1e-6
    assert metrics["grad_max_rel_err"] <= 1e-6
    assert metrics["test_accuracy"] >= 0.95
    assert metrics["keras_test_accuracy"] >= 0.95
    assert metrics["keras_param_max_abs_err"] <= 1e-6, "Keras fit lands on our weights"
    assert metrics["linear_test_accuracy"] <= 0.8, "a linear model cannot separate spirals"


def test_quick_run_records_the_check_the_loss_and_a_model_that_reloads(quick_run):
    _, run_dir = quick_run("backprop")
    results = json.loads((run_dir / "results.json").read_text())
    assert results["data"]["source"] == "synthetic" and results["data"]["name"] == "spirals"
    assert set(results["details"]["gradient_check"]) == {"W1", "b1", "W2", "b2"}
    figures = {p.stem for p in (run_dir / "figures").glob("*.png")}
    assert {"decision_boundary", "loss_curve", "gradient_check"} <= figures
    losses = np.loadtxt(run_dir / "history_scratch.csv", delimiter=",", skiprows=1)[:, 1]
    assert len(losses) == 1000 and losses[-1] < 0.2 * losses[0]
    model = keras.saving.load_model(run_dir / "model.keras", safe_mode=True)
    X, y = bp.make_spirals(200, seed=5)
    assert np.mean(np.argmax(model(X), axis=1) == y) >= 0.9


# --- Activations and losses against Keras ---------------------------------------------
SHAPES = [(7,), (4, 10), (2, 3, 5)]
ACTIVATION_PAIRS = {
    "sigmoid": (bp.sigmoid, keras.activations.sigmoid),
    "tanh": (bp.tanh, keras.activations.tanh),
    "relu": (bp.relu, keras.activations.relu),
    "softmax": (bp.softmax, keras.activations.softmax),
    "log_softmax": (bp.log_softmax, keras.activations.log_softmax),
}


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", ACTIVATION_PAIRS)
@pytest.mark.parametrize("scale", [1.0, 1000.0])
def test_activation_matches_keras(name, shape, scale):
    ours, theirs = ACTIVATION_PAIRS[name]
    z = tf.constant(np.random.default_rng(len(shape)).normal(0.0, 3.0, shape) * scale)
    np.testing.assert_allclose(ours(z), theirs(z), rtol=1e-12, atol=1e-12)


def test_naive_softmax_overflows_where_the_stable_one_does_not():
    z = tf.constant([[1000.0, 0.0, -5.0], [1.0, 2.0, 3.0]], tf.float64)
    naive, stable = bp.softmax_naive(z).numpy(), bp.softmax(z).numpy()
    assert np.isnan(naive[0]).any(), "e^1000 overflows to inf, and inf / inf is nan"
    np.testing.assert_allclose(stable[0], [1.0, 0.0, 0.0], atol=1e-300)
    np.testing.assert_allclose(naive[1], stable[1], rtol=1e-14)
    assert np.isfinite(bp.log_softmax(z).numpy()).all()


def _loss_cases(rng, n, k):
    y, y_hat = rng.normal(size=(n, k)), rng.normal(size=(n, k))
    y01, p = rng.integers(0, 2, (n, k)).astype(float), rng.uniform(0.01, 0.99, (n, k))
    Y, logits = np.eye(k)[rng.integers(0, k, n)], rng.normal(0.0, 3.0, (n, k))
    P = bp.softmax(tf.constant(logits)).numpy()
    f64 = dict(dtype="float64")
    return {
        "mse": (bp.mse, keras.losses.MeanSquaredError(**f64), y, y_hat),
        "binary": (bp.binary_cross_entropy, keras.losses.BinaryCrossentropy(**f64), y01, p),
        "categorical": (bp.categorical_cross_entropy,
                        keras.losses.CategoricalCrossentropy(**f64), Y, P),
        "from_logits": (bp.cross_entropy_from_logits,
                        keras.losses.CategoricalCrossentropy(from_logits=True, **f64),
                        Y, logits * 300),  # huge logits too: log-softmax stays exact
    }


@pytest.mark.parametrize("n,k", [(1, 2), (16, 3), (50, 10)])
@pytest.mark.parametrize("name", ["mse", "binary", "categorical", "from_logits"])
def test_loss_matches_keras(name, n, k):
    ours, theirs, y, y_hat = _loss_cases(np.random.default_rng(n * k), n, k)[name]
    y, y_hat = tf.constant(y), tf.constant(y_hat)
    np.testing.assert_allclose(float(ours(y, y_hat)), float(theirs(y, y_hat)), rtol=1e-12)


def test_compare_with_keras_reports_tiny_errors():
    act_err, loss_err = bp.compare_with_keras(seed=3)
    assert act_err <= 1e-12 and loss_err <= 1e-12


# --- Gradients: by hand, by tape, by finite differences -------------------------------
def _problem(n, d, h, k, seed=0):
    rng = np.random.default_rng(seed)
    params = bp.init_params(d, h, k, seed)
    params["b1"] = tf.constant(rng.normal(0, 0.1, h))  # non-zero biases catch more mistakes
    params["b2"] = tf.constant(rng.normal(0, 0.1, k))
    X = tf.constant(rng.normal(size=(n, d)))
    Y = tf.constant(np.eye(k)[rng.integers(0, k, n)])
    return params, X, Y


SIZES = [(1, 2, 3, 2), (16, 2, 8, 2), (33, 5, 7, 4)]


@pytest.mark.parametrize("n,d,h,k", SIZES)
@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "relu"])
def test_backward_matches_gradient_tape(activation, n, d, h, k):
    params, X, Y = _problem(n, d, h, k)
    A1, Z2 = bp.forward(params, X, activation)
    ours = bp.backward(params, X, Y, A1, Z2, activation)
    tape = bp.tape_gradients(params, X, Y, activation)
    for name in params:
        np.testing.assert_allclose(ours[name], tape[name], rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "relu"])
def test_backward_matches_finite_differences(activation):
    params, X, Y = _problem(12, 3, 5, 3, seed=1)
    A1, Z2 = bp.forward(params, X, activation)
    errors = bp.gradient_check(bp.backward(params, X, Y, A1, Z2, activation), params, X, Y,
                               activation)
    assert max(e for errs in errors.values() for e in errs.values()) <= 1e-6


def _summed_loss(params, X, Y, A1, Z2):  # 001 §4's loss: a sum, not a mean
    n = float(X.shape[0])
    return {k: n * g for k, g in bp.backward(params, X, Y, A1, Z2).items()}


def _wrong_derivative(params, X, Y, A1, Z2):  # σ'(z) where tanh'(z) belongs
    return bp.backward(params, X, Y, A1, Z2, activation="sigmoid")


def _missing_transpose(params, X, Y, A1, Z2):  # dA1 = dZ2·W2 instead of dZ2·W2ᵀ (h == k)
    g = bp.backward(params, X, Y, A1, Z2)
    dZ2 = (bp.softmax(Z2) - Y) / float(X.shape[0])
    dZ1 = (dZ2 @ params["W2"]) * (1 - A1**2)
    return {**g, "W1": tf.transpose(X) @ dZ1, "b1": tf.reduce_sum(dZ1, axis=0)}


@pytest.mark.parametrize("wrong", [_summed_loss, _wrong_derivative, _missing_transpose])
def test_gradient_check_catches_a_wrong_gradient(wrong):
    params, X, Y = _problem(20, 3, 3, 3, seed=2)
    A1, Z2 = bp.forward(params, X)
    errors = bp.gradient_check(wrong(params, X, Y, A1, Z2), params, X, Y)
    worst_tape = max(e["tape"] for e in errors.values())
    worst_fd = max(e["finite differences"] for e in errors.values())
    assert worst_tape > 1e-2 and worst_fd > 1e-2


def test_relative_error_is_scale_free():
    a = np.array([1.0, -2.0, 3.0])
    assert bp.relative_error(a, a) == 0.0
    assert bp.relative_error(1e-9 * a, 1e-9 * a * (1 + 1e-8)) == pytest.approx(1e-8, rel=1e-3)


# --- Training --------------------------------------------------------------------------
def test_mini_batch_training_follows_keras_fit_step_for_step():
    X, y = bp.make_spirals(200, seed=3)
    Y = np.eye(2)[y]
    params0 = bp.init_params(2, 8, 2, seed=3)
    train = bp.make_train(0.5, batch_size=50)
    velocity = {k: tf.zeros_like(v) for k, v in params0.items()}
    params, _, losses = train(params0, velocity, tf.constant(X), tf.constant(Y),
                              tf.constant(0), tf.constant(30))
    assert losses.shape == (30,) and float(losses[-1]) < float(losses[0])

    model = bp.compile_model(8, 0.5, start=params0)
    batches = datasets.pipeline(X, Y, 50, drop_remainder=True).repeat()
    bp.fit_model(model, batches, steps=30)
    for name, weights in zip(("W1", "b1", "W2", "b2"), model.get_weights()):
        np.testing.assert_allclose(weights, params[name], rtol=1e-9, atol=1e-12)


def test_evaluate_model_reports_what_predict_shows():
    X, y = bp.make_spirals(300, seed=6)
    model = bp.compile_model(8, 0.5, start=bp.init_params(2, 8, 2, seed=6))
    test, logits = bp.evaluate_model(model, X, np.eye(2)[y])
    assert logits.shape == (300, 2)
    assert test["accuracy"] == pytest.approx(np.mean(logits.argmax(axis=1) == y), abs=1e-6)
    Z, Y = tf.constant(logits), tf.constant(np.eye(2)[y])
    assert test["loss"] == pytest.approx(float(bp.cross_entropy_from_logits(Y, Z)), rel=1e-6)


def test_bench_workload_times_the_chapter_network_in_float32():
    work = bp_bench.workload(quick=True, seed=0)
    assert work.x.shape == (16384, 2) and work.y.shape == (16384, 2) and work.batch_size == 256
    model = work.build()
    assert model.compiled and model.get_layer("hidden").units == 64
    assert model.get_layer("hidden").compute_dtype == "float32"


def test_spirals_are_seeded_and_balanced():
    make = bp.make_spirals
    X1, y1 = make(500, seed=4)
    X2, y2 = make(500, seed=4)
    np.testing.assert_array_equal(X1, X2)
    assert X1.shape == (500, 2) and y1.dtype == np.int32 and 200 < y1.sum() < 300
    assert not np.array_equal(make(500, seed=5)[0], X1)


# --- The outcomes the Exercises section states -----------------------------------------------
@pytest.fixture(scope="module")
def spirals():
    X, y = bp.make_spirals(800, seed=42)
    return X, y, tf.constant(X[:400]), tf.constant(np.eye(2)[y[:400]])


def train_net(spirals, activation="tanh", hidden=32, steps=1000):
    """The text's train_net: the quick run's loop; returns (test accuracy, final loss)."""
    X, y, X_train, Y_train = spirals
    params = bp.init_params(2, hidden, 2, seed=42)
    velocity = {k: tf.zeros_like(v) for k, v in params.items()}
    params, _, losses = bp.make_train(0.5, 400, activation)(
        params, velocity, X_train, Y_train, tf.constant(0), tf.constant(steps))
    return bp.accuracy(params, X[400:], y[400:], activation), float(losses[-1])


def test_exercise_the_summed_loss_wrecks_training(spirals, monkeypatch):
    backward = bp.backward
    monkeypatch.setattr(bp, "backward", lambda p, X, Y, A1, Z2, a="tanh": {
        k: tf.cast(tf.shape(X)[0], X.dtype) * g for k, g in backward(p, X, Y, A1, Z2, a).items()})
    accuracy, loss = train_net(spirals)
    assert loss > 100 and accuracy < 0.75


def test_exercise_relu_matches_tanh_and_sigmoid_is_slower(spirals):
    tanh_accuracy, tanh_loss = train_net(spirals, "tanh")
    relu_accuracy, _ = train_net(spirals, "relu")
    _, sigmoid_loss = train_net(spirals, "sigmoid")
    assert abs(relu_accuracy - tanh_accuracy) < 0.02
    assert sigmoid_loss > 10 * tanh_loss


def test_exercise_two_hidden_units_are_too_few_and_eight_enough(spirals):
    assert train_net(spirals, hidden=2)[0] < 0.7
    assert train_net(spirals, hidden=8)[0] > 0.99


def test_exercise_float32_finite_differences_are_too_coarse(spirals):
    _, _, X_train, Y_train = spirals
    X, Y = X_train[:64], Y_train[:64]
    params = bp.init_params(2, 32, 2, seed=42)
    A1, Z2 = bp.forward(params, X)
    grads = bp.backward(params, X, Y, A1, Z2)
    p32 = {k: tf.cast(v, tf.float32) for k, v in params.items()}
    errors = {h: max(bp.relative_error(grads[k], n[k]) for k in grads) for h in
              (1e-6, 1e-4, 1e-3, 1e-2, 0.1) for n in [bp.numerical_gradients(
                  p32, tf.cast(X, tf.float32), tf.cast(Y, tf.float32), delta=h)]}
    assert errors[1e-6] == pytest.approx(1.0, abs=0.01)
    assert min(errors, key=errors.get) == 1e-2 and 1e-4 < errors[1e-2] < 1e-3


def test_one_weight_of_dW2_is_the_sum_over_examples():
    by_sum, by_backward = bp.one_weight_by_hand(*bp.tiny_network())
    assert by_sum == pytest.approx(by_backward, rel=1e-12) and by_sum != 0


def test_the_tape_watches_variables_and_only_watched_constants():
    demo = bp.tape_demo()
    assert demo["dL_dw"] == pytest.approx(demo["by_hand"], rel=1e-12)
    assert demo["dL_dx"] == pytest.approx(demo["dL_dw"] * 0.5 / 2.0, rel=1e-12)  # w/x of dL/dw
    assert demo["unwatched"] == "None"
    assert demo["w_after"] == pytest.approx(0.5 - 0.1 * demo["dL_dw"])


def test_central_differences_err_by_delta_squared_times_the_third_derivative():
    f, third = np.sin, lambda x: -np.cos(x)  # f''' = -cos
    x = 0.7
    for delta in (1e-1, 5e-2):
        estimate = (f(x + delta) - f(x - delta)) / (2 * delta)
        assert estimate - np.cos(x) == pytest.approx(delta**2 * third(x) / 6, rel=1e-2)
