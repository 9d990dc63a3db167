"""Spatial-broadcast β-VAE in Keras 3 (TensorFlow backend).

Models
------
- ``Encoder``: 4 × Conv(64, 4×4, stride 2, ReLU) → Dense 256 → (mean, log-variance) of z.
- ``SpatialBroadcastDecoder`` (Watters et al. 2019, "Spatial Broadcast Decoder", arXiv:1901.07017):
  tile z over an (H+8)×(W+8) grid, append x/y coordinate channels in [-1, 1], then
  4 × Conv(64, 3×3, VALID, ReLU) and a 1×1 conv to one logit channel. Stride 1, no upsampling.
- ``DeconvDecoder``: the usual transposed-conv mirror of the encoder, the baseline SBD is compared to.
- ``DlibConvEncoder``, ``DlibDeconvDecoder`` (sbd_vae/architectures.py): disentanglement_lib's
  conv_encoder and deconv_decoder (Higgins et al. 2017, Table 1; Locatello et al. 2019), 64².
  ``BetaVAE(encoder=..., decoder=...)`` picks them by name from the registry
  ``sbd_vae.hparams.ENCODERS`` / ``DECODERS`` (one line per architecture).
- ``BetaVAE(keras.Model)``: the objective of Higgins et al. 2017 ("β-VAE", ICLR), the capacity
  objective of Burgess et al. 2018 ("Understanding disentangling in β-VAE", arXiv:1804.03599),
  β-TCVAE (Chen et al. 2018, "Isolating sources of disentanglement in VAEs", NeurIPS), DIP-VAE-I
  and -II (Kumar et al. 2018, "Variational inference of disentangled latent concepts from
  unlabeled observations", ICLR) or FactorVAE (Kim & Mnih 2018, "Disentangling by factorising",
  ICML); their formulas: ``BetaVAE.compute_terms``, ``tc_decomposition``, ``dip_covariance``,
  ``dip_penalties``, ``factorvae_terms`` (its ``Discriminator`` and ``OptimizerState``).

Loss reductions (every objective, both likelihoods)
---------------------------------------------------
- reconstruction: −log p(x|z) **summed over pixels**, then **averaged over the batch**;
- KL(q(z|x) ‖ N(0, I)): **summed over latents**, then **averaged over the batch**;
- β-VAE:     loss = recon + β · KL
- capacity:  loss = recon + γ · |KL − C(t)|,  C(t) = C_max · min(1, t / capacity_steps)
- β-TCVAE:   loss = recon + MI + β · TC + dim-wise KL  (batch estimates, nats per image; the
             estimator of q(z), "mws" or "mss", and the dataset size N: tc_estimator,
             tc_dataset_size)
- DIP-VAE:   loss = recon + KL + λ_od Σ_{i≠j} C_ij² + λ_d Σ_i (C_ii − 1)²,  λ_od = β
- FactorVAE: loss = recon + KL + γ · TC (a discriminator's density ratio), γ = β; the
             discriminator minimises its own cross-entropy with its own Adam
With 128² = 16384 Bernoulli pixels the useful β reach the hundreds; β_norm = β · M / N (Higgins
et al. 2017, M latents, N pixels) is what stays comparable across image sizes (``beta_norm``).

Numerical guard rail: the encoder's log-variance is clipped to [LOGVAR_MIN, LOGVAR_MAX] = [-30, 20]
before any ``exp``, so exp(logvar) ≤ 4.9e8 never overflows float32 (or bfloat16) even if a bad
learning rate drives the pre-activation far out of range. Inside the range the gradient is exact.

Mixed precision: under a ``mixed_bfloat16`` policy the convolutions run in bf16, but the encoder's
mean/log-variance head, the ``Sampling`` layer (so z), the KL, the TC and DIP statistics and the
reconstruction loss are float32.

Hyperparameters: ``BetaVAE`` takes exactly ``sbd_vae.hparams.MODEL_ARGS`` and validates them with
``sbd_vae.hparams.model_problems``, as ``TrainConfig`` does (``BetaVAE(**cfg.model_kwargs())``).

Saved models: every class is registered with Keras under the package name ``PKG = "sbd_vae"`` and
its class name ("sbd_vae>BetaVAE", …); a model.keras file refers to its classes by these names, so
they and the classes' home in this module must not change (tests/test_saved_models.py loads
models saved by an older version).
"""

from __future__ import annotations

import math
import types

import keras
from keras import layers, ops

from sbd_vae import backend, steps
from sbd_vae.architectures import PKG, DlibConvEncoder, DlibDeconvDecoder  # noqa: F401  (API)
from sbd_vae.hparams import (  # noqa: F401  (DECODERS … beta_norm: part of this module's API)
    AUXILIARY_NETS,
    DECODER,
    DECODERS,
    DIP_LAMBDA_D_FACTOR,
    ENCODER,
    ENCODERS,
    FACTORVAE_ADAM,
    FACTORVAE_DISCRIMINATOR,
    LIKELIHOODS,
    LOGVAR_MAX,
    LOGVAR_MIN,
    MODEL_ARGS,
    OBJECTIVE_TERMS,
    OBJECTIVES,
    TC_DATASET_SIZE,
    TC_ESTIMATOR,
    TC_ESTIMATORS,
    beta_norm,
    check_image_size,
    model_problems,
)

# LOGVAR_MIN, LOGVAR_MAX (hparams) and PKG, the Keras registration package of every class here
# (saved files name it; sbd_vae/architectures.py), are imported above.


def kl_per_dim(mean, logvar):
    """KL(N(mean, exp(logvar)) ‖ N(0, 1)) per latent, (B, D) → (B, D). Zero at mean=0, logvar=0."""
    return 0.5 * (ops.exp(logvar) + ops.square(mean) - 1.0 - logvar)


def gaussian_log_density(z, mean, logvar):
    """log N(z; mean, exp(logvar)) elementwise (shapes broadcast), in nats."""
    return -0.5 * (math.log(2.0 * math.pi) + logvar + ops.square(z - mean) * ops.exp(-logvar))


def mss_log_weights(batch: int, dataset_size: float = TC_DATASET_SIZE):
    """(B, B) log importance weights of minibatch stratified sampling (Chen et al. 2018,
    "Isolating sources of disentanglement in VAEs", NeurIPS, App. C.2).

    Row i estimates q(z_i) = E_{p(n)} q(z_i|n) from the batch that produced z_i: weight 1/N on
    its own posterior (column i), (N − B + 1) / (N (B − 1)) on one other stratum (column i+1 mod
    B) and 1/(B − 1) on the remaining B − 2. Each row sums to 1. Needs B ≥ 2."""
    n, b = float(dataset_size), ops.cast(batch, "float32")  # batch may be a traced int
    eye = ops.eye(batch, dtype="float32")  # (B, B)
    strat = ops.roll(eye, 1, axis=1)  # (B, B): 1 at (i, i+1 mod B)
    other = 1.0 - eye - strat  # (B, B): the B − 2 plain strata of each row
    w = eye / n + strat * ((n - b + 1.0) / (n * (b - 1.0))) + other / (b - 1.0)
    return ops.log(w)  # every weight is > 0 for N ≥ B ≥ 2


def tc_decomposition(
    z, mean, logvar, dataset_size: float = TC_DATASET_SIZE, estimator: str = TC_ESTIMATOR
) -> dict:
    """KL = MI + TC + dim-wise KL on a batch (Chen et al. 2018, Eq. 2), each a batch mean (nats).

    z, mean, logvar: (B, D), z ~ q(z|x_i) row by row; M = B is the batch, N = ``dataset_size``
    the number of distinct training points (``dataset.ShapesDataset.num_points``). With log q(z)
    and log q(z_l) estimated by ``estimator``:
      mi         = E[log q(z|x) − log q(z)]              (index-code mutual information)
      tc         = E[log q(z) − Σ_l log q(z_l)]          (total correlation)
      dimwise_kl = E[Σ_l log q(z_l) − log p(z)]           (p = N(0, I))
    The three add up to the one-sample KL estimate E[log q(z|x) − log p(z)] for any N and either
    estimator.

    "mws", minibatch weighted sampling (Chen et al. 2018, App. C.1), with its constants kept:
      log q(z_i)   ≈ logsumexp_j log q(z_i | x_j)   − log(N·M)
      log q(z_il)  ≈ logsumexp_j log q(z_il | x_j)  − log(N·M)     for each latent l.
    disentanglement_lib (methods/unsupervised/vae.py, ``total_correlation``; its β-TCVAE adds
    (β − 1)·TC to the analytic KL) drops the −log(N·M): log q(z) loses one of them and
    Σ_l log q(z_l) D of them, so with D latents
      tc (here) = tc (disentanglement_lib) + (D − 1)·log(N·M),
    mi is log(N·M) higher and dimwise_kl D·log(N·M) lower than without the constant. The shift
    does not depend on the model, so the gradients are identical; only the values differ, and
    they depend on N: next to the plain batch average (1/M) Σ_j q(z | x_j), every density here is
    log N lower, so tc is (D − 1)·log N higher.

    "mss", minibatch stratified sampling (Chen et al. 2018, App. C.2; ``mss_log_weights``):
    q(z_i) ≈ Σ_j w_ij q(z_i | x_j) with weight 1/N on a sample's own posterior, and likewise each
    q(z_il). Every run before the estimator was a choice used it, with N = ``TC_DATASET_SIZE``.
    At small batches its TC is biased, by an amount that depends on N and on the posteriors'
    widths: below 0 for wide ones, far above for narrow ones (scripts/tc_batch_bias.py).
    """
    if estimator not in TC_ESTIMATORS:
        raise ValueError(f"estimator {estimator!r}: choose one of {TC_ESTIMATORS}")
    b = ops.shape(z)[0]
    # log q(z_il | x_j) for every pair: (B, B, D) indexed [i, j, l]
    log_qzx = gaussian_log_density(z[:, None, :], mean[None, :, :], logvar[None, :, :])
    if estimator == "mss":
        log_w = mss_log_weights(b, dataset_size)  # (B, B)
        log_qz = ops.logsumexp(log_w + ops.sum(log_qzx, axis=2), axis=1)  # (B,)
        log_qz_dims = ops.logsumexp(log_w[:, :, None] + log_qzx, axis=1)  # (B, D)
    else:  # mws: log(N·M) as log N + log M (a float32 N·M would round for large N)
        log_nm = math.log(float(dataset_size)) + ops.log(ops.cast(b, "float32"))
        log_qz = ops.logsumexp(ops.sum(log_qzx, axis=2), axis=1) - log_nm  # (B,)
        log_qz_dims = ops.logsumexp(log_qzx, axis=1) - log_nm  # (B, D)
    log_qz_x = ops.sum(gaussian_log_density(z, mean, logvar), axis=1)  # (B,)
    log_pz = ops.sum(gaussian_log_density(z, 0.0, 0.0), axis=1)  # (B,)
    log_prod_qz = ops.sum(log_qz_dims, axis=1)  # (B,)
    return {
        "mi": ops.mean(log_qz_x - log_qz),
        "tc": ops.mean(log_qz - log_prod_qz),
        "dimwise_kl": ops.mean(log_prod_qz - log_pz),
    }


def total_correlation(
    z, mean, logvar, dataset_size: float = TC_DATASET_SIZE, estimator: str = TC_ESTIMATOR
):
    """TC(q(z)) = KL(q(z) ‖ Π_l q(z_l)) estimated on a batch by minibatch weighted ("mws") or
    stratified ("mss") sampling (Chen et al. 2018, App. C.1 / C.2), N = ``dataset_size``;
    z, mean, logvar (B, D) → scalar (nats). ``tc_decomposition`` has the formulas."""
    return tc_decomposition(z, mean, logvar, dataset_size, estimator)["tc"]


def covariance(x):
    """Covariance over the batch, (B, D) → (D, D): E[x xᵀ] − E[x] E[x]ᵀ (1/B normalised)."""
    centred = x - ops.mean(x, axis=0, keepdims=True)  # (B, D)
    return ops.matmul(ops.transpose(centred), centred) / ops.cast(ops.shape(x)[0], x.dtype)


def dip_covariance(mean, logvar, kind: str):
    """The covariance DIP-VAE drives to the identity (Kumar et al. 2018, "Variational inference of
    disentangled latent concepts from unlabeled observations", ICLR), (B, D) each → (D, D):
    kind "i": Cov_p(x)[μ(x)] (Eq. 6); kind "ii": Cov_q(z)[z] = E_p(x)[diag σ²(x)] + Cov[μ(x)] (Eq. 7)."""
    cov = covariance(mean)
    if kind == "ii":
        cov = cov + ops.diag(ops.mean(ops.exp(logvar), axis=0))
    return cov


def dip_penalties(cov):
    """(off-diagonal, diagonal) penalties of DIP-VAE (Kumar et al. 2018, Eq. 6-7), (D, D) → two
    scalars: Σ_{i≠j} C_ij² and Σ_i (C_ii − 1)². The loss weighs them λ_od and λ_d."""
    diag = ops.diagonal(cov)  # (D,)
    off = ops.sum(ops.square(cov)) - ops.sum(ops.square(diag))
    return off, ops.sum(ops.square(diag - 1.0))


def _with_fields(config: dict, obj, *names) -> dict:
    """Keras ``get_config``: the base config plus the constructor arguments ``names`` of ``obj``."""
    return {**config, **{n: getattr(obj, n) for n in names}}


@keras.saving.register_keras_serializable(package=PKG)
class Sampling(layers.Layer):
    """Reparameterisation z = mean + exp(logvar / 2) · ε (Kingma & Welling 2014).

    The ε stream comes from a Keras ``SeedGenerator`` whose state is a variable, so it is saved in
    checkpoints and a resumed run draws the same ε as an uninterrupted one.

    Always float32, whatever the dtype policy (and whatever ``dtype`` an older saved config
    names): under ``mixed_bfloat16`` a bf16 z resolves only 2⁻⁸ ≈ 0.4 % of its size, so a small
    σ·ε added to a mean near 1 would be rounded away. The decoder casts z to its compute dtype.
    """

    def __init__(self, seed=None, **kwargs):
        kwargs["dtype"] = "float32"  # mean, logvar (float32 encoder head), ε and z: (b, D)
        super().__init__(**kwargs)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs):
        mean, logvar = inputs  # (b, D) each: b = the local batch
        eps = self._noise(ops.shape(mean), mean.dtype)
        return mean + ops.exp(0.5 * logvar) * eps

    def _noise(self, shape, dtype):
        """ε (b, D). Under tf.distribute every replica holds the same SeedGenerator state, so each
        replica draws the global (R·b, D) block and keeps its own rows r·b … (r+1)·b: replicas get
        different noise, and sample for sample the same noise as one device on the global batch.
        On JAX the step sees the global batch (``keras.distribution`` shards it for the devices),
        so one draw of the global shape is already the single-device noise."""
        if backend.is_jax():
            return keras.random.normal(shape, dtype=dtype, seed=self.seed_generator)
        import tensorflow as tf

        ctx = tf.distribute.get_replica_context()
        replicas = ctx.num_replicas_in_sync if ctx is not None else 1
        if replicas == 1:
            return keras.random.normal(shape, dtype=dtype, seed=self.seed_generator)
        b = shape[0]
        eps = keras.random.normal((replicas * b, shape[1]), dtype=dtype, seed=self.seed_generator)
        start = tf.cast(ctx.replica_id_in_sync_group, "int32") * b
        return eps[start : start + b]

    def get_config(self):
        return {**super().get_config(), "seed": self.seed}


@keras.saving.register_keras_serializable(package=PKG)
class Encoder(keras.Model):
    """(B, S, S, 1) images → (mean, logvar), each (B, D). 4 × Conv(ch, 4×4, s2) → Dense(hidden)."""

    def __init__(self, latent_dim=10, channels=64, hidden=256, **kwargs):
        super().__init__(**kwargs)
        self.latent_dim, self.channels, self.hidden = latent_dim, channels, hidden
        self.convs = [
            layers.Conv2D(
                channels, 4, strides=2, padding="same", activation="relu", name=f"conv{i}"
            )
            for i in range(4)
        ]
        self.flatten = layers.Flatten()
        self.dense = layers.Dense(hidden, activation="relu", name="dense")
        # One head for both statistics, split afterwards; float32 so mean, logvar, z (Sampling is
        # float32 too) and the KL are computed in float32 even under a mixed-precision policy.
        self.head = layers.Dense(2 * latent_dim, name="head", dtype="float32")

    def call(self, x):
        h = x  # (B, S, S, 1)
        for conv in self.convs:
            h = conv(h)  # (B, S/16, S/16, ch) after the 4th
        h = self.dense(self.flatten(h))  # (B, hidden)
        stats = self.head(h)  # (B, 2D)
        mean, logvar = ops.split(stats, 2, axis=-1)
        return mean, ops.clip(logvar, LOGVAR_MIN, LOGVAR_MAX)

    def get_config(self):
        return _with_fields(super().get_config(), self, "latent_dim", "channels", "hidden")


def coordinate_grid(size: int):
    """(1, size, size, 2) x/y channels, each linearly spaced in [-1, 1]; x grows right, y down."""
    lin = ops.linspace(-1.0, 1.0, size)
    ys, xs = ops.meshgrid(lin, lin, indexing="ij")  # (size, size) each
    return ops.expand_dims(ops.stack([xs, ys], axis=-1), 0)


@keras.saving.register_keras_serializable(package=PKG)
class SpatialBroadcastDecoder(keras.Model):
    """Spatial Broadcast Decoder (Watters et al. 2019): z (B, D) → logits (B, S, S, 1).

    z is broadcast to a (S+8)×(S+8) grid, x/y coordinate channels are appended, and four
    3×3 VALID convolutions shrink the grid back to S×S (each removes 2 pixels); a 1×1 conv gives
    one logit channel. Only stride-1 convolutions: the coordinates carry all positional structure.

    The first convolution is computed in its equivalent cheap form: on a spatially constant z,
    conv([tile(z), coords]) = z · Σ_ij W_z[i, j]  (a per-sample bias, (B, 1, 1, C))
                            + conv(coords, W_c)  (one fixed map, (1, S+6, S+6, C)),
    which skips convolving D constant channels at every pixel. ``naive_first_layer`` gives the
    literal tiled convolution; the tests check that both agree.
    """

    def __init__(self, image_size=128, latent_dim=10, channels=64, **kwargs):
        super().__init__(**kwargs)
        self.image_size, self.latent_dim, self.channels = image_size, latent_dim, channels
        self.pad = 8  # four 3×3 VALID convs remove 2 pixels each
        self.first = layers.Conv2D(channels, 3, padding="valid", name="conv0")
        self.convs = [
            layers.Conv2D(channels, 3, padding="valid", activation="relu", name=f"conv{i}")
            for i in range(1, 4)
        ]
        self.out = layers.Conv2D(1, 1, name="logits", dtype="float32")

    def build(self, input_shape):
        g = self.image_size + self.pad
        self.first.build((None, g, g, self.latent_dim + 2))
        shape = (None, g - 2, g - 2, self.channels)
        for conv in self.convs:
            conv.build(shape)
            shape = (None, shape[1] - 2, shape[2] - 2, self.channels)
        self.out.build(shape)

    def _coords(self, dtype):
        return ops.cast(coordinate_grid(self.image_size + self.pad), dtype)  # (1, S+8, S+8, 2)

    def first_layer(self, z):
        """Fused first conv: (B, D) → (B, S+6, S+6, C), pre-activation."""
        kernel = ops.cast(self.first.kernel, z.dtype)  # (3, 3, D+2, C)
        w_z, w_c = kernel[:, :, : self.latent_dim, :], kernel[:, :, self.latent_dim :, :]
        per_sample = ops.matmul(z, ops.sum(w_z, axis=(0, 1)))  # (B, C)
        coord_map = ops.conv(self._coords(z.dtype), w_c, padding="valid")  # (1, S+6, S+6, C)
        bias = ops.cast(self.first.bias, z.dtype)
        return coord_map + per_sample[:, None, None, :] + bias

    def naive_first_layer(self, z):
        """Literal version of ``first_layer``: tile z, concatenate coordinates, convolve."""
        g = self.image_size + self.pad
        tiled = ops.tile(z[:, None, None, :], (1, g, g, 1))  # (B, S+8, S+8, D)
        coords = ops.tile(self._coords(z.dtype), (ops.shape(z)[0], 1, 1, 1))
        return self.first(ops.concatenate([tiled, coords], axis=-1))

    def call(self, z):
        h = ops.relu(self.first_layer(ops.cast(z, self.compute_dtype)))  # (B, S+6, S+6, C)
        for conv in self.convs:
            h = conv(h)  # → (B, S, S, C)
        return self.out(h)  # (B, S, S, 1) logits

    def get_config(self):
        return _with_fields(super().get_config(), self, "image_size", "latent_dim", "channels")


@keras.saving.register_keras_serializable(package=PKG)
class DeconvDecoder(keras.Model):
    """Transposed-conv baseline, the mirror of the encoder: z (B, D) → logits (B, S, S, 1)."""

    def __init__(self, image_size=128, latent_dim=10, channels=64, hidden=256, **kwargs):
        super().__init__(**kwargs)
        self.image_size, self.latent_dim = image_size, latent_dim
        self.channels, self.hidden = channels, hidden
        s0 = image_size // 16
        self.dense = layers.Dense(hidden, activation="relu", name="dense")
        self.project = layers.Dense(s0 * s0 * channels, activation="relu", name="project")
        self.reshape = layers.Reshape((s0, s0, channels))
        self.deconvs = [
            layers.Conv2DTranspose(
                channels, 4, strides=2, padding="same", activation="relu", name=f"deconv{i}"
            )
            for i in range(3)
        ]
        self.out = layers.Conv2DTranspose(
            1, 4, strides=2, padding="same", name="logits", dtype="float32"
        )

    def call(self, z):
        h = self.reshape(self.project(self.dense(z)))  # (B, S/16, S/16, ch)
        for deconv in self.deconvs:
            h = deconv(h)  # doubles the size each time → (B, S/2, S/2, ch)
        return self.out(h)  # (B, S, S, 1) logits

    def get_config(self):
        return _with_fields(
            super().get_config(), self, "image_size", "latent_dim", "channels", "hidden"
        )


def permute_dims(z, seed_generator):
    """Each latent permuted independently over the batch (Kim & Mnih 2018, Alg. 1): samples of
    Π_j q(z_j) from samples of q(z). (B, D) → (B, D)."""
    keys = keras.random.uniform(ops.shape(z), seed=seed_generator)  # (B, D)
    return ops.take_along_axis(z, ops.argsort(keys, axis=0), axis=0)  # a permutation per column


def factorvae_terms(discriminator, permute_seed, z) -> dict:
    """FactorVAE's terms (Kim & Mnih 2018, Eq. 2 and Alg. 1) on sampled codes z (B, D), float32:
    ``tc``, ``discriminator_loss``, ``discriminator_accuracy`` (scalars).

    VAE:  loss = recon + KL + γ · tc,  tc ≈ E[logit_real(z) − logit_permuted(z)] (the density
          ratio trick), γ = --beta; the discriminator's weights are held constant here.
    Discriminator: −(½ E log D(z)_real + ½ E log D(perm(z))_permuted), z held constant
          (``stop_gradient``), so only the discriminator learns from it: it is the auxiliary net's
          loss (``hparams.AUXILIARY_NETS``), which the steps train with its own optimiser.
    Formulas as disentanglement_lib's FactorVAE (log-softmax for its clipped log-probs);
    ``permute_seed`` draws the permutations (``permute_dims``)."""
    logits = discriminator.frozen(z)  # (B, 2), gradient to the encoder only
    tc = ops.mean(logits[:, 0] - logits[:, 1])
    fixed = ops.stop_gradient(z)
    real = ops.log_softmax(discriminator(fixed), axis=-1)  # (B, 2)
    fake = ops.log_softmax(discriminator(permute_dims(fixed, permute_seed)), axis=-1)
    disc_loss = -0.5 * (ops.mean(real[:, 0]) + ops.mean(fake[:, 1]))
    accuracy = 0.5 * (ops.mean(ops.cast(real[:, 0] > real[:, 1], "float32"))
                      + ops.mean(ops.cast(fake[:, 1] > fake[:, 0], "float32")))  # fmt: skip
    return {"tc": tc, "discriminator_loss": disc_loss, "discriminator_accuracy": accuracy}


# ----------------------------------------------------------------------------- objectives
# --objective → its loss: f(vae, recon, kl, cap, z, mean, logvar) → (loss, its own terms).
# recon, kl, cap (C(t)): batch-mean scalars; z (B, D) in the compute dtype; mean, logvar (B, D)
# float32. Its own terms are hparams.OBJECTIVE_TERMS[name]. A new objective is a function here,
# its line in OBJECTIVE_LOSSES, and its name in hparams.OBJECTIVES (a test checks they agree).
def beta_vae_loss(vae, recon, kl, cap, z, mean, logvar):
    """β-VAE (Higgins et al. 2017): recon + β · KL."""
    return recon + vae.beta * kl, {}


def capacity_loss(vae, recon, kl, cap, z, mean, logvar):
    """Controlled capacity (Burgess et al. 2018, Eq. 8): recon + γ · |KL − C(t)|."""
    return recon + vae.gamma * ops.abs(kl - cap), {}


def tcvae_loss(vae, recon, kl, cap, z, mean, logvar):
    """β-TCVAE (Chen et al. 2018, Eq. 4): recon + MI + β · TC + dim-wise KL (``tc_decomposition``
    with the run's estimator and N = ``tc_dataset_size``). At β = 1 the ELBO, one-sample KL."""
    parts = tc_decomposition(ops.cast(z, "float32"), mean, logvar,
                             vae.tc_dataset_size, vae.tc_estimator)  # fmt: skip
    return recon + parts["mi"] + vae.beta * parts["tc"] + parts["dimwise_kl"], parts


def dipvae_loss(vae, recon, kl, cap, z, mean, logvar):
    """DIP-VAE-I/II (Kumar et al. 2018, Eq. 6 and 7): recon + KL + λ_od · Σ_{i≠j} C_ij²
    + λ_d · Σ_i (C_ii − 1)², λ_od = β, λ_d = ``DIP_LAMBDA_D_FACTOR`` · β."""
    off, diag = dip_penalties(dip_covariance(mean, logvar, vae.objective[len("dipvae_") :]))
    lambda_d = DIP_LAMBDA_D_FACTOR[vae.objective] * vae.beta
    return recon + kl + vae.beta * off + lambda_d * diag, {"dip_offdiag": off, "dip_diag": diag}


def factorvae_loss(vae, recon, kl, cap, z, mean, logvar):
    """FactorVAE (Kim & Mnih 2018, Eq. 2): recon + KL + γ · TC by the discriminator
    (``factorvae_terms``), γ = β."""
    parts = factorvae_terms(vae.discriminator, vae.permute_seed, ops.cast(z, "float32"))
    return recon + kl + vae.beta * parts["tc"], parts


OBJECTIVE_LOSSES = {
    "beta": beta_vae_loss,
    "capacity": capacity_loss,
    "tcvae": tcvae_loss,
    "dipvae_i": dipvae_loss,
    "dipvae_ii": dipvae_loss,
    "factorvae": factorvae_loss,
}


@keras.saving.register_keras_serializable(package=PKG)
class Discriminator(keras.Model):
    """FactorVAE's discriminator (Kim & Mnih 2018, "Disentangling by factorising", ICML):
    z (B, D) → logits (B, 2) of [a sample of q(z), a dimension-wise permuted one]. ``depth`` ×
    Dense(units, LeakyReLU) then Dense(2), as disentanglement_lib's ``fc_discriminator``; float32
    whatever the policy (its logits estimate a log density ratio)."""

    def __init__(self, latent_dim=10, units=1000, depth=6, leak=0.2, **kwargs):
        super().__init__(**kwargs)
        self.latent_dim, self.units, self.depth, self.leak = latent_dim, units, depth, leak
        self.hidden = [layers.Dense(units, name=f"dense{i}", dtype="float32") for i in range(depth)]
        self.out = layers.Dense(2, name="logits", dtype="float32")

    def call(self, z):
        h = ops.cast(z, "float32")  # (B, D)
        for dense in self.hidden:
            h = ops.leaky_relu(dense(h), self.leak)  # (B, units)
        return self.out(h)  # (B, 2)

    def frozen(self, z):
        """The logits with the weights held constant: the gradient reaches z (the encoder), never
        the discriminator, which only its own loss trains (Kim & Mnih 2018, Alg. 1)."""
        consts = [ops.stop_gradient(ops.convert_to_tensor(v)) for v in self.trainable_variables]
        state = [ops.convert_to_tensor(v) for v in self.non_trainable_variables]
        return self.stateless_call(consts, state, z)[0]

    def get_config(self):
        return _with_fields(super().get_config(), self, "latent_dim", "units", "depth", "leak")


@keras.saving.register_keras_serializable(package=PKG)
class OptimizerState(layers.Layer):
    """A second optimiser whose variables are this model's non-trainable state.

    FactorVAE trains its discriminator with its own Adam. Held here, that Adam's moments and
    step counter are model variables: the JAX trainer threads them through the jitted step, and
    checkpoints (``rundir``: ``model.variables``) save and restore them, so a resumed run is
    bit-exact. Like the main optimiser's state in a published model, they stay out of
    model.keras (``save_own_variables`` writes nothing): only resuming needs them.
    """

    def __init__(self, adam=None, **kwargs):
        super().__init__(**kwargs)
        self.adam = dict(adam or FACTORVAE_ADAM)
        # In a namespace, not an attribute: Keras would save an Optimizer attribute in model.keras.
        self.box = types.SimpleNamespace(optimizer=keras.optimizers.Adam(**self.adam))
        self.slots = []

    def get_optimizer(self):
        """The optimiser (a method, not a property: Keras saving walks properties and would
        write the optimiser's variables into model.keras)."""
        return self.box.optimizer

    def build_for(self, variables) -> None:
        """Creates the optimiser's variables for ``variables`` and tracks them as this layer's."""
        self.get_optimizer().build(variables)
        self.slots = list(self.get_optimizer().variables)
        self.built = True

    def save_own_variables(self, store):
        pass

    def load_own_variables(self, store):
        pass

    def get_config(self):
        return {**super().get_config(), "adam": self.adam}


@keras.saving.register_keras_serializable(package=PKG)
class BetaVAE(keras.Model):
    """β-VAE (Higgins et al. 2017) with a capacity option (Burgess et al. 2018).

    ``train_step`` and ``test_step`` return the same keys: ``loss``, ``reconstruction``, ``kl``,
    ``kl_0`` … ``kl_{D-1}`` (batch-mean KL of each latent, nats) and ``capacity`` (C(t); 0 for β).
    Reductions: recon summed over pixels, KL summed over latents, both averaged over the batch.

    Under ``tf.distribute`` each replica sees B/R images; its loss is scaled by 1/R (as Keras does
    in ``compute_loss``) so the all-reduced gradient is that of the global-batch mean, and the
    trackers are weighted by the local batch so the reported metrics are global means.
    """

    def __init__(
        self,
        image_size=128,
        latent_dim=10,
        decoder=DECODER,
        channels=64,
        hidden=256,
        beta=1.0,
        objective="beta",
        gamma=1000.0,
        capacity_max=25.0,
        capacity_steps=100000,
        likelihood="bernoulli",
        gaussian_sigma=0.1,
        seed=None,
        tc_estimator=TC_ESTIMATOR,
        tc_dataset_size=TC_DATASET_SIZE,
        encoder=ENCODER,
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_image_size(image_size)
        problems = model_problems(decoder, likelihood, objective, beta, gaussian_sigma,
                                  tc_estimator, encoder, image_size)  # fmt: skip
        if not (isinstance(tc_dataset_size, int) and tc_dataset_size >= 2):
            problems.append(f"tc_dataset_size={tc_dataset_size!r}: must be an int ≥ 2")
        if problems:
            raise ValueError("invalid BetaVAE arguments: " + "; ".join(problems))
        self.image_size, self.latent_dim = image_size, latent_dim
        self.encoder_name, self.decoder_name = encoder, decoder
        self.channels, self.hidden = channels, hidden
        self.beta, self.objective, self.gamma = float(beta), objective, float(gamma)
        self.capacity_max, self.capacity_steps = float(capacity_max), int(capacity_steps)
        self.likelihood, self.gaussian_sigma, self.seed = likelihood, float(gaussian_sigma), seed
        # β-TCVAE's estimator and N (tc_decomposition); recorded, unused, by the other objectives
        self.tc_estimator, self.tc_dataset_size = tc_estimator, tc_dataset_size

        # the registry's classes, given the arguments each takes (hparams.Network.args)
        self.encoder = self._network(ENCODERS[encoder], "encoder")
        self.decoder = self._network(DECODERS[decoder], "decoder")
        self.sampling = Sampling(seed, name="sampling")
        # the objective's auxiliary nets (FactorVAE's discriminator), each with its optimiser's
        # state and its loss's seeds, in this order (model.variables': checkpoints follow it)
        for aux in AUXILIARY_NETS.get(objective, ()):
            setattr(self, aux.name, self._network(aux.network, aux.name, **aux.kwargs))
            setattr(self, aux.state, OptimizerState(aux.adam, name=aux.name + "_optimizer"))
            for name in aux.seeds:
                setattr(self, name, keras.random.SeedGenerator(seed, name=name))
        self.trackers = {n: keras.metrics.Mean(name=n) for n in ["loss", *self.term_names()]}
        self.data_warp = None  # dataset.ShapesDataset.warp, for batches of warp parameters

    def _network(self, spec, name, **kwargs):
        """The network ``spec`` (an ``hparams.Network``: the encoder, the decoder or an
        auxiliary net) names, built from this model's values of the arguments it takes."""
        return spec.resolve()(**{a: getattr(self, a) for a in spec.args}, **kwargs, name=name)

    def auxiliaries(self) -> list:
        """[(``hparams.Auxiliary``, its network, its optimiser)] of the objective's auxiliary
        nets (``AUXILIARY_NETS``; [] for most): what the steps (``sbd_vae.steps``) train besides
        the VAE, each on its own loss term with its own optimiser."""
        return [(aux, getattr(self, aux.name), getattr(self, aux.state).get_optimizer())
                for aux in AUXILIARY_NETS.get(self.objective, ())]  # fmt: skip

    # ----------------------------------------------------------------- public API
    @property
    def metrics(self):
        return list(self.trackers.values())

    def build(self, input_shape=None):
        s = self.image_size
        self.encoder(ops.zeros((1, s, s, 1)))  # subclassed models build by tracing one batch
        self.decoder(ops.zeros((1, self.latent_dim)))
        for aux, net, _ in self.auxiliaries():  # each reads the codes z (1, D)
            net(ops.zeros((1, self.latent_dim)))
            getattr(self, aux.state).build_for(net.trainable_variables)
        self.built = True

    def compile_from_config(self, config):
        """Keras' loading of a saved compile config, with the optimiser built on
        ``vae_variables()`` as ``training.build_model`` builds it, so that a saved FactorVAE's
        optimiser state matches and loads (an auxiliary net has its own optimiser)."""
        self.compile(**keras.saving.deserialize_keras_object(config))
        if self.built:
            self.optimizer.build(self.vae_variables())

    def vae_variables(self) -> list:
        """The trainable variables the main optimiser updates: all but the auxiliary nets'
        (FactorVAE's discriminator)."""
        own = {id(v) for _, net, _ in self.auxiliaries() for v in net.trainable_variables}
        return [v for v in self.trainable_variables if id(v) not in own]

    def encode(self, x):
        """(B, S, S, 1) in [0, 1] → (mean, logvar), each (B, D)."""
        return self.encoder(x)

    def decode(self, z, logits=False):
        """(B, D) → (B, S, S, 1) pixel means in [0, 1] (or the raw logits)."""
        out = self.decoder(z)
        return out if logits else ops.sigmoid(out)

    def reconstruct(self, x):
        """Deterministic reconstruction from the posterior mean: decode(encode(x).mean)."""
        return self.decode(self.encode(x)[0])

    def call(self, x, training=False, return_z=False):
        """(logits, mean, logvar), plus z (the sample when training, else the mean) with
        ``return_z``: the latent the decoder saw, which β-TCVAE's loss needs."""
        x = self.images_of(x)  # a dict of warp parameters becomes (B, S, S, 1) images here
        mean, logvar = self.encoder(x)
        z = self.sampling((mean, logvar)) if training else mean
        logits = self.decoder(z)
        return (logits, mean, logvar, z) if return_z else (logits, mean, logvar)

    # ----------------------------------------------------------------- objective
    def reconstruction_loss(self, x, logits):
        """−log p(x|z) summed over pixels, per sample: (B, S, S, 1) → (B,)."""
        x = ops.cast(x, "float32")
        logits = ops.cast(logits, "float32")
        if self.likelihood == "bernoulli":
            nll = ops.binary_crossentropy(x, logits, from_logits=True)  # elementwise (B,S,S,1)
            # keras' binary_crossentropy averages the last axis; it has size 1, so this is per pixel
        else:
            s = self.gaussian_sigma
            nll = 0.5 * ops.square((x - ops.sigmoid(logits)) / s) + math.log(
                s * math.sqrt(2 * math.pi)
            )
        return ops.sum(ops.reshape(nll, (ops.shape(x)[0], -1)), axis=-1)

    def capacity(self, step):
        """C(t) = C_max · min(1, t / capacity_steps) (Burgess et al. 2018), 0 for plain β-VAE."""
        if self.objective != "capacity":
            return ops.convert_to_tensor(0.0)
        t = ops.cast(step, "float32")
        return self.capacity_max * ops.minimum(1.0, t / float(max(self.capacity_steps, 1)))

    # The terms an objective reports besides those of every objective (term_names).
    EXTRA_TERMS = OBJECTIVE_TERMS

    def term_names(self) -> list[str]:
        """The scalar terms ``compute_terms`` reports, in tracker (and history.csv) order: those of
        every objective, then the configured objective's own (``EXTRA_TERMS``)."""
        common = ["reconstruction", "kl", "capacity"] + [f"kl_{i}" for i in range(self.latent_dim)]
        return common + list(self.EXTRA_TERMS.get(self.objective, ()))

    def compute_terms(self, x, training):
        """(loss, terms): the scalar loss (batch mean) and a dict of every ``term_names()`` term.

        ``terms`` holds recon and kl (batch means), ``kl_i`` (batch-mean KL of latent i),
        ``capacity`` (C(t); 0 unless the capacity objective) and the objective's own terms
        (``hparams.OBJECTIVE_TERMS``). The loss is ``OBJECTIVE_LOSSES[objective]``'s: β-VAE,
        capacity, β-TCVAE, DIP-VAE-I/II, FactorVAE, each function with its formula and paper.
        The batch statistics (TC, the DIP covariance, FactorVAE's permutation) are over the local
        batch under tf.distribute.
        """
        # One forward pass through Model.__call__ and one Sampling draw per training step, as
        # before z was returned too: the other objectives' runs are unchanged bit for bit.
        # logits (B, S, S, 1); mean, logvar, z (B, D), float32 (encoder head, Sampling)
        logits, mean, logvar, z = self(x, training=training, return_z=True)
        mean, logvar = ops.cast(mean, "float32"), ops.cast(logvar, "float32")
        recon = ops.mean(self.reconstruction_loss(x, logits))
        kl_dims = ops.mean(kl_per_dim(mean, logvar), axis=0)  # (D,)
        kl = ops.sum(kl_dims)
        optimizer = getattr(self, "optimizer", None)  # absent before compile()
        step = optimizer.iterations if optimizer is not None else 0
        cap = self.capacity(step)
        terms = {"reconstruction": recon, "kl": kl, "capacity": cap}
        terms.update({f"kl_{i}": kl_dims[i] for i in range(self.latent_dim)})
        loss, own = OBJECTIVE_LOSSES[self.objective](self, recon, kl, cap, z, mean, logvar)
        terms.update(own)
        return loss, terms

    def auxiliary_loss(self, terms):
        """What the steps differentiate besides the VAE loss: the sum of the auxiliary nets'
        loss terms (FactorVAE's discriminator loss, whose gradient reaches only the
        discriminator), else 0."""
        return steps.auxiliary_loss(self, terms)

    def update_trackers(self, batch, loss, terms):
        """Batch-weighted means of ``loss`` and every term; returns the logs dict."""
        for name, value in {"loss": loss, **terms}.items():
            self.trackers[name].update_state(value, sample_weight=batch)
        return {name: t.result() for name, t in self.trackers.items()}

    # ----------------------------------------------------------------- training steps
    # Keras calls train_step(data) on TensorFlow and train_step(state, data) on JAX; both run
    # ``compute_terms``, and the gradient machinery of each backend is in sbd_vae/steps.py.
    def train_step(self, *args):
        return steps.train_step(self, *args)

    def test_step(self, *args):
        return steps.test_step(self, *args)

    def images_of(self, data):
        """The (B, S, S, 1) images of a batch: ``data`` is images, (images, factors), or a dict
        of warp parameters (``dataset.ShapesDataset.param_batch``: the host sends factor indices
        and warp parameters, and the warp runs here, on the device, inside the step)."""
        x = data[0] if isinstance(data, tuple | list) else data
        if isinstance(x, dict):
            if self.data_warp is None:
                raise ValueError(
                    "this batch holds warp parameters, not images: set model.data_warp = "
                    "ShapesDataset(...).warp before fit (training.train does)"
                )
            x = self.data_warp(**x)  # keyword arguments: dataset.WARP_KEYS
        return x

    # ----------------------------------------------------------------- serialisation
    def get_config(self):
        # The constructor's arguments, MODEL_ARGS (the names of the encoder and the decoder are
        # encoder_name and decoder_name: the attributes `encoder`, `decoder` are the networks).
        named = {"encoder": "encoder_name", "decoder": "decoder_name"}
        args = {n: getattr(self, named.get(n, n)) for n in MODEL_ARGS}
        return {"name": self.name, **args}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        # model.keras files saved before the TC estimator was a choice lack tc_estimator and
        # tc_dataset_size: their β-TCVAE trained with MSS and N = TC_DATASET_SIZE. Those saved
        # before --encoder lack encoder: the default, ENCODER, is the one they used.
        config = {"tc_estimator": "mss", "tc_dataset_size": TC_DATASET_SIZE, **config}
        return super().from_config(config, custom_objects=custom_objects)


def build_vae(**kwargs) -> BetaVAE:
    """A built (weights created) ``BetaVAE``; kwargs as in ``BetaVAE.__init__``."""
    model = BetaVAE(**kwargs)
    model.build()
    return model
