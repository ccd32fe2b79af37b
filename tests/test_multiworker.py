"""--strategy multiworker: two local worker processes train as one."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np

WORKER = Path(__file__).with_name("multiworker_worker.py")


def free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def start(out, strategy="one", tf_config=None, *extra):
    env = dict(os.environ)
    env.pop("TF_CONFIG", None)
    if tf_config:
        env["TF_CONFIG"] = json.dumps(tf_config)
    return subprocess.Popen([sys.executable, str(WORKER), strategy, str(out), *extra], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_workers_match_one_worker_with_the_same_global_batch(tmp_path):
    workers = [f"localhost:{p}" for p in free_ports(2)]
    procs = [start(tmp_path / f"worker{i}.npz", "multiworker",
                   {"cluster": {"worker": workers}, "task": {"type": "worker", "index": i}})
             for i in range(2)]
    procs.append(start(tmp_path / "single.npz"))
    procs.append(start(tmp_path / "keras_fit.npz", "one", None, "keras-fit"))
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
    w0, w1, one, fit = (np.load(tmp_path / f"{n}.npz")
                        for n in ("worker0", "worker1", "single", "keras_fit"))
    assert int(w0["replicas"]) == 2 and int(one["replicas"]) == 1
    names = [k for k in one.files if k.startswith("arr_")]
    for name in names:
        np.testing.assert_array_equal(w0[name], w1[name])  # all-reduce: identical weights
        np.testing.assert_allclose(w0[name], one[name], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(one[name], fit[name], rtol=1e-4, atol=1e-5)  # same as fit
    np.testing.assert_allclose(w0["loss"], one["loss"], rtol=1e-4)
    np.testing.assert_allclose(one["loss"], fit["loss"], rtol=1e-4)
    assert one["loss"][-1] < one["loss"][0], "it trains"


def test_a_chapter_trains_on_two_workers_with_its_plain_fit(tmp_path):
    """The chapter's own `model.fit` is routed by Runtime.build: both workers end equal."""
    workers = [f"localhost:{p}" for p in free_ports(2)]
    procs = []
    for i in range(2):
        env = dict(os.environ, TFGUIDE_CONNECT_TIMEOUT="120", TF_CONFIG=json.dumps(
            {"cluster": {"worker": workers}, "task": {"type": "worker", "index": i}}))
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "tfguide.chapters.attention", "--quick", "--epochs", "1",
             "--strategy", "multiworker", "--out", str(tmp_path / f"worker{i}")],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
    records = [json.loads(next((tmp_path / f"worker{i}").rglob("results.json")).read_text())
               for i in range(2)]
    assert all(r["runtime"]["strategy"] == "multiworker" and r["runtime"]["replicas"] == 2
               for r in records)
    assert records[0]["metrics"] == records[1]["metrics"], "one model, trained as one"
    assert records[0]["metrics"]["test_accuracy"] > 0.2, "it learned (chance is 0.1)"
