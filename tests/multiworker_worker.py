"""One training process for the multi-worker test (run by tests/test_multiworker.py).

Usage: python tests/multiworker_worker.py STRATEGY OUT.npz [keras-fit]
Trains a small model on fixed data with a global batch of 32 through tfguide's
runtime and pipeline (`Runtime.build`, which routes `fit` through `tfguide.distributed`
under multi-worker), or with plain Keras `fit` when asked,
then saves its weights and per-epoch losses to OUT.npz.
"""
import sys

import tfguide  # noqa: F401  (quiet TensorFlow)
from pathlib import Path

from tfguide import config, datasets, runtime

import keras  # noqa: E402
import numpy as np  # noqa: E402

strategy, out = sys.argv[1], sys.argv[2]
cfg = config.Config(chapter="multiworker_test", strategy=strategy, seed=3,
                    out=Path(str(out) + ".runs"))
rt = runtime.configure(cfg)
rng = np.random.default_rng(0)
x = rng.normal(size=(256, 4)).astype("float32")
y = (np.tanh(x @ np.array([1.0, -2.0, 0.5, 3.0], "float32")))[:, None]


def make():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="tanh"),
                              keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(0.1), "mse")
    return model


train = datasets.pipeline(x, y, batch_size=32)
if sys.argv[3:] == ["keras-fit"]:  # plain Keras, no runtime routing
    with rt.strategy.scope():
        model = make()
else:  # multiworker: fit is routed through tfguide.distributed
    model = rt.build(make)
history = model.fit(train, epochs=3, verbose=0, validation_data=(x[:64], y[:64]))
np.savez(out, *model.get_weights(), loss=np.array(history.history["loss"]),
         replicas=rt.replicas)
