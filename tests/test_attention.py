"""Attention: scaled dot-product and multi-head attention against Keras, and the encoder run."""
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfguide.chapters import attention as att
import tfguide.bench.attention as att_bench

# Keras's MultiHeadAttention turns the scale 1/√d_k into a float32 constant even in a
# float64 layer (ops.cast of a Python float), so float64 agreement stops near 1e-8.
TOL = {"float64": 1e-6, "float32": 1e-5}


def _inputs(batch, t, d_model, dtype="float64", seed=0):
    return tf.constant(np.random.default_rng(seed).normal(size=(batch, t, d_model)), dtype)


def _tokens(batch, t, seed=0):
    """Token ids with a random amount of trailing padding (id 0) in each row."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(1, 9, size=(batch, t))
    for row, length in zip(tokens, rng.integers(1, t + 1, size=batch)):
        row[length:] = 0
    return tf.constant(tokens)


def test_quick_run_learns_the_reversal_that_the_baseline_cannot(quick_run):
    metrics, _ = quick_run("attention")
    assert metrics["test_accuracy"] >= 0.95
    assert metrics["test_sequence_accuracy"] >= 0.6, "most sequences reversed without a slip"
    assert metrics["baseline_accuracy"] <= 0.2, "without attention: about chance (0.1)"
    assert metrics["attention_max_abs_err"] <= 1e-5
    assert metrics["anti_diagonal_weight"] >= 0.4, "uniform attention would give 0.1"


def test_quick_run_records_the_task_draws_the_heads_and_saves_a_working_model(quick_run):
    _, run_dir = quick_run("attention")
    results = json.loads((run_dir / "results.json").read_text())
    assert results["data"]["name"] == "reverse" and results["data"]["source"] == "synthetic"
    assert {p.stem for p in (run_dir / "figures").glob("*.png")} >= {
        "attention_heads", "training_curves", "accuracy_vs_baseline"}
    assert (run_dir / "history.csv").read_text().startswith("epoch,accuracy")
    assert (run_dir / "history_baseline.csv").exists()
    model = keras.saving.load_model(run_dir / "model.keras", safe_mode=True)
    x, y = att.make_reversal(200, 10, 10, seed=123)  # sequences it has never seen
    accuracy = np.mean(np.argmax(model.predict(x, verbose=0), axis=-1) == y)
    assert accuracy >= 0.95, "the reloaded model still reverses"
    assert att.attention_maps(model, x[:2]).shape == (2, 2, 10, 10)


# --- Scaled dot-product attention -------------------------------------------------------
@pytest.mark.parametrize("mask_kind", ["none", "padding", "causal"])
@pytest.mark.parametrize("t_q,t_k,d_k,d_v", [(4, 4, 8, 8), (3, 6, 5, 7), (9, 9, 16, 4)])
def test_sdpa_matches_keras_ops(mask_kind, t_q, t_k, d_k, d_v):
    if mask_kind == "causal" and t_q != t_k:
        pytest.skip("causal attention is self-attention")
    rng = np.random.default_rng(t_q * t_k)
    q, k, v = (tf.constant(rng.normal(size=(2, 3, t, d))) for t, d in
               ((t_q, d_k), (t_k, d_k), (t_k, d_v)))  # (batch, heads, t, d)
    mask = {"none": None, "causal": att.causal_mask(t_q),
            "padding": att.padding_mask(_tokens(2, t_k, seed=t_k))[:, None]}[mask_kind]
    ours, weights = att.scaled_dot_product_attention(q, k, v, mask)
    bthd = lambda x: tf.transpose(x, (0, 2, 1, 3))  # Keras ops want (batch, t, heads, d)
    theirs = keras.ops.dot_product_attention(
        bthd(q), bthd(k), bthd(v), is_causal=mask_kind == "causal",
        mask=None if mask_kind != "padding" else tf.broadcast_to(mask, (2, 3, t_q, t_k)))
    np.testing.assert_allclose(ours, bthd(theirs), atol=TOL["float64"])
    np.testing.assert_allclose(tf.reduce_sum(weights, -1), 1.0, atol=1e-12)


def test_sdpa_with_a_fully_masked_row_attends_nowhere():
    q = k = v = _inputs(1, 3, 4)
    mask = tf.constant([[True, True, False], [False, False, False], [True, False, True]])
    out, weights = att.scaled_dot_product_attention(q, k, v, mask)
    np.testing.assert_array_equal(weights[0, 1], 0.0)
    np.testing.assert_array_equal(out[0, 1], 0.0)
    np.testing.assert_array_equal(tf.boolean_mask(weights[0], ~mask), 0.0)


# --- Multi-head attention against keras.layers.MultiHeadAttention -----------------------
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("mask_kind", ["none", "causal", "padding"])
@pytest.mark.parametrize("batch,t,d_model,heads,key_dim",
                         [(2, 5, 8, 2, 4), (3, 7, 16, 4, 8), (1, 10, 12, 3, 6), (2, 6, 8, 1, 5)])
def test_multi_head_attention_matches_keras(dtype, mask_kind, batch, t, d_model, heads, key_dim):
    p = att.init_mha(d_model, heads, key_dim, seed=t, dtype=dtype)
    x = _inputs(batch, t, d_model, dtype, seed=heads)
    mask = att.padding_mask(_tokens(batch, t, seed=t)) if mask_kind == "padding" else None
    err = att.attention_error(p, heads, x, mask=mask, causal=mask_kind == "causal")
    assert err <= TOL[dtype]


def test_cross_attention_matches_keras():
    p = att.init_mha(8, 2, 4, seed=1)
    x_q, x_kv = _inputs(2, 3, 8, seed=1), _inputs(2, 6, 8, seed=2)
    ours, our_weights = att.multi_head_attention(x_q, x_kv, p, 2)
    layer = att.keras_twin(p, 2, x_q)
    theirs, their_weights = layer(x_q, x_kv, return_attention_scores=True)
    assert our_weights.shape == (2, 2, 3, 6)
    np.testing.assert_allclose(ours, theirs, atol=1e-6)
    np.testing.assert_allclose(our_weights, their_weights, atol=1e-6)


def test_weights_map_onto_keras_and_back():
    p = att.init_mha(12, 3, 5, seed=4)
    layer = att.keras_twin(p, 3, _inputs(1, 4, 12))
    assert [tuple(w.shape) for w in layer.get_weights()] == [
        (12, 3, 5), (3, 5), (12, 3, 5), (3, 5), (12, 3, 5), (3, 5), (3, 5, 12), (12,)]
    back = att.from_keras_weights(layer, dtype=tf.float64)
    for name in p:
        np.testing.assert_array_equal(back[name], p[name])


def test_heads_split_and_merge_are_inverse():
    x = _inputs(2, 5, 12)
    assert att.split_heads(x, 3).shape == (2, 3, 5, 4)
    np.testing.assert_array_equal(att.merge_heads(att.split_heads(x, 3)), x)


def test_causal_mask_lets_no_position_see_the_future():
    p = att.init_mha(8, 2, 4, seed=3)
    x = _inputs(1, 6, 8, seed=3).numpy()
    changed = x.copy()
    changed[:, 3:] = np.random.default_rng(9).normal(size=(1, 3, 8))  # new tokens from 3 on
    mask = att.causal_mask(6)
    out, weights = att.multi_head_attention(tf.constant(x), tf.constant(x), p, 2, mask)
    out2, _ = att.multi_head_attention(tf.constant(changed), tf.constant(changed), p, 2, mask)
    np.testing.assert_array_equal(out[:, :3], out2[:, :3])  # the past does not move
    assert np.max(np.abs(out[:, 3:] - out2[:, 3:])) > 1e-2  # the rest does
    above = ~np.tril(np.ones((6, 6), bool))
    assert np.all(weights.numpy()[..., above] == 0.0)
    unmasked, _ = att.multi_head_attention(tf.constant(changed), tf.constant(changed), p, 2)
    assert np.max(np.abs(out[:, :3] - unmasked[:, :3])) > 1e-2, "without the mask it would"


def test_padding_mask_hides_the_padded_keys():
    p = att.init_mha(8, 2, 4, seed=5)
    tokens = tf.constant([[3, 1, 4, 0, 0], [5, 9, 2, 6, 0]])
    x = _inputs(2, 5, 8, seed=5).numpy()
    noisy = x.copy()
    noisy[0, 3:] += 10.0  # change only what sits at padded positions
    noisy[1, 4:] -= 10.0
    mask = att.padding_mask(tokens)
    out, weights = att.multi_head_attention(tf.constant(x), tf.constant(x), p, 2, mask)
    out2, _ = att.multi_head_attention(tf.constant(noisy), tf.constant(noisy), p, 2, mask)
    real = tokens.numpy() != 0
    np.testing.assert_allclose(out.numpy()[real], out2.numpy()[real], atol=1e-12)
    assert np.all(weights.numpy()[0, :, :, 3:] == 0.0) and np.all(weights.numpy()[1, ..., 4] == 0)


@pytest.mark.parametrize("mistake", ["no_transpose", "no_scale"])
def test_the_check_catches_a_wrong_implementation(monkeypatch, mistake):
    p = att.init_mha(8, 2, 4, seed=6)
    x = _inputs(2, 5, 8, seed=6)
    assert att.attention_error(p, 2, x) <= 1e-6
    if mistake == "no_transpose":  # reshape straight to (batch, heads, t, d): mixes positions
        monkeypatch.setattr(att, "split_heads", lambda x, h: tf.reshape(
            x, (x.shape[0], h, x.shape[1], -1)))
    else:  # softmax(QKᵀ)V without the 1/√d_k
        real = att.scaled_dot_product_attention
        monkeypatch.setattr(att, "scaled_dot_product_attention",
                            lambda q, k, v, mask=None: real(q * 2.0, k, v, mask))
    assert att.attention_error(p, 2, x) > 1e-3


# --- The Keras way ----------------------------------------------------------------------
def test_bench_workload_is_the_chapter_encoder_on_the_reversal_task():
    work = att_bench.workload(quick=True, seed=0)
    model = work.build()
    assert model.compiled and model.get_layer("block").attention is not None
    assert work.x.shape == work.y.shape == (4096, 10) and work.batch_size == 64
    np.testing.assert_array_equal(work.y, work.x[:, ::-1])
    history = model.fit(work.x[:256], work.y[:256], batch_size=work.batch_size, verbose=0)
    assert np.isfinite(history.history["loss"]).all()


def test_baseline_has_no_attention_and_sees_one_position():
    baseline = att.build_model(10, 10, heads=0)
    assert baseline.get_layer("block").attention is None
    x, _ = att.make_reversal(2, 10, 10, seed=0)
    changed = x.copy()
    changed[:, 5] = (changed[:, 5] + 1) % 10
    out, out2 = baseline.predict(x, verbose=0), baseline.predict(changed, verbose=0)
    unchanged = np.arange(10) != 5
    np.testing.assert_allclose(out[:, unchanged], out2[:, unchanged], atol=1e-6)
    assert np.max(np.abs(out[:, 5] - out2[:, 5])) > 1e-4


def test_custom_layers_round_trip_their_config(tmp_path):
    model = att.build_model(6, 7, d_model=16, heads=4, ff_dim=32)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    assert loaded.get_layer("block").get_config()["heads"] == 4
    x, _ = att.make_reversal(3, 6, 7, seed=1)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0),
                               atol=1e-6)


# --- Why √d_k, the plateau, and our attention as a trainable layer -----------------------
def test_dot_products_have_variance_d_k_and_the_scale_keeps_the_softmax_soft():
    narrow, wide = att.saturation(8, n=500), att.saturation(64, n=500)
    assert narrow["dot_variance"] == pytest.approx(8, rel=0.1)
    assert wide["dot_variance"] == pytest.approx(64, rel=0.1)
    assert wide["entropy_scaled"] == pytest.approx(narrow["entropy_scaled"], abs=0.1)
    assert wide["entropy_unscaled"] < narrow["entropy_unscaled"] < narrow["entropy_scaled"]
    assert att.row_entropy(np.full((3, 10), 0.1)) == pytest.approx(np.log(10))


def test_bag_of_digits_accuracy_is_the_expected_mode_share():
    assert att.bag_of_digits_accuracy(n=20_000) == pytest.approx(0.2747, abs=0.005)


def test_scratch_attention_layer_holding_keras_weights_gives_keras_outputs():
    x = _inputs(2, 5, 8, dtype="float32")
    keras_layer = keras.layers.MultiHeadAttention(2, 4)
    theirs = keras_layer(x, x)
    ours = att.ScratchAttention(2, 4)
    ours.build(x.shape)
    for name, value in att.from_keras_weights(keras_layer).items():
        ours.p[name].assign(value)
    np.testing.assert_allclose(ours(x, x), theirs, atol=1e-5)
    assert len(ours.trainable_weights) == len(keras_layer.trainable_weights) == 8


def test_toy_attention_rows_sum_to_one():
    toy = att.attention_toy()
    np.testing.assert_allclose(tf.reduce_sum(toy["weights"], -1), 1.0, atol=1e-6)
    np.testing.assert_allclose(toy["output"], toy["weights"] @ toy["V"], atol=1e-6)
