"""Runtime: strategies, precision policy, seeds, XLA choice."""
import dataclasses
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfguide import runtime
from tests.conftest import LOGICAL_CPUS


def train_tiny(make_cfg, *flags):
    """Configure the runtime and fit a small model; return the runtime and its weights."""
    rt = runtime.configure(make_cfg("gradient_descent", "--seed", "7", *flags))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = (x @ np.array([1.0, -2.0, 0.5, 3.0], "float32"))[:, None]
    with rt.strategy.scope():
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="tanh"),
                                  keras.layers.Dense(1, dtype="float32")])
        model.compile(keras.optimizers.SGD(0.05), "mse", jit_compile=rt.jit)
    history = model.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0)
    return rt, model, history.history["loss"]


@pytest.mark.skipif(not LOGICAL_CPUS, reason="could not split the CPU into two devices")
def test_mirrored_on_two_cpus_matches_one_device(make_cfg):
    rt1, one, loss1 = train_tiny(make_cfg, "--strategy", "one")
    rt2, two, loss2 = train_tiny(make_cfg, "--strategy", "mirrored")
    assert (rt1.replicas, rt2.replicas) == (1, 2) and rt2.strategy_name == "mirrored"
    for w1, w2 in zip(one.get_weights(), two.get_weights()):
        np.testing.assert_allclose(w1, w2, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(loss1, loss2, rtol=1e-5)


def test_mixed_precision_policy_keeps_float32_outputs(make_cfg):
    rt, model, loss = train_tiny(make_cfg, "--precision", "mixed")
    try:
        assert rt.precision == "mixed_float16"
        hidden = model.layers[0]
        assert hidden.compute_dtype == "float16" and hidden.variable_dtype == "float32"
        assert model(np.zeros((2, 4), "float32")).dtype == "float32"
        assert np.isfinite(loss).all()
    finally:
        runtime.configure(make_cfg("gradient_descent"))
    assert keras.mixed_precision.global_policy().name == "float32", "the next run is reset"


def test_two_seeded_runs_give_identical_results(make_cfg):
    _, a, loss_a = train_tiny(make_cfg)
    _, b, loss_b = train_tiny(make_cfg)
    assert loss_a == loss_b
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    _, c, loss_c = train_tiny(make_cfg, "--seed", "8")
    assert loss_c != loss_a


@pytest.mark.parametrize("mode,device,strategy,expected", [
    ("auto", "cpu", "one", False),
    ("auto", "gpu", "one", True),
    ("auto", "gpu", "mirrored", False),
    ("on", "cpu", "one", True),
    ("off", "gpu", "one", False),
])
def test_jit_auto_never_turns_xla_on_for_cpu(mode, device, strategy, expected):
    assert runtime._resolve_jit(mode, device, strategy) is expected


def _compiled(jit):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse", jit_compile=jit)
    return model


@pytest.mark.parametrize("flags,chapter_choice,expected", [
    ((), None, False),  # auto on the CPU: off
    ((), True, True),  # ... unless the chapter measured that XLA pays for this model
    (("--jit", "off"), True, False),  # the user's word wins
    (("--jit", "on"), False, True),
    (("deterministic",), True, False),  # XLA and op determinism do not mix
    (("--strategy", "mirrored"), True, False),  # one device only
])
def test_build_keeps_a_chapters_xla_choice_only_under_auto(make_cfg, flags, chapter_choice,
                                                           expected):
    if "mirrored" in flags and not LOGICAL_CPUS:
        pytest.skip("could not split the CPU into two devices")
    rt = runtime.configure(make_cfg("gradient_descent", *[f for f in flags if f != "deterministic"]))
    if "deterministic" in flags:  # as --deterministic would, without making this process so
        rt = dataclasses.replace(rt, deterministic=True)
    model = rt.build(_compiled, bool(chapter_choice), jit=chapter_choice)
    assert model.jit_compile is expected


def test_runtime_record(make_cfg):
    rt = runtime.configure(make_cfg("gradient_descent", "--device", "cpu"))
    record = rt.to_dict()
    assert record["device"] == "cpu" and record["replicas"] == 1 and record["jit"] is False
    assert {"tensorflow", "keras", "numpy", "python"} <= set(record)
    assert record["keras"].startswith("3.")


def test_gpu_request_without_gpu_is_a_device_error(make_cfg):
    if tf.config.list_physical_devices("GPU"):
        pytest.skip("this machine has a GPU")
    with pytest.raises(runtime.DeviceError, match="sees no GPU"):
        runtime.configure(make_cfg("gradient_descent", "--device", "gpu"))


def test_deterministic_flag_enables_op_determinism(tmp_path):
    code = ("import tfguide, tensorflow as tf\n"
            "from tfguide import cli, runtime\n"
            f"runtime.configure(cli.parse('gradient_descent', ['--deterministic', '--out', "
            f"{str(tmp_path)!r}]))\n"
            "from tensorflow.python.framework import config\n"
            "print(config.is_op_determinism_enabled())\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.stdout.strip() == "True", result.stderr
