"""CNN: hand-written conv2d and max-pooling against tf.nn; the Keras CNN on digits."""
import json
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfguide import cli, datasets
from tfguide.chapters import cnn
import tfguide.bench.cnn as cnn_bench
from tests.conftest import LOGICAL_CPUS, USER_DATA_DIR

# (batch, h, w, c_in, kh, kw, c_out, stride): odd and even sizes, non-square kernels,
# stride 1, 2 and 3, which make TensorFlow's 'same' padding uneven (extra at the end).
CONV_CASES = [
    (2, 5, 5, 1, 3, 3, 4, 1),
    (1, 6, 7, 3, 3, 2, 5, 2),
    (3, 8, 8, 2, 5, 5, 3, 2),
    (2, 7, 9, 4, 1, 3, 2, 3),
    (1, 4, 4, 2, 4, 4, 1, 1),
]
POOL_CASES = [  # (batch, h, w, c, size, stride)
    (2, 6, 6, 3, 2, 2),
    (1, 7, 5, 2, 3, 2),
    (2, 8, 9, 1, 3, 1),
    (1, 5, 5, 4, 2, 3),
]
TOLERANCE = {tf.float32: 1e-4, tf.float64: 1e-10}


def random(shape, dtype, seed):
    return tf.constant(np.random.default_rng(seed).normal(size=shape), dtype)


@pytest.mark.parametrize("dtype", [tf.float64, tf.float32])
@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d_matches_tf_nn_values_and_gradients(case, padding, dtype):
    b, h, w, c_in, kh, kw, c_out, stride = case
    x, kernel = random((b, h, w, c_in), dtype, 0), random((kh, kw, c_in, c_out), dtype, 1)
    ours = cnn.conv2d(x, kernel, stride, padding)
    theirs = tf.nn.conv2d(x, kernel, stride, padding.upper())
    assert ours.shape == theirs.shape
    err = cnn.max_abs_err(lambda x, k: cnn.conv2d(x, k, stride, padding),
                          lambda x, k: tf.nn.conv2d(x, k, stride, padding.upper()), x, kernel)
    assert err <= TOLERANCE[dtype]


@pytest.mark.parametrize("dtype", [tf.float64, tf.float32])
@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("case", POOL_CASES)
def test_max_pool2d_matches_tf_nn_values_and_gradients(case, padding, dtype):
    b, h, w, c, size, stride = case
    x = random((b, h, w, c), dtype, 2)  # continuous values: no ties in a window
    assert cnn.max_pool2d(x, size, stride, padding).shape == \
        tf.nn.max_pool2d(x, size, stride, padding.upper()).shape
    err = cnn.max_abs_err(lambda x: cnn.max_pool2d(x, size, stride, padding),
                          lambda x: tf.nn.max_pool2d(x, size, stride, padding.upper()), x)
    assert err <= TOLERANCE[dtype]


@pytest.mark.parametrize("size,k,stride,expected", [
    (5, 3, 1, (1, 1)), (6, 3, 2, (0, 1)), (7, 3, 2, (1, 1)), (9, 4, 2, (1, 2)), (8, 2, 3, (0, 0)),
])
def test_same_padding_puts_the_extra_at_the_end(size, k, stride, expected):
    assert cnn.same_padding(size, k, stride) == expected


def test_check_catches_wrong_implementations(monkeypatch):
    x, kernel = random((2, 6, 6, 2), tf.float64, 3), random((3, 3, 2, 4), tf.float64, 4)
    tf_valid = lambda x, k: tf.nn.conv2d(x, k, 1, "VALID")  # noqa: E731
    flipped = lambda x, k: cnn.conv2d(x, k[::-1, ::-1])  # a true convolution  # noqa: E731
    assert cnn.max_abs_err(flipped, tf_valid, x, kernel) > 0.1
    # 'same' padding with the odd extra row/column at the start: right shape, wrong values
    right = cnn.same_padding
    monkeypatch.setattr(cnn, "same_padding", lambda *args: right(*args)[::-1])
    assert cnn.conv2d(x, kernel, 2, "same").shape == (2, 3, 3, 4)
    assert cnn.max_abs_err(lambda x, k: cnn.conv2d(x, k, 2, "same"),
                           lambda x, k: tf.nn.conv2d(x, k, 2, "SAME"), x, kernel) > 0.1


def test_bad_padding_is_refused():
    with pytest.raises(ValueError, match="padding must be one of valid, same"):
        cnn.conv2d(tf.zeros((1, 4, 4, 1)), tf.zeros((2, 2, 1, 1)), padding="full")


@pytest.mark.parametrize("shape", [(8, 8, 1), (28, 28, 1), (32, 32, 3)])
def test_model_takes_its_input_shape_from_the_data(shape):
    model = cnn.build_model(shape, 10)
    assert model.output_shape == (None, 10)
    assert model.get_layer("pool2").output.shape[1:3] == (shape[0] // 4, shape[1] // 4)


def test_mixed_precision_keeps_float32_outputs():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = cnn.build_model((8, 8, 1), 10)
        probs = model(np.zeros((2, 8, 8, 1), np.float32))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert model.get_layer("conv1").compute_dtype == "float16"
    assert probs.dtype == "float32"


def test_quick_run_reaches_the_thresholds(quick_run):
    metrics, _ = quick_run("cnn")
    assert metrics["test_accuracy"] >= 0.97
    assert metrics["conv_max_abs_err"] <= 1e-4
    assert metrics["pool_max_abs_err"] <= 1e-4
    assert metrics["test_errors"] == round((1 - metrics["test_accuracy"]) * 359)
    assert metrics["train_samples_per_s"] > 0


def test_quick_run_records_the_digits_and_draws_what_the_network_learned(quick_run):
    _, run_dir = quick_run("cnn")
    results = json.loads((run_dir / "results.json").read_text())
    assert results["data"]["name"] == "digits" and results["data"]["shape"] == [8, 8, 1]
    assert results["runtime"]["jit"] is False, "XLA stays off on the CPU"
    figures = {p.stem for p in (run_dir / "figures").glob("*.png")}
    assert {"training_curves", "filters", "feature_maps", "confusion_matrix",
            "misclassified"} <= figures
    assert (run_dir / "history.csv").read_text().startswith("epoch,accuracy,loss")


def test_saved_model_reloads_in_safe_mode_with_the_same_predictions(quick_run):
    metrics, run_dir = quick_run("cnn")
    model = keras.saving.load_model(run_dir / "model.keras", safe_mode=True)
    model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    data = datasets.load("digits")
    loss, accuracy = model.evaluate(data.x_test, data.y_test, batch_size=128, verbose=0)
    assert accuracy == metrics["test_accuracy"]
    assert loss == pytest.approx(metrics["test_loss"], rel=1e-6)


def test_bench_workload_is_the_chapter_model_on_mnist_shaped_images():
    work = cnn_bench.workload(quick=True, seed=0)
    model = work.build()
    assert model.name == "convnet" and model.compiled and model.input_shape == (None, 28, 28, 1)
    assert work.x.shape == (4096, 28, 28, 1) and work.y.shape == (4096,)
    assert work.batch_size == 128
    history = model.fit(work.x[:256], work.y[:256], batch_size=work.batch_size, verbose=0)
    assert np.isfinite(history.history["loss"]).all()


def test_bench_race_times_both_recipes_to_the_same_target():
    built = []

    def build(make, *args):
        built.append(make.__name__)
        return make(*args)

    race = cnn_bench.race(quick=True, seed=0, build=build)
    assert built == ["keras_io", "compile_model"], "every model is built through `build`"
    assert race["metric"] == "test_accuracy" and race["target"] == 0.97
    for recipe in (race["reference"], race["tfguide"]):
        assert (recipe["seconds"] is None) == (recipe["steps"] is None)
        if recipe["steps"] is not None:
            assert recipe["value"] >= 0.97 and recipe["seconds"] > 0 and recipe["steps"] <= 30
    assert race["tfguide"]["steps"] is not None, "the chapter's recipe reaches 97% in 30 epochs"
    assert "1e-3" in race["reference"]["recipe"] and "one-hot" in race["reference"]["recipe"]


@pytest.mark.parametrize("flags,precision,replicas", [
    (["--precision", "mixed"], "mixed_float16", 1),
    pytest.param(["--strategy", "mirrored"], "float32", 2, marks=pytest.mark.skipif(
        not LOGICAL_CPUS, reason="could not split the CPU into two devices")),
])
def test_mixed_precision_and_mirrored_strategy_train(make_cfg, flags, precision, replicas):
    metrics = cnn.run(make_cfg("cnn", "--quick", "--epochs", "3", *flags))
    (path,) = Path(make_cfg("cnn").out).rglob("results.json")
    results = json.loads(path.read_text())
    assert results["status"] == "ok"
    assert results["runtime"]["precision"] == precision
    assert results["runtime"]["replicas"] == replicas
    assert metrics["test_accuracy"] > 0.5, "well above chance (0.1) after 3 epochs"
    assert metrics["conv_max_abs_err"] <= 1e-4


def keras_io_recipe(input_shape, num_classes) -> keras.Model:
    """The keras.io `mnist_convnet` example's model: 'valid' convolutions, as published."""
    return keras.Sequential([
        keras.Input(shape=input_shape),
        keras.layers.Conv2D(32, 3, activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Conv2D(64, 3, activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Flatten(),
        keras.layers.Dropout(0.5),
        keras.layers.Dense(num_classes, activation="softmax"),
    ])


def real_mnist():
    if not USER_DATA_DIR:
        pytest.skip("set TFGUIDE_DATA_DIR to a folder with mnist.npz or the MNIST IDX files")
    data = datasets.load("mnist", Path(USER_DATA_DIR), offline=True)
    if data.source != "data-dir":
        pytest.skip(f"no MNIST files in TFGUIDE_DATA_DIR={USER_DATA_DIR}")
    return data


@pytest.mark.slow
def test_full_run_on_mnist_matches_the_keras_io_recipe(tmp_path):
    """The default full run vs keras.io's recipe (batch 128, Adam 1e-3, one-hot labels with
    categorical cross-entropy, 10% validation split), same data, same number of epochs."""
    data = real_mnist()
    cfg = cli.parse("cnn", ["--data", "mnist", "--data-dir", USER_DATA_DIR,
                            "--out", str(tmp_path), "--device", "cpu"])
    ours = cnn.run(cfg)["test_accuracy"]

    keras.mixed_precision.set_global_policy("float32")
    keras.utils.set_random_seed(cfg.seed)
    reference = keras_io_recipe(data.input_shape, data.num_classes)
    reference.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    one_hot = lambda y: keras.utils.to_categorical(y, data.num_classes)  # noqa: E731
    reference.fit(data.x_train, one_hot(data.y_train), batch_size=128, epochs=cfg.epochs,
                  validation_split=0.1, verbose=0)
    _, theirs = reference.evaluate(data.x_test, one_hot(data.y_test), verbose=0)
    print(f"MNIST, {cfg.epochs} epochs: tfguide {ours:.4f}, keras.io recipe {theirs:.4f}")
    assert ours >= 0.99
    assert ours >= theirs - 0.001, "at least as good, within 10 of 10,000 test images"


@pytest.mark.parametrize("dtype", [tf.float64, tf.float32])
@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("case", POOL_CASES)
def test_avg_pool2d_matches_tf_nn_values_and_gradients(case, padding, dtype):
    b, h, w, c, size, stride = case
    x = random((b, h, w, c), dtype, 5) + 2.0  # mostly positive: a padded zero would show
    assert cnn.avg_pool2d(x, size, stride, padding).shape == \
        tf.nn.avg_pool2d(x, size, stride, padding.upper()).shape
    err = cnn.max_abs_err(lambda x: cnn.avg_pool2d(x, size, stride, padding),
                          lambda x: tf.nn.avg_pool2d(x, size, stride, padding.upper()), x)
    assert err <= TOLERANCE[dtype]


def test_avg_pool_check_catches_padding_counted_in_the_average():
    x = random((1, 5, 5, 1), tf.float64, 6) + 2.0
    wrong = lambda x: tf.nn.avg_pool2d(cnn.pad(x, 2, 2, 2, "same"), 2, 2, "VALID")  # noqa: E731
    assert cnn.max_abs_err(wrong, lambda x: tf.nn.avg_pool2d(x, 2, 2, "SAME"), x) > 0.1


def test_the_worked_example_shows_equivariance():
    worked = cnn.worked_example()
    assert worked["edge"] == [[0, 2, 0, 0]] * 3, "2 where the window straddles the edge"
    assert worked["shifted"] == [[0, 0, 2, 0]] * 3, "the input moved right, so did the map"
    assert worked["pooled"] == [[2, 0]]


@pytest.mark.parametrize("text,rate", [("0", 0.0), ("0.25", 0.25)])
def test_dropout_flag_sets_the_rate(text, rate):
    cfg = cli.parse("cnn", ["--quick", "--dropout", text])
    assert cfg.options["dropout"] == rate
    model = cnn.build_model((8, 8, 1), 10, cfg.options["dropout"])
    assert model.get_layer("dropout").rate == rate


@pytest.mark.parametrize("text", ["1", "-0.1", "half"])
def test_a_bad_dropout_flag_is_one_line(text):
    from tfguide.console import UsageError

    with pytest.raises(UsageError, match="--dropout must be a fraction from 0"):
        cli.parse("cnn", ["--quick", f"--dropout={text}"])


def test_the_sliding_window_diagram_is_drawn_with_the_chapters_padding():
    (name, fig), = cnn.concept_figures().items()
    assert name == "concept_sliding_window"
    titles = [ax.get_title() for ax in fig.axes]
    assert "padding 1 before, 1 after → 3×3 output" in titles[1]
    assert "padding 0 before, 1 after → 3×3 output" in titles[2], "the odd zero goes at the end"
