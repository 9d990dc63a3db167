"""Model tests: shapes, the spatial broadcast decoder, the objective and serialisation."""

import keras
import numpy as np
import pytest

from variationAutoEncoder import (
    LOGVAR_MAX,
    BetaVAE,
    SpatialBroadcastDecoder,
    beta_norm,
    build_vae,
    kl_per_dim,
)

TERMS = ("reconstruction", "kl", "capacity")  # compute_terms' scalar terms read by these tests


@pytest.mark.parametrize("size", [32, 64, 128])
@pytest.mark.parametrize("decoder", ["sbd", "deconv"])
def test_encoder_decoder_shapes(size, decoder):
    model = build_vae(image_size=size, latent_dim=7, decoder=decoder, channels=8, hidden=16, seed=0)
    x = np.random.RandomState(0).rand(3, size, size, 1).astype("float32")
    mean, logvar = model.encode(x)
    assert mean.shape == (3, 7) and logvar.shape == (3, 7)
    out = np.asarray(model.decode(mean))
    assert out.shape == (3, size, size, 1)
    assert out.min() >= 0.0 and out.max() <= 1.0
    logits, m2, _ = model(x, training=True)
    assert logits.shape == (3, size, size, 1) and np.allclose(m2, mean)


def test_sbd_fused_first_layer_equals_tiled_convolution():
    dec = SpatialBroadcastDecoder(image_size=32, latent_dim=5, channels=8)
    dec.build((None, 5))
    z = np.random.RandomState(1).randn(4, 5).astype("float32")
    fused = np.asarray(dec.first_layer(z))
    naive = np.asarray(dec.naive_first_layer(z))
    assert fused.shape == (4, 38, 38, 8)
    np.testing.assert_allclose(fused, naive, atol=1e-5)


def test_sbd_output_varies_through_the_coordinate_channels():
    dec = SpatialBroadcastDecoder(image_size=32, latent_dim=4, channels=8)
    dec.build((None, 4))
    z = np.random.RandomState(2).randn(2, 4).astype("float32")
    out = np.asarray(dec(z))[..., 0]  # (2, 32, 32)
    assert out.std(axis=(1, 2)).min() > 1e-4, "a broadcast z alone cannot vary over space"
    # Without the coordinate part of the first kernel, every pixel sees the same input: constant.
    kernel = dec.first.kernel.numpy()
    kernel[:, :, 4:, :] = 0.0
    dec.first.kernel.assign(kernel)
    flat = np.asarray(dec(z))[..., 0]
    assert flat.std(axis=(1, 2)).max() < 1e-5


def test_kl_zero_at_prior_and_matches_closed_form():
    zeros = np.zeros((2, 3), "float32")
    np.testing.assert_allclose(np.asarray(kl_per_dim(zeros, zeros)), 0.0, atol=1e-7)
    mean, logvar = np.array([[1.0, -2.0]], "float32"), np.array([[0.5, -1.0]], "float32")
    var = np.exp(logvar)
    expected = 0.5 * (var + mean**2 - 1 - logvar)  # KL(N(m, v) || N(0, 1))
    np.testing.assert_allclose(np.asarray(kl_per_dim(mean, logvar)), expected, rtol=1e-6)
    assert expected[0, 1] > expected[0, 0] > 0


def test_bernoulli_reconstruction_is_summed_over_pixels():
    model = build_vae(image_size=32, channels=8, hidden=16, seed=0)
    rng = np.random.RandomState(3)
    x = (rng.rand(2, 32, 32, 1) > 0.5).astype("float32")
    logits = rng.randn(2, 32, 32, 1).astype("float32")
    p = 1 / (1 + np.exp(-logits))
    expected = -(x * np.log(p) + (1 - x) * np.log(1 - p)).sum(axis=(1, 2, 3))
    got = np.asarray(model.reconstruction_loss(x, logits))
    np.testing.assert_allclose(got, expected, rtol=1e-4)


def test_gaussian_reconstruction_fixed_variance():
    model = build_vae(
        image_size=32, channels=8, hidden=16, likelihood="gaussian", gaussian_sigma=0.5
    )
    x = np.full((1, 32, 32, 1), 0.5, "float32")
    logits = np.zeros((1, 32, 32, 1), "float32")  # sigmoid(0) = 0.5: zero residual
    got = float(np.asarray(model.reconstruction_loss(x, logits))[0])
    assert got == pytest.approx(32 * 32 * np.log(0.5 * np.sqrt(2 * np.pi)), rel=1e-5)


def test_beta_and_capacity_objectives():
    x = np.random.RandomState(4).rand(4, 32, 32, 1).astype("float32")
    for objective in ("beta", "capacity"):
        model = build_vae(
            image_size=32,
            channels=8,
            hidden=16,
            beta=3.0,
            objective=objective,
            gamma=10.0,
            capacity_max=20.0,
            capacity_steps=100,
            seed=0,
        )
        model.compile(optimizer=keras.optimizers.Adam(1e-4))
        model.optimizer.iterations.assign(50)  # C(50) = 20 · 50/100 = 10 nats
        loss, terms = model.compute_terms(x, training=False)
        loss, recon, kl, cap = (np.asarray(v) for v in (loss, *map(terms.get, TERMS)))
        kl_dims = np.array([terms[f"kl_{i}"] for i in range(model.latent_dim)])
        np.testing.assert_allclose(kl, kl_dims.sum(), rtol=1e-5)
        if objective == "beta":
            assert cap == 0.0
            np.testing.assert_allclose(loss, recon + 3.0 * kl, rtol=1e-5)
        else:
            assert cap == pytest.approx(10.0)
            np.testing.assert_allclose(loss, recon + 10.0 * abs(kl - 10.0), rtol=1e-5)


def test_logvar_is_clipped_so_exp_cannot_overflow():
    model = build_vae(image_size=32, channels=8, hidden=16, seed=0)
    head = model.encoder.head
    head.bias.assign(np.full(head.bias.shape, 1e6, "float32"))  # pre-activation far out of range
    x = np.random.RandomState(5).rand(2, 32, 32, 1).astype("float32")
    _, logvar = model.encode(x)
    assert np.asarray(logvar).max() == pytest.approx(LOGVAR_MAX)
    _, terms = model.compute_terms(x, training=True)
    recon, kl = terms["reconstruction"], terms["kl"]
    assert np.isfinite(float(kl)) and np.isfinite(float(recon))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"beta": -1.0}, "beta"),
        ({"decoder": "unet"}, "decoder"),
        ({"likelihood": "poisson"}, "likelihood"),
        ({"objective": "tc"}, "objective"),
        ({"image_size": 40}, "image_size"),
        ({"image_size": 16}, "image_size"),
    ],
)
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BetaVAE(**kwargs)


def test_model_keras_reload_gives_identical_encodings(tmp_path):
    model = build_vae(image_size=32, channels=8, hidden=16, beta=4.0, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    x = np.random.RandomState(6).rand(5, 32, 32, 1).astype("float32")
    model.train_on_batch(x)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, BetaVAE) and loaded.beta == 4.0
    np.testing.assert_array_equal(np.asarray(model.encode(x)[0]), np.asarray(loaded.encode(x)[0]))
    np.testing.assert_array_equal(
        np.asarray(model.reconstruct(x)), np.asarray(loaded.reconstruct(x))
    )


def test_beta_norm_matches_higgins_definition():
    # β = 102 with 10 latents on 128² pixels is the seed's "large β": β_norm ≈ 0.062.
    assert beta_norm(102, 10, 128) == pytest.approx(102 * 10 / 16384)


def _build_under(policy, **kwargs):
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        return build_vae(**kwargs)
    finally:
        keras.config.set_dtype_policy(previous)


@pytest.mark.parametrize("decoder", ["sbd", "deconv"])
def test_z_mean_logvar_and_kl_stay_float32_under_mixed_bfloat16(decoder):
    model = _build_under(
        "mixed_bfloat16", image_size=32, channels=8, hidden=16, decoder=decoder, seed=0
    )
    assert model.encoder.convs[0].compute_dtype == "bfloat16"  # the policy did take effect
    x = np.random.RandomState(7).rand(3, 32, 32, 1).astype("float32")
    mean, logvar = model.encode(x)
    z = model.sampling((mean, logvar))
    assert (mean.dtype, logvar.dtype, z.dtype) == ("float32",) * 3
    # a σ·ε far below bf16's resolution at |mean| ~ 1 must survive in z
    tiny = np.full((3, 10), -20.0, "float32")  # σ = e^-10 ≈ 4.5e-5
    ones = np.ones((3, 10), "float32")
    assert np.any(np.asarray(model.sampling((ones, tiny))) != 1.0)
    logits, m2, lv2 = model(x, training=True)
    assert logits.shape == (3, 32, 32, 1) and (m2.dtype, lv2.dtype) == ("float32", "float32")
    loss, terms = model.compute_terms(x, training=True)
    assert terms["kl_0"].dtype == "float32" and np.isfinite(float(loss))


def test_sampling_from_an_older_config_is_float32():
    """A Sampling config saved before z was pinned to float32 names the policy of its day."""
    from variationAutoEncoder import Sampling

    old = {"name": "sampling", "trainable": True, "seed": 3, "dtype": {
        "module": "keras", "class_name": "DTypePolicy", "config": {"name": "mixed_bfloat16"},
        "registered_name": None}}  # fmt: skip
    layer = Sampling.from_config(old)
    assert layer.compute_dtype == "float32" and layer.seed == 3
    assert Sampling.from_config(layer.get_config()).compute_dtype == "float32"


def test_mixed_bfloat16_model_keras_reloads(tmp_path):
    model = _build_under("mixed_bfloat16", image_size=32, channels=8, hidden=16, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    x = np.random.RandomState(8).rand(4, 32, 32, 1).astype("float32")
    model.train_on_batch(x)
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    assert len(model.trainable_variables) == len(loaded.trainable_variables)
    for a, b in zip(model.trainable_variables, loaded.trainable_variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert loaded.encode(x)[0].dtype == "float32"


def test_the_hyperparameters_are_listed_once():
    """BetaVAE's constructor, its saved config and TrainConfig.model_kwargs() all follow
    hparams.MODEL_ARGS, and β is refused with one message by the model and the config."""
    import inspect

    from sbd_vae.config import TrainConfig
    from sbd_vae.hparams import MODEL_ARGS, beta_problem

    params = [
        n for n in inspect.signature(BetaVAE.__init__).parameters if n not in ("self", "kwargs")
    ]
    assert params == list(MODEL_ARGS)
    cfg = TrainConfig(
        image_size=32, latent_dim=3, channels=8, hidden=16, decoder="deconv", beta=2.0
    )
    model = BetaVAE(**cfg.model_kwargs())
    assert {k: v for k, v in model.get_config().items() if k != "name"} == cfg.model_kwargs()
    why = beta_problem(-1.0)
    with pytest.raises(ValueError) as from_model:
        BetaVAE(beta=-1.0)
    with pytest.raises(ValueError) as from_config:
        TrainConfig(beta=-1.0).validate()
    assert why in str(from_model.value) and why in str(from_config.value)
