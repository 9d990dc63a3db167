"""Batched encode/decode of a trained β-VAE as numpy in, numpy out, and the metrics'
representation function (the posterior mean, as in disentanglement_lib: Locatello et al. 2019).

Each model gets one compiled function for its encoder and one for its decoder (``tf.function`` on
TensorFlow, ``jax.jit`` on JAX), traced once per batch shape, so evaluation and figures do not
re-trace. latentSpace.py re-exports encode, decode,
kl_per_latent, unit_activity, active_units and ACTIVE_VAR.

Nothing is computed, and TensorFlow is not imported, when this module is imported.
"""

from __future__ import annotations

import time
import weakref

import numpy as np

_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def compiled(model):
    """(encoder_fn, decoder_fn): one compiled function each per model, traced once for any batch
    size: a ``tf.function`` on TensorFlow; on JAX a ``jax.jit`` of the layer's ``stateless_call``
    that takes the weights' current values at every call (a jitted closure would freeze them).

    The functions hold only a weak reference to the model, so the cache does not keep it alive.
    """
    fns = _CACHE.get(model)
    if fns is None:
        from . import backend

        ref = weakref.ref(model)
        fns = _jax_fns(ref) if backend.is_jax() else _tf_fns(ref)
        _CACHE[model] = fns
    return fns


def _tf_fns(ref):
    import tensorflow as tf

    s, d = int(ref().image_size), int(ref().latent_dim)

    @tf.function(input_signature=[tf.TensorSpec((None, s, s, 1), tf.float32)])
    def enc(x):  # (B, S, S, 1) → (mean, logvar), each (B, D)
        return ref().encoder(x)

    @tf.function(input_signature=[tf.TensorSpec((None, d), tf.float32)])
    def dec(z):  # (B, D) → logits (B, S, S, 1)
        return ref().decoder(z)

    return enc, dec


def _jax_fns(ref):
    import jax

    def stateless(layer_of):
        @jax.jit
        def run(trainable, non_trainable, x):
            return layer_of(ref()).stateless_call(trainable, non_trainable, x)[0]

        def call(x):
            layer = layer_of(ref())
            return run(
                [v.value for v in layer.trainable_variables],
                [v.value for v in layer.non_trainable_variables],
                x,
            )

        return call

    return stateless(lambda m: m.encoder), stateless(lambda m: m.decoder)


def as_images(images, image_size: int) -> np.ndarray:
    """``images`` as float32 (N, S, S, 1), from one image (S, S, 1) or a stack (N, S, S) or
    (N, S, S, 1); ValueError naming the shape the model takes otherwise."""
    x = np.asarray(images, dtype=np.float32)
    if x.ndim == 3 and x.shape[-1] != 1:  # (N, S, S) → (N, S, S, 1)
        x = x[..., None]
    if x.ndim == 3:  # one image (S, S, 1)
        x = x[None]
    if x.ndim != 4 or x.shape[1:] != (image_size, image_size, 1):
        raise ValueError(
            f"images have shape {x.shape}; this model takes (N, {image_size}, {image_size}, 1) "
            "floats in [0, 1]"
        )
    return x


def encode(model, images, batch: int = 256, progress: bool = False):
    """Posterior statistics of ``images`` (N, S, S, 1) in [0, 1], computed ``batch`` at a time.

    Returns (mean, logvar), float32 numpy arrays of shape (N, D).
    """
    x = as_images(images, model.image_size)
    enc, _ = compiled(model)
    means, logvars = [], []
    starts = range(0, len(x), batch)
    if progress and len(x) > 8 * batch:  # a bar only for long encodes
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="encode", unit="batch", leave=False)
    for i in starts:
        m, lv = enc(x[i : i + batch])
        means.append(np.asarray(m))
        logvars.append(np.asarray(lv))
    d = model.latent_dim
    if not means:
        return np.zeros((0, d), np.float32), np.zeros((0, d), np.float32)
    return np.concatenate(means), np.concatenate(logvars)


def decode(model, z, batch: int = 256, logits: bool = False) -> np.ndarray:
    """(N, D) latents → (N, S, S, 1) pixel means in [0, 1] (or logits), ``batch`` at a time."""
    z = np.asarray(z, np.float32).reshape(-1, model.latent_dim)
    _, dec = compiled(model)
    outs = [np.asarray(dec(z[i : i + batch])) for i in range(0, len(z), batch)]
    s = model.image_size
    out = np.concatenate(outs) if outs else np.zeros((0, s, s, 1), np.float32)
    return out if logits else 1.0 / (1.0 + np.exp(-out))


class EncodeFn:
    """``encode_fn(images (N, S, S, 1)) -> codes (N, D)``: the posterior mean, batched.

    This is the representation function the metrics consume (disentanglement_lib's convention:
    the mean of q(z|x), never a sample). ``images`` counts every image encoded and ``seconds`` the
    time spent encoding, so the cost of an evaluation can be stated in encoder passes.
    """

    def __init__(self, model, batch: int = 256):
        self.model, self.batch = model, int(batch)
        self.images, self.calls, self.seconds = 0, 0, 0.0  # totals over every call

    def __call__(self, images) -> np.ndarray:
        t0 = time.perf_counter()
        mean, _ = encode(self.model, images, self.batch)
        self.seconds += time.perf_counter() - t0
        self.images += len(mean)
        self.calls += 1
        return mean


def make_encode_fn(model, batch: int = 256) -> EncodeFn:
    """The metrics' representation function for ``model`` (posterior means, batched)."""
    return EncodeFn(model, batch)


def kl_per_latent(mean, logvar) -> np.ndarray:
    """KL(N(mean, exp(logvar)) ‖ N(0, 1)) per sample and latent, (N, D) → (N, D), in nats."""
    mean, logvar = np.asarray(mean, np.float64), np.asarray(logvar, np.float64)
    return 0.5 * (np.exp(logvar) + mean**2 - 1.0 - logvar)


# Burda et al. (2016), "Importance Weighted Autoencoders", §5.2: latent d is active when the
# variance over the data of its posterior mean, Cov_x(E_q(z|x)[z_d]), exceeds 0.01. One definition
# for the whole repo: training summary, metrics.json, the report and the figures' grey rows.
ACTIVE_VAR = 0.01


def unit_activity(mean) -> np.ndarray:
    """Cov_x(E_q(z|x)[z_d]) per latent: the variance over images of the posterior means,
    (N, D) → (D,). Compare with ``ACTIVE_VAR`` (Burda et al. 2016)."""
    return np.asarray(mean, np.float64).var(axis=0)


def active_units(mean, threshold: float = ACTIVE_VAR) -> int:
    """Number of active latents (Burda et al. 2016) among posterior means (N, D)."""
    return int((unit_activity(mean) > threshold).sum())
