"""tfguide: a runnable, verified TensorFlow 2 / Keras 3 course.

Importing the package sets the environment TensorFlow reads when it loads, so
that a chapter starts quietly: TensorFlow's C++ start-up logs (oneDNN notices,
CUDA probing) are hidden unless the command line asks for ``-v``/``--verbose``
or ``TFGUIDE_VERBOSE=1`` is set. Figures render off-screen (Agg) unless
``--show`` is given. Values a user already set are kept.
"""
import os
import sys

__version__ = "0.1.0"


def _wants(*flags: str) -> bool:
    return any(arg in flags for arg in sys.argv[1:])


VERBOSE = _wants("-v", "--verbose") or os.environ.get("TFGUIDE_VERBOSE") == "1"

if not VERBOSE:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
if not _wants("--show"):
    os.environ.setdefault("MPLBACKEND", "Agg")

# tfguide's pipelines shuffle themselves; Keras warns about its own `shuffle` default
# whenever fit() gets a tf.data.Dataset, which would only confuse a learner.
import warnings  # noqa: E402

warnings.filterwarnings("ignore", message="`shuffle=True` was passed, but will be ignored")

if not VERBOSE:
    from tfguide import _quiet

    _quiet.install()
