"""python -m tfguide bench: flags, FLOP counting, and a small end-to-end run."""
import json
import subprocess
import sys

import keras
import pytest
import tensorflow as tf
from keras import layers

from tfguide import bench


@pytest.mark.parametrize("argv,needle", [
    (["--repeat", "0"], "--repeat must be a positive integer"),
    (["--chapters", "nosuch"], "--chapters must be one of"),
    (["--precision", "half"], "--precision must be one of float32, mixed"),
])
def test_bad_bench_flags_exit_2_before_tensorflow(argv, needle):
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "tfguide", "bench", *argv],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    lines = [ln for ln in result.stderr.splitlines() if not ln.startswith("import time:")]
    assert len(lines) == 1 and needle in lines[0]
    assert "tensorflow" not in result.stderr


def flops(model, shape):
    return bench.forward_flops(model, tf.TensorSpec((None, *shape), tf.float32))


def test_flops_of_dense_and_conv_match_the_formulas():
    inputs = keras.Input((10, 10, 3))
    x = layers.Conv2D(8, 3, padding="valid")(inputs)  # (8, 8, 8)
    x = layers.Conv2DTranspose(4, 2, strides=2)(x)  # (16, 16, 4)
    x = layers.Flatten()(x)
    outputs = layers.Dense(5)(x)
    model = keras.Model(inputs, outputs)
    expected = (2 * 8 * 8 * 8 * 3 * 3 * 3  # conv: every output value is a 3×3×3 dot product
                + 2 * 8 * 8 * 8 * 2 * 2 * 4  # transposed conv: every input spreads over 2×2×4
                + 2 * 16 * 16 * 4 * 5)  # dense
    assert flops(model, (10, 10, 3)) == expected


def test_flops_of_attention_and_lstm_match_the_formulas():
    t, d, heads, key_dim, units = 6, 8, 2, 4, 5
    inputs = keras.Input((t, d))
    attended = layers.MultiHeadAttention(heads, key_dim)(inputs, inputs)
    outputs = layers.LSTM(units)(attended)
    model = keras.Model(inputs, outputs)
    projections = 2 * 4 * t * d * heads * key_dim  # q, k, v and the output projection
    scores = 2 * 2 * t * t * heads * key_dim  # q·kᵀ and weights·v
    lstm = 2 * 4 * (d + units) * units * t
    assert flops(model, (t, d)) == projections + scores + lstm


def test_quick_bench_writes_its_table_and_json(tmp_path, capsys):
    args = bench.parse(["--quick", "--repeat", "1", "--chapters", "gradient_descent",
                        "--out", str(tmp_path)])
    report = bench.run(args)
    (path,) = tmp_path.rglob("bench.json")
    assert json.loads(path.read_text()) == json.loads(json.dumps(report))
    assert (path.parent / "figures" / "throughput.png").is_file()
    row = report["chapters"]["gradient_descent"]
    assert row["reference_samples_s"] > 0 and row["tfguide_samples_s"] > 0
    assert row["ratio"] == pytest.approx(row["tfguide_samples_s"] / row["reference_samples_s"])
    assert report["peak_gflops"]["float32"] > 0
    assert "gradient_descent" in capsys.readouterr().out


def test_bench_iterates_the_registry_and_names_no_chapter():
    import ast
    from pathlib import Path

    from tfguide import registry

    assert bench.parse([]).chapters == list(registry.BY_NAME)
    tree = ast.parse(Path(bench.__file__).read_text(encoding="utf-8"))
    literals = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)}
    assert not literals & set(registry.BY_NAME), "workloads are declared by the chapters"


def test_race_report_gives_both_times_and_their_ratio():
    race = {"what": "a model to 90%", "metric": "accuracy", "target": 0.9, "ratio": 0.5,
            "reference": {"recipe": "plain", "seconds": 10.0, "steps": 20, "value": 0.91},
            "tfguide": {"recipe": "ours", "seconds": 5.0, "steps": 8, "value": 0.92}}
    text = "\n".join(bench._race_line("demo", race))
    assert "10.0 s (20 steps)" in text and "5.0 s (8 steps)" in text and "0.50" in text
    race["tfguide"]["seconds"] = None
    assert "not reached (final accuracy 0.920)" in "\n".join(bench._race_line("demo", race))


def test_a_full_disk_is_one_line(tmp_path, monkeypatch, capsys):
    import errno

    def full(args):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "bench.json"))

    monkeypatch.setattr(bench, "run", full)
    with pytest.raises(SystemExit) as stop:
        bench.main(["--out", str(tmp_path), "--chapters", "mlp"])
    assert stop.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "the disk is full" in err[0] and "bench.json" in err[0]
