"""Deploy: int8 quantisation by hand against TFLite; every artefact gives the model's answers."""
import doctest
import json
import re
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfguide import cli, console, datasets
from tfguide.chapters import deploy

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def quick(quick_run):
    """The quick run (it trains cnn --quick first) and what it deployed."""
    metrics, run_dir = quick_run("deploy")
    results = json.loads((run_dir / "results.json").read_text())
    model_run = Path(results["details"]["model_run"])
    trained = keras.saving.load_model(model_run / "model.keras", safe_mode=True)
    return metrics, run_dir, model_run, trained


@pytest.fixture(scope="module")
def digits_pixels():
    data = datasets.load("digits")
    return deploy.raw_pixels(data.x_test, 16.0), data.y_test  # (359, 8, 8) uint8 in 0..16


# --- From scratch: int8 quantisation ----------------------------------------------------------
def test_round_half_away_rounds_halves_as_tflite_does():
    x = np.array([-2.5, -1.5, -0.5, -0.4, 0.0, 0.4, 0.5, 1.5, 2.5, 126.5])
    np.testing.assert_array_equal(deploy.round_half_away(x),
                                  [-3, -2, -1, 0, 0, 0, 1, 2, 3, 127])


def test_the_texts_quantisation_example_is_what_the_code_prints():
    text = (ROOT / "chapters" / "deploy.md").read_text(encoding="utf-8")
    example = next(block for block in text.split("```") if ">>> q, scale" in block)
    test = doctest.DocTestParser().get_doctest(example, {"np": np, **vars(deploy)},
                                               "deploy.md", "chapters/deploy.md", 0)
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    runner.run(test)
    assert runner.summarize(verbose=False).failed == 0


def test_quantize_weights_is_symmetric_per_channel():
    w = np.random.default_rng(0).normal(size=(3, 3, 2, 5)).astype(np.float32)
    w[..., 1] *= 10  # one channel with much larger weights gets its own, larger scale
    q, scale = deploy.quantize_weights(w, axis=-1)
    assert q.dtype == np.int8 and scale.shape == (5,)
    assert np.all(np.abs(q).reshape(-1, 5).max(axis=0) == 127), "each channel uses the range"
    error = np.abs(deploy.dequantize(q, scale) - w).reshape(-1, 5).max(axis=0)
    assert np.all(error <= scale / 2 + 1e-7), "rounding error is at most half a step"
    assert scale[1] == pytest.approx(10 * scale[0], rel=0.5)


@pytest.mark.parametrize("lo,hi,scale,zero_point", [
    (0.0, 16.0, 16 / 255, -128),  # the digits' raw pixels
    (0.0, 255.0, 1.0, -128),  # MNIST's
    (-1.0, 1.0, 2 / 255, -1),  # -128 + 127.5 = -0.5: TFLite rounds it away from zero
    (2.0, 6.0, 6 / 255, -128),  # zero must stay representable: the range grows to [0, 6]
])
def test_activation_params(lo, hi, scale, zero_point):
    got_scale, got_zero = deploy.activation_params(lo, hi)
    assert got_scale == pytest.approx(scale) and got_zero == zero_point
    q = np.arange(-128, 128)
    assert deploy.dequantize(q, got_scale, got_zero)[q == got_zero] == 0.0


def test_int8_weights_match_the_tflite_flatbuffer(quick):
    _, run_dir, _, trained = quick
    interpreter = deploy.tflite_interpreter((run_dir / "model_int8.tflite").read_bytes())
    assert deploy.int8_weight_mismatches(trained, interpreter) == 0


def test_weight_check_catches_per_tensor_quantisation(quick, monkeypatch):
    _, run_dir, _, trained = quick
    per_channel = deploy.quantize_weights

    def per_tensor(w, axis=-1):  # one scale for the whole kernel: a plausible mistake
        q, scale = per_channel(w.reshape(-1, 1), axis=-1)
        return q.reshape(w.shape), scale

    monkeypatch.setattr(deploy, "quantize_weights", per_tensor)
    interpreter = deploy.tflite_interpreter((run_dir / "model_int8.tflite").read_bytes())
    assert deploy.int8_weight_mismatches(trained, interpreter) > 1000


def test_calibrated_input_ranges_match_activation_params(quick):
    """The int8 model quantises the raw pixels (range 0..16) and the scaled ones (0..1)."""
    _, run_dir, _, _ = quick
    interpreter = deploy.tflite_interpreter((run_dir / "model_int8.tflite").read_bytes())
    interpreter.allocate_tensors()
    found = [t["quantization"] for t in interpreter.get_tensor_details()
             if t["dtype"] == np.int8 and tuple(t["shape"]) == (1, 8, 8)]
    for lo, hi in ((0.0, 16.0), (0.0, 1.0)):
        scale, zero_point = deploy.activation_params(lo, hi)
        assert any(z == zero_point and s == pytest.approx(scale, rel=1e-6) for s, z in found)


# --- The Keras way ----------------------------------------------------------------------------
@pytest.mark.parametrize("shape,max_value", [((8, 8, 1), 16.0), ((6, 6, 3), 255.0)])
def test_serving_model_takes_raw_pixels(shape, max_value):
    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape)
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    trained = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(
        keras.layers.Flatten()(x)))
    serving = deploy.build_serving_model(trained, shape, max_value)
    assert serving.input.dtype == "uint8" and serving.input.shape[1:] == \
        (shape[:2] if shape[2] == 1 else shape)
    raw = np.random.default_rng(1).integers(0, max_value + 1, size=(5, *serving.input.shape[1:]))
    raw = raw.astype(np.uint8)
    ours = serving.predict(raw, verbose=0)["probabilities"]
    theirs = trained.predict(raw.reshape(5, *shape) / np.float32(max_value), verbose=0)
    np.testing.assert_allclose(ours, theirs, atol=1e-6)


def test_export_has_tf_servings_layout_and_named_signature(quick):
    _, run_dir, _, _ = quick
    (version_dir,) = (run_dir / "export").glob("*/*")
    assert version_dir.parent.name == "digits_cnn" and version_dir.name == "1"
    assert (version_dir / "saved_model.pb").is_file() and (version_dir / "variables").is_dir()
    signature = tf.saved_model.load(str(version_dir)).signatures["serving_default"]
    (name, spec), = signature.structured_input_signature[1].items()
    assert name == "pixels" and spec.dtype == tf.uint8 and spec.shape.as_list() == [None, 8, 8]
    assert list(signature.structured_outputs) == ["probabilities"]


def test_next_export_is_the_next_version(tmp_path):
    inputs = keras.Input((2,))
    model = keras.Model(inputs, {"probabilities": keras.layers.Dense(2)(inputs)})
    first = deploy.export_savedmodel(model, tmp_path / "m")
    second = deploy.export_savedmodel(model, tmp_path / "m")
    assert (first.name, second.name) == ("1", "2")


def test_rest_request_decoded_as_tf_serving_does_gives_the_keras_answer(quick, digits_pixels):
    _, run_dir, _, trained = quick
    pixels, _ = digits_pixels
    (version_dir,) = (run_dir / "export").glob("*/*")
    signature = tf.saved_model.load(str(version_dir)).signatures["serving_default"]
    body = deploy.rest_request(pixels[:5])
    assert json.loads(body)["instances"][0] == pixels[0].tolist()
    served = signature(**deploy.decode_rest_request(body, signature))["probabilities"]
    expected = deploy.build_serving_model(trained, (8, 8, 1), 16.0).predict(
        pixels[:5], verbose=0)["probabilities"]
    np.testing.assert_allclose(served.numpy(), expected, atol=1e-6)
    with pytest.raises(ValueError, match="do not fit pixels"):
        deploy.decode_rest_request(deploy.rest_request(pixels[:2, :4]), signature)
    for scaled in (pixels[:2] / 16, pixels[:2].astype(int) * 20):  # in [0, 1]; above 255
        with pytest.raises(ValueError, match="pixels takes uint8 values"):
            deploy.decode_rest_request(deploy.rest_request(scaled), signature)


def test_the_run_writes_a_request_for_curl(quick):
    _, run_dir, _, _ = quick
    request = json.loads((run_dir / "request.json").read_text())
    assert request["signature_name"] == "serving_default"
    assert np.array(request["instances"]).shape == (3, 8, 8)


# --- The run ----------------------------------------------------------------------------------
def test_quick_run_proves_every_artefact(quick):
    metrics, run_dir, model_run, _ = quick
    assert model_run.parent == run_dir.parent.parent / "cnn", "it trained cnn --quick first"
    assert metrics["test_accuracy"] >= 0.97
    assert metrics["preprocessing_max_abs_err"] <= 1e-6
    assert metrics["savedmodel_max_abs_err"] <= 1e-6
    assert metrics["tflite_max_abs_err"] <= 1e-5
    assert abs(metrics["tflite_int8_accuracy"] - metrics["tflite_accuracy"]) <= 0.01
    assert metrics["tflite_int8_bytes"] <= 0.35 * metrics["tflite_bytes"]
    assert metrics["int8_weight_mismatches"] == 0
    assert metrics["predict_agreement"] == 1.0
    for name in deploy.ARTEFACTS:
        assert metrics[f"{name}_ms_per_image"] > 0
    assert metrics["keras_bytes"] > metrics["savedmodel_kb"] * 1000 > metrics["tflite_bytes"]


def test_skews_show_what_a_missing_or_doubled_scaling_does(quick):
    metrics, *_ = quick
    assert metrics["scaled_twice_accuracy"] < 0.5, "near chance: every image looks blank"
    assert metrics["unscaled_confidence"] > metrics["test_confidence"], "overconfident"


def test_quick_run_writes_the_artefacts(quick):
    _, run_dir, model_run, _ = quick
    for name in ("model.tflite", "model_int8.tflite", "request.json", "history.csv"):
        assert (run_dir / name).is_file(), name
    assert (run_dir / "history.csv").read_text() == (model_run / "history.csv").read_text()
    assert len(list((run_dir / "images").glob("*.png"))) == 8
    assert {p.stem for p in (run_dir / "figures").glob("*.png")} == {"artefacts", "files", "skew"}


def test_a_second_run_deploys_the_latest_cnn_run_without_training(quick):
    _, run_dir, model_run, _ = quick
    cfg = cli.parse("deploy", ["--quick", "--out", str(run_dir.parent.parent)])
    assert deploy.find_model_run(cfg) == model_run


@pytest.mark.parametrize("problem,needle", [
    ("empty", "holds no model.keras"), ("a vae run", "is a vae run"),
    ("failed", 'unfinished run (its results.json says "status": "failed"'),
    ("classes", '"data.classes" is not a whole number'), ("deep", "not valid JSON")])
def test_a_folder_that_cannot_be_served_is_refused_with_the_flags(tmp_path, problem, needle):
    """Checked with --from, before TensorFlow and before a run folder is made."""
    folder = tmp_path / "run"
    folder.mkdir()
    record = {"chapter": "vae" if problem == "a vae run" else "cnn",
              "status": "failed" if problem == "failed" else "ok",
              "data": {"name": "digits", "shape": [8, 8, 1],
                       "classes": "ten" if problem == "classes" else 10}}
    if problem != "empty":
        (folder / "results.json").write_text("[" * 100_000 + "]" * 100_000 if problem == "deep"
                                             else json.dumps(record))
        (folder / "model.keras").write_bytes(b"not a zip file")
    with pytest.raises(console.UsageError, match=re.escape(needle)) as err:
        cli.parse("deploy", ["--quick", "--from", str(folder), "--out", str(tmp_path / "o")])
    assert str(err.value).startswith("--from must be a finished cnn or mlp run folder")
    assert not (tmp_path / "o").exists()


def test_a_model_file_that_does_not_load_is_a_usage_error(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "results.json").write_text(json.dumps(
        {"chapter": "cnn", "status": "ok", "data": {"name": "digits", "shape": [8, 8, 1],
                                                     "classes": 10}}))
    (folder / "model.keras").write_bytes(b"not a zip file")
    with pytest.raises(console.UsageError, match="is not a Keras model file"):
        cli.run_chapter("deploy", ["--quick", "--from", str(folder), "--out", str(tmp_path)])


@pytest.mark.parametrize("value,needle", [("nowhere", "this one does not exist"),
                                          ("", "this one is an empty name")])
def test_a_bad_from_exits_2_before_tensorflow_loads(tmp_path, value, needle):
    value = str(tmp_path / value) if value else value
    done = subprocess.run([sys.executable, "-m", "tfguide.chapters.deploy", "--from", value,
                           "--out", str(tmp_path / "out")], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"tfguide: error: --from must be a finished cnn or mlp run folder (e.g. "
        f"runs/cnn/<time>), or latest; {needle}. Received: --from={value}"]
    assert not (tmp_path / "out").exists(), "no run folder"


@pytest.mark.parametrize("flags,needle", [(["--precision", "mixed"], "drop --precision"),
                                          (["--strategy", "multiworker"], "trains nothing")])
def test_training_flags_are_refused(tmp_path, monkeypatch, flags, needle):
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["localhost:1"]},
                                                "task": {"type": "worker", "index": 0}}))
    with pytest.raises(console.UsageError, match=needle):
        cli.parse("deploy", ["--quick", "--out", str(tmp_path), *flags])  # before TensorFlow
    with pytest.raises(console.UsageError, match=needle):
        cli.run_chapter("deploy", ["--quick", "--out", str(tmp_path), *flags])
    assert not (tmp_path / "cnn").exists(), "refused before anything ran"
    assert not (tmp_path / "deploy").exists(), "and no run folder is made"
