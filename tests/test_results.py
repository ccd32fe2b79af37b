"""Run folders, results.json, the summary, TensorBoard logs."""
import json

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
