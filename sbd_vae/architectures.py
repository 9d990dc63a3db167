"""disentanglement_lib's convolutional encoder and decoder, in Keras 3, as --encoder dlib_conv and
--decoder dlib_deconv (registered in ``sbd_vae.hparams.ENCODERS`` / ``DECODERS``).

They follow disentanglement_lib's ``conv_encoder`` and ``deconv_decoder``
(methods/shared/architectures.py), which are row 3 of Table 1 of Higgins et al. 2017 ("β-VAE:
learning basic visual concepts with a constrained variational framework", ICLR), and are the
architecture of Locatello et al. 2019 ("Challenging common assumptions in the unsupervised
learning of disentangled representations", ICML) for every dataset, dSprites first:

    encoder  (B, 64, 64, 1) → Conv 32 (4×4, s2) → Conv 32 (4×4, s2) → Conv 64 (2×2, s2)
             → Conv 64 (2×2, s2) → (B, 4, 4, 64) → flatten 1024 → Dense 256
             → Dense D (mean) and Dense D (log-variance): two heads, as there
    decoder  z (B, D) → Dense 256 → Dense 1024 → reshape (B, 4, 4, 64)
             → ConvTranspose 64, 32, 32 (4×4, s2) → ConvTranspose 1 (4×4, s2) → (B, 64, 64, 1) logits

All convolutions "same"-padded with ReLU, the heads and the output linear, Glorot-uniform
kernels and zero biases (tf.layers' defaults there, Keras' here). Their widths are fixed, as
there: --channels and --hidden do not apply. The decoder's 4×4 start and 4 doublings make 64²
images only (``hparams.DECODERS["dlib_deconv"].image_sizes``: other sizes are refused when the
config is checked). The encoder flattens whatever grid its convolutions leave, so it takes any
size the project does (a multiple of 16); at 64² it is disentanglement_lib's exactly.

What differs, on purpose: the log-variance is clipped to [LOGVAR_MIN, LOGVAR_MAX] before any exp
(the guard rail of every encoder here, inactive in normal training), and under a mixed-precision
policy the heads and the output layer are float32, as in ``variationAutoEncoder``.
Nothing runs on import (Keras is imported, as by every model module).
"""

from __future__ import annotations

import keras
from keras import layers, ops

from .hparams import LOGVAR_MAX, LOGVAR_MIN

PKG = "sbd_vae"  # the Keras registration package of every model class: saved files name it
DLIB_IMAGE_SIZE = 64  # the decoder's output: 4 × 2⁴


@keras.saving.register_keras_serializable(package=PKG)
class DlibConvEncoder(keras.Model):
    """disentanglement_lib's ``conv_encoder``: (B, S, S, 1) → (mean, logvar), each (B, D)."""

    # (filters, kernel) of its four stride-2 convolutions
    CONVS = ((32, 4), (32, 4), (64, 2), (64, 2))
    HIDDEN = 256

    def __init__(self, latent_dim=10, **kwargs):
        super().__init__(**kwargs)
        self.latent_dim = latent_dim
        self.convs = [
            layers.Conv2D(f, k, strides=2, padding="same", activation="relu", name=f"e{i + 1}")
            for i, (f, k) in enumerate(self.CONVS)
        ]
        self.flatten = layers.Flatten()
        self.dense = layers.Dense(self.HIDDEN, activation="relu", name="e5")
        # two heads as there (their Glorot limits depend on D, not 2D); float32 for the KL
        self.means = layers.Dense(latent_dim, name="means", dtype="float32")
        self.log_var = layers.Dense(latent_dim, name="log_var", dtype="float32")

    def call(self, x):
        h = x  # (B, S, S, 1)
        for conv in self.convs:
            h = conv(h)  # (B, S/16, S/16, 64) after the 4th
        h = self.dense(self.flatten(h))  # (B, 256)
        return self.means(h), ops.clip(self.log_var(h), LOGVAR_MIN, LOGVAR_MAX)

    def get_config(self):
        return {**super().get_config(), "latent_dim": self.latent_dim}


@keras.saving.register_keras_serializable(package=PKG)
class DlibDeconvDecoder(keras.Model):
    """disentanglement_lib's ``deconv_decoder``: z (B, D) → logits (B, 64, 64, 1)."""

    DENSE = (256, 1024)
    START = (4, 4, 64)  # the 1024 units reshaped
    DECONVS = (64, 32, 32)  # then the 1-channel output, every one 4×4, stride 2

    def __init__(self, image_size=DLIB_IMAGE_SIZE, latent_dim=10, **kwargs):
        super().__init__(**kwargs)
        if image_size != DLIB_IMAGE_SIZE:  # hparams.model_problems refuses it first, by flag
            raise ValueError(
                f"DlibDeconvDecoder makes {DLIB_IMAGE_SIZE}×{DLIB_IMAGE_SIZE} images only, not "
                f"image_size={image_size}: pass --image_size {DLIB_IMAGE_SIZE} or another --decoder"
            )
        self.image_size, self.latent_dim = image_size, latent_dim
        self.dense = [
            layers.Dense(u, activation="relu", name=f"d{i + 1}") for i, u in enumerate(self.DENSE)
        ]
        self.reshape = layers.Reshape(self.START)
        self.deconvs = [
            layers.Conv2DTranspose(f, 4, strides=2, padding="same", activation="relu",
                                   name=f"d{i + 3}")
            for i, f in enumerate(self.DECONVS)
        ]  # fmt: skip
        self.out = layers.Conv2DTranspose(
            1, 4, strides=2, padding="same", name="logits", dtype="float32"
        )

    def call(self, z):
        h = z  # (B, D)
        for dense in self.dense:
            h = dense(h)  # → (B, 1024)
        h = self.reshape(h)  # (B, 4, 4, 64)
        for deconv in self.deconvs:
            h = deconv(h)  # doubles the size: → (B, 32, 32, 32)
        return self.out(h)  # (B, 64, 64, 1) logits

    def get_config(self):
        return {**super().get_config(), "image_size": self.image_size,
                "latent_dim": self.latent_dim}  # fmt: skip
