"""The encoder and decoder registry (issue 19, point 3): disentanglement_lib's conv_encoder and
deconv_decoder as --encoder dlib_conv / --decoder dlib_deconv next to the SBD, the dsprites
preset that uses them, sizes they do not take refused by flag, and model.keras round trips.
Runs on either backend (also with KERAS_BACKEND=jax and TensorFlow unimportable)."""

import json
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest

import training
from sbd_vae import hparams
from sbd_vae.architectures import DlibConvEncoder, DlibDeconvDecoder
from sbd_vae.config import DLIB_STEPS, TrainConfig
from variationAutoEncoder import BetaVAE, build_vae

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def _images(n, size, seed=0):
    return np.random.RandomState(seed).rand(n, size, size, 1).astype("float32")


# ----------------------------------------------------------------------------- the architecture
def test_dlib_encoder_is_disentanglement_libs_conv_encoder():
    enc = DlibConvEncoder(latent_dim=10)
    x = _images(3, 64)
    h, shapes = x, []
    for conv in enc.convs:
        h = conv(h)
        shapes.append(tuple(h.shape))
    # 4×4, 4×4, 2×2, 2×2 kernels, every one stride 2, "same", ReLU: 64 → 32 → 16 → 8 → 4
    assert shapes == [(3, 32, 32, 32), (3, 16, 16, 32), (3, 8, 8, 64), (3, 4, 4, 64)]
    assert [c.kernel_size for c in enc.convs] == [(4, 4), (4, 4), (2, 2), (2, 2)]
    assert all(c.strides == (2, 2) and c.padding == "same" for c in enc.convs)
    assert all(c.activation is keras.activations.relu for c in enc.convs)
    mean, logvar = enc(x)
    assert mean.shape == logvar.shape == (3, 10)
    assert enc.dense.units == 256 and enc.dense.kernel.shape == (1024, 256)
    # two linear heads, as there (one fused 2D head would draw other initial weights)
    assert enc.means.kernel.shape == enc.log_var.kernel.shape == (256, 10)
    assert enc.means.activation is keras.activations.linear
    assert enc.count_params() == 309_204  # 1 056 + 16 416 + 8 256 + 16 448 + 262 400 + 2·2 570


def test_dlib_decoder_is_disentanglement_libs_deconv_decoder():
    dec = DlibDeconvDecoder(image_size=64, latent_dim=10)
    z = np.random.RandomState(1).randn(2, 10).astype("float32")
    logits = dec(z)
    assert logits.shape == (2, 64, 64, 1)
    assert [d.units for d in dec.dense] == [256, 1024]
    h = dec.reshape(dec.dense[1](dec.dense[0](z)))
    shapes = [tuple(h.shape)]
    for deconv in dec.deconvs:
        h = deconv(h)
        shapes.append(tuple(h.shape))
    assert shapes == [(2, 4, 4, 64), (2, 8, 8, 64), (2, 16, 16, 32), (2, 32, 32, 32)]
    layers_ = [*dec.deconvs, dec.out]
    assert all(d.kernel_size == (4, 4) and d.strides == (2, 2) and d.padding == "same"
               for d in layers_)  # fmt: skip
    assert dec.out.activation is keras.activations.linear  # logits: the loss applies the sigmoid
    assert dec.count_params() == 381_313
    with pytest.raises(ValueError, match="64×64 images only.*--image_size 64"):
        DlibDeconvDecoder(image_size=32)


@pytest.mark.parametrize(
    "encoder, decoder, size",
    [("dlib_conv", "dlib_deconv", 64), ("dlib_conv", "sbd", 32), ("conv", "dlib_deconv", 64),
     ("dlib_conv", "deconv", 48)],
)  # fmt: skip
def test_every_pairing_encodes_and_decodes(encoder, decoder, size):
    model = build_vae(image_size=size, latent_dim=4, encoder=encoder, decoder=decoder,
                      channels=8, hidden=16, seed=0)  # fmt: skip
    assert type(model.encoder) is hparams.ENCODERS[encoder].resolve()
    assert type(model.decoder) is hparams.DECODERS[decoder].resolve()
    x = _images(2, size)
    logits, mean, logvar = model(x, training=True)
    assert logits.shape == (2, size, size, 1) and mean.shape == logvar.shape == (2, 4)
    loss, _ = model.compute_terms(x, training=True)
    assert np.isfinite(float(loss))


def test_dlib_model_keras_round_trip(tmp_path):
    model = build_vae(image_size=64, encoder="dlib_conv", decoder="dlib_deconv", beta=4.0, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    x = _images(4, 64, seed=2)
    model.train_on_batch(x)
    assert model.get_config()["encoder"] == "dlib_conv"
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras", compile=False)
    assert isinstance(loaded.encoder, DlibConvEncoder)
    assert isinstance(loaded.decoder, DlibDeconvDecoder)
    names = (loaded.encoder_name, loaded.decoder_name, loaded.beta)
    assert names == ("dlib_conv", "dlib_deconv", 4.0)
    np.testing.assert_array_equal(np.asarray(model.encode(x)[1]), np.asarray(loaded.encode(x)[1]))
    np.testing.assert_array_equal(np.asarray(model.reconstruct(x)),
                                  np.asarray(loaded.reconstruct(x)))  # fmt: skip


def test_a_model_saved_before_encoder_existed_loads_with_the_conv_encoder():
    model = keras.models.load_model(FIXTURES / "premove_sbd.keras", compile=False)
    assert model.encoder_name == "conv" == model.get_config()["encoder"]
    raw = json.loads(zipfile.ZipFile(FIXTURES / "premove_sbd.keras").read("config.json"))
    assert "encoder" not in raw["config"]  # it really predates the field


# ----------------------------------------------------------------------------- the registry
class DenseDecoder(keras.Model):
    """A decoder as a user would add one: z → Dense → (S, S, 1) logits."""

    def __init__(self, image_size=32, latent_dim=10, **kwargs):
        super().__init__(**kwargs)
        self.image_size = image_size
        self.dense = keras.layers.Dense(image_size * image_size, dtype="float32")

    def call(self, z):
        return keras.ops.reshape(self.dense(z), (-1, self.image_size, self.image_size, 1))


def test_a_new_decoder_is_one_class_and_one_registry_line(monkeypatch):
    monkeypatch.setitem(hparams.DECODERS, "dense",
                        hparams.Network(DenseDecoder, ("image_size", "latent_dim"), (32,)))  # fmt: skip
    cfg = training.preset_config("test", decoder="dense")
    model = training.build_model(cfg)
    assert isinstance(model.decoder, DenseDecoder) and model.get_config()["decoder"] == "dense"
    x = _images(8, 32, seed=3)
    first = [float(model.train_on_batch(x, return_dict=True)["loss"]) for _ in range(5)]
    assert first[-1] < first[0]  # the decoder's weights are trained
    with pytest.raises(ValueError, match=r"--decoder dense takes 32×32 images only"):
        training.preset_config("test", decoder="dense", image_size=64)


# ----------------------------------------------------------------------------- bad input
def test_a_decoder_that_does_not_fit_the_image_size_is_refused_by_flag(tmp_path, capsys):
    want = (r"--decoder dlib_deconv takes 64×64 images only, not --image_size 32: pass "
            r"--image_size 64, or another --decoder \(sbd \| deconv\)")  # fmt: skip
    with pytest.raises(ValueError, match=want):
        training.preset_config("test", decoder="dlib_deconv")
    with pytest.raises(ValueError, match=want):
        BetaVAE(image_size=32, decoder="dlib_deconv")
    out = tmp_path / "r"
    code = training.main(["train", "--preset", "dsprites", "--dataset", "shapes", "--image_size",
                          "32", "--out", str(out), "--quiet"])  # fmt: skip
    assert code == 2 and "--decoder dlib_deconv takes 64×64" in capsys.readouterr().err
    assert not out.exists() or not any(out.iterdir())  # refused before anything is written
    with pytest.raises(ValueError, match=r"--encoder 'vgg': choose one of \('conv', 'dlib_conv'\)"):
        TrainConfig(encoder="vgg").validate()


# ----------------------------------------------------------------------------- the dsprites preset
def test_dsprites_preset_has_disentanglement_libs_settings():
    cfg = training.PRESETS["dsprites"].validate()
    assert (cfg.dataset, cfg.image_size, cfg.encoder, cfg.decoder) == (
        "dsprites", 64, "dlib_conv", "dlib_deconv")  # fmt: skip
    assert (cfg.likelihood, cfg.lr, cfg.batch_size, cfg.latent_dim) == ("bernoulli", 1e-4, 64, 10)
    assert DLIB_STEPS == 300_000 and cfg.steps < DLIB_STEPS  # a CPU's share of the full budget
    for name, preset in training.PRESETS.items():  # every other preset keeps the project's nets
        if name != "dsprites":
            assert (preset.encoder, preset.decoder) in {("conv", "sbd")}, name


def test_dsprites_preset_trains_from_the_command_line(tmp_path):
    """`training.py train --preset dsprites --dataset dsprites` with a test-sized budget: 40
    steps of disentanglement_lib's model and settings, on the backend in use."""
    out = tmp_path / "ds"
    code = training.main(["train", "--preset", "dsprites", "--dataset", "dsprites", "--steps",
                          "40", "--log_every", "10", "--checkpoint_every", "20", "--frame_every",
                          "20", "--snapshot_steps", "20", "40", "--out", str(out), "--quiet"])  # fmt: skip
    assert code == 0
    saved = json.loads((out / "config.json").read_text())
    assert (saved["encoder"], saved["decoder"], saved["lr"]) == ("dlib_conv", "dlib_deconv", 1e-4)
    from sbd_vae import rundir

    rows = rundir.read_history(out)
    assert [r["step"] for r in rows] == [10, 20, 30, 40]
    assert rows[-1]["recon"] < rows[0]["recon"] - 10, rows  # nats per image, of ~2 840 at start
    model = keras.models.load_model(out / "model.keras", compile=False)
    assert isinstance(model.decoder, DlibDeconvDecoder) and model.encoder_name == "dlib_conv"
