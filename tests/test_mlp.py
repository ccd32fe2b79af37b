"""Feed-forward networks: the MLP by hand against Keras, real data, the shuffled-label control."""
import json
from pathlib import Path

import keras
import numpy as np
import pytest

from tests.conftest import USER_DATA_DIR
from tfguide import cli, datasets
from tfguide.chapters import mlp
import tfguide.bench.mlp as mlp_bench
import tfguide.exercises.mlp as mlp_ex
from tfguide.results import Experiment


def test_quick_run_learns_the_digits_and_the_control_does_not(quick_run):
    metrics, _ = quick_run("mlp")
    assert metrics["test_accuracy"] >= 0.95
    assert metrics["val_accuracy"] >= 0.9
    assert metrics["shuffled_label_accuracy"] <= metrics["chance_accuracy"] + 0.1
    assert metrics["forward_max_abs_err"] <= 1e-5, "our forward pass is the model's"
    assert metrics["scratch_test_loss"] == pytest.approx(metrics["test_loss"], rel=1e-3)
    assert metrics["test_errors"] == round((1 - metrics["test_accuracy"]) * 359)
    assert metrics["loop_vs_fit_max_err"] <= 1e-5, "the GradientTape loop is fit"


def test_quick_run_draws_the_control_and_the_model_reloads(quick_run):
    metrics, run_dir = quick_run("mlp")
    results = json.loads((run_dir / "results.json").read_text())
    assert results["data"]["name"] == "digits" and results["data"]["source"] == "offline-standin"
    figures = {p.stem for p in (run_dir / "figures").glob("*.png")}
    assert {"training_curves", "control", "confusion_matrix", "misclassified"} <= figures
    assert (run_dir / "history.csv").read_text().startswith("epoch,accuracy")
    assert (run_dir / "history_shuffled.csv").is_file()

    data = datasets.load("digits")
    model = keras.saving.load_model(run_dir / "model.keras", safe_mode=True)
    probs = model.predict(data.x_test, verbose=0)
    assert np.mean(probs.argmax(axis=1) == data.y_test) == pytest.approx(
        metrics["test_accuracy"], abs=1e-6)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_validation_is_the_shared_floor_split(tmp_path):
    cfg = cli.parse("mlp", ["--quick", "--out", str(tmp_path)])
    with Experiment(cfg) as ex:
        splits = mlp.prepare_data(cfg, ex)
    n_val = len(splits.data.x_train) // 10
    assert len(splits.x_train) == len(splits.data.x_train) - n_val
    assert sum(len(y) for _, y in splits.val_ds) == n_val


def test_fit_and_evaluate_are_keras_fit_evaluate_predict():
    keras.utils.set_random_seed(0)
    data = datasets.load("digits")
    x, y = data.x_train[:256], data.y_train[:256]
    model = mlp.compile_model(data.input_shape, data.num_classes, 1e-3)
    history = mlp.fit_model(model, mlp.make_batches(x, y, 64), mlp.make_batches(x, y, 64),
                            epochs=2)
    assert set(history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert history["loss"][1] < history["loss"][0]
    test, probs = mlp.evaluate_model(model, x, y)
    assert probs.shape == (256, 10)
    assert test["accuracy"] == pytest.approx(np.mean(probs.argmax(axis=1) == y), abs=1e-6)
    assert test["loss"] == pytest.approx(mlp.sparse_cross_entropy(y, probs), rel=1e-4)


def test_make_batches_is_a_seeded_shuffled_pipeline():
    x = np.arange(10, dtype=np.float32).reshape(10, 1, 1, 1)
    y = np.arange(10, dtype=np.int32)
    ds = mlp.make_batches(x, y, 4, shuffle=True, seed=3)
    epochs = [[b.numpy().tolist() for _, b in ds] for _ in range(2)]
    assert [len(b) for b in epochs[0]] == [4, 4, 2]
    assert sorted(sum(epochs[0], [])) == list(range(10)), "every example once per epoch"
    assert epochs[0] != epochs[1], "a new order each epoch"
    again = mlp.make_batches(x, y, 4, shuffle=True, seed=3)
    assert [b.numpy().tolist() for _, b in again] == epochs[0], "the same seed, the same order"
    assert [b.numpy().tolist() for _, b in mlp.make_batches(x, y, 4)][0] == [0, 1, 2, 3]


@pytest.mark.parametrize("hidden", [(), (16, 8)])
def test_the_gradient_tape_loop_gives_fits_history_and_weights(hidden):
    data = datasets.load("digits")
    x, y = data.x_train[:300], data.y_train[:300]
    ds = mlp.make_batches(x, y, 64)
    twins = []
    for _ in range(2):
        keras.utils.set_random_seed(5)
        twins.append(mlp.compile_model(data.input_shape, data.num_classes, 1e-2, hidden))
    fitted = twins[0].fit(ds, epochs=3, verbose=0).history
    looped = mlp.train_loop(twins[1], keras.optimizers.Adam(1e-2),
                            keras.losses.SparseCategoricalCrossentropy(), ds, epochs=3)
    for key in ("loss", "accuracy"):
        np.testing.assert_allclose(looped[key], fitted[key], rtol=0, atol=1e-6)
    assert looped["loss"][-1] < looped["loss"][0]
    for a, b in zip(twins[0].get_weights(), twins[1].get_weights()):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


def test_the_loop_proof_catches_a_different_optimizer():
    data = datasets.load("digits")
    ds = mlp.make_batches(data.x_train[:128], data.y_train[:128], 64)
    twins = []
    for _ in range(2):
        keras.utils.set_random_seed(5)
        twins.append(mlp.compile_model(data.input_shape, data.num_classes, 1e-2, (8,)))
    twins[0].fit(ds, epochs=1, verbose=0)
    mlp.train_loop(twins[1], keras.optimizers.SGD(1e-2),
                   keras.losses.SparseCategoricalCrossentropy(), ds, epochs=1)
    assert max(np.max(np.abs(a - b)) for a, b in
               zip(twins[0].get_weights(), twins[1].get_weights())) > 1e-3


@pytest.mark.parametrize("text,expected", [("256,128", (256, 128)), ("10", (10,)),
                                           ("32, 16, 8", (32, 16, 8))])
def test_hidden_flag_sets_the_layers(text, expected):
    cfg = cli.parse("mlp", ["--quick", "--hidden", text])
    assert cfg.options["hidden"] == expected
    model = mlp.build_model((8, 8, 1), 10, cfg.options["hidden"])
    assert [l.units for l in model.layers if isinstance(l, keras.layers.Dense)] == \
        [*expected, 10]


@pytest.mark.parametrize("text", ["0", "256,", "a,b", "-3", "1.5"])
def test_a_bad_hidden_flag_is_one_line(text):
    from tfguide.console import UsageError

    with pytest.raises(UsageError, match="--hidden must be positive whole numbers"):
        cli.parse("mlp", ["--quick", f"--hidden={text}"])


def test_the_worked_example_is_the_text_s_arithmetic():
    worked = mlp.worked_example()
    np.testing.assert_allclose(worked["a"], [1.5, 0.0]), "ReLU(0.5 + 1.0, -0.5 + 2.0 - 2.0)"
    np.testing.assert_allclose(worked["z"], [1.5, 0.0, -1.5])
    np.testing.assert_allclose(worked["p"], np.exp([1.5, 0, -1.5]) / np.exp([1.5, 0, -1.5]).sum())
    assert worked["loss"] == pytest.approx(-np.log(worked["p"][0]))


def test_the_network_diagram_reads_the_model_sizes():
    fig = mlp.network_concept((8, 8, 1), (32,), 10)
    assert "64 → 32 → 10" in fig._suptitle.get_text()


def test_bench_workload_times_the_chapter_model():
    work = mlp_bench.workload(quick=True, seed=0)
    assert work.x.shape == (4096, 28, 28, 1) and work.batch_size == 64
    model = work.build()
    assert model.compiled and model.name == "mlp"
    assert model.output_shape == (None, 10)


@pytest.mark.parametrize("input_shape", [(8, 8, 1), (28, 28, 1), (4, 4, 3)])
@pytest.mark.parametrize("hidden", [(), (16,), (32, 8)])
def test_forward_by_hand_matches_the_keras_model(input_shape, hidden):
    keras.utils.set_random_seed(len(hidden))
    model = mlp.build_model(input_shape, 10, hidden=hidden)
    for layer in model.layers:  # non-zero biases, so a bias mistake would show
        if isinstance(layer, keras.layers.Dense):
            kernel, bias = layer.get_weights()
            layer.set_weights([kernel, np.random.default_rng(1).normal(0, 0.1, bias.shape)])
    x = np.random.default_rng(0).uniform(size=(5, *input_shape)).astype(np.float32)
    np.testing.assert_allclose(mlp.mlp_forward(mlp.dense_weights(model), x),
                               model(x, training=False), rtol=5e-4, atol=1e-6)


def test_the_forward_check_catches_a_wrong_flatten_order():
    keras.utils.set_random_seed(0)
    model = mlp.build_model((8, 8, 1), 10)
    x = np.random.default_rng(0).uniform(size=(5, 8, 8, 1)).astype(np.float32)
    swapped = x.transpose(0, 2, 1, 3)  # column-major instead of Flatten's row-major order
    error = np.max(np.abs(mlp.mlp_forward(mlp.dense_weights(model), swapped) - model(x)))
    assert error > 1e-3


def test_softmax_is_stable_where_the_unshifted_form_overflows():
    z = np.array([[1000.0, 0.0, -1000.0], [1.0, 2.0, 3.0]])
    np.testing.assert_allclose(mlp.softmax(z), keras.ops.softmax(z), rtol=0, atol=1e-15)
    np.testing.assert_allclose(mlp.softmax(z)[0], [1.0, 0.0, 0.0])
    assert np.isnan(mlp_ex._softmax_unshifted(z)[0]).any(), "the mistake the hint names"


@pytest.mark.parametrize("n,k", [(1, 2), (20, 10), (64, 3)])
def test_sparse_cross_entropy_matches_keras(n, k):
    rng = np.random.default_rng(n)
    labels = rng.integers(0, k, n)
    logits = rng.normal(0, 2, (n, k))
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    theirs = keras.losses.SparseCategoricalCrossentropy(dtype="float64")(labels, probs)
    assert mlp.sparse_cross_entropy(labels, probs) == pytest.approx(float(theirs), rel=1e-12)


def test_mixed_precision_keeps_the_softmax_in_float32():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = mlp.build_model((8, 8, 1), 10)
        hidden = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
        assert hidden[0].compute_dtype == "float16"
        assert hidden[-1].compute_dtype == "float32"
        assert model(np.zeros((2, 8, 8, 1), np.float32)).dtype == "float32"
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_input_size_comes_from_the_data(tmp_path):
    """MNIST-style 28x28 IDX files (here: the 8x8 digits, enlarged) train the same chapter."""
    digits = datasets.load("digits")
    for split in ("train", "test"):
        images = getattr(digits, f"x_{split}")[..., 0]  # (n, 8, 8) in [0, 1]
        big = np.kron(images, np.ones((3, 3)))  # (n, 24, 24)
        big = np.pad(big, ((0, 0), (2, 2), (2, 2))) * 255  # (n, 28, 28), like MNIST
        datasets.write_idx(tmp_path / datasets.IDX_FILES[f"x_{split}"], big.round())
        datasets.write_idx(tmp_path / datasets.IDX_FILES[f"y_{split}"],
                           getattr(digits, f"y_{split}"))
    cfg = cli.parse("mlp", ["--quick", "--data", "mnist", "--data-dir", str(tmp_path),
                            "--epochs", "3", "--out", str(tmp_path / "runs")])
    metrics = mlp.run(cfg)
    (results,) = (tmp_path / "runs").rglob("results.json")
    info = json.loads(results.read_text())["data"]
    assert info["source"] == "data-dir" and info["shape"] == [28, 28, 1]
    model = keras.saving.load_model(results.parent / "model.keras", safe_mode=True)
    assert model.input_shape == (None, 28, 28, 1)
    assert model.layers[1].kernel.shape[0] == 784
    assert metrics["test_accuracy"] >= 0.8


def _real_mnist() -> Path:
    if not USER_DATA_DIR:
        pytest.skip("set TFGUIDE_DATA_DIR to a folder with mnist.npz or the MNIST IDX files")
    data = datasets.load("mnist", Path(USER_DATA_DIR), offline=True)
    if data.source != "data-dir":
        pytest.skip(f"no MNIST files in TFGUIDE_DATA_DIR={USER_DATA_DIR}")
    return Path(USER_DATA_DIR)


@pytest.mark.slow
def test_full_run_on_mnist(tmp_path):
    data_dir = _real_mnist()
    cfg = cli.parse("mlp", ["--data", "mnist", "--data-dir", str(data_dir),
                            "--out", str(tmp_path)])
    metrics = mlp.run(cfg)
    assert metrics["test_accuracy"] >= 0.97
    assert metrics["shuffled_label_accuracy"] <= 0.2
