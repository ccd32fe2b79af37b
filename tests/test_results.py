"""Run folders, results.json, the summary, TensorBoard logs."""
import errno
import json
import logging
import os

import pytest

from tfguide import paths, results, runs
from tfguide.chapters import gradient_descent


def test_run_folders_never_collide(tmp_path):
    made = [paths.make_run_dir(tmp_path, "cnn") for _ in range(5)]  # within one second or two
    assert len(set(made)) == 5 and all(p.is_dir() and p.parent == tmp_path / "cnn" for p in made)


def test_runs_started_at_once_each_get_their_folder(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        made = list(pool.map(lambda _: paths.make_run_dir(tmp_path, "cnn"), range(16)))
    assert len(set(made)) == 16


def test_interrupted_run_keeps_and_describes_its_files(make_cfg):
    cfg = make_cfg("gradient_descent", "--quick")
    with pytest.raises(KeyboardInterrupt):
        with results.Experiment(cfg) as ex:
            ex.log(partial=1.0)
            raise KeyboardInterrupt
    record = json.loads((ex.dir / "results.json").read_text())
    assert record["status"] == "interrupted" and record["metrics"] == {"partial": 1.0}


def test_non_finite_metrics_are_valid_json(make_cfg):
    with results.Experiment(make_cfg("gradient_descent", "--quick")) as ex:
        ex.log(diverged=float("inf"), broken=float("nan"))
    record = json.loads((ex.dir / "results.json").read_text())
    assert record["metrics"] == {"diverged": "inf", "broken": "nan"}
    text = runs.summary(ex.dir)
    assert "diverged" in text and "inf" in text and str(ex.dir) in text


def test_the_summary_counts_many_histories_instead_of_listing_them(make_cfg):
    with results.Experiment(make_cfg("gradient_descent", "--quick")) as ex:
        for seed in range(5):
            ex.write_file(f"history_plain_seed{seed}.csv", b"epoch,loss\n")
        ex.write_file("model.keras", b"")
    files = runs.summary(ex.dir).splitlines()[-1].strip()
    assert files.startswith("model.keras, results.json, 5 history_*.csv, 0 figures"), files


def test_tensorboard_logs_scalars_histograms_and_the_graph(make_cfg):
    from tensorboard.backend.event_processing import event_accumulator

    gradient_descent.run(make_cfg("gradient_descent", "--quick", "--tensorboard",
                                  "--epochs", "20"))
    (train_dir,) = [p for p in make_cfg("gradient_descent").out.rglob("train") if p.is_dir()]
    events = event_accumulator.EventAccumulator(str(train_dir), size_guidance={"tensors": 0})
    events.Reload()
    tags = events.Tags()["tensors"]
    assert "epoch_loss" in tags
    assert any("histogram" in t for t in tags), tags
    (graph_dir,) = [p for p in make_cfg("gradient_descent").out.rglob("graph") if p.is_dir()]
    graph = event_accumulator.EventAccumulator(str(graph_dir))
    graph.Reload()
    assert graph.Tags()["graph"] and "MatMul" in str(graph.Graph())


# --- A full disk (issue 23, class 4) --------------------------------------------------------
@pytest.fixture
def full_disk(monkeypatch):
    """`full_disk()`: from now on a file write stops halfway with ENOSPC, as on a full disk."""
    real = os.fdopen

    class HalfWritten:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            self.f.write(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")

    return lambda: monkeypatch.setattr(paths.os, "fdopen",
                                       lambda fd, *a, **k: HalfWritten(real(fd, *a, **k)))


def test_results_json_is_replaced_whole_or_not_at_all(make_cfg, full_disk):
    with pytest.raises(KeyboardInterrupt):  # leaving on Ctrl-C: that stays the reason given
        with results.Experiment(make_cfg("gradient_descent", "--quick")) as ex:
            ex.log(step=1.0)
            full_disk()
            with pytest.raises(paths.WriteError) as err:
                ex.write_results("ok")
            raise KeyboardInterrupt
    message = str(err.value)
    assert "results.json" in message and "bytes" in message and "the disk is full" in message
    record = json.loads((ex.dir / "results.json").read_text())  # the "running" record, whole
    assert record["status"] == "running"
    assert [p.name for p in ex.dir.iterdir() if p.name.startswith(".")] == [], "no temp files"


def test_a_run_that_ends_well_but_cannot_write_its_record_says_so(make_cfg, full_disk):
    with pytest.raises(paths.WriteError, match="results.json .*the disk is full"):
        with results.Experiment(make_cfg("gradient_descent", "--quick")) as ex:
            full_disk()


@pytest.mark.parametrize("save", [
    lambda ex: ex.save_figure(__import__("matplotlib.figure").figure.Figure(), "loss"),
    lambda ex: ex.save_history({"loss": [1.0, 0.5]}),
])
def test_figures_and_histories_fail_in_one_line_leaving_no_part(make_cfg, full_disk, save):
    ex = results.Experiment(make_cfg("gradient_descent", "--quick"))
    with pytest.raises(paths.WriteError, match=r"could not write .*\((\d|,)+ bytes\): the disk is "
                                               r"full \((\d|,)+ bytes free there\)"):
        with ex:
            full_disk()
            save(ex)
    files = {p.name for p in ex.dir.rglob("*") if p.is_file()}
    assert files == {"results.json"}, "nothing half-written"
    assert json.loads((ex.dir / "results.json").read_text())["status"] == "running"


def test_a_saved_model_is_whole_or_absent(make_cfg, monkeypatch):
    import keras

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    with results.Experiment(make_cfg("gradient_descent", "--quick")) as ex:
        assert ex.save_model(model).is_file()
        (ex.dir / "model.keras").rename(ex.dir / "old.keras")

        def full(self, path, *args, **kwargs):
            open(path, "wb").write(b"PK")  # a zip begun
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(type(model), "save", full)
        with pytest.raises(paths.WriteError, match="model.keras: the disk is full"):
            ex.save_model(model)
        assert not (ex.dir / "model.keras").exists()
        assert [p.name for p in ex.dir.iterdir() if p.name.startswith(".")] == []


def test_a_failed_export_leaves_no_version_folder(tmp_path):
    from tfguide.chapters import deploy

    class Serving:
        def __init__(self, fail):
            self.fail = fail

        def export(self, path, **kwargs):
            (path / "variables").mkdir(parents=True)
            (path / "saved_model.pb.tmp").write_bytes(b"half")
            if self.fail:
                raise OSError(errno.ENOSPC, "No space left on device")
            (path / "saved_model.pb.tmp").rename(path / "saved_model.pb")

    assert deploy.export_savedmodel(Serving(False), tmp_path) == tmp_path / "1"
    with pytest.raises(OSError):
        deploy.export_savedmodel(Serving(True), tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["1"], "no 2/, no partial folder"
    assert (tmp_path / "1" / "saved_model.pb").is_file()
    assert deploy.export_savedmodel(Serving(False), tmp_path) == tmp_path / "2"


def test_tensorflow_warnings_are_hidden_unless_verbose(make_cfg):
    logger = logging.getLogger("tensorflow")
    logger.setLevel(logging.NOTSET)
    with results.Experiment(make_cfg("gradient_descent", "--quick", "-v")):
        assert logger.getEffectiveLevel() <= logging.WARNING
    with results.Experiment(make_cfg("gradient_descent", "--quick")):
        assert logger.getEffectiveLevel() == logging.ERROR, "retracing notes stay hidden"
