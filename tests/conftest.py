"""Shared test set-up: headless, offline, two logical CPUs, a private Keras cache."""
import ipaddress
import os
import socket
import tempfile

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ["KERAS_HOME"] = tempfile.mkdtemp(prefix="tfguide-keras-home-")  # no user cache
# The user's data folder, kept for `slow` tests on real data; tests otherwise never see it.
USER_DATA_DIR = os.environ.pop("TFGUIDE_DATA_DIR", None)
os.environ.pop("TF_CONFIG", None)

import pytest  # noqa: E402

import tfguide  # noqa: E402,F401  (quiets TensorFlow before it loads)
from tfguide import cli, runtime  # noqa: E402

# Two logical CPU devices, so mirrored-strategy tests have two replicas. This must
# happen before TensorFlow initialises its devices, hence here, at collection time.
LOGICAL_CPUS = runtime.use_logical_cpus(2)


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", help="also run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


_real_connect = socket.socket.connect


def _local_only(sock, address):
    host = address[0] if isinstance(address, tuple) else address
    try:
        local = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        local = False
    if not local and sock.family in (socket.AF_INET, socket.AF_INET6):
        raise OSError(f"tests never use the network (tried to reach {address})")
    return _real_connect(sock, address)


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Fail fast on any connection that leaves the machine."""
    monkeypatch.setattr(socket.socket, "connect", _local_only)


@pytest.fixture(scope="session")
def quick_run(tmp_path_factory):
    """`quick_run(NAME, *flags) -> (metrics, run folder)`: each chapter's --quick run, once.

    The run happens the first time a test asks for it and is shared by every
    test of the session that asks for the same chapter and flags.
    """
    done: dict[tuple[str, ...], tuple[dict, object]] = {}

    def run(name: str, *flags: str):
        key = (name, *flags)
        if key not in done:
            out = tmp_path_factory.mktemp(name)
            done[key] = cli.run_chapter(name, ["--quick", "--out", str(out), *flags])
        return done[key]

    return run


def exit_status(main, *args: str) -> int:
    """Run a command's `main(argv)` in this process; return its exit status (0 if it returns)."""
    try:
        main(list(args))
    except SystemExit as exit_:
        return exit_.code
    return 0


@pytest.fixture
def make_cfg(tmp_path):
    """Build a chapter's Config through the real command-line parser."""

    def make(chapter: str, *flags: str):
        return cli.parse(chapter, ["--out", str(tmp_path / "runs"), *flags])

    return make


@pytest.fixture
def unwritable(tmp_path, monkeypatch):
    """tmp_path holding a file `file` and a folder `locked` this user may not write in."""
    (tmp_path / "file").write_text("keep me")
    (tmp_path / "locked").mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access",  # as a non-root user sees a read-only folder
                        lambda p, mode: real_access(p, mode) and "locked" not in str(p))
    return tmp_path
