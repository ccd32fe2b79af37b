"""`python -m tfguide bench`: how fast is tfguide, next to plain Keras, on this machine?

In one run, on one machine, it measures:

1. the matmul peak (float32; float16 and bfloat16 too on a GPU) in GFLOP/s;
2. for each chapter's main model, training throughput (samples/s, the median of
   `--repeat` timed epochs after a warm-up epoch) through tfguide's own path
   (`datasets.pipeline` + `fit`, configured by `runtime.configure`) and through
   a plain reference, the same model trained with a bare `model.fit` on
   in-memory arrays as a newcomer would write it from the keras.io examples;
   epochs of the two alternate, so both see the same machine load;
3. model FLOPs per sample, counted analytically from the layers (see
   `forward_flops`), and the model-FLOP utilisation (MFU) of the measured peak;
4. for each chapter that has a race (`race`: the CNN to 97% test
   accuracy, the language model to a validation loss), the time its recipe
   takes to reach the target beside a reference recipe, as a ratio.

What bench times of each chapter is declared beside it, in `tfguide/bench/NAME.py`:
`workload` (the chapter's main model and data) and, optionally, `race`; bench
iterates the registry. The clocks a race needs are in `tfguide/bench/workloads.py`.

It prints a table and writes `bench.json` and `figures/throughput.png` into
`runs/bench/<time>/` (or `--out`).
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

from tfguide import config, console, paths, registry
from tfguide.bench.workloads import Workload


# --- Command line (checked before TensorFlow loads) ----------------------------------
def parse(argv: Sequence[str]) -> argparse.Namespace:
    """Parse and validate the bench flags."""
    p = console.Parser("python -m tfguide bench",
                   "Measure tfguide's training speed beside plain Keras.")
    p.add_argument("--chapters", nargs="+", metavar="NAME", help="chapters to measure "
                   "(default: every chapter)")
    p.add_argument("--device", default="auto", metavar="|".join(config.DEVICES))
    p.add_argument("--precision", default="float32", metavar="|".join(config.PRECISIONS))
    p.add_argument("--jit", default="auto", metavar="|".join(config.JIT_MODES))
    p.add_argument("--repeat", default="5", metavar="N", help="timed epochs per path (default 5)")
    p.add_argument("--quick", action="store_true", help="smaller inputs: a few minutes on 2 cores")
    p.add_argument("--no-race", action="store_true",
                   help="skip the time-to-target races (recipe against reference recipe)")
    p.add_argument("--out", default="runs", metavar="DIR", help="where to write (default runs/)")
    p.add_argument("--seed", default="0", metavar="N")
    args = p.parse_args(list(argv))
    for name in args.chapters or []:
        console.choice("--chapters", name, list(registry.BY_NAME))
    args.chapters = args.chapters or list(registry.BY_NAME)
    console.choice("--device", args.device, config.DEVICES)
    console.choice("--precision", args.precision, config.PRECISIONS)
    console.choice("--jit", args.jit, config.JIT_MODES)
    args.repeat = config.check("--repeat", args.repeat, config.positive_int)
    args.seed = config.check("--seed", args.seed, config.seed)
    args.out = config.output_folder("--out", args.out)
    return args


# --- FLOPs ------------------------------------------------------------------------------
def _size(shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def _op_flops(op) -> float:
    """FLOPs of one graph op (2 per multiply-add) for the ops that carry the arithmetic."""
    kind = op.type
    if kind in ("MatMul", "BatchMatMulV2", "BatchMatMulV3"):
        a = op.inputs[0].shape
        transposed = any(op.get_attr(k) for k in ("transpose_a", "adj_x")
                         if k in op.node_def.attr)
        inner = a[-2] if transposed else a[-1]
        return 2.0 * _size(op.outputs[0].shape) * int(inner)
    if kind in ("Conv2D", "DepthwiseConv2dNative"):
        kh, kw, c_in = op.inputs[1].shape[:3]
        return 2.0 * _size(op.outputs[0].shape) * kh * kw * (c_in if kind == "Conv2D" else 1)
    if kind == "Conv2DBackpropInput":  # a transposed convolution's forward pass
        kh, kw, c_out = op.inputs[1].shape[:3]
        return 2.0 * _size(op.inputs[2].shape) * kh * kw * c_out
    if kind == "Einsum":  # every index of the equation is looped over once
        inputs = op.get_attr("equation").decode().split("->")[0].split(",")
        sizes = {}
        for letters, tensor in zip(inputs, op.inputs):
            sizes.update(zip(letters, tensor.shape))
        return 2.0 * _size(sizes.values())
    return 0.0


def forward_flops(model, input_spec) -> float:
    """Count the FLOPs of one forward pass for one sample.

    The forward pass is traced into a graph and every matrix product,
    convolution and einsum is counted from its shapes (2 FLOPs per
    multiply-add); element-wise ops, pooling and normalisation are left out.
    Recurrent layers run their steps in a loop the trace does not unroll, so
    SimpleRNN/LSTM/GRU are counted from their sizes instead (and their ops in
    the graph are skipped). A training step
    costs about three forward passes (the backward pass computes two products
    per forward product), which is what MFU below assumes.
    """
    import tensorflow as tf
    from keras import layers

    specs = tf.nest.map_structure(lambda s: tf.TensorSpec((1, *s.shape[1:]), s.dtype), input_spec)
    graph = tf.function(lambda x: model(x, training=False)).get_concrete_function(specs).graph
    total, recurrent = 0.0, []
    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, (layers.SimpleRNN, layers.LSTM, layers.GRU)):
            gates = {layers.SimpleRNN: 1, layers.LSTM: 4, layers.GRU: 3}[type(layer)]
            steps, features = layer.input.shape[1], layer.input.shape[-1]
            total += 2.0 * gates * (features + layer.units) * layer.units * steps
            # its ops (graph scopes may carry a _N suffix): counted above, not again below
            recurrent.append(re.compile(rf"(^|/){re.escape(layer.name)}(_\d+)?/"))
    return total + sum(_op_flops(op) for op in graph.get_operations()
                       if not any(scope.search(op.name) for scope in recurrent))


# --- What each chapter lends: tfguide/bench/NAME.py ---------------------------------------
def _declared(name: str, what: str) -> Callable | None:
    """Return `what` (workload or race) from tfguide/bench/NAME.py, or None if it has none."""
    module = f"tfguide.bench.{registry.get(name).name}"
    if importlib.util.find_spec(module) is None:
        return None
    return getattr(importlib.import_module(module), what, None)


def has_race(name: str) -> bool:
    """Whether chapter `name` has a race (its recipe against a reference recipe)."""
    return _declared(name, "race") is not None


def chapter_workload(name: str, quick: bool, seed: int) -> Workload | None:
    """Return chapter `name`'s workload, or None if it has no main model to time."""
    declared = _declared(name, "workload")
    return declared(quick=quick, seed=seed) if declared else None


def chapter_race(name: str, quick: bool, seed: int, build: Callable) -> dict | None:
    """Run chapter `name`'s race (its recipe vs a reference, to a target), if it has one.

    `build` is the run's `Runtime.build`: the race builds both recipes' models with it.
    """
    declared = _declared(name, "race")
    return declared(quick=quick, seed=seed, build=build) if declared else None


# --- Measurements ------------------------------------------------------------------------
def matmul_peak(device: str, dtype: str, n: int = 2048, repeats: int = 10) -> float:
    """Return the best sustained GFLOP/s of an n×n matmul chain on `device`."""
    import tensorflow as tf

    with tf.device(f"/{device}:0"):
        a = tf.random.stateless_normal((n, n), seed=(1, 2), dtype=dtype)
        b = tf.random.stateless_normal((n, n), seed=(3, 4), dtype=dtype)

        @tf.function
        def chain(a, b):
            c = a
            for _ in range(4):
                c = tf.matmul(c, b) * 0.01  # scaled so values stay finite
            return c

        chain(a, b).numpy()  # trace and warm up
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            chain(a, b).numpy()
            times.append(time.perf_counter() - t0)
    return 4 * 2.0 * n**3 / statistics.median(times) / 1e9


def throughput(work: Workload, rt, repeat: int, progress) -> dict:
    """Train the same model through tfguide's path and the reference; return samples/s."""
    import keras
    import tensorflow as tf

    from tfguide import datasets
    from tfguide.results import EpochTimer

    n = len(work.x)
    models, timers = {}, {}
    for path in ("reference", "tfguide"):
        keras.utils.set_random_seed(0)
        models[path] = rt.build(work.build)
        timers[path] = EpochTimer(n)
    pipeline = datasets.pipeline(work.x, work.y, work.batch_size, shuffle=True, seed=0)
    for _ in range(repeat + 1):  # the first round warms up (tracing, caches)
        models["reference"].fit(work.x, work.y, batch_size=work.batch_size, epochs=1,
                                shuffle=True, verbose=0, callbacks=[timers["reference"]])
        models["tfguide"].fit(pipeline, epochs=1, verbose=0,
                              callbacks=[timers["tfguide"]])
        progress.add(1)
    rates = {path: n / statistics.median(t.seconds[1:]) for path, t in timers.items()}
    spec = tf.nest.map_structure(lambda a: tf.TensorSpec(a.shape, a.dtype), work.x)
    return {"reference_samples_s": rates["reference"], "tfguide_samples_s": rates["tfguide"],
            "ratio": rates["tfguide"] / rates["reference"],
            "forward_flops_per_sample": forward_flops(models["tfguide"], spec)}


# --- Report -----------------------------------------------------------------------------
def _race_line(name: str, race: dict) -> list[str]:
    lines = [f"{name}: {race['what']}"]
    for path in ("reference", "tfguide"):
        r = race[path]
        got = (f"{r['seconds']:.1f} s ({r['steps']} steps)" if r["seconds"] is not None
               else f"not reached (final {race['metric']} {r['value']:.3f})")
        lines.append(f"  {path:<10} {got:<28} {r['recipe']}")
    if race.get("ratio") is not None:
        lines.append(f"  tfguide ÷ reference time: {race['ratio']:.2f}")
    return lines


def table(report: dict) -> str:
    """Return the printed table."""
    peak = report["peak_gflops"]["float32"]
    lines = ["\nmatmul peak: " + ", ".join(f"{k} {v:,.0f} GFLOP/s"
                                            for k, v in report["peak_gflops"].items()),
             "", f"{'chapter':<17}{'reference':>12}{'tfguide':>12}{'ratio':>8}"
             f"{'GFLOP/sample':>14}{'MFU':>8}", "-" * 71]
    for name, r in report["chapters"].items():
        if "error" in r:
            lines.append(f"{name:<17}  skipped: {r['error']}")
            continue
        lines.append(f"{name:<17}{r['reference_samples_s']:>12,.0f}{r['tfguide_samples_s']:>12,.0f}"
                     f"{r['ratio']:>8.2f}{r['forward_flops_per_sample'] / 1e9:>14.5f}"
                     f"{r['mfu']:>8.1%}")
    lines.append("(samples/s, median of timed epochs; MFU = 3 × forward FLOPs × samples/s "
                 f"÷ {peak:,.0f} GFLOP/s float32 peak)")
    for name, race in report.get("races", {}).items():
        lines += ["", *_race_line(name, race)]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> dict:
    """Measure everything the flags ask for; write bench.json and the chart."""
    import keras

    from tfguide import plotting, runtime

    cfg = config.Config(chapter="bench", device=args.device, precision=args.precision,
                        jit=args.jit, seed=args.seed, out=Path(args.out))
    rt = runtime.configure(cfg)
    run_dir = paths.make_run_dir(cfg.out, "bench")
    (run_dir / "figures").mkdir()
    works = {name: chapter_workload(name, args.quick, args.seed) for name in args.chapters}
    racing = [] if args.no_race else [
        name for name in args.chapters if has_race(name)]
    timed = [w for w in works.values() if w is not None]
    progress = keras.utils.Progbar(1 + len(timed) * (args.repeat + 1) + len(racing),
                                   unit_name="task")
    dtypes = ["float32"] + (["float16", "bfloat16"] if rt.device == "gpu" else [])
    n = 1024 if args.quick and rt.device == "cpu" else 2048
    peak = {d: matmul_peak(rt.device, d, n=n) for d in dtypes}
    progress.add(1)
    report = {"device": rt.device, "devices": list(rt.devices), "precision": rt.precision,
              "jit": rt.jit, "repeat": args.repeat, "quick": args.quick,
              "machine": _machine(), **runtime.versions(), "peak_gflops": peak, "chapters": {},
              "races": {}}
    for name, work in works.items():
        if work is None:
            report["chapters"][name] = {"error": "no main model to time"}
            continue
        r = throughput(work, rt, args.repeat, progress)
        training_flops = 3 * r["forward_flops_per_sample"] * r["tfguide_samples_s"]
        r["mfu"] = training_flops / (peak["float32"] * 1e9)
        r["batch_size"], r["workload"] = work.batch_size, work.note
        report["chapters"][name] = r
    for name in racing:
        race = chapter_race(name, args.quick, args.seed, rt.build)
        ref, ours = race["reference"]["seconds"], race["tfguide"]["seconds"]
        race["ratio"] = ours / ref if ref and ours else None
        report["races"][name] = race
        progress.add(1)
    (run_dir / "bench.json").write_text(json.dumps(report, indent=2) + "\n")
    ratios = {k: v["ratio"] for k, v in report["chapters"].items() if "ratio" in v}
    written = ["bench.json"]
    if ratios:
        fig = plotting.bar_chart(ratios, ylabel="tfguide ÷ plain model.fit (samples/s)",
                                 title=f"Training throughput on {rt.device} ({rt.precision})",
                                 threshold=1.0)
        fig.savefig(run_dir / "figures" / "throughput.png", dpi=110)
        written.append("figures/throughput.png")
    print(table(report))
    print(f"\nwrote {' and '.join(written)} in {run_dir}")
    return report


def _machine() -> str:
    import os
    import platform

    return f"{platform.machine()}, {os.cpu_count()} logical CPUs, {platform.platform()}"


def main(argv: Sequence[str]) -> None:
    try:
        args = parse(argv)
    except console.UsageError as err:
        console.fail(str(err), 2)
    try:
        config.check_environment()
    except console.SetupError as err:
        console.fail(str(err), 1)
    try:
        from tfguide import runtime  # imports TensorFlow

        run(args)
    except runtime.DeviceError as err:
        console.fail(str(err), 2)
    except paths.PathError as err:
        console.fail(f"--out cannot be used: {err}. Received: --out={args.out}", 2)
    except KeyboardInterrupt:
        print("\nInterrupted.", file=sys.stderr)
        raise SystemExit(130) from None
    except (OSError, RuntimeError) as err:  # TensorFlow wraps a full disk in its own errors
        message = paths.full_disk_message(err, Path(args.out))
        if message is None:
            raise
        console.fail(message, 1)
