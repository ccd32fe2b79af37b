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
4. for the CNN, time to a target test accuracy, tfguide's recipe vs the
   keras.io `mnist_convnet` recipe on the same data.

It prints a table and writes `bench.json` and `figures/throughput.png` into
`runs/bench/<time>/` (or `--out`).
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

from tfguide import chapters, config
from tfguide.cli import UsageError, fail

BENCH_CHAPTERS = ("gradient_descent", "backprop", "mlp", "cnn", "rnn", "attention", "vae")


# --- Command line (checked before TensorFlow loads) ----------------------------------
def parse(argv: Sequence[str]) -> argparse.Namespace:
    """Parse and validate the bench flags."""
    from tfguide.cli import _OneLineParser, _check, _choice

    p = _OneLineParser(prog="python -m tfguide bench", allow_abbrev=False,
                       description="Measure tfguide's training speed beside plain Keras.")
    p.add_argument("--chapters", nargs="+", metavar="NAME", help="chapters to measure "
                   "(default: every chapter with a main model)")
    p.add_argument("--device", default="auto", metavar="|".join(config.DEVICES))
    p.add_argument("--precision", default="float32", metavar="|".join(config.PRECISIONS))
    p.add_argument("--jit", default="auto", metavar="|".join(config.JIT_MODES))
    p.add_argument("--repeat", default="5", metavar="N", help="timed epochs per path (default 5)")
    p.add_argument("--quick", action="store_true", help="smaller inputs: a few minutes on 2 cores")
    p.add_argument("--out", default="runs", metavar="DIR", help="where to write (default runs/)")
    p.add_argument("--seed", default="0", metavar="N")
    args = p.parse_args(list(argv))
    available = [c.name for c in chapters.CHAPTERS if c.name in BENCH_CHAPTERS]
    for name in args.chapters or []:
        _choice("--chapters", name, available)
    args.chapters = args.chapters or available
    _choice("--device", args.device, config.DEVICES)
    _choice("--precision", args.precision, config.PRECISIONS)
    _choice("--jit", args.jit, config.JIT_MODES)
    args.repeat = _check("--repeat", args.repeat, config.positive_int)
    args.seed = _check("--seed", args.seed, config.non_negative_int)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out must be a folder, not a file. Received: --out={args.out}")
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


# --- Workloads ------------------------------------------------------------------------
@dataclasses.dataclass
class Workload:
    """One chapter's main model and the arrays to train it on."""

    chapter: str
    build: Callable  # () -> compiled keras.Model (called inside the strategy scope)
    x: object
    y: object  # None for a model that trains on x alone (the VAE)
    batch_size: int
    note: str


def _synthetic_images(shape, n, classes, seed):
    import numpy as np

    rng = np.random.default_rng(seed)
    return (rng.random((n, *shape), dtype=np.float32),
            rng.integers(0, classes, size=n).astype("int32"))


def _compiled(make: Callable, optimizer: Callable, jit: bool, **compile_args) -> Callable:
    """Return a builder: `make()` the model and compile it with a fresh optimizer."""
    def build():
        model = make()
        model.compile(optimizer=optimizer(), jit_compile=jit, **compile_args)
        return model

    return build


def _chapter_workload(name: str, quick: bool, seed: int, jit: bool) -> Workload | None:
    """Return the main-model workload of a chapter, or None if it has none to time."""
    import keras

    module = importlib.import_module(f"tfguide.chapters.{name}")
    if hasattr(module, "bench_workload"):  # a chapter may describe its own main model
        return Workload(name, **module.bench_workload(quick=quick, seed=seed, jit=jit))
    chapter = chapters.get(name)
    adam = lambda: keras.optimizers.Adam(chapter.learning_rate)  # noqa: E731
    classify = dict(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    if name in ("mlp", "cnn", "vae"):  # image models, on MNIST-shaped inputs
        shape = (28, 28, 1)
        x, y = _synthetic_images(shape, 4096 if quick else 16384, 10, seed)
        note = f"build_model({shape}) on {len(x)} random MNIST-shaped images"
        if name == "vae":  # trains on the images alone, with its own train_step
            make = lambda: module.build_model(shape, latent_dim=2, seed=seed)  # noqa: E731
            return Workload(name, _compiled(make, adam, jit), x, None, chapter.batch_size, note)
        make = lambda: module.build_model(shape, 10)  # noqa: E731
        return Workload(name, _compiled(make, adam, jit, **classify), x, y, chapter.batch_size,
                        note)
    if name == "rnn":
        x, y = module.make_memory_task(2048 if quick else 8192, seed)
        make = lambda: module.build_classifier(  # noqa: E731
            "lstm", x.shape[1:], module.N_CLASSES)
        return Workload(name, _compiled(make, adam, jit, **classify), x, y, chapter.batch_size,
                        f"LSTM classifier on {len(x)} memory-task sequences of {x.shape[1]} steps")
    if name == "backprop":  # the chapter's two-layer net as Keras layers, in float32 here
        x, y = module.make_spirals(16384 if quick else 65536, seed)
        make = lambda: module.build_model(2, 64, 2, dtype="float32")  # noqa: E731
        sgd = lambda: keras.optimizers.SGD(0.5, momentum=0.9)  # noqa: E731
        logits = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        return Workload(name, _compiled(make, sgd, jit, loss=logits), x.astype("float32"), y,
                        256, f"2-64-2 network on {len(x)} spiral points")
    if name == "gradient_descent":
        import numpy as np

        rng = np.random.default_rng(seed)
        x = rng.normal(2.0, 1.0, size=(16384 if quick else 65536, 1)).astype("float32")
        y = (2 * x - 1 + rng.normal(0, 0.5, size=x.shape)).astype("float32")
        sgd = lambda: keras.optimizers.SGD(0.01)  # noqa: E731
        return Workload(name, _compiled(module.build_model, sgd, jit, loss="mse"), x, y, 256,
                        f"Dense(1) on {len(x)} points")
    return None


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
        with rt.strategy.scope():
            models[path] = work.build()
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


def time_to_accuracy(rt, target: float, max_epochs: int, seed: int, progress) -> dict:
    """CNN on real digits: tfguide's recipe vs the keras.io mnist_convnet recipe."""
    import keras

    from tfguide import datasets
    from tfguide.chapters import cnn

    data = datasets.load("digits")
    chapter = chapters.get("cnn")
    recipes = {
        # keras.io: categorical cross-entropy on one-hot labels, Adam defaults, batch 128
        "reference": dict(lr=1e-3, batch=128, one_hot=True),
        "tfguide": dict(lr=chapter.learning_rate, batch=chapter.batch_size, one_hot=False),
    }
    out = {}
    for name, r in recipes.items():
        keras.utils.set_random_seed(seed)
        with rt.strategy.scope():
            model = cnn.build_model(data.input_shape, data.num_classes)
            model.compile(optimizer=keras.optimizers.Adam(r["lr"]),
                          loss="categorical_crossentropy" if r["one_hot"]
                          else "sparse_categorical_crossentropy",
                          metrics=["accuracy"], jit_compile=rt.jit)
        y_train, y_test = data.y_train, data.y_test
        if r["one_hot"]:
            y_train = keras.utils.to_categorical(y_train, data.num_classes)
            y_test = keras.utils.to_categorical(y_test, data.num_classes)
            train = dict(x=data.x_train, y=y_train, batch_size=r["batch"], shuffle=True)
        else:
            train = dict(x=datasets.pipeline(data.x_train, y_train, r["batch"], shuffle=True,
                                             seed=seed))
        elapsed, reached = 0.0, None
        for epoch in range(1, max_epochs + 1):
            t0 = time.perf_counter()
            model.fit(**train, epochs=1, verbose=0)
            elapsed += time.perf_counter() - t0
            accuracy = model.evaluate(data.x_test, y_test, verbose=0, return_dict=True)["accuracy"]
            if accuracy >= target:
                reached = epoch
                break
        progress.add(1)
        out[name] = {"epochs": reached, "train_s": elapsed if reached else None,
                     "final_accuracy": float(accuracy)}
    ref, ours = out["reference"]["train_s"], out["tfguide"]["train_s"]
    out["speedup"] = ref / ours if ref and ours else None
    out["target"] = target
    out["data"] = "digits"
    return out


# --- Report -----------------------------------------------------------------------------
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
    tta = report.get("time_to_accuracy")
    if tta:
        lines.append("")
        for name in ("reference", "tfguide"):
            r = tta[name]
            got = (f"{r['epochs']} epochs, {r['train_s']:.1f} s" if r["epochs"]
                   else f"not reached (final {r['final_accuracy']:.3f})")
            lines.append(f"CNN to {tta['target']:.0%} test accuracy on {tta['data']}, "
                         f"{name}: {got}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> dict:
    """Measure everything the flags ask for; write bench.json and the chart."""
    import keras

    from tfguide import plotting, results, runtime

    cfg = config.Config(chapter="bench", device=args.device, precision=args.precision,
                        jit=args.jit, seed=args.seed, out=Path(args.out))
    rt = runtime.configure(cfg)
    run_dir = results.new_run_dir(cfg.out, "bench")
    (run_dir / "figures").mkdir(parents=True)
    works = {}
    for name in args.chapters:
        try:
            works[name] = _chapter_workload(name, args.quick, args.seed, rt.jit)
        except Exception as err:  # a chapter without a usable build_model: report, go on
            works[name] = f"{type(err).__name__}: {err}"
    timed = [w for w in works.values() if isinstance(w, Workload)]
    has_cnn = "cnn" in args.chapters and isinstance(works.get("cnn"), Workload)
    total = 1 + len(timed) * (args.repeat + 1) + (2 if has_cnn else 0)
    progress = keras.utils.Progbar(total, unit_name="task")
    dtypes = ["float32"] + (["float16", "bfloat16"] if rt.device == "gpu" else [])
    n = 1024 if args.quick and rt.device == "cpu" else 2048
    peak = {d: matmul_peak(rt.device, d, n=n) for d in dtypes}
    progress.add(1)
    report = {"device": rt.device, "devices": list(rt.devices), "precision": rt.precision,
              "jit": rt.jit, "repeat": args.repeat, "quick": args.quick,
              "machine": _machine(), **runtime.versions(), "peak_gflops": peak, "chapters": {}}
    for name, work in works.items():
        if not isinstance(work, Workload):
            report["chapters"][name] = {"error": work or "no main model to time"}
            continue
        r = throughput(work, rt, args.repeat, progress)
        training_flops = 3 * r["forward_flops_per_sample"] * r["tfguide_samples_s"]
        r["mfu"] = training_flops / (peak["float32"] * 1e9)
        r["batch_size"], r["workload"] = work.batch_size, work.note
        report["chapters"][name] = r
    if has_cnn:
        target = 0.97
        report["time_to_accuracy"] = time_to_accuracy(rt, target, 30, args.seed, progress)
    (run_dir / "bench.json").write_text(json.dumps(report, indent=2) + "\n")
    ratios = {k: v["ratio"] for k, v in report["chapters"].items() if "ratio" in v}
    if ratios:
        fig = plotting.bar_chart(ratios, ylabel="tfguide ÷ plain model.fit (samples/s)",
                                 title=f"Training throughput on {rt.device} ({rt.precision})",
                                 threshold=1.0)
        fig.savefig(run_dir / "figures" / "throughput.png", dpi=110)
    print(table(report))
    print(f"\nwrote {run_dir}/bench.json and figures/throughput.png")
    return report


def _machine() -> str:
    import os
    import platform

    return f"{platform.machine()}, {os.cpu_count()} logical CPUs, {platform.platform()}"


def main(argv: Sequence[str]) -> None:
    try:
        args = parse(argv)
    except UsageError as err:
        fail(str(err), 2)
    try:
        run(args)
    except KeyboardInterrupt:
        print("\nInterrupted.", file=sys.stderr)
        raise SystemExit(130) from None
