"""VAE: reparameterisation, the KL term and the reconstruction loss against their twins."""
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfguide import cli, console
from tfguide.chapters import vae as V
import tfguide.bench.vae as V_bench


def test_quick_run_beats_the_mean_image(quick_run):
    metrics, _ = quick_run("vae")
    assert metrics["test_recon_loss"] <= 0.85 * metrics["baseline_recon_loss"]
    assert 0 < metrics["test_kl"] < float("inf")
    assert metrics["test_loss"] == pytest.approx(metrics["test_recon_loss"] + metrics["test_kl"],
                                                 rel=1e-4)
    assert metrics["test_mse_ratio"] < 0.85
    assert metrics["ae_test_recon_loss"] < metrics["baseline_recon_loss"]
    assert 0.5 < metrics["vae_code_std"] < 1.5, "the KL term pulls the codes onto N(0, 1)"
    assert metrics["kl_monte_carlo_rel_err"] <= 0.02
    assert metrics["recon_loss_max_rel_err"] <= 1e-9


def test_quick_run_records_its_code_size_and_draws_both_models(quick_run):
    _, run_dir = quick_run("vae")
    results = json.loads((run_dir / "results.json").read_text())
    assert results["data"]["name"] == "digits" and results["config"]["options"]["latent_dim"] == 2
    figures = {p.stem for p in (run_dir / "figures").glob("*.png")}
    assert {"reconstructions", "prior_samples", "latent_maps", "manifold",
            "loss_curves"} <= figures
    header = (run_dir / "history.csv").read_text().splitlines()[0].split(",")
    assert {"loss", "recon_loss", "kl", "val_loss", "val_recon_loss", "val_kl"} <= set(header)
    assert (run_dir / "history_autoencoder.csv").is_file()


def test_saved_model_reloads_in_safe_mode(quick_run):
    _, run_dir = quick_run("vae")
    model = keras.saving.load_model(run_dir / "model.keras", safe_mode=True)
    assert isinstance(model, V.VAE)
    assert model.decoder.output_shape == (None, 8, 8, 1)


@pytest.mark.parametrize("shape", [(8, 8, 1), (28, 28, 1)])
def test_model_round_trips_through_model_keras(tmp_path, shape):
    vae = V.build_model(shape, latent_dim=3, seed=1)
    path = tmp_path / "model.keras"
    vae.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    z = np.random.default_rng(0).standard_normal((5, 3)).astype("float32")
    np.testing.assert_array_equal(loaded.decoder(z), vae.decoder(z))
    x = np.random.default_rng(1).uniform(size=(4, *shape)).astype("float32")
    np.testing.assert_array_equal(loaded.encoder(x)[0], vae.encoder(x)[0])
    assert loaded.decoder.output_shape == (None, *shape)


def test_convolutional_vae_trains_on_28x28_images():
    rng = np.random.default_rng(0)
    x = (rng.uniform(size=(64, 28, 28, 1)) < 0.2).astype("float32")
    vae = V.build_model((28, 28, 1), latent_dim=2, seed=0)
    assert any(isinstance(layer, keras.layers.Conv2D) for layer in vae.encoder.layers)
    vae.compile(optimizer=keras.optimizers.Adam(3e-3))
    history = vae.fit(x, batch_size=32, epochs=4, verbose=0)
    loss = history.history["loss"]
    assert np.isfinite(loss).all() and loss[-1] < loss[0]
    assert {"loss", "recon_loss", "kl"} == set(history.history)


def test_bench_workload_is_the_chapter_vae_on_mnist_shaped_images():
    work = V_bench.workload(quick=True, seed=0)
    model = work.build()
    assert isinstance(model, V.VAE) and model.compiled and work.y is None
    assert work.x.shape == (4096, 28, 28, 1) and work.batch_size == 64
    assert model.decoder.output_shape == (None, 28, 28, 1)
    history = model.fit(work.x[:128], batch_size=work.batch_size, verbose=0)
    assert np.isfinite(history.history["loss"]).all()


def test_latent_dim_flag_is_validated():
    assert cli.parse("vae", []).options["latent_dim"] == 2
    assert cli.parse("vae", ["--latent-dim", "8"]).options["latent_dim"] == 8
    with pytest.raises(console.UsageError, match="--latent-dim"):
        cli.parse("vae", ["--latent-dim", "0"])


# --- From scratch against trusted twins -------------------------------------------------
@pytest.mark.parametrize("batch,latent", [(1, 1), (4, 2), (3, 16)])
def test_kl_closed_form_matches_monte_carlo(batch, latent):
    rng = np.random.default_rng(batch * 100 + latent)
    mu = rng.normal(0, 1.0, (batch, latent))
    log_var = rng.normal(0, 0.7, (batch, latent))
    closed = np.asarray(V.kl_divergence(mu, log_var))
    estimate = V.kl_monte_carlo(mu, log_var, n=100_000, seed=0)
    np.testing.assert_allclose(estimate, closed, rtol=0.05)


def test_monte_carlo_check_catches_a_wrong_kl():
    mu, log_var = np.array([[0.8, -0.5]]), np.array([[0.6, -0.9]])
    wrong = -0.5 * np.sum(1 + log_var - mu**2 - log_var**2, axis=-1)  # σ⁴ where σ² belongs
    estimate = V.kl_monte_carlo(mu, log_var, n=100_000, seed=0)
    assert abs(estimate - wrong)[0] / estimate[0] > 0.05


@pytest.mark.parametrize("shape", [(2, 1), (5, 3)])
def test_reparameterised_sample_has_the_right_moments(shape):
    mu = np.full(shape, 1.5)
    log_var = np.full(shape, np.log(0.25))  # σ = 0.5
    eps = np.random.default_rng(0).standard_normal((100_000, *shape))
    z = np.asarray(V.reparameterize(mu, log_var, eps))
    np.testing.assert_allclose(z.mean(axis=0), mu, atol=0.01)
    np.testing.assert_allclose(z.std(axis=0), 0.5, atol=0.01)


def test_gradients_flow_through_the_sample():
    # For f(z) = Σ z², ∂f/∂μ = 2z and ∂f/∂log σ² = 2z · ε · σ/2 = z·ε·σ.
    rng = np.random.default_rng(3)
    mu = tf.Variable(rng.normal(size=(3, 2)))
    log_var = tf.Variable(rng.normal(size=(3, 2)))
    eps = tf.constant(rng.normal(size=(3, 2)))
    with tf.GradientTape() as tape:
        z = V.reparameterize(mu, log_var, eps)
        f = tf.reduce_sum(z**2)
    d_mu, d_log_var = tape.gradient(f, [mu, log_var])
    sigma = np.exp(0.5 * log_var.numpy())
    assert np.all(np.abs(d_mu) > 0) and np.all(np.abs(d_log_var) > 0)
    np.testing.assert_allclose(d_mu, 2 * z.numpy(), rtol=1e-12)
    np.testing.assert_allclose(d_log_var, z.numpy() * eps.numpy() * sigma, rtol=1e-12)


def test_kl_gradient_matches_the_analytic_one():
    mu = tf.Variable([[0.3, -1.2]], dtype=tf.float64)
    log_var = tf.Variable([[0.5, -0.4]], dtype=tf.float64)
    with tf.GradientTape() as tape:
        kl = tf.reduce_sum(V.kl_divergence(mu, log_var))
    d_mu, d_log_var = tape.gradient(kl, [mu, log_var])
    np.testing.assert_allclose(d_mu, mu.numpy(), rtol=1e-12)  # ∂KL/∂μ = μ
    np.testing.assert_allclose(d_log_var, 0.5 * (np.exp(log_var.numpy()) - 1), rtol=1e-12)


@pytest.mark.parametrize("shape", [(2, 8, 8, 1), (3, 5, 4, 3)])
def test_reconstruction_loss_matches_keras_bce(shape):
    rng = np.random.default_rng(sum(shape))
    x = rng.uniform(size=shape)
    logits = rng.normal(0, 4.0, size=shape)
    ours = np.asarray(V.reconstruction_loss(x, logits))
    keras_bce = keras.losses.binary_crossentropy(x[..., None], logits[..., None],
                                                 from_logits=True)  # (batch, h, w, c)
    expected = np.asarray(keras_bce).reshape(shape[0], -1).sum(axis=1)
    np.testing.assert_allclose(ours, expected, rtol=1e-6)
    assert np.isfinite(V.reconstruction_loss(np.ones((1, 2)), np.array([[-200.0, 200.0]]))).all()


def test_sampling_layer_uses_reparameterize_with_fresh_noise():
    layer = V.Sampling(seed=0)
    mu, log_var = np.zeros((1000, 2), "float32"), np.zeros((1000, 2), "float32")
    a, b = np.asarray(layer([mu, log_var])), np.asarray(layer([mu, log_var]))
    assert not np.allclose(a, b), "a new ε on every call"
    assert abs(a.mean()) < 0.1 and abs(a.std() - 1) < 0.1


@pytest.mark.slow
def test_full_run_on_mnist_is_in_the_range_of_the_keras_io_recipe(tmp_path):
    """The default full run on real MNIST (2-D code, 30 epochs): keras.io's VAE example
    reports a total loss of about 150 nats per image; allow some margin above it."""
    from pathlib import Path

    from tfguide import datasets
    from tests.conftest import USER_DATA_DIR

    if not USER_DATA_DIR:
        pytest.skip("set TFGUIDE_DATA_DIR to a folder with mnist.npz or the MNIST IDX files")
    if datasets.load("mnist", Path(USER_DATA_DIR), offline=True).source != "data-dir":
        pytest.skip(f"no MNIST files in TFGUIDE_DATA_DIR={USER_DATA_DIR}")
    metrics = V.run(cli.parse("vae", ["--data", "mnist", "--data-dir", USER_DATA_DIR,
                                      "--out", str(tmp_path)]))
    print(f"MNIST VAE: test_loss {metrics['test_loss']:.1f} nats per image")
    assert metrics["test_loss"] <= 165 and metrics["recon_ratio"] <= 0.85


def test_kl_weight_scales_only_the_kl_term_and_survives_saving(tmp_path):
    keras.utils.set_random_seed(0)
    shape = (8, 8, 1)
    x = np.random.default_rng(0).uniform(size=(4, *shape)).astype("float32")
    beta = V.build_model(shape, latent_dim=2, seed=1, kl_weight=2.5)
    total, recon, kl = (np.asarray(t) for t in beta.losses_for(x))
    np.testing.assert_allclose(total, recon + 2.5 * kl, rtol=1e-6)
    path = tmp_path / "beta.keras"
    beta.save(path)
    assert keras.saving.load_model(path, safe_mode=True).kl_weight == 2.5


def test_concept_diagram_is_drawn_from_the_chapters_functions():
    figures = V.concept_figures()
    assert set(figures) == {"concept_vae"}
