"""Hide the C++ log lines TensorFlow writes to stderr while it loads.

Recent TensorFlow builds log through absl before any setting can reach it,
so environment variables alone cannot silence the oneDNN and CUDA-probing
notices. This import hook points file descriptor 2 at /dev/null for exactly
the duration of ``import tensorflow`` and restores it afterwards; Python
errors raised by the import still surface normally.
"""
import contextlib
import importlib.abc
import importlib.machinery
import os
import sys


real_stderr = 2  # where stderr really goes, also while it is silenced


@contextlib.contextmanager
def silenced_stderr():
    """Send file descriptor 2 to /dev/null inside the block (C++ logs included)."""
    global real_stderr
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        real_stderr = saved
        yield
    finally:
        real_stderr = 2
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        with silenced_stderr():
            self._loader.exec_module(module)


class _QuietTensorFlowFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)  # one import only; find the real spec
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


def install() -> None:
    """Silence stderr while TensorFlow is first imported (no-op if already loaded)."""
    if "tensorflow" in sys.modules:
        return
    if not any(isinstance(f, _QuietTensorFlowFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorFlowFinder())
