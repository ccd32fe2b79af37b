"""What `python -m tfguide bench` times of chapter cnn: its main model (`workload`),
and its race against a reference recipe (`race`)."""
from __future__ import annotations

import time
from typing import Callable

import keras

from tfguide import datasets, registry
from tfguide.bench.workloads import Workload, image_workload
from tfguide.chapters.cnn import build_model, compile_model


def workload(quick: bool, seed: int) -> Workload:
    """The CNN on random MNIST-shaped images, for `python -m tfguide bench`."""
    return image_workload("cnn", lambda shape, lr: compile_model(shape, 10, lr),
                          quick, seed)


def _epochs_to_target(model: keras.Model, fit_args: dict, test: tuple, target: float,
                      max_epochs: int) -> dict:
    """Train one epoch at a time until the test accuracy reaches `target`; time the training."""
    seconds, reached, accuracy = 0.0, None, 0.0
    for epoch in range(1, max_epochs + 1):
        start = time.perf_counter()
        model.fit(**fit_args, epochs=1, verbose=0)
        seconds += time.perf_counter() - start
        accuracy = model.evaluate(*test, verbose=0, return_dict=True)["accuracy"]
        if accuracy >= target:
            reached = epoch
            break
    return {"seconds": seconds if reached else None, "steps": reached, "value": float(accuracy)}


def race(quick: bool, seed: int, build: Callable | None = None) -> dict:
    """The CNN on the digits to 97% test accuracy: this chapter's recipe vs keras.io's.

    Both recipes train the same `build_model` on the shipped digits for at most
    30 epochs and score it on the test set after each; `seconds` is the training
    time until the target is first reached (None if never), `steps` the epochs.
    The digits are small, so `quick` changes nothing. `build(make, *args)`
    builds each model: `python -m tfguide bench` passes its `Runtime.build`
    (strategy and --jit); by default `make(*args)`, with Keras's own XLA
    choice (on for a single GPU, off on a CPU, like --jit auto).
    """
    target, max_epochs = 0.97, 30
    build = build or (lambda make, *args: make(*args))
    data = datasets.load("digits")
    defaults = registry.get("cnn")
    one_hot = lambda y: keras.utils.to_categorical(y, data.num_classes)  # noqa: E731

    def keras_io(input_shape, num_classes):  # categorical cross-entropy on one-hot labels
        model = build_model(input_shape, num_classes)
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy",
                      metrics=["accuracy"])
        return model

    keras.utils.set_random_seed(seed)
    reference = _epochs_to_target(
        build(keras_io, data.input_shape, data.num_classes),
        dict(x=data.x_train, y=one_hot(data.y_train), batch_size=128, shuffle=True),
        (data.x_test, one_hot(data.y_test)), target, max_epochs)
    keras.utils.set_random_seed(seed)
    ours = _epochs_to_target(
        build(compile_model, data.input_shape, data.num_classes, defaults.learning_rate),
        dict(x=datasets.pipeline(data.x_train, data.y_train, defaults.batch_size, shuffle=True,
                                 seed=seed)),
        (data.x_test, data.y_test), target, max_epochs)
    return {
        "what": "CNN on the digits to 97% test accuracy", "metric": "test_accuracy",
        "target": target,
        "reference": {"recipe": "keras.io mnist_convnet: Adam 1e-3, batch 128, one-hot labels",
                      **reference},
        "tfguide": {"recipe": f"tfguide cnn: Adam {defaults.learning_rate:g}, batch "
                              f"{defaults.batch_size}, integer labels, datasets.pipeline",
                    **ours},
    }
