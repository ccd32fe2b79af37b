"""Variational autoencoders: the reparameterisation trick, the KL term, a custom train_step.

Builds the two pieces that make an autoencoder variational, the sampling step
z = μ + σ·ε and the closed-form KL divergence to the N(0, I) prior, checks them
against Monte-Carlo estimates and GradientTape, then trains a VAE (a
`keras.Model` with its own `train_step`; convolutional on images of 16 px a
side or more, dense on the 8×8 digits) beside the plain, deterministic
autoencoder the original text describes, and shows why only one of them can
generate: decoding random prior samples, and the shape of each latent space.

Text: chapters/vae.md. Ports 000 §2.4 and 002 §2/§3.5 of the source documents.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch

from tfguide import cli, datasets, plotting
from tfguide.config import Config
from tfguide.results import Experiment


# --- From scratch -----------------------------------------------------------------
# Code between [start:…]/[end:…] markers is shown in chapters/vae.md; after editing it,
# refresh the text with python -m tfguide.excerpts chapters/vae.md.
# [start:scratch]
def reparameterize(mu, log_var, eps):
    """z = μ + σ·ε with σ = exp(½·log σ²): a sample of N(μ, σ²) that is differentiable in μ, σ."""
    return mu + ops.exp(0.5 * log_var) * eps  # (batch, latent)


def kl_divergence(mu, log_var):
    """KL(N(μ, σ²) ‖ N(0, 1)) in closed form, summed over the latent axis."""
    kl = -0.5 * (1.0 + log_var - ops.square(mu) - ops.exp(log_var))  # (batch, latent)
    return ops.sum(kl, axis=-1)  # (batch,)


def reconstruction_loss(x, logits):
    """Bernoulli negative log-likelihood: binary cross-entropy summed over every pixel."""
    # max(l, 0) − l·x + log(1 + e^−|l|) is −[x·log p + (1 − x)·log(1 − p)] with p = sigmoid(l),
    # written so that large |l| never overflows.
    bce = ops.relu(logits) - logits * x + ops.log1p(ops.exp(-ops.abs(logits)))  # (batch, h, w, c)
    return ops.sum(ops.reshape(bce, (ops.shape(bce)[0], -1)), axis=-1)  # (batch,)
# [end:scratch]


def kl_monte_carlo(mu, log_var, n: int, seed: int = 0) -> np.ndarray:
    """Estimate KL(q ‖ p) = E_q[log q(z) − log p(z)] from `n` samples z ~ q per row."""
    rng = np.random.default_rng(seed)
    mu, log_var = np.asarray(mu, np.float64), np.asarray(log_var, np.float64)
    eps = rng.standard_normal((n, *mu.shape))  # (n, batch, latent)
    z = np.asarray(reparameterize(mu, log_var, eps))
    log_q = -0.5 * (np.log(2 * np.pi) + log_var + eps**2)  # log N(z; μ, σ²), since (z−μ)/σ = ε
    log_p = -0.5 * (np.log(2 * np.pi) + z**2)  # log N(z; 0, 1)
    return (log_q - log_p).sum(axis=-1).mean(axis=0)  # (batch,)


# --- The Keras way --------------------------------------------------------------------
# [start:sampling]
@keras.saving.register_keras_serializable(package="tfguide")
class Sampling(layers.Layer):
    """Draw z = μ + σ·ε with fresh ε ~ N(0, I) on every call."""

    def __init__(self, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs):
        mu, log_var = inputs  # (batch, latent) each
        eps = keras.random.normal(ops.shape(mu), dtype=mu.dtype, seed=self.seed_generator)
        return reparameterize(mu, log_var, eps)

    def get_config(self):
        return {**super().get_config(), "seed": self.seed}
# [end:sampling]


# [start:networks]
def _uses_convolutions(input_shape) -> bool:
    """Convolve images of 16 px a side or more; an 8×8 image is only 2×2 after two strides."""
    return min(input_shape[:2]) >= 16


def build_encoder(input_shape, latent_dim: int, variational: bool = True) -> keras.Model:
    """Image → features → μ and log σ² (VAE), or → a single code z (plain autoencoder)."""
    x = inputs = keras.Input(shape=input_shape)  # (batch, h, w, c)
    if _uses_convolutions(input_shape):
        x = layers.Conv2D(32, 3, strides=2, padding="same", activation="relu")(x)  # (b, h/2, w/2, 32)
        x = layers.Conv2D(64, 3, strides=2, padding="same", activation="relu")(x)  # (b, h/4, w/4, 64)
    x = layers.Dense(256, activation="relu")(layers.Flatten()(x))  # (batch, 256)
    x = layers.Dense(128, activation="relu")(x)  # (batch, 128)
    if not variational:
        return keras.Model(inputs, layers.Dense(latent_dim, name="z")(x), name="ae_encoder")
    mu = layers.Dense(latent_dim, name="mu")(x)  # (batch, latent)
    log_var = layers.Dense(latent_dim, name="log_var")(x)  # (batch, latent)
    return keras.Model(inputs, [mu, log_var], name="encoder")


def build_decoder(output_shape, latent_dim: int, name: str = "decoder") -> keras.Model:
    """Mirror the encoder: z → features → per-pixel logits of shape `output_shape`."""
    h, w, c = output_shape
    z = keras.Input(shape=(latent_dim,))  # (batch, latent)
    x = layers.Dense(128, activation="relu")(z)
    x = layers.Dense(256, activation="relu")(x)  # (batch, 256)
    if _uses_convolutions(output_shape):
        h4, w4 = math.ceil(h / 4), math.ceil(w / 4)
        x = layers.Dense(h4 * w4 * 64, activation="relu")(x)
        x = layers.Reshape((h4, w4, 64))(x)  # (batch, h/4, w/4, 64)
        x = layers.Conv2DTranspose(64, 3, strides=2, padding="same", activation="relu")(x)
        x = layers.Conv2DTranspose(32, 3, strides=2, padding="same", activation="relu")(x)
        x = layers.Cropping2D(((0, 4 * h4 - h), (0, 4 * w4 - w)))(x)  # (batch, h, w, 32)
        logits = layers.Conv2D(c, 3, padding="same", dtype="float32")(x)  # (batch, h, w, c)
    else:
        x = layers.Dense(h * w * c, dtype="float32")(x)  # (batch, h·w·c)
        logits = layers.Reshape((h, w, c), dtype="float32")(x)  # (batch, h, w, c)
    return keras.Model(z, logits, name=name)
# [end:networks]


def step_loss(optimizer, loss):
    """The loss one training step differentiates: on one device `loss` itself. Under a
    tf.distribute strategy the optimizer sums the replicas' gradients, so each replica's
    mean is divided by their number; --precision mixed multiplies by the loss scale."""
    replicas = tf.distribute.get_replica_context().num_replicas_in_sync
    return optimizer.scale_loss(loss / replicas)


# [start:vae]
@keras.saving.register_keras_serializable(package="tfguide")
class VAE(keras.Model):
    """Encoder → (μ, log σ²) → Sampling → decoder, trained on −ELBO = reconstruction + KL
    (the KL term weighted by `kl_weight`, 1 for the ELBO itself)."""

    def __init__(self, encoder: keras.Model, decoder: keras.Model, seed: int | None = None,
                 kl_weight: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.encoder, self.decoder, self.seed, self.kl_weight = encoder, decoder, seed, kl_weight
        self.sampling = Sampling(seed=seed)
        self.loss_tracker = keras.metrics.Mean(name="loss")  # −ELBO per image
        self.recon_tracker = keras.metrics.Mean(name="recon_loss")
        self.kl_tracker = keras.metrics.Mean(name="kl")

    @property
    def metrics(self):  # reset by fit/evaluate at the start of every epoch
        return [self.loss_tracker, self.recon_tracker, self.kl_tracker]

    def call(self, x, training=False):
        mu, log_var = self.encoder(x, training=training)
        return self.decoder(self.sampling([mu, log_var]), training=training)  # logits

    def losses_for(self, x, training=False):
        """Return the per-image losses: total (−ELBO), reconstruction and KL."""
        mu, log_var = self.encoder(x, training=training)
        mu, log_var = ops.cast(mu, "float32"), ops.cast(log_var, "float32")
        logits = self.decoder(self.sampling([mu, log_var]), training=training)
        recon = reconstruction_loss(ops.cast(x, "float32"), ops.cast(logits, "float32"))
        kl = kl_divergence(mu, log_var)
        return recon + self.kl_weight * kl, recon, kl  # (batch,) each

    def _track(self, total, recon, kl):
        for tracker, value in zip(self.metrics, (total, recon, kl)):
            tracker.update_state(value)
        return {m.name: m.result() for m in self.metrics}

    def train_step(self, data):
        x = data[0] if isinstance(data, tuple) else data
        with tf.GradientTape() as tape:
            total, recon, kl = self.losses_for(x, training=True)  # (batch,) each
            loss = step_loss(self.optimizer, ops.mean(total))  # the batch's mean −ELBO
        grads = tape.gradient(loss, self.trainable_weights)
        self.optimizer.apply(grads, self.trainable_weights)
        return self._track(total, recon, kl)

    def test_step(self, data):
        x = data[0] if isinstance(data, tuple) else data
        return self._track(*self.losses_for(x))

    def get_config(self):
        return {**super().get_config(), "seed": self.seed, "kl_weight": self.kl_weight,
                "encoder": keras.saving.serialize_keras_object(self.encoder),
                "decoder": keras.saving.serialize_keras_object(self.decoder)}

    @classmethod
    def from_config(cls, config):
        encoder = keras.saving.deserialize_keras_object(config.pop("encoder"))
        decoder = keras.saving.deserialize_keras_object(config.pop("decoder"))
        return cls(encoder, decoder, **config)


def build_model(input_shape, latent_dim: int = 2, seed: int | None = None,
                kl_weight: float = 1.0) -> VAE:
    """A VAE for images of `input_shape` (h, w, c) with a `latent_dim` code (convolutional
    for images of 16 px a side or more, dense below)."""
    vae = VAE(build_encoder(input_shape, latent_dim), build_decoder(input_shape, latent_dim),
              seed=seed, kl_weight=kl_weight, name="vae")
    vae(ops.zeros((1, *input_shape)))  # one call builds every layer
    return vae
# [end:vae]


# [start:autoencoder]
def build_autoencoder(input_shape, latent_dim: int = 2) -> keras.Model:
    """The plain autoencoder 002 §3.5 describes: the same networks, no sampling, no KL term."""
    encoder = build_encoder(input_shape, latent_dim, variational=False)
    decoder = build_decoder(input_shape, latent_dim, name="ae_decoder")
    x = keras.Input(shape=input_shape)
    return keras.Model(x, decoder(encoder(x)), name="autoencoder")  # logits
# [end:autoencoder]


# [start:train]
def compile_vae(input_shape, latent_dim: int, learning_rate: float,
                seed: int | None = None, kl_weight: float = 1.0) -> VAE:
    """Build the VAE and give it an optimizer; its loss is in its own train_step."""
    vae = build_model(input_shape, latent_dim, seed=seed, kl_weight=kl_weight)
    vae.compile(optimizer=keras.optimizers.Adam(learning_rate))
    return vae


def compile_autoencoder(input_shape, latent_dim: int, learning_rate: float) -> keras.Model:
    """Build the plain autoencoder and compile it with the reconstruction loss alone."""
    ae = build_autoencoder(input_shape, latent_dim)
    ae.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=reconstruction_loss)
    return ae


def fit_model(model: keras.Model, train_ds, epochs: int, val_ds=None, callbacks=()):
    """Fit either model on `train_ds` (images for the VAE, (image, image) for the AE)."""
    return model.fit(train_ds, epochs=epochs, validation_data=val_ds, callbacks=list(callbacks))


def evaluate_vae(vae: VAE, test_ds, x_test: np.ndarray):
    """Return the test losses by name, each test image's code μ and its reconstruction."""
    scores = vae.evaluate(test_ds, verbose=0, return_dict=True)  # z sampled, as in training
    mu, _ = vae.encoder.predict(x_test, verbose=0)  # (n_test, latent)
    logits = vae.decoder.predict(mu, verbose=0)  # (n_test, h, w, c): decoded from z = μ
    return scores, mu, ops.convert_to_numpy(ops.sigmoid(logits))  # pixel probabilities
# [end:train]


# --- Run ----------------------------------------------------------------------------
class Images(NamedTuple):
    """The loaded images and the pipelines the two models train and test on."""

    data: datasets.LoadedData
    train: tf.data.Dataset  # training images alone: the VAE's train_step needs nothing else
    pairs: tf.data.Dataset  # (image, image): the autoencoder's input and its target
    test: tf.data.Dataset  # test images alone


class Outputs(NamedTuple):
    """What the trained models make of the test images and of prior draws z ~ N(0, I)."""

    mu: np.ndarray  # (n_test, latent): the VAE's codes
    recon: np.ndarray  # (n_test, h, w, c): the VAE's reconstructions from μ
    ae_codes: np.ndarray  # (n_test, latent)
    ae_recon: np.ndarray  # (n_test, h, w, c)
    vae_samples: np.ndarray  # (64, h, w, c): the same z decoded by each decoder
    ae_samples: np.ndarray


def prepare_data(cfg: Config, ex: Experiment) -> Images:
    """Load the images; batch them for each model, shuffled the same way."""
    data = ex.load_data()
    batches = dict(batch_size=cfg.batch_size, shuffle=True, seed=cfg.seed)
    return Images(data, train=datasets.pipeline(data.x_train, **batches),
                  pairs=datasets.pipeline(data.x_train, data.x_train, **batches),
                  test=datasets.pipeline(data.x_test, batch_size=256))


def check_from_scratch(cfg: Config, ex: Experiment, images: Images) -> None:
    """The closed-form KL against Monte-Carlo, the reconstruction loss against Keras's BCE."""
    rng = np.random.default_rng(cfg.seed)
    latent_dim = cfg.options["latent_dim"]
    mu, log_var = rng.normal(0, 1, (64, latent_dim)), rng.normal(0, 0.7, (64, latent_dim))
    closed = float(np.mean(kl_divergence(mu, log_var)))
    estimate = float(np.mean(kl_monte_carlo(mu, log_var, n=10_000, seed=cfg.seed)))
    x = images.data.x_test[:64].astype(np.float64)  # (64, h, w, c): real images as targets
    logits = rng.normal(0, 4.0, x.shape)  # (64, h, w, c)
    ours = np.asarray(reconstruction_loss(x, logits))  # (64,)
    bce = keras.losses.binary_crossentropy(x[..., None], logits[..., None], from_logits=True)
    theirs = np.asarray(bce).reshape(len(x), -1).sum(axis=1)  # (64,): summed over the pixels
    ex.log(kl_monte_carlo_rel_err=abs(estimate - closed) / closed,
           recon_loss_max_rel_err=np.max(np.abs(ours - theirs) / theirs))


def train(cfg: Config, ex: Experiment, images: Images) -> tuple[VAE, keras.Model, dict]:
    """Build and fit the VAE, then the plain autoencoder; save the VAE."""
    shape, latent_dim = images.data.input_shape, cfg.options["latent_dim"]
    vae = ex.runtime.build(compile_vae, shape, latent_dim, cfg.learning_rate, seed=cfg.seed,
                           kl_weight=cfg.options.get("kl_weight", 1.0))
    ae = ex.runtime.build(compile_autoencoder, shape, latent_dim, cfg.learning_rate)
    print(f"VAE, latent size {latent_dim}: {cfg.epochs} epochs")
    history = fit_model(vae, images.train, cfg.epochs, images.test, ex.callbacks())
    print("Plain autoencoder: the same networks without sampling or KL term")
    fit_model(ae, images.pairs, cfg.epochs, callbacks=ex.callbacks("autoencoder"))
    ex.save_model(vae)
    return vae, ae, history.history


def _decode(decoder: keras.Model, z) -> np.ndarray:
    """Pixel probabilities sigmoid(logits) for codes `z`."""
    return ops.convert_to_numpy(ops.sigmoid(decoder.predict(z, verbose=0)))


def _nearest_mse(images: np.ndarray, reference: np.ndarray) -> float:
    """Mean over `images` of the per-pixel MSE to the closest `reference` image."""
    a, b = images.reshape(len(images), -1), reference.reshape(len(reference), -1)
    d = (a**2).sum(1)[:, None] - 2 * a @ b.T + (b**2).sum(1)[None, :]  # (n, m) squared distances
    return float(np.maximum(d.min(axis=1), 0).mean() / a.shape[1])


def evaluate(cfg: Config, ex: Experiment, vae: VAE, ae: keras.Model, images: Images) -> Outputs:
    """Log both models' test losses against the mean-image baseline, and how well each generates."""
    x_train, x_test = images.data.x_train, images.data.x_test
    scores, mu, recon = evaluate_vae(vae, images.test, x_test)
    # The baseline: always predict the mean training image.
    p_mean = np.clip(x_train.mean(axis=0, keepdims=True), 1e-6, 1 - 1e-6)  # (1, h, w, c)
    mean_logits = np.broadcast_to(np.log(p_mean / (1 - p_mean)), x_test.shape)
    baseline = float(ops.mean(reconstruction_loss(x_test, mean_logits)))
    mse_baseline = float(np.mean((x_test - p_mean) ** 2))
    ae_codes = ae.get_layer("ae_encoder").predict(x_test, verbose=0)  # (n_test, latent)
    ae_logits = ae.predict(x_test, verbose=0)  # (n_test, h, w, c)
    ae_recon = ops.convert_to_numpy(ops.sigmoid(ae_logits))
    # Generate: decode the same draws z ~ N(0, I) with each decoder, and measure how far
    # each result is from the closest real training image (a real test image for scale).
    z_prior = np.random.default_rng(cfg.seed).standard_normal((64, mu.shape[1]))
    vae_samples = _decode(vae.decoder, z_prior.astype("float32"))
    ae_samples = _decode(ae.get_layer("ae_decoder"), z_prior.astype("float32"))
    ex.log(
        test_loss=scores["loss"], test_recon_loss=scores["recon_loss"], test_kl=scores["kl"],
        baseline_recon_loss=baseline, recon_ratio=scores["recon_loss"] / baseline,
        test_mse_ratio=np.mean((recon - x_test) ** 2) / mse_baseline,
        ae_test_recon_loss=ops.mean(reconstruction_loss(x_test, ae_logits)),
        ae_test_mse_ratio=np.mean((ae_recon - x_test) ** 2) / mse_baseline,
        vae_code_std=np.std(mu), ae_code_std=np.std(ae_codes),
        vae_prior_nn_mse=_nearest_mse(vae_samples, x_train),
        ae_prior_nn_mse=_nearest_mse(ae_samples, x_train),
        real_nn_mse=_nearest_mse(x_test[:64], x_train),
    )
    return Outputs(mu, recon, ae_codes, ae_recon, vae_samples, ae_samples)


def _latent_maps(vae_codes, ae_codes, labels) -> Figure:
    """Scatter the first two code dimensions of the test images, VAE beside plain AE."""
    fig = Figure(figsize=(11, 4.8), layout="constrained")
    for i, (codes, name) in enumerate([(vae_codes, "VAE: μ of q(z|x)"), (ae_codes, "plain AE: z")]):
        plotting.scatter_2d(codes[:, :2], labels, title=name, xlabel="z₁", ylabel="z₂",
                            ax=fig.add_subplot(1, 2, i + 1))
    return fig


def _manifold(decoder, shape, n: int = 10) -> Figure:
    """Decode an n×n grid of z over the prior's central 90 % (Gaussian quantiles), tiled."""
    h, w, c = shape
    q = math.sqrt(2) * ops.convert_to_numpy(ops.erfinv(np.linspace(-0.9, 0.9, n)))  # Φ⁻¹
    z = np.stack(np.meshgrid(q, q[::-1]), axis=-1).reshape(-1, 2).astype("float32")  # (n², 2)
    images = _decode(decoder, z)  # (n², h, w, c)
    images = np.pad(images, ((0, 0), (0, 1), (0, 1), (0, 0)), constant_values=0.35)  # a seam
    h, w = h + 1, w + 1  # each tile with its seam, so that neighbouring digits stay apart
    tiled = images.reshape(n, n, h, w, c).transpose(0, 2, 1, 3, 4).reshape(n * h, n * w, c)
    fig = Figure(figsize=(6.5, 6.5), layout="constrained")
    ax = fig.add_subplot()
    ax.imshow(tiled[..., 0] if c == 1 else tiled, cmap="gray",
              extent=(q[0], q[-1], q[0], q[-1]))
    ax.set(title="Decoder output over a grid of z (prior quantiles 5 %–95 %)",
           xlabel="z₁", ylabel="z₂")
    return fig


def draw(ex: Experiment, vae: VAE, images: Images, out: Outputs, history: dict) -> None:
    """Reconstructions, prior samples, both code spaces, the VAE's manifold and loss curves."""
    x_test, y_test = images.data.x_test, images.data.y_test
    ex.save_figure(plotting.image_grid(
        np.concatenate([x_test[:16], out.recon[:16], out.ae_recon[:16]]), ncols=16,
        title="Test images; VAE reconstructions (from μ); plain AE reconstructions"),
        "reconstructions")
    ex.save_figure(plotting.image_grid(
        np.concatenate([out.vae_samples[:32], out.ae_samples[:32]]), ncols=16,
        title="The same z ~ N(0, I) decoded: VAE (top two rows), plain AE (bottom two)"),
        "prior_samples")
    ex.save_figure(_latent_maps(out.mu, out.ae_codes, y_test), "latent_maps")
    if out.mu.shape[1] == 2:
        ex.save_figure(_manifold(vae.decoder, images.data.input_shape), "manifold")
    curves = {k: history[k] for p in ("", "val_") for k in (p + "loss", p + "recon_loss", p + "kl")}
    ex.save_figure(plotting.history_curves(curves, "VAE training: loss (−ELBO) = "
                                           "reconstruction + KL, per image"), "loss_curves")


# --- Concept diagram (saved as chapters/figures/vae/concept_*.png) ---------------------
def vae_concept(seed: int = 1) -> Figure:
    """Encoder → (μ, log σ²) → z = μ + σ·ε → decoder, with numbers from this module."""
    mu, log_var = np.array([[0.8, -1.2]]), np.array([[-1.6, -0.4]])  # one image's code, 2-D
    eps = np.random.default_rng(seed).standard_normal((1, 2))
    z, kl = np.asarray(reparameterize(mu, log_var, eps)), float(kl_divergence(mu, log_var)[0])
    fig = Figure(figsize=(12, 3.8), layout="constrained")
    ax = fig.add_subplot()
    vec = lambda v: "(" + ", ".join(f"{a:.2f}" for a in np.ravel(v)) + ")"  # noqa: E731
    boxes = [(0, "image $x$", "white"), (2.4, "encoder\n$q(z \\mid x)$", "C0"),
             (5.0, f"$\\mu$ = {vec(mu)}\n$\\log\\sigma^2$ = {vec(log_var)}", "C1"),
             (7.9, f"sampler\n$z = \\mu + \\sigma \\odot \\epsilon$\n= {vec(z)}", "C3"),
             (10.5, "decoder\n$p(x \\mid z)$", "C0"), (12.8, "logits of\neach pixel", "white")]
    for x, text, color in boxes:
        ax.add_patch(FancyBboxPatch((x - 0.95, -0.55), 1.9, 1.1, boxstyle="round,pad=0.05",
                                    fc=color, ec="black", alpha=0.3 if color != "white" else 1))
        ax.text(x, 0, text, ha="center", va="center", fontsize=9)
    for (x0, *_), (x1, *_) in zip(boxes, boxes[1:]):
        ax.annotate("", (x1 - 1.0, 0), (x0 + 1.0, 0), arrowprops=dict(arrowstyle="->", lw=1.4))
    ax.annotate("", (7.9, 0.6), (7.9, 1.45), arrowprops=dict(arrowstyle="->", color="C3"))
    ax.text(7.9, 1.65, f"$\\epsilon \\sim N(0, I)$ = {vec(eps)}: the only random input",
            ha="center", color="C3", fontsize=9)
    ax.text(5.0, -1.0, f"KL term: $D_{{KL}}(q \\| N(0, I))$ = {kl:.2f} nats", ha="center",
            fontsize=9, color="C1")
    ax.text(11.6, -1.0, "reconstruction term: $-\\log p(x \\mid z)$", ha="center",
            fontsize=9, color="C0")
    ax.set(xlim=(-1.2, 14), ylim=(-1.4, 2.0))
    ax.axis("off")
    fig.suptitle("A VAE: loss = reconstruction + KL; gradients reach the encoder through "
                 "$\\mu$ and $\\sigma$, never through $\\epsilon$")
    return fig


def concept_figures() -> dict[str, Figure]:
    """The chapter's diagram of its idea, drawn from its own functions."""
    return {"concept_vae": vae_concept()}


def run(cfg: Config) -> dict:
    """Check the VAE's pieces, train it beside the plain autoencoder, compare, draw."""
    with Experiment(cfg) as ex:
        images = prepare_data(cfg, ex)
        check_from_scratch(cfg, ex, images)
        vae, ae, history = train(cfg, ex, images)
        out = evaluate(cfg, ex, vae, ae, images)
        draw(ex, vae, images, out, history)
    return ex.metrics


def main(argv=None):
    cli.main(__name__, run, argv)


if __name__ == "__main__":
    main()
