"""The exercises of chapter vae: how `python -m tfguide check vae` proves a learner's
version of each from-scratch function, and the known mistakes it can name.

The functions themselves, and the text that explains them, are the chapter's:
tfguide/chapters/vae.py and chapters/vae.md.
"""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from tfguide.exercises import Exercise, Proof, worst


def _rng_rows(seed: int, batch: int = 5, latent: int = 3) -> tuple[tf.Tensor, tf.Tensor]:
    rng = np.random.default_rng(seed)
    return (tf.constant(rng.normal(0, 1, (batch, latent))),
            tf.constant(rng.normal(0, 0.7, (batch, latent))))  # float64 μ and log σ²


def prove_reparameterize(reparameterize_fn) -> Proof:
    """z = μ + σ·ε in value, and its gradients for f = Σz²: ∂f/∂μ = 2z, ∂f/∂log σ² = z·ε·σ."""
    errors = []
    for seed, (batch, latent) in enumerate(((4, 2), (3, 16), (1, 1))):
        mu, log_var = _rng_rows(seed, batch, latent)
        eps = tf.constant(np.random.default_rng(seed + 10).standard_normal((batch, latent)))
        sigma = tf.exp(0.5 * log_var)
        with tf.GradientTape() as tape:
            tape.watch([mu, log_var])
            z = reparameterize_fn(mu, log_var, eps)
            f = tf.reduce_sum(z**2)
        d_mu, d_log_var = tape.gradient(f, [mu, log_var])
        if d_mu is None or d_log_var is None or z.shape != mu.shape:
            errors.append((f"batch {batch}, latent {latent}: no gradient or wrong shape", np.inf))
            continue
        expected = mu + sigma * eps
        errors.append((f"batch {batch}, latent {latent}", float(max(
            tf.reduce_max(tf.abs(z - expected)), tf.reduce_max(tf.abs(d_mu - 2 * expected)),
            tf.reduce_max(tf.abs(d_log_var - expected * eps * sigma))))))
    return worst(errors, 1e-12)


def _kl_by_quadrature(mu, log_var) -> np.ndarray:
    """E_q[log q(z) − log p(z)] by Gauss–Hermite quadrature, exact for this quadratic integrand."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(8)  # ∫ f(x) e^{−x²/2} dx ≈ Σ w·f(x)
    mu, log_var = np.asarray(mu)[..., None], np.asarray(log_var)[..., None]  # (batch, latent, 1)
    z = mu + np.exp(0.5 * log_var) * nodes  # (batch, latent, 8): z = μ + σ·x
    log_q = -0.5 * (np.log(2 * np.pi) + log_var + nodes**2)
    log_p = -0.5 * (np.log(2 * np.pi) + z**2)
    per_dim = ((log_q - log_p) * weights).sum(axis=-1) / np.sqrt(2 * np.pi)  # (batch, latent)
    return per_dim.sum(axis=-1)  # (batch,)


def prove_kl_divergence(kl_fn) -> Proof:
    """The closed form vs the expectation it stands for (quadrature, float64), and its
    gradients vs the analytic ones: ∂KL/∂μ = μ, ∂KL/∂log σ² = ½(σ² − 1)."""
    errors = []
    for seed, (batch, latent) in enumerate(((4, 2), (3, 16), (1, 1))):
        mu, log_var = _rng_rows(seed, batch, latent)
        with tf.GradientTape() as tape:
            tape.watch([mu, log_var])
            kl = kl_fn(mu, log_var)
            total = tf.reduce_sum(kl)
        d_mu, d_log_var = tape.gradient(total, [mu, log_var])
        case = f"batch {batch}, latent {latent}"
        if d_mu is None or d_log_var is None or tuple(kl.shape) != (batch,):
            errors.append((f"{case}: no gradient, or not one KL per row", np.inf))
            continue
        errors.append((case, float(max(
            np.max(np.abs(np.asarray(kl) - _kl_by_quadrature(mu, log_var))),
            tf.reduce_max(tf.abs(d_mu - mu)),
            tf.reduce_max(tf.abs(d_log_var - 0.5 * (tf.exp(log_var) - 1)))))))
    return worst(errors, 1e-9)


def prove_reconstruction_loss(loss_fn) -> Proof:
    """vs Keras's binary cross-entropy from logits, summed over the pixels (values and
    gradients, float64), and finite, exact answers for logits of ±200."""
    errors = []
    for seed, shape in enumerate(((2, 8, 8, 1), (3, 5, 4, 3))):
        rng = np.random.default_rng(seed)
        x = tf.constant(rng.uniform(size=shape))
        logits = tf.constant(rng.normal(0, 4.0, size=shape))
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(logits)
            ours = loss_fn(x, logits)
            bce = keras.losses.binary_crossentropy(x[..., None], logits[..., None],
                                                   from_logits=True)  # (batch, h, w, c)
            theirs = tf.reduce_sum(tf.reshape(bce, (shape[0], -1)), axis=-1)  # (batch,)
            sum_ours, sum_theirs = tf.reduce_sum(ours), tf.reduce_sum(theirs)
        if tuple(ours.shape) != (shape[0],):
            errors.append((f"images {shape}: not one loss per image", np.inf))
            continue
        grad_ours, grad_theirs = tape.gradient(sum_ours, logits), tape.gradient(sum_theirs, logits)
        errors.append((f"images {shape}", float(max(
            tf.reduce_max(tf.abs(ours - theirs) / theirs),
            tf.reduce_max(tf.abs(grad_ours - grad_theirs))))))
    x, logits = tf.constant([[0.0, 1.0, 1.0]], tf.float64), tf.constant([[200.0, -200.0, 200.0]],
                                                                       tf.float64)
    extreme = float(np.abs(np.asarray(loss_fn(x, logits)) - 400.0).max())  # exact: 200 + 200 + 0
    errors.append(("logits of ±200 (the sum must be 400)", extreme if np.isfinite(extreme)
                   else np.inf))
    return worst(errors, 1e-9)


def _reparameterize_log_sigma(mu, log_var, eps):
    return mu + ops.exp(log_var) * eps  # reads log σ² as if it were log σ


def _reparameterize_variance(mu, log_var, eps):
    return mu + log_var * eps


def _kl_sign_flipped(mu, log_var):
    return ops.sum(0.5 * (1.0 + log_var - ops.square(mu) - ops.exp(log_var)), axis=-1)


def _kl_without_half(mu, log_var):
    return ops.sum(-(1.0 + log_var - ops.square(mu) - ops.exp(log_var)), axis=-1)


def _kl_sigma_to_the_fourth(mu, log_var):
    return ops.sum(-0.5 * (1.0 + log_var - ops.square(mu) - ops.square(log_var)), axis=-1)


def _recon_mean_over_pixels(x, logits):
    bce = ops.relu(logits) - logits * x + ops.log1p(ops.exp(-ops.abs(logits)))
    return ops.mean(ops.reshape(bce, (ops.shape(bce)[0], -1)), axis=-1)


def _recon_naive(x, logits):
    p = ops.sigmoid(logits)
    bce = -(x * ops.log(p) + (1 - x) * ops.log(1 - p))
    return ops.sum(ops.reshape(bce, (ops.shape(bce)[0], -1)), axis=-1)


# Probe inputs are NumPy and become tensors when asked: importing a chapter starts no TensorFlow.
_PROBE_MU = np.random.default_rng(7).normal(0, 1, (2, 3))  # (batch, latent)
_PROBE_LOG_VAR = np.random.default_rng(8).normal(0, 0.7, (2, 3))
_PROBE_EPS = np.random.default_rng(9).standard_normal((2, 3))
_PROBE_X = np.array([[0.0, 0.5, 1.0, 0.25]])  # one image of four pixels
_PROBE_LOGITS = np.array([[200.0, 1.0, -3.0, 0.5]])
EXERCISES = (
    Exercise(
        "reparameterize", prove_reparameterize, "σ = exp(½·log σ²); return μ + σ·ε",
        probe=lambda f: f(*map(tf.constant, (_PROBE_MU, _PROBE_LOG_VAR, _PROBE_EPS))),
        mistakes={
            "log_var is log σ², not log σ: σ = exp(½·log_var)": _reparameterize_log_sigma,
            "multiply ε by σ = exp(½·log_var), not by log_var itself": _reparameterize_variance}),
    Exercise(
        "kl_divergence", prove_kl_divergence, "−½·(1 + log σ² − μ² − σ²) per dimension, "
        "σ² = exp(log σ²); sum over the last axis",
        probe=lambda f: f(tf.constant(_PROBE_MU), tf.constant(_PROBE_LOG_VAR)), mistakes={
            "the KL term is −½·(1 + log σ² − μ² − σ²): mind the minus sign (a KL is never "
            "negative)": _kl_sign_flipped,
            "keep the ½ in −½·(1 + log σ² − μ² − σ²)": _kl_without_half,
            "σ² is exp(log σ²), not (log σ²)²": _kl_sigma_to_the_fourth}),
    Exercise(
        "reconstruction_loss", prove_reconstruction_loss, "per pixel relu(l) − l·x + "
        "log1p(exp(−|l|)); sum over every pixel of each image",
        probe=lambda f: f(tf.constant(_PROBE_X), tf.constant(_PROBE_LOGITS)), mistakes={
            "sum the pixels' cross-entropies, do not average them: the ELBO is a sum over "
            "pixels": _recon_mean_over_pixels,
            "work from the logits: log(sigmoid(l)) and log(1 − sigmoid(l)) overflow to −inf "
            "for large |l|; use relu(l) − l·x + log1p(exp(−|l|))": _recon_naive}),
)
