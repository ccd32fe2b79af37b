"""What `python -m tfguide bench` times of chapter language_model: its main model (`workload`),
and its race against a reference recipe (`race`)."""
from __future__ import annotations

import dataclasses

import keras
import numpy as np

from tfguide import registry
from tfguide.bench.workloads import Workload
from tfguide.chapters.language_model import (FULL, QUICK, TFGUIDE, GPTSize, Recipe,
                                             fixed_windows,
                                             make_model, random_windows, shakespeare)
from tfguide.clocks import TrainClock, trace_untimed

# nanoGPT's CPU recipe for this data (config/train_shakespeare_char.py with the README's
# CPU overrides), ported as is: the reference tfguide's recipe (TFGUIDE) races.
NANOGPT = Recipe("nanoGPT CPU recipe", batch_size=12, peak_lr=1e-3, steps=2000, warmup=100,
                 min_lr=1e-4, steps_per_execution=1, eval_every=100)


def describe(recipe: Recipe) -> str:
    """One line: the recipe's batch, schedule, steps per execution and XLA."""
    decay = (f"hold, then linear to {recipe.min_lr:g} over the last "
             f"{round(recipe.cooldown * recipe.steps)}" if recipe.cooldown
             else f"cosine to {recipe.min_lr:g}")
    return (f"batch {recipe.batch_size}, AdamW peak {recipe.peak_lr:g}, warm-up {recipe.warmup}"
            f" + {decay} of {recipe.steps} steps, steps_per_execution "
            f"{recipe.steps_per_execution}" + (", XLA" if recipe.jit else ""))


def workload(quick: bool, seed: int) -> Workload:
    """The GPT and random training windows, for `python -m tfguide bench`'s throughput table."""
    size, recipe = (QUICK, TFGUIDE) if quick else (FULL, TFGUIDE)
    vocab, train, _ = shakespeare()
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, len(train) - size.context - 1, 1024 if quick else 4096)
    chunk = train[starts[:, None] + np.arange(size.context + 1)]  # (n, context + 1)
    return Workload(build=lambda: make_model("gpt", len(vocab), size, recipe),
                    x=chunk[:, :-1], y=chunk[:, 1:], batch_size=recipe.batch_size,
                    note=f"GPT {size.blocks}x{size.d_model}, context {size.context}, on "
                         f"{len(chunk)} windows of Tiny Shakespeare")


def race_recipes(recipes: dict[str, Recipe], size: GPTSize, target: float, seed: int,
         val_windows: int = 512, build=None) -> dict[str, dict]:
    """Train one GPT per recipe, taking turns, until each reaches `target` validation loss.

    Turns of `eval_every` steps alternate between the recipes, so both see the same machine
    load; the seconds count training only: not the tracing of each model's training step
    (`trace_untimed`), nor the validations between turns.
    `build(make, *args)` builds each model (bench passes its `Runtime.build`).
    """
    build = build or (lambda make, *args, jit=None: make(*args))
    vocab, train, val = shakespeare()
    x_val, y_val = fixed_windows(val, size.context, val_windows)
    runs = {}
    for key, recipe in recipes.items():
        keras.utils.set_random_seed(seed)
        model = build(make_model, "gpt", len(vocab), size, recipe, jit=recipe.jit)
        trace_untimed(model, random_windows(train, size.context, recipe.batch_size, seed + 1))
        runs[key] = (recipe, model, TrainClock(target),
                     random_windows(train, size.context, recipe.batch_size, seed))
    rounds = {key: int(1.25 * r.steps) // r.eval_every for key, (r, *_) in runs.items()}
    for turn in range(max(rounds.values())):
        for key, (recipe, model, clock, stream) in runs.items():
            if turn < rounds[key] and not clock.reached:
                model.fit(stream, initial_epoch=turn, epochs=turn + 1,
                          steps_per_epoch=recipe.eval_every, validation_data=(x_val, y_val),
                          validation_batch_size=256, callbacks=[clock], verbose=0)
    return {key: {"recipe": describe(recipe),
                  "seconds": clock.reached[0] if clock.reached else None,
                  "steps": clock.reached[1] if clock.reached else None,
                  "characters": clock.reached[1] * recipe.batch_size * size.context
                  if clock.reached else None,
                  "characters_per_s": clock.per_second(recipe.batch_size * size.context),
                  "value": clock.val_loss[-1]} for key, (recipe, _, clock, _) in runs.items()}


def race(quick: bool, seed: int, build=None) -> dict:
    """nanoGPT's CPU recipe, ported to plain Keras, against tfguide's: time to a val_loss."""
    size, target = (QUICK, 2.40) if quick else (FULL, 1.90)
    rounds = registry.get("language_model").quick_epochs  # what --quick trains
    ours = dataclasses.replace(TFGUIDE, steps=rounds * TFGUIDE.eval_every) if quick else TFGUIDE
    result = race_recipes({"reference": NANOGPT, "tfguide": ours}, size, target, seed, build=build)
    model = f"{size.blocks} blocks, {size.heads} heads, {size.d_model} wide, context {size.context}"
    return {"what": f"char GPT ({model}) on Tiny Shakespeare to val_loss <= {target:.2f}",
            "metric": "val_loss", "target": target, **result}
