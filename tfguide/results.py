"""The run folder, results.json and the closing summary.

A chapter's `run(cfg)` wraps its work in an `Experiment`, the run's record:

    with Experiment(cfg) as ex:              # configures the runtime, makes the run folder
        data = ex.load_data()
        model = ex.runtime.build(build_model, data.input_shape, data.num_classes)
        model.fit(..., callbacks=ex.callbacks())
        ex.log(test_accuracy=...)
    return ex.metrics

Training is plain Keras; `Runtime.build` (tfguide/runtime.py) builds the model
in the run's strategy scope. Leaving the block writes `results.json` (also when
the run fails or is interrupted, marked as such), so what was written is kept
and described.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import json
import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import keras

from tfguide import console, datasets, paths, runtime
from tfguide.config import Config


def json_value(value: Any) -> Any:
    """Turn NumPy/TF scalars into JSON values; NaN and inf become strings."""
    if hasattr(value, "numpy"):
        value = value.numpy()
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


class Experiment:
    """One run of a chapter: runtime, run folder, data record, figures, metrics."""

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.metrics: dict[str, float] = {}
        self.data_info: dict[str, Any] = {}
        self.details: dict[str, Any] = {}  # recorded beside the metrics
        self.dir: Path | None = None

    # --- Entering and leaving -----------------------------------------------------
    def __enter__(self) -> "Experiment":
        self._start = time.perf_counter()
        self._created = dt.datetime.now().astimezone().isoformat(timespec="seconds")
        self.dir = Path(self.cfg.run_dir or paths.make_run_dir(self.cfg.out, self.cfg.chapter))
        (self.dir / "figures").mkdir(parents=True, exist_ok=True)
        self.runtime = None
        if not self.cfg.verbose:  # TensorFlow's Python warnings (retracing notes) only with -v
            logging.getLogger("tensorflow").setLevel(logging.ERROR)
        self.write_results("running")  # a run killed outright still leaves its record
        try:
            self.runtime = runtime.configure(self.cfg)  # may wait for other workers
        except BaseException as err:
            self.__exit__(type(err), err, err.__traceback__)
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        status = "ok"
        if exc_type is not None and issubclass(exc_type, KeyboardInterrupt):
            status = "terminated" if issubclass(exc_type, console.Terminated) else "interrupted"
        elif exc_type is not None:
            status = "failed"
        try:
            self.write_results(status, error=None if exc is None else f"{exc_type.__name__}: {exc}")
        except paths.WriteError:
            if exc is None:
                raise
            # The run's own error says more; results.json keeps its last record, whole.

    @property
    def wall_s(self) -> float:
        return time.perf_counter() - self._start

    # --- Data -----------------------------------------------------------------------
    def load_data(self, name: str | None = None) -> datasets.LoadedData:
        """Load `name` (default `cfg.data`) through the shared loaders and record it."""
        data = datasets.load(name or self.cfg.data, self.cfg.data_dir, self.cfg.offline)
        if data.notice:
            print(f"Note: {data.notice}", file=sys.stderr)
        self.data_info = data.info()
        self._check_batch_size(len(data.x_train), data.name)
        return data

    def record_data(self, name: str, source: str, train: int, test: int, **details) -> None:
        """Record data the chapter made itself (a synthetic task, a shipped series)."""
        self.data_info = {"name": name, "requested": self.cfg.data, "source": source,
                          "train": int(train), "test": int(test), **details}
        self._check_batch_size(int(train), name)

    def _check_batch_size(self, n_train: int, name: str) -> None:
        """Refuse a `--batch-size` the data cannot fill, now that its size is known."""
        if self.cfg.batch_size > n_train:
            raise console.UsageError(f"--batch-size must be at most the {n_train:,} training "
                                 f"examples of {name}. Received: --batch-size="
                                 f"{self.cfg.batch_size}")

    # --- Files ----------------------------------------------------------------------
    def callbacks(self, tag: str = "") -> list[keras.callbacks.Callback]:
        """Return the callbacks every `fit` gets: CSV history, TensorBoard when asked.

        Args:
            tag: a name for a second model's files (`history_<tag>.csv`).
        """
        suffix = f"_{tag}" if tag else ""
        cbs: list[keras.callbacks.Callback] = [
            keras.callbacks.CSVLogger(str(self.dir / f"history{suffix}.csv"))]
        if self.cfg.tensorboard:
            log_dir = self.dir / "tensorboard" / (tag or "main")
            cbs += [keras.callbacks.TensorBoard(log_dir=str(log_dir), histogram_freq=1),
                    GraphSummary(log_dir / "graph")]
        return cbs

    def save_history(self, history: Mapping[str, Sequence[float]], tag: str = "") -> Path:
        """Write a custom loop's per-step or per-epoch history as CSV."""
        names, text = list(history), io.StringIO()
        writer = csv.writer(text)
        writer.writerow(["step", *names])
        for i, row in enumerate(zip(*(history[n] for n in names))):
            writer.writerow([i, *(json_value(v) for v in row)])
        return self.write_file(f"history_{tag}.csv" if tag else "history.csv",
                               text.getvalue().encode())

    def save_figure(self, fig, name: str) -> Path:
        """Save a figure as `figures/<name>.png`."""
        png = io.BytesIO()
        fig.savefig(png, dpi=110, format="png")
        return self.write_file(f"figures/{name}.png", png.getvalue())

    def save_model(self, model: keras.Model, name: str = "model.keras") -> Path:
        """Save a Keras model in the native `.keras` format (whole, or not at all)."""
        path = self.dir / name
        tmp = path.with_name(f".{path.stem}-{os.getpid()}.tmp{path.suffix}")
        try:
            model.save(tmp)
            os.replace(tmp, path)
        except OSError as err:
            raise paths.write_error(path, err) from None
        finally:
            tmp.unlink(missing_ok=True)
        return path

    def write_file(self, name: str, data: bytes) -> Path:
        """Write `data` as the run folder's file `name` at once (a new file, then a rename).

        Raises:
            paths.WriteError: it could not be written (a full disk, ...); the old file stays.
        """
        path = self.dir / name
        try:
            paths.replace_file(path, data)
        except OSError as err:
            raise paths.write_error(path, err, len(data)) from None
        return path

    # --- Metrics and results ---------------------------------------------------------
    def log(self, **metrics: float) -> None:
        """Record metrics as plain numbers: counts stay whole, the rest become floats.

        NaN and inf are kept and shown as such.
        """
        for name, value in metrics.items():
            value = json_value(value)
            if isinstance(value, bool) or not isinstance(value, (int, str)):
                value = float(value)
            self.metrics[name] = value

    def write_results(self, status: str = "ok", error: str | None = None) -> Path:
        """Write `results.json` with metrics, config, runtime, data and timing."""
        payload = {
            "chapter": self.cfg.chapter,
            "status": status,
            "metrics": {k: json_value(v) for k, v in self.metrics.items()},
            "config": self.cfg.to_dict() | {"run_dir": str(self.dir)},
            "runtime": self.runtime.to_dict() if self.runtime else {},
            "data": self.data_info,
            "wall_s": round(self.wall_s, 3),
            "created": self._created,
            "files": sorted(str(p.relative_to(self.dir)) for p in self.dir.rglob("*")
                            if p.is_file() and "tensorboard" not in p.parts
                            and not p.name.startswith(".")),  # not a file being written
        }
        if self.details:
            payload["details"] = self.details
        if error:
            payload["error"] = error
        return self.write_file("results.json",
                               (json.dumps(payload, indent=2, allow_nan=False) + "\n").encode())


class BatchAccuracy(keras.callbacks.Callback):
    """Each training batch's own accuracy: Keras logs the epoch's running mean, so the
    batch's value is the change in (mean × batches seen); batches are all of one size."""

    def on_train_begin(self, logs=None):
        self.values = []

    def on_epoch_begin(self, epoch, logs=None):
        self.total = 0.0

    def on_train_batch_end(self, batch, logs=None):
        total = float(logs["accuracy"]) * (batch + 1)
        self.values.append(total - self.total)
        self.total = total


class EpochTimer(keras.callbacks.Callback):
    """Time each epoch's training (not its validation) to report samples per second."""

    def __init__(self, samples: int):
        super().__init__()
        self.samples, self.seconds, self.start = samples, [], None

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_test_begin(self, logs=None):  # validation starts: the epoch's training is done
        if self.start is not None:
            self.seconds.append(time.perf_counter() - self.start)
            self.start = None

    def on_epoch_end(self, epoch, logs=None):  # without validation data, stop here
        self.on_test_begin()

    def samples_per_s(self) -> float:
        """Throughput over all epochs but the first (which also builds the graph)."""
        times = self.seconds[1:] or self.seconds
        return self.samples * len(times) / sum(times)


class GraphSummary(keras.callbacks.Callback):
    """Write the model's forward graph for TensorBoard's Graphs tab.

    Keras 3's own TensorBoard callback does not write graphs yet; this traces
    the model once (a functional or Sequential model, whose inputs are known)
    and writes the resulting TensorFlow graph when training starts.
    """

    def __init__(self, log_dir: Path):
        super().__init__()
        self.log_dir = Path(log_dir)

    def on_train_begin(self, logs=None):
        import tensorflow as tf

        inputs = getattr(self.model, "inputs", None)
        if not inputs:  # a subclassed model: nothing to trace from
            return
        specs = [tf.TensorSpec(x.shape, x.dtype) for x in inputs]
        forward = tf.function(lambda *xs: self.model(list(xs) if len(xs) > 1 else xs[0],
                                                     training=False))
        graph = forward.get_concrete_function(*specs).graph
        with tf.summary.create_file_writer(str(self.log_dir)).as_default():
            tf.summary.graph(graph)
