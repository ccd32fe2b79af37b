"""Devices, precision, XLA, seeds and the tf.distribute strategy for one run.

`configure(cfg)` is called once at the start of a run. It resets the global
state a previous run in the same process may have left (dtype policy, Keras
session), applies the run's choices and returns a `Runtime` that says what it
chose; build models and optimizers inside `runtime.strategy.scope()`.
"""
from __future__ import annotations

import dataclasses
import os
import platform
import sys
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from tfguide.config import Config, cluster_addresses

GPU_HINT = ("install GPU support with `pip install -e \".[gpu]\"` (Linux with an NVIDIA driver) "
            "and check `nvidia-smi`, or run with --device cpu")


class DeviceError(RuntimeError):
    """The requested device or strategy is not available on this machine."""


@dataclasses.dataclass(frozen=True)
class Runtime:
    """What `configure` chose for this run."""

    strategy: tf.distribute.Strategy
    strategy_name: str  # "one", "mirrored" or "multiworker"
    device: str  # "cpu" or "gpu"
    devices: tuple[str, ...]  # the devices the strategy computes on
    precision: str  # the Keras dtype policy: "float32" or "mixed_float16"
    jit_mode: str  # what --jit asked: "auto" lets a chapter keep XLA where it measured a gain
    deterministic: bool
    seed: int

    @property
    def replicas(self) -> int:
        return self.strategy.num_replicas_in_sync

    @property
    def jit(self) -> bool:
        """The run's XLA choice: pass as `jit_compile=` to compile() / tf.function."""
        return _resolve_jit(self.jit_mode, self.device, self.strategy_name)

    def build(self, make: Callable[..., keras.Model], *args, jit: bool | None = None,
              **kwargs) -> keras.Model:
        """Build and compile a model the way this run asks, and return it.

        Calls `make(*args, **kwargs)`, a chapter's function that builds and
        compiles a model, inside the strategy's scope; applies the run's XLA
        choice (`--jit`); and under `--strategy multiworker` routes the model's
        `fit`, `evaluate` and `predict` through `tfguide.distributed`, so the
        chapter calls them as plain Keras whatever the strategy.

        Args:
            jit: the chapter's own XLA choice for this model, where it measured
                one; `--jit auto` keeps it on a single device without op
                determinism, and `--jit on|off` overrides it. None: the run's choice.
        """
        with self.strategy.scope():
            model = make(*args, **kwargs)
        if getattr(model, "compiled", False):
            model.jit_compile = self.jit if jit is None or not self.chapter_may_choose_jit else jit
        if self.strategy_name == "multiworker":
            from tfguide import distributed

            distributed.route(model, self.strategy)
        return model

    @property
    def chapter_may_choose_jit(self) -> bool:
        """Whether a chapter's measured XLA choice stands: --jit auto, one device, no determinism."""
        return self.jit_mode == "auto" and self.strategy_name == "one" and not self.deterministic

    def to_dict(self) -> dict:
        """Return what results.json records about the runtime."""
        return {
            "device": self.device,
            "devices": list(self.devices),
            "precision": self.precision,
            "jit": self.jit,
            "jit_mode": self.jit_mode,
            "strategy": self.strategy_name,
            "replicas": self.replicas,
            "deterministic": self.deterministic,
            "seed": self.seed,
            **versions(),
        }


def versions() -> dict:
    """Return the versions of the libraries a result depends on."""
    return {
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def use_logical_cpus(n: int) -> bool:
    """Split the CPU into `n` logical devices (for mirrored-strategy tests).

    Only possible before TensorFlow initialises its devices; returns whether
    the machine now has at least `n` logical CPUs.
    """
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(n)])
    except RuntimeError:  # devices already initialised
        pass
    return len(tf.config.list_logical_devices("CPU")) >= n


def _pick_device(requested: str) -> str:
    gpus = tf.config.list_physical_devices("GPU")
    if requested == "gpu" and not gpus:
        raise DeviceError(f"--device gpu was requested but TensorFlow sees no GPU: {GPU_HINT}.")
    device = requested if requested != "auto" else ("gpu" if gpus else "cpu")
    try:
        if device == "cpu" and gpus:
            tf.config.set_visible_devices([], "GPU")
        for gpu in gpus if device == "gpu" else ():
            tf.config.experimental.set_memory_growth(gpu, True)
    except RuntimeError:  # already initialised by an earlier run in this process
        pass
    return device


def _make_strategy(name: str, device: str) -> tuple[str, tf.distribute.Strategy]:
    gpus = tf.config.list_logical_devices("GPU") if device == "gpu" else []
    if name == "auto":
        name = "mirrored" if len(gpus) > 1 else "one"
    if name == "multiworker":
        from tfguide import distributed

        try:
            addresses, own = cluster_addresses(os.environ.get("TF_CONFIG", ""))
        except ValueError as err:
            raise DeviceError(f"--strategy multiworker needs a valid TF_CONFIG ({err}); see "
                              f"README, 'Several machines'.") from None
        distributed.wait_for_workers(addresses, own, distributed.connect_timeout(),
                                     say=lambda line: print(line, file=sys.stderr, flush=True))
        return name, tf.distribute.MultiWorkerMirroredStrategy()
    if name == "mirrored":
        if gpus:  # all-reduce across GPUs (NCCL where available)
            return name, tf.distribute.MirroredStrategy(devices=[d.name for d in gpus])
        # CPU devices: reduce through one device; TensorFlow's default collective ops key
        # their groups per process and clash when a process builds a second strategy.
        cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
        return name, tf.distribute.MirroredStrategy(
            devices=cpus, cross_device_ops=tf.distribute.ReductionToOneDevice())
    visible_gpus = tf.config.list_logical_devices("GPU")
    if device == "cpu" and visible_gpus:  # GPUs could not be hidden: pin to the CPU
        return name, tf.distribute.OneDeviceStrategy("/cpu:0")
    return name, tf.distribute.get_strategy()


def _resolve_jit(mode: str, device: str, strategy_name: str) -> bool:
    if mode == "auto":  # XLA pays off on GPUs; on CPU it is often slower (build's jit= can
        # keep it for a model whose chapter measured a gain)
        return device == "gpu" and strategy_name == "one"
    return mode == "on"


def configure(cfg: Config) -> Runtime:
    """Apply the run's device, precision, XLA, seed and strategy choices.

    Raises:
        DeviceError: a GPU was requested and none is visible, or TF_CONFIG is missing.
    """
    device = _pick_device(cfg.device)
    strategy_name, strategy = _make_strategy(cfg.strategy, device)
    keras.backend.clear_session()
    policy = "mixed_float16" if cfg.precision == "mixed" else "float32"
    keras.mixed_precision.set_global_policy(policy)
    keras.utils.set_random_seed(cfg.seed)
    if cfg.deterministic:
        tf.config.experimental.enable_op_determinism()
    try:
        devices = tuple(strategy.extended.worker_devices)
    except RuntimeError:  # the default strategy: TensorFlow's default device
        devices = (tf.config.list_logical_devices(device.upper())[0].name,)
    return Runtime(
        strategy=strategy,
        strategy_name=strategy_name,
        device=device,
        devices=devices,
        precision=policy,
        jit_mode=cfg.jit,
        deterministic=cfg.deterministic,
        seed=cfg.seed,
    )
