"""Language model: vocabulary, counting baselines, the causal mask, sampling, the quick run."""
import dataclasses
import gzip
import json
import math

import keras
import numpy as np
import pytest

from tfguide import cli, clocks, console, corpora, datasets, registry
from tfguide.chapters import language_model as lm
import tfguide.bench.language_model as lm_bench
import tfguide.exercises.language_model as lm_ex
from tfguide.config import Config
from tfguide.results import Experiment

TINY = lm.GPTSize(context=8, d_model=16, heads=2, blocks=2)


@pytest.fixture(scope="module")
def shakespeare():
    return lm.shakespeare()  # (vocab, train ids, validation ids)


# --- Data -----------------------------------------------------------------------------
def test_vocabulary_round_trips_any_text():
    text = "To be, or not to be: that is the question.\nÉtude — naïve ☃"
    vocab = lm.Vocabulary(text)
    ids = vocab.encode(text)
    assert ids.dtype == np.uint8 and len(ids) == len(text), "one byte per character"
    assert vocab.decode(ids) == text
    assert vocab.chars == sorted(set(text)) and len(vocab) == len(set(text))
    assert vocab.encode("\n")[0] == 0, "ids follow sorted order: newline sorts first"


def test_ids_take_the_smallest_type_and_encode_in_pieces_as_in_one():
    wide = "".join(map(chr, range(0x4E00, 0x4E00 + 300))) + "𝄞\n"  # 302 characters: 2 bytes
    vocab = lm.Vocabulary(wide)
    ids = vocab.encode(wide * 3, chunk=7)  # pieces that do not divide the text
    assert ids.dtype == np.uint16 and vocab.decode(ids) == wide * 3
    np.testing.assert_array_equal(ids, vocab.encode(wide * 3))
    assert vocab.encode("").shape == (0,)


def test_shipped_corpus_is_tiny_shakespeare_split_like_nanogpt(shakespeare):
    vocab, train, val = shakespeare
    assert len(vocab) == 65 and len(train) + len(val) == 1_115_394
    assert len(train) == 1_003_854, "nanoGPT's n = int(0.9 * len(data))"
    assert vocab.decode(train[:14]) == "First Citizen:"


def test_random_windows_pair_each_input_with_the_next_character():
    ids = np.arange(1000, dtype=np.int32)  # id i sits at position i: shifts are visible
    x, y = next(iter(lm.random_windows(ids, 16, 32, seed=3)))
    x, y = np.asarray(x), np.asarray(y)
    assert x.shape == y.shape == (32, 16)
    np.testing.assert_array_equal(y, x + 1)  # the target is the input shifted by one
    np.testing.assert_array_equal(np.diff(x, axis=1), 1)  # contiguous windows
    assert x.min() >= 0 and y.max() <= 999
    again = np.asarray(next(iter(lm.random_windows(ids, 16, 32, seed=3)))[0])
    np.testing.assert_array_equal(x, again)  # seeded


def test_fixed_windows_cover_the_validation_text():
    ids = np.arange(500, dtype=np.int32)
    x, y = lm.fixed_windows(ids, 10, 50)
    assert x.shape == (50, 10) and x[0, 0] == 0 and y[-1, -1] == 499
    np.testing.assert_array_equal(y, x + 1)


# --- Text a learner brings ------------------------------------------------------------
def write(tmp_path, name, data: bytes):
    (tmp_path / f"{name}.txt").write_bytes(data)
    return tmp_path


@pytest.mark.parametrize("data,message", [
    (b"", "is empty"),
    (b"   \n\n", "is empty"),
    (b"\x89PNG\r\n\x1a\n\xff\xfe\x00", "not UTF-8"),
    (b"plain\x00text" * 50, "NUL bytes"),
])
def test_bad_text_files_are_refused_in_one_line(tmp_path, data, message):
    with pytest.raises(datasets.DataError, match=message) as err:
        corpora.read_corpus("mytext", write(tmp_path, "mytext", data))
    assert "\n" not in str(err.value) and "mytext.txt" in str(err.value)


def test_a_missing_text_names_the_file_to_write(tmp_path):
    with pytest.raises(datasets.DataError, match="mytext.txt"):
        corpora.read_corpus("mytext", tmp_path)
    with pytest.raises(datasets.DataError, match="--data-dir"):
        corpora.read_corpus("mytext", None)


def test_shakespeare_is_the_shipped_file_unless_the_folder_has_its_own(tmp_path):
    text, source, _ = corpora.read_corpus("shakespeare", tmp_path)  # no shakespeare.txt there
    assert source == "offline-standin" and text.startswith("First Citizen:")
    write(tmp_path, "shakespeare", "Mine own.\n".encode() * 100)
    text, source, _ = corpora.read_corpus("shakespeare", tmp_path)
    assert source == "data-dir" and text.startswith("Mine own.")


def test_a_damaged_shipped_file_is_refused(tmp_path, monkeypatch):
    (tmp_path / corpora.SHIPPED).write_bytes(gzip.compress(b"First Citizen:\nNot quite.\n"))
    monkeypatch.setattr(corpora.resources, "data_dir", lambda: tmp_path)
    with pytest.raises(datasets.DataError, match="damaged .*make_data.py"):
        corpora.read_corpus("shakespeare", None)


def quick_config(tmp_path, **changes) -> Config:
    cfg = cli.parse("language_model", ["--quick", "--out", str(tmp_path / "runs")])
    return dataclasses.replace(cfg, **changes)


def test_a_learner_text_is_read_split_and_recorded(tmp_path):
    text = "ALICE:\nHello there, friend.\n\nBOB:\nGood day to you.\n\n" * 40
    cfg = quick_config(tmp_path, data="mytext", data_dir=write(tmp_path, "mytext", text.encode()))
    with Experiment(cfg) as ex:
        corpus = lm.prepare_data(ex, cfg, lm.QUICK)
    assert len(corpus.vocab) == len(set(text))
    assert corpus.vocab.decode(corpus.train[:6]) == "ALICE:"
    assert len(corpus.train) == int(0.9 * len(text))
    assert ex.data_info["source"] == "data-dir" and ex.data_info["name"] == "mytext"
    with pytest.raises(console.UsageError, match="--prompt has characters .*: 'JUT'"):
        lm.prompt_ids(corpus, "JULIET:")  # asked for: refused
    with pytest.raises(console.UsageError, match="--prompt has characters .*: 'RM'"):
        lm.prompt_ids(corpus, "ROMEO:")  # asked for explicitly: refused too
    ids, prompt = lm.prompt_ids(corpus, None)  # no --prompt: the text's own start instead
    assert prompt == "ALICE:" and corpus.vocab.decode(ids) == "ALICE:"


def test_a_text_of_one_character_is_refused_in_one_line(tmp_path):
    cfg = quick_config(tmp_path, data="onechar", data_dir=write(tmp_path, "onechar", b"a" * 5000))
    with pytest.raises(datasets.DataError, match="one distinct character, 'a'.* at least 2") \
            as err:
        with Experiment(cfg) as ex:
            lm.prepare_data(ex, cfg, lm.QUICK)
    assert "\n" not in str(err.value)


def test_a_text_over_the_limit_is_refused_before_it_is_read(tmp_path, monkeypatch):
    big = tmp_path / "huge.txt"
    with open(big, "wb") as f:  # a sparse file: no disk used
        f.truncate((registry.MAX_TEXT_MB << 20) + 1)
    monkeypatch.setattr(type(big), "read_bytes", lambda self: pytest.fail("read it whole"))
    with pytest.raises(datasets.DataError, match=f"larger than the {registry.MAX_TEXT_MB} MiB") \
            as err:
        corpora.read_corpus("huge", tmp_path)
    assert "\n" not in str(err.value) and "huge.txt" in str(err.value)
    help_text = cli.build_parser(registry.get("language_model")).format_help()
    assert f"at most {registry.MAX_TEXT_MB} MiB" in " ".join(help_text.split())


def test_encoding_a_large_text_costs_about_a_byte_per_character():
    import tracemalloc

    text = "First Citizen:\nBefore we proceed any further, hear me speak.\n" * 300_000  # 18 MB
    vocab = lm.Vocabulary(text)
    tracemalloc.start()
    try:
        ids = vocab.encode(text)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert ids.nbytes == len(text), "one byte per character"
    assert peak < len(text) + (8 << 20), f"{peak / len(text):.1f} bytes per character"


def test_a_text_named_by_the_environment_variable_is_found_and_named(tmp_path, monkeypatch):
    write(tmp_path, "mytext", b"Some text of my own.\n" * 100)
    monkeypatch.setenv("TFGUIDE_DATA_DIR", str(tmp_path))
    cfg = cli.parse("language_model", ["--data", "mytext"])  # no --data-dir: the variable's
    assert cfg.data_dir is None and corpora.read_corpus(cfg.data, None)[1] == "data-dir"
    (tmp_path / "afile").write_text("not a folder")
    monkeypatch.setenv("TFGUIDE_DATA_DIR", str(tmp_path / "afile"))
    for name in ("mytext", "shakespeare"):  # both look in the folder first
        with pytest.raises(datasets.DataError, match="TFGUIDE_DATA_DIR=.*afile is a file") as err:
            corpora.read_corpus(name, cli.parse("language_model", ["--data", name]).data_dir)
        assert "--data-dir" not in str(err.value).split(":")[0]


def test_a_text_too_short_for_one_window_is_refused(tmp_path):
    cfg = quick_config(tmp_path, data="mytext",
                       data_dir=write(tmp_path, "mytext", b"Too short to learn from.\n" * 5))
    with pytest.raises(datasets.DataError, match="too short .* at least"):
        with Experiment(cfg) as ex:
            lm.prepare_data(ex, cfg, lm.QUICK)


@pytest.mark.parametrize("flags,message", [
    (["--prompt", ""], "--prompt must be a non-empty text"),
    (["--sample-length", "0"], "--sample-length must be an integer from 1 to 10,000"),
    (["--sample-length", "1000000000"], "must be an integer from 1 to 10,000. Received: "
                                        "--sample-length=1000000000"),
    (["--sample-length", "abc"], "must be an integer from 1 to 10,000. Received"),
    (["--data", "mytext"], r"--data-dir DIR \(or TFGUIDE_DATA_DIR=DIR\)"),
])
def test_bad_chapter_flags_are_refused(flags, message):
    with pytest.raises(console.UsageError, match=message):
        cli.parse("language_model", flags)


# --- Counting baselines and cross-entropy ---------------------------------------------
def keras_cross_entropy(log_p: np.ndarray, targets: np.ndarray) -> float:
    """Keras's sparse cross-entropy with the log-probabilities as logits (softmax keeps them)."""
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    return float(loss(targets, log_p))


def test_counting_baselines_equal_keras_cross_entropy():
    rng = np.random.default_rng(0)
    train, val, v = rng.integers(0, 7, 500), rng.integers(0, 7, 200), 9  # ids 7, 8 never seen
    counts = np.bincount(train, minlength=v) + 1.0
    unigram = np.log(counts / counts.sum())
    assert lm.unigram_loss(train, val, v) == pytest.approx(
        keras_cross_entropy(np.tile(unigram, (len(val), 1)), val), rel=1e-6)
    pairs = lm.bigram_counts(train, v)
    assert pairs.sum() == v * v + len(train) - 1
    log_p = np.log(pairs / pairs.sum(axis=1, keepdims=True))
    assert lm.bigram_loss(train, val, v) == pytest.approx(
        keras_cross_entropy(log_p[val[:-1]], val[1:]), rel=1e-6)


def test_a_uniform_model_costs_log_vocab_and_bits_are_nats_over_log_2():
    ids = np.tile(np.arange(16), 50)  # every character equally often
    assert lm.unigram_loss(ids, ids, 16) == pytest.approx(math.log(16))
    assert lm.bits_per_char(math.log(16)) == pytest.approx(4.0)  # 16 choices: 4 bits


def test_the_baselines_on_shakespeare_match_the_published_numbers(shakespeare):
    vocab, train, val = shakespeare
    assert lm.unigram_loss(train, val, len(vocab)) == pytest.approx(3.35, abs=0.01)
    assert lm.bigram_loss(train, val, len(vocab)) == pytest.approx(2.48, abs=0.01)


def ngram_loss(train: np.ndarray, val: np.ndarray, v: int, n: int, alpha: float) -> float:
    """Cross-entropy of p(c | the n - 1 before it) by counting, add-alpha smoothing."""
    def contexts(ids):  # each context of n - 1 ids as one integer
        return sum(ids[i:len(ids) - n + 1 + i].astype(np.int64) * v ** (n - 2 - i)
                   for i in range(n - 1))

    def count(keys, of):  # how often each of `of` occurs among `keys`
        seen, counts = np.unique(keys, return_counts=True)
        at = np.minimum(np.searchsorted(seen, of), len(seen) - 1)
        return np.where(seen[at] == of, counts[at], 0)

    train_ctx, val_ctx = contexts(train), contexts(val)
    pairs = count(train_ctx * v + train[n - 1:], val_ctx * v + val[n - 1:])
    return float(-np.mean(np.log((pairs + alpha) / (count(train_ctx, val_ctx) + alpha * v))))


def test_the_exercise_on_counting_longer_contexts_gets_the_numbers_the_text_states(shakespeare):
    vocab, train, val = shakespeare
    v = len(vocab)
    assert ngram_loss(train, val, v, 2, 1.0) == pytest.approx(lm.bigram_loss(train, val, v))
    stated = {(3, 1.0): 2.068, (3, 0.1): 2.046, (4, 1.0): 1.953, (4, 0.1): 1.784, (5, 1.0): 2.174}
    for (n, alpha), loss in stated.items():
        assert ngram_loss(train, val, v, n, alpha) == pytest.approx(loss, abs=5e-4), (n, alpha)
    leaked = lm.bigram_loss(np.concatenate([train, val]), val, v)
    assert leaked == pytest.approx(2.447, abs=5e-4)


# --- The causal mask --------------------------------------------------------------------
def test_a_causal_gpt_never_looks_ahead_and_the_check_catches_one_that_does():
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).integers(0, 11, size=(4, TINY.context)).astype(np.int32)
    causal, unmasked = lm.build_gpt(11, TINY), lm.build_gpt(11, TINY, causal=False)
    for t in range(1, TINY.context):
        assert lm.causal_max_change(causal, x, t, 11) <= 1e-6
    assert lm.causal_max_change(unmasked, x, TINY.context // 2, 11) > 1e-3


def test_padding_after_the_text_cannot_change_the_next_character_logits():
    keras.utils.set_random_seed(1)
    model = lm.build_gpt(11, TINY)
    rng = np.random.default_rng(1)
    window = rng.integers(0, 11, size=(1, TINY.context)).astype(np.int32)
    padded = window.copy()
    padded[:, 3:] = 0  # what generate() does with a 3-character prompt
    np.testing.assert_allclose(model.predict_on_batch(window)[:, 2],
                               model.predict_on_batch(padded)[:, 2], atol=1e-6)


def test_the_causal_mask_is_the_lower_triangle_keras_uses():
    np.testing.assert_array_equal(lm.causal_mask(4), np.tril(np.ones((4, 4), bool)))
    assert lm_ex.prove_causal_mask(lm.causal_mask).passed
    assert not lm_ex.prove_causal_mask(lambda t: np.ones((t, t), bool)).passed  # no mask at all


# --- Sampling ---------------------------------------------------------------------------
LOGITS = np.array([2.0, 1.0, 0.5, 0.0, -1.0, -3.0], np.float32)


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
def test_sampling_matches_softmax_over_temperature(temperature):
    assert lm.sampling_check(LOGITS, temperature, 20_000, seed=0) > 1e-3


def test_the_chi_square_check_rejects_a_sampler_that_ignores_temperature():
    rows = np.repeat(LOGITS[None, :], 20_000, axis=0)
    ids = lm.sample_next(rows, 1.0, seed=keras.random.SeedGenerator(0))  # T=1 drawn...
    counts = np.bincount(np.asarray(ids), minlength=len(LOGITS))
    probs = np.asarray(keras.ops.softmax(LOGITS / 0.5), np.float64)  # ...tested as T=0.5
    assert lm.chi2_p_value(counts, probs) < 1e-6


def test_keras_categorical_passes_the_same_test():
    draws = keras.random.categorical(np.repeat(LOGITS[None, :] / 0.8, 20_000, 0), 1, seed=0)
    counts = np.bincount(np.asarray(draws).ravel(), minlength=len(LOGITS))
    probs = np.asarray(keras.ops.softmax(LOGITS / 0.8), np.float64)
    assert lm.chi2_p_value(counts, probs) > 1e-3


def test_chi_square_p_value_against_known_quantiles():
    # chi2 = 3.841 at 1 degree of freedom has p = 0.05; a perfect fit has p = 1
    assert lm.chi2_p_value(np.array([60.0, 40.0 - 0.0]), np.array([0.5, 0.5])) == \
        pytest.approx(0.0455, abs=1e-4)  # chi2 = (10² + 10²) / 50 = 4
    assert lm.chi2_p_value(np.array([50.0, 50.0]), np.array([0.5, 0.5])) == pytest.approx(1.0)


def test_temperature_near_zero_is_greedy():
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(64, 30)).astype(np.float32)
    ids = lm.sample_next(logits, 1e-4, seed=keras.random.SeedGenerator(0))
    np.testing.assert_array_equal(np.asarray(ids), logits.argmax(axis=1))


def test_top_k_keeps_only_the_k_likeliest_in_their_softmax_proportions():
    rows = np.repeat(LOGITS[None, :], 20_000, axis=0)
    ids = np.asarray(lm.sample_next(rows, 1.0, top_k=3, seed=keras.random.SeedGenerator(1)))
    assert set(ids) <= {0, 1, 2}
    counts = np.bincount(ids, minlength=len(LOGITS))
    top = np.exp(LOGITS[:3]) / np.exp(LOGITS[:3]).sum()
    assert lm.chi2_p_value(counts, np.r_[top, 0, 0, 0]) > 1e-3


def test_generate_continues_the_prompt_one_row_per_temperature():
    keras.utils.set_random_seed(0)
    model = lm.build_gpt(11, TINY)
    prompt = np.array([1, 2, 3], np.int32)
    rows = lm.generate(model, prompt, 12, (0.5, 1.0), TINY.context, seed=0)
    assert len(rows) == 2 and all(len(r) == 15 for r in rows)
    assert all((r[:3] == prompt).all() and r.max() < 11 for r in rows)


def test_generate_reads_the_last_context_characters_of_prompt_and_sample(monkeypatch):
    class Next:  # a model whose next id is always the window's last real id + 1
        def __init__(self):
            self.windows = []

        def predict_on_batch(self, window):
            self.windows.append(window.copy())
            return 50 * np.eye(11, dtype=np.float32)[(window + 1) % 11]  # (rows, context, vocab)

    model, prompt = Next(), np.arange(1, 13, dtype=np.uint8) % 11  # 12 ids, longer than 8
    rows = lm.generate(model, prompt, 20, (0.5, 1.0), TINY.context)
    want = np.r_[prompt, (prompt[-1] + np.arange(1, 21)) % 11]
    assert all(r.dtype == np.int32 and (r == want).all() for r in rows)
    assert len(model.windows) == 20, "one model pass per character"
    np.testing.assert_array_equal(model.windows[-1][0], want[-9:-1])


def test_a_missing_prompt_is_named_in_its_own_order(capsys):
    assert corpora.choose_prompt("the quick brown fox\n" * 50, sorted(set("the quick brown fox\n")),
                                 None) == "the quick brown "
    assert "The text has no 'ROME:'" in capsys.readouterr().out, "in the prompt's order"


def test_a_long_prompt_is_shown_clipped():
    keras.utils.set_random_seed(0)
    text = "abcdefghij\n" * 1000
    vocab = lm.Vocabulary(text)
    corpus = lm.Corpus(text, vocab, *([np.zeros(1, np.uint8)] * 4))
    fig = lm.next_char_figure(lm.build_gpt(len(vocab), TINY), corpus, vocab.encode(text[:10_000]),
                              TINY.context, text[:10_000])
    title = fig.axes[0].get_title()
    assert len(title) < 70 and title.endswith(repr("…" + text[9_960:10_000]))
    assert corpora.clipped("short") == "short"


# --- The models -------------------------------------------------------------------------
def test_the_lstm_is_sized_like_the_gpt():
    gpt = lm.build_gpt(65, lm.FULL)
    lstm = lm.build_lstm(65, lm.FULL, lm.lstm_units(65, lm.FULL, gpt.count_params()))
    assert lstm.count_params() == pytest.approx(gpt.count_params(), rel=0.01)
    assert gpt.count_params() == pytest.approx(0.81e6, rel=0.02), "nanoGPT's CPU model"


def test_tracing_untimed_leaves_the_model_and_optimizer_untouched():
    keras.utils.set_random_seed(0)
    model = lm.make_model("gpt", 11, TINY, lm.TFGUIDE)
    ids = np.random.default_rng(0).integers(0, 11, 2000).astype(np.int32)
    model(ids[None, :TINY.context])  # build
    before = [w.copy() for w in model.get_weights()]
    clocks.trace_untimed(model, lm.random_windows(ids, TINY.context, 4, seed=0))
    assert all((a == b).all() for a, b in zip(before, model.get_weights()))
    assert int(model.optimizer.iterations) == 0, "the schedule starts at step 0"
    assert model.train_function is not None, "the training step is traced"


def test_warmup_hold_cooldown_takes_the_values_the_text_states():
    schedule = lm.WarmupHoldCooldown(3e-3, 50, 320, 800)  # TFGUIDE's
    steps = [0, 25, 50, 480, 640, 800, 900]
    got = [float(schedule(step)) for step in steps]
    np.testing.assert_allclose(got, [0, 1.5e-3, 3e-3, 3e-3, 1.5e-3, 0, 0], atol=1e-9)
    floor = lm.WarmupHoldCooldown(1.0, 10, 10, 100, floor=0.1)
    assert float(floor(95)) == pytest.approx(0.55) and float(floor(200)) == pytest.approx(0.1)
    again = lm.WarmupHoldCooldown.from_config(schedule.get_config())
    assert [float(again(step)) for step in steps] == got


@pytest.mark.parametrize("recipe,schedule", [
    (lm.TFGUIDE, lm.WarmupHoldCooldown),
    (lm_bench.NANOGPT, keras.optimizers.schedules.CosineDecay),
])
def test_each_recipe_compiles_its_own_schedule_and_xla_choice(recipe, schedule):
    model = lm.make_model("gpt", 11, TINY, recipe)
    assert model.jit_compile is recipe.jit
    compiled = keras.optimizers.schedules.deserialize(model.optimizer.get_config()["learning_rate"])
    assert isinstance(compiled, schedule)
    assert float(compiled(recipe.warmup)) == pytest.approx(recipe.peak_lr)
    assert float(compiled(recipe.steps)) == pytest.approx(recipe.min_lr, abs=1e-9)


def test_the_race_times_a_recipe_to_its_target():
    fast = lm.Recipe("fast", batch_size=16, peak_lr=1e-2, steps=40, warmup=5, min_lr=1e-3,
                     steps_per_execution=1, eval_every=20)
    result = lm_bench.race_recipes({"fast": fast}, TINY, target=3.6, seed=0, val_windows=32)["fast"]
    assert result["seconds"] > 0 and result["steps"] in (20, 40) and result["value"] <= 3.6
    assert result["characters"] == result["steps"] * 16 * TINY.context
    assert result["characters_per_s"] == pytest.approx(result["characters"] / result["seconds"])
    assert "batch 16, AdamW peak 0.01" in result["recipe"]


# --- The quick run ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def quick(quick_run):
    return quick_run("language_model")


def test_quick_run_beats_the_baselines_and_keeps_its_proofs(quick):
    metrics, _ = quick
    assert metrics["val_loss"] <= 2.40 < metrics["bigram_val_loss"] < metrics["unigram_val_loss"]
    assert metrics["val_bpc"] == pytest.approx(metrics["val_loss"] / math.log(2))
    assert metrics["lstm_val_loss"] < metrics["unigram_val_loss"]
    assert metrics["causal_max_change"] <= 1e-6
    assert metrics["unmasked_train_loss"] < 1.0, "reading the answer: impossibly low"
    assert metrics["sampling_chi2_p"] > 1e-3
    assert metrics["train_tokens_per_s"] > 0 and metrics["params"] > 50_000


def test_quick_run_writes_play_formatted_samples(quick):
    _, run_dir = quick
    samples = (run_dir / "samples.txt").read_text(encoding="utf-8")
    assert samples.count("=== gpt, ") == samples.count("=== lstm, ") == 3  # three temperatures
    assert samples.count(" round ") >= 2, "samples taken while the GPT learned"
    gpt = [samples.split(f"=== gpt, temperature {t} ===\n")[1].split("\n=== ")[0]
           for t in lm.TEMPERATURES]
    assert all(text.startswith("ROMEO:\n") for text in gpt), "a name, a colon, a new line"
    assert sum(text.strip().count("\n") for text in gpt) >= 4, "the text is broken into lines"
    words = " ".join(gpt).split()
    assert np.mean([w.strip(",.;:!?'-").isalpha() for w in words]) > 0.8, "mostly word-like"
    results = json.loads((run_dir / "results.json").read_text())
    assert results["data"]["name"] == "shakespeare" and results["data"]["vocab_size"] == 65
    figures = {p.stem for p in (run_dir / "figures").glob("*.png")}
    assert figures == {"val_loss_vs_time", "attention_head", "next_char_probabilities"}
    assert {"history.csv", "history_lstm.csv", "model.keras"} <= {p.name for p in run_dir.iterdir()}


def test_saved_gpt_reloads_in_safe_mode_with_the_same_loss(quick, shakespeare):
    metrics, run_dir = quick
    model = keras.saving.load_model(run_dir / "model.keras", safe_mode=True)
    _, _, val = shakespeare
    x, y = lm.fixed_windows(val, lm.QUICK.context, 256)
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    assert model.evaluate(x, y, batch_size=256, verbose=0) == pytest.approx(metrics["val_loss"],
                                                                            rel=1e-5)
