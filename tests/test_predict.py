"""`python -m tfguide predict`: arguments checked before TensorFlow, files read as in training."""
import json
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

from tfguide import __main__ as tfguide_main, console
from tfguide import datasets, predict

ROOT = Path(__file__).resolve().parent.parent


def fake_run(folder: Path, chapter: str = "cnn", shape=(8, 8, 1), model=True) -> Path:
    """A run folder with results.json and an untrained classifier for `shape`."""
    folder.mkdir(parents=True, exist_ok=True)
    record = {"chapter": chapter, "status": "ok", "created": "2026-01-01T00:00:00+00:00",
              "data": {"name": "digits", "shape": list(shape), "classes": 10}}
    (folder / "results.json").write_text(json.dumps(record))
    if model:
        keras.utils.set_random_seed(0)
        inputs = keras.Input(shape)
        x = keras.layers.Flatten()(inputs)
        keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x)).save(
            folder / "model.keras")
    return folder


def save_png(path: Path, image: np.ndarray) -> Path:
    """Save (h, w) or (h, w, 3) values in [0, 1] as an 8-bit PNG."""
    Image.fromarray(np.round(255 * image).astype(np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return fake_run(tmp_path_factory.mktemp("predict") / "cnn" / "20260101-000000")


@pytest.fixture(scope="module")
def digits():
    return datasets.load("digits").x_test[:4]  # (4, 8, 8, 1) in [0, 1]


# --- Arguments --------------------------------------------------------------------------
def bad_arguments(tmp: Path, run: Path) -> dict[str, list[str]]:
    (tmp / "notes.png").write_text("not an image")
    png = save_png(tmp / "ok.png", np.random.default_rng(0).random((64, 64)))
    (tmp / "cut.png").write_bytes(png.read_bytes()[:2000])  # a truncated PNG
    (tmp / "empty").mkdir()
    other = fake_run(tmp / "vae_run", chapter="vae")
    return {
        "give at least one image file": [str(run)],
        "is not a folder": [str(tmp / "nowhere"), str(png)],
        "holds no model.keras": [str(tmp / "empty"), str(png)],
        "is a vae run": [str(other), str(png)],
        "does not exist": [str(run), str(png), str(tmp / "missing.png")],
        "is not a file": [str(run), str(tmp)],
        "is not an image Pillow can decode (UnidentifiedImageError)": [str(run), str(tmp / "notes.png")],
        "is not an image Pillow can decode": [str(run), str(tmp / "cut.png")],
    }


def test_bad_arguments_are_refused_before_tensorflow_loads(tmp_path, run_dir):
    cases = bad_arguments(tmp_path, run_dir)
    script = (
        "import json, sys\n"
        "from tfguide import predict\n"
        "out = []\n"
        f"for argv in {json.dumps(list(cases.values()))}:\n"
        "    try:\n"
        "        predict.main(argv)\n"
        "    except SystemExit as exit:\n"
        "        out.append(exit.code)\n"
        "print(json.dumps([out, 'tensorflow' in sys.modules, 'keras' in sys.modules]))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    codes, tf_loaded, keras_loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert codes == [2] * len(cases)
    assert not tf_loaded and not keras_loaded
    lines = [line for line in done.stderr.splitlines() if line.startswith("tfguide: error:")]
    assert len(lines) == len(cases), "one line per refusal"
    for line, needle in zip(lines, cases):
        assert needle in line


@pytest.mark.parametrize("needle", ["does not exist", "is not a file", "holds no model.keras",
                                    "is not an image Pillow can decode"])
def test_each_refusal_names_the_file(tmp_path, run_dir, needle):
    argv = bad_arguments(tmp_path, run_dir)[needle]
    with pytest.raises(console.UsageError, match=needle) as err:
        predict.parse(argv)
    assert any(Path(a).name in str(err.value) for a in argv)


def test_a_model_file_that_does_not_load_is_refused(tmp_path):
    run = fake_run(tmp_path / "run", model=False)
    (run / "model.keras").write_bytes(b"PK\x03\x04 not really a zip")
    png = save_png(tmp_path / "x.png", np.zeros((8, 8)))
    with pytest.raises(SystemExit) as exit:
        predict.main([str(run), str(png)])
    assert exit.value.code == 2


def test_a_model_for_other_images_is_refused(tmp_path):
    run = fake_run(tmp_path / "run", shape=(8, 8, 1))
    record = json.loads((run / "results.json").read_text())
    record["data"]["shape"] = [28, 28, 1]  # results.json says MNIST-sized images
    (run / "results.json").write_text(json.dumps(record))
    with pytest.raises(console.UsageError, match="takes .*8, 8, 1.* but an image classifier"):
        predict.load_model(run, record)


# --- Reading an image as the model saw its training data --------------------------------
def test_border_rule_tells_every_shipped_digit_from_its_negative():
    data = datasets.load("digits")
    images = np.concatenate([data.x_train, data.x_test])[..., 0]  # (1797, 8, 8)
    assert not any(predict.is_dark_on_light(x) for x in images)
    assert all(predict.is_dark_on_light(1 - x) for x in images)


def test_the_middle_instead_of_the_average_misjudges_some_digits_each_way():
    """The text's claim about the equally plausible rule the chapter did not choose."""
    def middle_rule(grey):  # border brighter than the middle half of the image
        h, w = grey.shape
        border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
        return border.mean() > grey[h // 4:h - h // 4, w // 4:w - w // 4].mean()

    data = datasets.load("digits")
    images = np.concatenate([data.x_train, data.x_test])[..., 0]  # (1797, 8, 8)
    assert any(middle_rule(x) for x in images)
    assert not all(middle_rule(1 - x) for x in images)


def test_dark_on_light_files_are_inverted(tmp_path, digits):
    x = digits[0, ..., 0]  # (8, 8) light on dark
    same, inverted = (predict.read_image(save_png(tmp_path / name, image), (8, 8, 1))
                      for name, image in (("light.png", x), ("dark.png", 1 - x)))
    assert not same[1] and inverted[1]
    np.testing.assert_allclose(inverted[0], same[0], atol=1 / 255 + 1e-6)  # ties of 8-bit rounding
    np.testing.assert_allclose(same[0][..., 0], x, atol=0.5 / 255 + 1e-6)  # 8-bit rounding


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "LA", "P", "I;16"])
def test_any_colour_mode_becomes_the_training_greyscale(tmp_path, digits, mode):
    x = digits[1, ..., 0]
    grey = Image.fromarray(np.round(255 * x).astype(np.uint8))
    if mode == "I;16":
        image = Image.fromarray(np.round(257 * 255 * x).astype(np.uint16))  # 16-bit grey
    else:
        image = grey.convert(mode)
    image.save(tmp_path / "img.png")
    got, inverted = predict.read_image(tmp_path / "img.png", (8, 8, 1))
    assert got.shape == (8, 8, 1) and got.dtype == np.float32 and not inverted
    np.testing.assert_allclose(got[..., 0], x, atol=1 / 255)


def test_transparent_background_is_laid_on_white(tmp_path):
    rgba = np.zeros((40, 40, 4), np.uint8)  # fully transparent black
    rgba[10:30, 18:22] = (0, 0, 0, 255)  # an opaque black bar: a "1"
    Image.fromarray(rgba, "RGBA").save(tmp_path / "one.png")
    got, inverted = predict.read_image(tmp_path / "one.png", (8, 8, 1), "digits")
    assert inverted, "black ink on (transparent, hence white) paper"
    assert got[..., 0].max() > 0.5 and got[0, 0, 0] == 0.0


def test_a_large_drawing_is_cropped_to_its_ink_and_shrunk_exactly(tmp_path):
    x = np.zeros((8, 8), np.float32)  # ink touching all four borders, like a shipped digit
    x[:, 2], x[:, 5], x[0, :], x[7, :], x[3:5, 3:5] = 1.0, 0.3, 0.8, 0.6, 0.2
    x = np.round(x * 255) / 255
    canvas = np.zeros((160, 200), np.float32)  # the same drawing, 10x larger, off-centre
    canvas[30:110, 70:150] = np.kron(x, np.ones((10, 10), np.float32))
    got, _ = predict.read_image(save_png(tmp_path / "big.png", canvas), (8, 8, 1), "digits")
    np.testing.assert_allclose(got[..., 0], x, atol=1e-6)


def test_centre_ink_pads_to_a_centred_square_with_a_margin():
    grey = np.zeros((50, 60), np.float32)
    grey[5:25, 40:50] = 1.0  # a 20x10 stroke, top right
    square = predict.centre_ink(grey, margin=0.2)  # MNIST: 20 px of ink in 28
    assert square.shape == (28, 28)
    ys, xs = np.nonzero(square)
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (4, 23, 9, 18)


def test_colour_models_keep_rgb(tmp_path):
    rgb = np.random.default_rng(0).random((6, 6, 3))
    got, inverted = predict.read_image(save_png(tmp_path / "c.png", rgb), (6, 6, 3))
    assert got.shape == (6, 6, 3) and not inverted
    np.testing.assert_allclose(got, rgb, atol=0.5 / 255 + 1e-6)


def test_jpeg_is_read_by_content_not_by_name(tmp_path, digits):
    path = tmp_path / "photo.png"  # a JPEG with the wrong extension
    Image.fromarray(np.round(255 * digits[2, ..., 0]).astype(np.uint8)).save(path, "JPEG",
                                                                              quality=95)
    predict.check_image(path)
    got, _ = predict.read_image(path, (8, 8, 1))
    assert np.abs(got[..., 0] - digits[2, ..., 0]).mean() < 0.05


# --- The command ------------------------------------------------------------------------
def test_predict_prints_the_top_three_of_each_image(tmp_path, run_dir, digits, capsys):
    paths = [save_png(tmp_path / f"d{i}.png", x[..., 0]) for i, x in enumerate(digits[:2])]
    tfguide_main.main(["predict", str(run_dir), *map(str, paths)])
    lines = capsys.readouterr().out.strip().splitlines()
    assert "cnn model trained on digits (8x8, greyscale)" in lines[0]
    model = keras.saving.load_model(run_dir / "model.keras", safe_mode=True)
    for path, line in zip(paths, lines[1:]):
        probs = model.predict(predict.read_image(path, (8, 8, 1))[0][None], verbose=0)[0]
        expected = ", ".join(f"{c} {p:.1%}" for c, p in predict.top_k(probs, datasets.DIGIT_CLASSES))
        assert line == f"{path}: {expected}"
    assert len(lines) == 3


def test_predict_on_a_digit_drawn_with_matplotlib(tmp_path, run_dir, capsys):
    fig = Figure(figsize=(2, 2), dpi=100)  # black "7" on white, as a new user would draw it
    fig.text(0.5, 0.5, "7", fontsize=110, ha="center", va="center")
    fig.savefig(tmp_path / "seven.png")
    predict.main([str(run_dir), str(tmp_path / "seven.png")])
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.endswith("(inverted: dark on light)") and line.count("%") == 3


def test_latest_model_run_skips_failed_and_modelless_runs(tmp_path):
    assert predict.latest_model_run(tmp_path) is None
    runs = {name: fake_run(tmp_path / "cnn" / name, model=False)
            for name in ("20260101-000000", "20260102-000000", "20260103-000000")}
    for day, name in enumerate(runs, 1):
        record = json.loads((runs[name] / "results.json").read_text())
        record["created"] = f"2026-01-0{day}T00:00:00+00:00"
        (runs[name] / "results.json").write_text(json.dumps(record))
    (runs["20260101-000000"] / "model.keras").write_bytes(b"")
    assert predict.latest_model_run(tmp_path) is None, "the newest finished run has no model"
    (runs["20260103-000000"] / "model.keras").write_bytes(b"")
    record = json.loads((runs["20260103-000000"] / "results.json").read_text())
    (runs["20260103-000000"] / "results.json").write_text(json.dumps(record | {"status": "failed"}))
    (runs["20260102-000000"] / "model.keras").write_bytes(b"")
    assert predict.latest_model_run(tmp_path) == runs["20260102-000000"]
