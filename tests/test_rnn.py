"""Recurrent networks: hand-written SimpleRNN and LSTM against Keras, the tasks, the quick run."""
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfguide.chapters import rnn
import tfguide.bench.rnn as rnn_bench
import tfguide.exercises.rnn as rnn_ex


def test_quick_run_reaches_its_thresholds(quick_run):
    metrics, _ = quick_run("rnn")
    assert metrics["rnn_max_abs_err"] <= 1e-5
    assert metrics["lstm_max_abs_err"] <= 1e-5
    assert metrics["lstm_accuracy"] >= 0.9
    assert metrics["simple_rnn_accuracy"] <= metrics["lstm_accuracy"] - 0.3, "gates matter"
    assert metrics["lstm_grad_ratio"] > 100 * metrics["simple_rnn_grad_ratio"], (
        "the LSTM's gradient reaches step 0, the SimpleRNN's fades")
    assert metrics["mse_vs_naive"] <= 0.7
    assert metrics["mse_vs_naive"] == pytest.approx(metrics["lstm_mse"] / metrics["naive_mse"])


def test_quick_run_records_both_tasks_and_the_forecaster_reloads(quick_run):
    _, run_dir = quick_run("rnn")
    results = json.loads((run_dir / "results.json").read_text())
    assert results["data"]["name"] == "sunspots" and results["data"]["source"] == "offline-standin"
    assert results["data"]["test"] == 2008 - rnn.SPLIT_YEAR + 1
    assert results["details"]["memory_task"]["source"] == "synthetic"
    figures = {p.stem for p in (run_dir / "figures").glob("*.png")}
    assert {"gradient_flow", "memory_history", "forecast", "forecast_history"} <= figures
    for name in ("history.csv", "history_simple_rnn.csv", "history_lstm.csv"):
        assert (run_dir / name).read_text().startswith("epoch,")
    model = keras.saving.load_model(run_dir / "model.keras", safe_mode=True)
    assert model.output_shape == (None, 1)


SHAPES = [(1, 1, 1, 1), (3, 5, 2, 4), (2, 9, 6, 3)]  # batch, time, features, units


@pytest.mark.parametrize("kind", ["simple_rnn", "lstm"])
@pytest.mark.parametrize("batch,time,features,units", SHAPES)
@pytest.mark.parametrize("dtype,tol", [(tf.float64, 1e-12), (tf.float32, 1e-5)])
def test_scratch_cells_match_keras(kind, batch, time, features, units, dtype, tol):
    rng = np.random.default_rng(batch * 100 + time)
    x = tf.constant(rng.normal(size=(batch, time, features)), dtype)
    assert rnn.compare_with_keras(kind, x, units, seed=time) <= tol


@pytest.mark.parametrize("kind", ["simple_rnn", "lstm"])
def test_zero_start_state_matches_keras_default(kind):
    x = tf.constant(np.random.default_rng(0).normal(size=(3, 6, 2)), tf.float64)
    layer = (keras.layers.LSTM if kind == "lstm" else keras.layers.SimpleRNN)(4, dtype="float64")
    last_h = layer(x)  # return_sequences=False: only the last h
    weights = [tf.constant(w) for w in layer.get_weights()]
    ours = rnn.lstm(x, *weights) if kind == "lstm" else rnn.simple_rnn(x, *weights)
    np.testing.assert_allclose(ours[1], last_h, atol=1e-12)
    np.testing.assert_allclose(ours[0][:, -1], last_h, atol=1e-12)


def _wrong_lstm_step(x_t, h_prev, c_prev, W, U, b):
    """The gates read in the order i, c, f, o: a plausible, wrong layout."""
    z_i, z_c, z_f, z_o = tf.split(x_t @ W + h_prev @ U + b, 4, axis=-1)
    c = tf.sigmoid(z_f) * c_prev + tf.sigmoid(z_i) * tf.tanh(z_c)
    return tf.sigmoid(z_o) * tf.tanh(c), c


def _wrong_rnn_step(x_t, h_prev, W_xh, W_hh, b):
    """Forgets the recurrent weight's transpose convention: h_prev W_hhᵀ."""
    return tf.tanh(x_t @ W_xh + h_prev @ tf.transpose(W_hh) + b)


@pytest.mark.parametrize("kind,name,wrong", [("lstm", "lstm_step", _wrong_lstm_step),
                                             ("simple_rnn", "rnn_step", _wrong_rnn_step)])
def test_comparison_catches_a_wrong_cell(monkeypatch, kind, name, wrong):
    x = tf.constant(np.random.default_rng(1).normal(size=(3, 5, 2)), tf.float64)
    assert rnn.compare_with_keras(kind, x, units=4) <= 1e-12
    monkeypatch.setattr(rnn, name, wrong)
    assert rnn.compare_with_keras(kind, x, units=4) > 1e-3


def test_comparison_checks_any_unroll_and_a_wrong_shape_is_infinitely_wrong():
    x = tf.constant(np.random.default_rng(2).normal(size=(3, 5, 2)), tf.float64)
    assert rnn.compare_with_keras("simple_rnn", x, 4, unroll=rnn.simple_rnn) <= 1e-12
    assert rnn.compare_with_keras("simple_rnn", x, 4,
                                  unroll=rnn_ex._simple_rnn_time_first) == float("inf")
    assert rnn.max_abs_err((tf.zeros((2, 3)),), (tf.zeros((2, 3)), tf.zeros(2))) == float("inf")


def test_input_gradient_norms_are_per_example_gradients():
    keras.utils.set_random_seed(0)
    x, y = rnn.make_memory_task(5, seed=0, time_steps=6)
    model = rnn.build_classifier("simple_rnn", x.shape[1:], rnn.N_CLASSES, units=3)
    norms = rnn.input_gradient_norms(model, x, y)
    expected = []
    for i in range(len(x)):  # one example at a time, by GradientTape
        xi = tf.constant(x[i:i + 1])
        with tf.GradientTape() as tape:
            tape.watch(xi)
            loss = keras.losses.sparse_categorical_crossentropy(y[i:i + 1], model(xi))[0]
        expected.append(tf.norm(tape.gradient(loss, xi)[0], axis=-1))
    assert norms.shape == (6,)
    np.testing.assert_allclose(norms, np.mean(expected, axis=0), rtol=1e-5)


def test_memory_task_hides_the_label_at_step_zero():
    x, y = rnn.make_memory_task(200, seed=3)
    symbols = x.argmax(-1)  # (n, time)
    assert x.shape == (200, rnn.TIME_STEPS, rnn.N_CLASSES + rnn.N_DISTRACTORS)
    assert np.all(x.sum(-1) == 1), "one-hot"
    assert np.array_equal(symbols[:, 0], y)
    assert np.all(symbols[:, 1:] >= rnn.N_CLASSES), "later steps are distractors only"
    assert set(np.unique(y)) == set(range(rnn.N_CLASSES))
    again, _ = rnn.make_memory_task(200, seed=3)
    assert np.array_equal(x, again), "seeded"


def test_windows_pair_the_past_with_the_next_value():
    series = np.arange(30, dtype=np.float32)
    (x, y), = rnn.make_windows(series, window=4, batch_size=100).as_numpy_iterator()
    assert x.shape == (26, 4, 1) and y.shape == (26,)
    np.testing.assert_array_equal(x[:, :, 0], np.stack([series[i:i + 4] for i in range(26)]))
    np.testing.assert_array_equal(y, series[4:])


def test_lstm_classifier_starts_with_open_forget_gates():
    model = rnn.build_classifier("lstm", (7, 3), 4, units=5)
    b_i, b_f, b_c, b_o = np.split(model.get_layer("rnn").cell.bias.numpy(), 4)
    np.testing.assert_allclose(b_f, rnn.FORGET_BIAS)
    np.testing.assert_allclose(b_i, -rnn.FORGET_BIAS)
    assert np.all(b_c == 0) and np.all(b_o == 0)


def test_fit_evaluate_and_forecast_are_the_keras_calls():
    keras.utils.set_random_seed(1)
    x, y = rnn.make_memory_task(64, seed=1, time_steps=5)
    model = rnn.compile_classifier("lstm", x.shape[1:], 5e-3)
    batches = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    history = rnn.fit_model(model, batches, batches, epochs=2)
    assert set(history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    predicted = model.predict(x, verbose=0).argmax(axis=1)
    assert rnn.evaluate_classifier(model, x, y) == pytest.approx(np.mean(predicted == y))
    forecaster = rnn.compile_model(5e-3)
    windows = np.random.default_rng(1).normal(size=(7, rnn.WINDOW, 1)).astype(np.float32)
    np.testing.assert_allclose(rnn.forecast(forecaster, windows), forecaster(windows)[:, 0],
                               rtol=1e-5, atol=1e-6)


def test_bench_workload_times_the_lstm_classifier():
    work = rnn_bench.workload(quick=True, seed=0)
    assert work.x.shape == (2048, rnn.TIME_STEPS, rnn.N_CLASSES + rnn.N_DISTRACTORS)
    assert work.batch_size == 32
    model = work.build()
    assert model.compiled and isinstance(model.get_layer("rnn"), keras.layers.LSTM)


def test_build_model_forecasts_one_value_per_window():
    model = rnn.build_model((12, 1), units=4)
    assert model(np.zeros((2, 12, 1), np.float32)).shape == (2, 1)


# --- BPTT by hand, the linear baseline, the cell's memory --------------------------------
def test_step_jacobian_is_the_tapes_jacobian():
    rng = np.random.default_rng(4)
    W_xh, W_hh, b = (tf.constant(rng.normal(0, 0.7, s)) for s in ((3, 4), (4, 4), (4,)))
    x_t, h_prev = tf.constant(rng.normal(size=(1, 3))), tf.constant(rng.normal(size=(1, 4)))
    with tf.GradientTape() as tape:
        tape.watch(h_prev)
        h_t = rnn.rnn_step(x_t, h_prev, W_xh, W_hh, b)  # (1, 4)
    theirs = tape.jacobian(h_t, h_prev)[0, :, 0, :]  # (4, 4): ∂h_t[i]/∂h_prev[j]
    np.testing.assert_allclose(rnn.step_jacobian(h_t[0], W_hh), theirs, atol=1e-12)


def test_bptt_toy_product_of_jacobians_is_the_tapes_gradient():
    toy = rnn.bptt_toy(w_hh=0.9, steps=7)
    assert len(toy["factors"]) == 7 and all(0 < f < 0.9 for f in toy["factors"])
    assert toy["chain_rule"] == pytest.approx(toy["tape"], rel=1e-12)
    assert toy["h"][0] == pytest.approx(np.tanh(1.0))


def test_linear_ar_recovers_a_known_recurrence():
    rng = np.random.default_rng(0)
    series = np.zeros(400)
    series[:2] = rng.normal(size=2)
    for t in range(2, 400):  # y_t = 1.5 y_{t-1} - 0.8 y_{t-2} + 0.3 + noise
        series[t] = 1.5 * series[t - 1] - 0.8 * series[t - 2] + 0.3 + 0.01 * rng.normal()
    w, b = rnn.fit_linear_ar(series, window=2)
    np.testing.assert_allclose(w, [-0.8, 1.5], atol=0.02)  # oldest value first
    assert b == pytest.approx(0.3, abs=0.02)


def test_cell_memory_is_the_forget_gate_to_the_power_of_the_steps():
    assert rnn.cell_memory(4.0, 119) == pytest.approx((1 / (1 + np.exp(-4))) ** 119)
    assert rnn.cell_memory(1.0, 119) < 1e-15 < 0.1 < rnn.cell_memory(4.0, 119)
