"""The ordered table of contents: one `Chapter` entry per lesson.

The lessons themselves are the modules of `tfguide.chapters`; this module
imports none of them and no TensorFlow, so `python -m tfguide` can list the
chapters and validate a command line at once. Each entry also carries the
chapter's defaults (full run and `--quick` run), the data it accepts and any
flags of its own, which the shared CLI turns into arguments.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

from tfguide.config import (dropout_rate, hidden_widths, int_up_to, non_empty_text,
                            positive_float, positive_int, run_folder)


@dataclasses.dataclass(frozen=True)
class Option:
    """A flag only one chapter has, e.g. the VAE's `--latent-dim`."""

    flag: str  # "--latent-dim"
    type: Callable[[str], Any]  # parses and validates the string; raise ValueError with a message
    default: Any
    help: str
    quick_default: Any = None  # value under --quick; None means the same as `default`

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


@dataclasses.dataclass(frozen=True)
class Chapter:
    """One lesson: a module `tfguide.chapters.<name>` and its text `chapters/<name>.md`."""

    name: str
    title: str
    summary: str  # one line: what it teaches
    ports: str  # the source sections it ports
    data: tuple[str, ...]  # accepted --data names; the first is the full-run default
    quick_data: str  # --data under --quick
    epochs: int
    batch_size: int
    learning_rate: float
    quick_epochs: int
    options: tuple[Option, ...] = ()
    quick_batch_size: int | None = None  # --batch-size under --quick; None: as the full run
    brought_data: str = ""  # what `--data NAME --data-dir DIR` may also name, e.g. "DIR/NAME.txt"
    # (flag, value, why): a shared flag's value this chapter cannot use, refused with the CLI's
    # other checks, before TensorFlow loads and before any run folder is made
    refuses: tuple[tuple[str, str, str], ...] = ()

    @property
    def module(self) -> str:
        return f"tfguide.chapters.{self.name}"


# language_model's bounds, said in its --help: one model pass per character generated; the
# text and its ids are held in memory (corpora.read_corpus measures what that costs).
MAX_SAMPLE_LENGTH = 10_000
MAX_TEXT_MB = 64


CHAPTERS: tuple[Chapter, ...] = (
    Chapter(
        name="gradient_descent",
        title="Gradient descent",
        summary="Batch GD, mini-batch SGD, momentum and Adam from scratch, checked against "
        "the closed form and keras.optimizers",
        ports="000 §3.1/§4.1, 002 §3.1.3, 003 §4.2",
        data=("linreg",),
        quick_data="linreg",
        epochs=1000,  # gradient steps of the from-scratch optimizers and of Keras fit
        batch_size=32,
        learning_rate=0.1,
        quick_epochs=400,
    ),
    Chapter(
        name="backprop",
        title="Backpropagation",
        summary="Activations, losses and a two-layer network's backward pass by hand, checked "
        "against GradientTape and finite differences; trained on two interleaved spirals",
        ports="000 §3.2/§4.2, 001 §3.2/§4, 002 §3.1.1-3.1.2/§3.2.2, 003 §4.1",
        data=("spirals",),
        quick_data="spirals",
        epochs=3000,  # gradient steps
        batch_size=1000,  # the whole training set: full-batch gradient descent
        learning_rate=0.5,
        quick_epochs=1000,
        quick_batch_size=400,  # the quick run's whole training set
    ),
    Chapter(
        name="mlp",
        title="Feed-forward networks",
        summary="A multilayer perceptron (Flatten, Dense + ReLU, softmax) trained with fit on "
        "real handwritten digits, its forward pass by hand, and a shuffled-label control",
        ports="001 §3.1, 002 §3.2/§4.1, 003 §5.1",
        data=("mnist", "digits", "fashion_mnist"),
        quick_data="digits",
        epochs=20,
        batch_size=64,
        learning_rate=1e-3,
        quick_epochs=15,
        options=(Option("--hidden", hidden_widths, (256, 128),
                        "units of each hidden layer, comma-separated"),),
    ),
    Chapter(
        name="generalization",
        title="Generalization",
        summary="Overfitting made visible on few labels, and its cures (L2 and weight decay, "
        "dropout, batch normalisation, initialisation, early stopping, augmentation) each from "
        "scratch, proved against Keras",
        ports="new (no source section)",
        data=("digits",),
        quick_data="digits",
        epochs=300,
        batch_size=32,
        learning_rate=1e-3,
        quick_epochs=60,
        options=(Option("--per-class", positive_int, 10, "training examples of each digit "
                        "(the few labels; validation is always the whole test split)"),),
    ),
    Chapter(
        name="cnn",
        title="Convolutional networks",
        summary="conv2d and max-pooling from scratch, checked against tf.nn (values and "
        "gradients); a Keras CNN on handwritten digits, its filters, feature maps and mistakes",
        ports="000 §3.3/§4.3, 001 §3.3, 002 §3.3/§4.2",
        data=("mnist", "digits", "fashion_mnist", "cifar10"),
        quick_data="digits",
        epochs=15,
        batch_size=128,
        learning_rate=3e-3,
        quick_epochs=15,
        options=(Option("--dropout", dropout_rate, 0.5,
                        "fraction of the flattened features dropped in training (0 to < 1)"),),
    ),
    Chapter(
        name="rnn",
        title="Recurrent networks",
        summary="A simple RNN and an LSTM cell from scratch, checked against keras.layers; "
        "why gates let an LSTM remember across 120 steps; a sunspot forecast",
        ports="000 §2.3/§3.4/§4.4, 001 §3.4, 002 §3.4",
        data=("sunspots",),  # the forecast's series; the synthetic memory task always runs
        quick_data="sunspots",
        epochs=10,  # memory-task epochs; the forecaster trains 4 * epochs
        batch_size=32,
        learning_rate=5e-3,
        quick_epochs=3,
        options=(
            Option("--time-steps", positive_int, 120, "length of the memory task's sequences"),
            Option("--forget-bias", positive_float, 4.0, "the LSTM's starting forget-gate bias "
                   "(its input-gate bias starts at minus this)"),
        ),
    ),
    Chapter(
        name="attention",
        title="Self-attention",
        summary="Scaled dot-product and multi-head attention from scratch, checked against "
        "keras.layers.MultiHeadAttention; a Transformer encoder learns to reverse sequences",
        ports="000 §2.5/§3.5/§4.5",
        data=("reverse",),
        quick_data="reverse",
        epochs=10,
        batch_size=64,
        learning_rate=3e-3,
        quick_epochs=4,
    ),
    Chapter(
        name="language_model",
        title="Language models",
        summary="A character-level GPT on Tiny Shakespeare: vocabulary, counting baselines, the "
        "causal mask and sampling with temperature from scratch; beside an LSTM given the same "
        "seconds, and raced against nanoGPT's recipe",
        ports="000 §2.3/§2.5/§4.5",
        data=("shakespeare",),
        brought_data=f"DIR/NAME.txt, a UTF-8 text of at most {MAX_TEXT_MB} MiB (the run's "
        f"peak memory stays under 2 GB)",
        quick_data="shakespeare",
        epochs=48,  # rounds of 25 training steps, each followed by validation
        batch_size=16,
        learning_rate=3e-3,
        quick_epochs=16,
        options=(
            Option("--prompt", non_empty_text, None, "text the models continue (default: "
                   "ROMEO: if the text has those characters, else its own first line)"),
            Option("--sample-length", int_up_to(MAX_SAMPLE_LENGTH), 300,
                   f"characters to generate per sample, at most {MAX_SAMPLE_LENGTH:,}: each "
                   f"costs a pass of the model", quick_default=120),
        ),
    ),
    Chapter(
        name="vae",
        title="Variational autoencoders",
        summary="The reparameterisation trick and the KL term from scratch, a VAE with its own "
        "train_step, beside the plain autoencoder the original described",
        ports="000 §2.4, 002 §2/§3.5",
        data=("mnist", "digits", "fashion_mnist"),
        quick_data="digits",
        epochs=30,
        batch_size=64,
        learning_rate=3e-3,
        quick_epochs=60,
        options=(Option("--latent-dim", positive_int, 2, "size of the latent space z"),
                 Option("--kl-weight", positive_float, 1.0, "weight of the KL term in the "
                        "VAE's loss (1: the ELBO; above 1: a beta-VAE)")),
    ),
    Chapter(
        name="deploy",
        title="Deploying a model",
        summary="From a trained classifier to predictions on your own image files, a SavedModel "
        "that TF Serving loads and float32 and int8 TFLite models, each proved to give the "
        "model's answers",
        ports="003 §3, 001 §5",
        data=("model",),  # the data the deployed model was trained on, read from its run folder
        quick_data="model",
        epochs=1,  # nothing is trained here (without a model, it runs cnn --quick first)
        batch_size=128,  # for predictions on the test set
        learning_rate=1e-3,
        quick_epochs=1,
        options=(Option("--from", run_folder, "latest",
                        "the cnn or mlp run folder whose model to deploy; latest: the newest "
                        "finished cnn run under --out, made with cnn --quick if there is none"),
                 Option("--calibration-images", positive_int, 300, "training images the int8 "
                        "converter runs to measure each activation's range")),
        refuses=(("--precision", "mixed", "deploy serves the model in the precision it was "
                  "saved in; drop --precision"),
                 ("--strategy", "multiworker", "--strategy multiworker trains on several "
                  "machines; deploy trains nothing")),
    ),
    # [chapters] New chapters go here, in reading order.
)

BY_NAME: dict[str, Chapter] = {c.name: c for c in CHAPTERS}


def get(name: str) -> Chapter:
    """Return the chapter called `name` or raise KeyError with the known names."""
    try:
        return BY_NAME[name]
    except KeyError:
        known = ", ".join(BY_NAME)
        raise KeyError(f"Unknown chapter {name!r}. Known chapters: {known}.") from None


def markdown_table() -> str:
    """Return the README's chapter table, made from this registry (a test compares them)."""
    rows = ["| # | chapter | what it teaches | ports | quick run |",
            "| --- | --- | --- | --- | --- |"]
    for i, c in enumerate(CHAPTERS, 1):
        rows.append(f"| {i} | [{c.name}](chapters/{c.name}.md) | {c.summary} | {c.ports} | "
                    f"`python -m {c.module} --quick` |")
    return "\n".join(rows)
