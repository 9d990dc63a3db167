"""β-TCVAE's TC estimator as a choice (issue 18, point 5): minibatch weighted sampling ("mws",
Chen et al. 2018, App. C.1, constants kept) against a hand computation, its constant shift from
disentanglement_lib's dropped-constant value, minibatch stratified sampling ("mss") unchanged bit
for bit, runs made before the choice read back as MSS with N = 589 824, N taken from the data."""

import json
import math
import zipfile
from dataclasses import asdict
from pathlib import Path

import keras
import numpy as np
import pytest
from keras import ops

import training
import variationAutoEncoder as V
from sbd_vae import config as C
from sbd_vae import hparams, rundir
from sbd_vae.hparams import TC_DATASET_SIZE

ROOT = Path(__file__).resolve().parents[1]
OLD_TCVAE = ROOT / "results" / "objectives" / "tcvae_beta4_seed0"  # committed, trained with MSS
OLD_BETA = ROOT / "results" / "objectives" / "beta4_seed0"


def _t(*arrays):
    return [ops.convert_to_tensor(np.asarray(a, "float32")) for a in arrays]


def _codes(b, d, seed):
    """A batch of correlated codes with varied posterior widths: (z, mean, logvar), (B, D) each."""
    rng = np.random.RandomState(seed)
    mean = rng.randn(b, d) @ (np.eye(d) + 0.5 * rng.randn(d, d))
    logvar = rng.uniform(-3.0, 0.5, (b, d))
    z = mean + np.exp(0.5 * logvar) * rng.randn(b, d)
    return z, mean, logvar


# ----------------------------------------------------------------------------- MSS unchanged
# tc_decomposition and mss_log_weights as they were before the estimator was a choice (commit
# 44c3d4c), verbatim but for the names: the reference for "mss must not change by one bit".
def _old_mss_log_weights(batch, dataset_size=TC_DATASET_SIZE):
    n, b = float(dataset_size), ops.cast(batch, "float32")
    eye = ops.eye(batch, dtype="float32")
    strat = ops.roll(eye, 1, axis=1)
    other = 1.0 - eye - strat
    w = eye / n + strat * ((n - b + 1.0) / (n * (b - 1.0))) + other / (b - 1.0)
    return ops.log(w)


def _old_tc_decomposition(z, mean, logvar, dataset_size=TC_DATASET_SIZE):
    b = ops.shape(z)[0]
    log_qzx = V.gaussian_log_density(z[:, None, :], mean[None, :, :], logvar[None, :, :])
    log_w = _old_mss_log_weights(b, dataset_size)
    log_qz = ops.logsumexp(log_w + ops.sum(log_qzx, axis=2), axis=1)
    log_qz_dims = ops.logsumexp(log_w[:, :, None] + log_qzx, axis=1)
    log_qz_x = ops.sum(V.gaussian_log_density(z, mean, logvar), axis=1)
    log_pz = ops.sum(V.gaussian_log_density(z, 0.0, 0.0), axis=1)
    log_prod_qz = ops.sum(log_qz_dims, axis=1)
    return {
        "mi": ops.mean(log_qz_x - log_qz),
        "tc": ops.mean(log_qz - log_prod_qz),
        "dimwise_kl": ops.mean(log_prod_qz - log_pz),
    }


@pytest.mark.parametrize("b, d, n", [(16, 5, None), (32, 10, 56_448), (7, 3, 1000)])
def test_mss_is_bit_for_bit_the_estimator_of_before(b, d, n):
    args = _t(*_codes(b, d, seed=b))
    old = _old_tc_decomposition(*args) if n is None else _old_tc_decomposition(*args, n)
    n = TC_DATASET_SIZE if n is None else n
    new = V.tc_decomposition(*args, n, estimator="mss")
    for key in ("mi", "tc", "dimwise_kl"):
        assert np.asarray(new[key]).tobytes() == np.asarray(old[key]).tobytes(), key
    tc = V.total_correlation(*args, n, "mss")
    assert np.asarray(tc).tobytes() == np.asarray(old["tc"]).tobytes()


# ----------------------------------------------------------------------------- MWS by hand
# M = 4 codes of D = 3 latents, fixed numbers
Z = [[0.3, -1.2, 0.5], [1.1, 0.4, -0.7], [-0.6, 0.9, 1.5], [0.0, -0.2, -1.1]]
MEAN = [[0.2, -1.0, 0.4], [1.3, 0.1, -0.5], [-0.4, 1.2, 1.1], [0.1, -0.5, -0.9]]
LOGVAR = [[-1.0, -0.5, 0.0], [-0.2, -1.5, -0.8], [0.3, -0.7, -1.2], [-0.9, 0.1, -0.4]]


def _mws_by_hand(z, mean, logvar, n, keep_constant=True):
    """Chen et al. 2018, App. C.1 in float64 numpy: log q(z_i) ≈ logsumexp_j log q(z_i|x_j)
    − log(N·M), the same per latent; without the constant as disentanglement_lib computes it."""
    z, mean, logvar = (np.asarray(a, np.float64) for a in (z, mean, logvar))
    m = len(z)
    # log q(z_il | x_j): [i, j, l]
    log_qzx = -0.5 * (
        np.log(2 * np.pi) + logvar[None] + (z[:, None] - mean[None]) ** 2 / np.exp(logvar[None])
    )
    const = math.log(n * m) if keep_constant else 0.0
    log_qz = np.logaddexp.reduce(log_qzx.sum(axis=2), axis=1) - const  # (M,)
    log_qz_l = np.logaddexp.reduce(log_qzx, axis=1) - const  # (M, D)
    log_q_own = np.array([log_qzx[i, i].sum() for i in range(m)])  # log q(z_i | x_i)
    log_p = (-0.5 * (np.log(2 * np.pi) + z**2)).sum(axis=1)
    return {
        "mi": np.mean(log_q_own - log_qz),
        "tc": np.mean(log_qz - log_qz_l.sum(axis=1)),
        "dimwise_kl": np.mean(log_qz_l.sum(axis=1) - log_p),
    }


@pytest.mark.parametrize("n", [10, 1000, TC_DATASET_SIZE])
def test_mws_matches_the_formula_computed_by_hand(n):
    want = _mws_by_hand(Z, MEAN, LOGVAR, n)
    got = {k: float(v) for k, v in V.tc_decomposition(*_t(Z, MEAN, LOGVAR), n, "mws").items()}
    for key in want:  # float32 against float64: |values| up to ~30 nats
        assert got[key] == pytest.approx(want[key], rel=1e-5, abs=1e-4), key
    tc = float(V.total_correlation(*_t(Z, MEAN, LOGVAR), n, "mws"))
    assert tc == pytest.approx(want["tc"], rel=1e-5, abs=1e-4)
    # the decomposition still adds up to the one-sample KL
    assert sum(got.values()) == pytest.approx(sum(want.values()), abs=1e-4)


@pytest.mark.parametrize("m, d, n", [(4, 3, 1000), (32, 10, 56_448), (64, 6, TC_DATASET_SIZE)])
def test_mws_is_disentanglement_libs_value_plus_d_minus_1_log_nm(m, d, n):
    """disentanglement_lib drops −log(N·M) from log q(z) and from each of the D log q(z_l):
    tc(ours) − tc(dlib) = (D − 1)·log(N·M), mi is log(N·M) higher and dimwise_kl D·log(N·M)
    lower. The same shift for every batch: a constant, so the gradients are the same."""
    log_nm = math.log(n * m)
    for seed in range(3):
        codes = (Z, MEAN, LOGVAR) if m == 4 else _codes(m, d, seed)
        ours = {k: float(v) for k, v in V.tc_decomposition(*_t(*codes), n, "mws").items()}
        dlib = _mws_by_hand(*codes, n, keep_constant=False)
        tol = 1e-6 * abs(ours["tc"]) + 1e-3  # float32 of values near 150 nats
        assert ours["tc"] - dlib["tc"] == pytest.approx((d - 1) * log_nm, abs=tol)
        assert ours["mi"] - dlib["mi"] == pytest.approx(log_nm, abs=tol)
        assert ours["dimwise_kl"] - dlib["dimwise_kl"] == pytest.approx(-d * log_nm, abs=tol)


def test_mws_and_its_dropped_constant_version_have_the_same_gradient():
    if keras.backend.backend() != "tensorflow":
        pytest.skip("a TensorFlow tape")
    import tensorflow as tf

    z, mean, logvar = (tf.Variable(a) for a in _t(*_codes(16, 5, 0)))

    def dlib_tc(z, mean, logvar):  # the same without −log(N·M)
        log_qzx = V.gaussian_log_density(z[:, None, :], mean[None], logvar[None])
        log_qz = ops.logsumexp(ops.sum(log_qzx, axis=2), axis=1)
        return ops.mean(log_qz - ops.sum(ops.logsumexp(log_qzx, axis=1), axis=1))

    with tf.GradientTape(persistent=True) as tape:
        ours, theirs = V.total_correlation(z, mean, logvar, 56_448, "mws"), dlib_tc(z, mean, logvar)
    assert float(ours - theirs) == pytest.approx(4 * math.log(56_448 * 16), rel=1e-6)
    for v in (z, mean, logvar):
        np.testing.assert_allclose(tape.gradient(ours, v), tape.gradient(theirs, v), atol=1e-6)


def test_an_unknown_estimator_is_refused():
    with pytest.raises(ValueError, match="choose one of"):
        V.tc_decomposition(*_t(Z, MEAN, LOGVAR), 1000, "wms")
    with pytest.raises(ValueError, match="tc_estimator 'wms'"):
        V.BetaVAE(image_size=32, tc_estimator="wms")
    with pytest.raises(ValueError, match="tc_dataset_size=1"):
        V.BetaVAE(image_size=32, tc_dataset_size=1)
    with pytest.raises(ValueError, match="--tc_estimator 'wms': choose one of"):
        C.TrainConfig(tc_estimator="wms").validate()


# ----------------------------------------------------------------------------- the model
def _model(**kw):
    keras.utils.set_random_seed(0)
    return V.build_vae(image_size=32, latent_dim=4, channels=8, hidden=16, objective="tcvae",
                       beta=4.0, seed=0, **kw)  # fmt: skip


def test_the_model_uses_its_estimator_and_n():
    x = np.random.RandomState(0).rand(8, 32, 32, 1).astype("float32")
    assert _model().tc_estimator == hparams.TC_ESTIMATOR == "mws"
    terms = {}
    for est, n in (("mws", 1000), ("mws", 100_000), ("mss", 1000)):
        _, t = _model(tc_estimator=est, tc_dataset_size=n).compute_terms(x, training=True)
        terms[est, n] = {k: float(v) for k, v in t.items()}
    a, b, c = terms["mws", 1000], terms["mws", 100_000], terms["mss", 1000]
    assert a["reconstruction"] == b["reconstruction"] == c["reconstruction"]  # same z
    assert b["tc"] - a["tc"] == pytest.approx(3 * math.log(100.0), abs=1e-3)  # (D − 1)·log ratio
    assert abs(c["tc"] - a["tc"]) > 1.0
    one_sample_kl = [sum(t[k] for k in ("mi", "tc", "dimwise_kl")) for t in (a, b, c)]
    assert one_sample_kl == pytest.approx([one_sample_kl[0]] * 3, abs=1e-3)


def test_the_model_config_round_trips_the_estimator_and_n(tmp_path):
    model = _model(tc_estimator="mss", tc_dataset_size=56_448)
    cfg = model.get_config()
    assert (cfg["tc_estimator"], cfg["tc_dataset_size"]) == ("mss", 56_448)
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    assert (loaded.tc_estimator, loaded.tc_dataset_size) == ("mss", 56_448)


def _strip_model_fields(src, dst, names):
    """A copy of the model.keras ``src`` whose config lacks ``names``, as files saved before
    those fields existed."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename == "config.json":
                config = json.loads(data)
                for name in names:
                    del config["config"][name]
                data = json.dumps(config).encode()
            zout.writestr(item, data)


def test_a_model_saved_before_the_choice_loads_as_mss_with_the_old_n(tmp_path):
    _model(tc_estimator="mws", tc_dataset_size=1234).save(tmp_path / "new.keras")
    _strip_model_fields(tmp_path / "new.keras", tmp_path / "old.keras",
                        ("tc_estimator", "tc_dataset_size"))  # fmt: skip
    old = keras.models.load_model(tmp_path / "old.keras")
    assert (old.tc_estimator, old.tc_dataset_size) == ("mss", TC_DATASET_SIZE)
    # and a committed run of results/objectives, trained with MSS, N = 589 824
    committed = keras.models.load_model(OLD_TCVAE / "model.keras", compile=False)
    assert committed.objective == "tcvae"
    assert (committed.tc_estimator, committed.tc_dataset_size) == ("mss", TC_DATASET_SIZE)


# ----------------------------------------------------------------------------- config.json
def test_a_config_without_the_field_reads_as_mss():
    raw = json.loads((OLD_TCVAE / "config.json").read_text())
    assert "tc_estimator" not in raw  # committed before the field existed
    assert C.from_dict(raw).tc_estimator == "mss"
    assert C.load_config(OLD_TCVAE).tc_estimator == "mss"
    assert C.load_config(OLD_BETA).tc_estimator == "mss"
    assert C.from_dict({**raw, "tc_estimator": "mws"}).tc_estimator == "mws"
    assert C.TrainConfig().tc_estimator == "mws"  # a new run: disentanglement_lib's estimator


def _old_run(tmp_path, objective):
    """A run directory whose config.json was written before --tc_estimator existed."""
    cfg = C.preset_config("test", objective=objective)
    out = tmp_path / objective
    out.mkdir()
    resolved = C.check_or_write_config(cfg, out)
    raw = asdict(resolved)
    del raw["tc_estimator"]
    rundir.write_json(out / "config.json", raw)
    return cfg, out


@pytest.mark.parametrize("objective", ["beta", "capacity", "dipvae_i", "factorvae"])
def test_runs_of_other_objectives_resume_whatever_the_estimator(objective, tmp_path):
    cfg, out = _old_run(tmp_path, objective)
    C.check_or_write_config(cfg, out)  # the default "mws" against the stored (missing) "mss"
    C.check_or_write_config(C.preset_config("test", objective=objective, tc_estimator="mss"), out)


def test_an_old_tcvae_run_resumes_with_mss_only(tmp_path):
    cfg, out = _old_run(tmp_path, "tcvae")
    with pytest.raises(rundir.RunDirError, match="tc_estimator: 'mss' -> 'mws'"):
        C.check_or_write_config(cfg, out)
    mss = C.preset_config("test", objective="tcvae", tc_estimator="mss")
    assert C.check_or_write_config(mss, out).tc_estimator == "mss"
    assert json.loads((out / "config.json").read_text())["tc_estimator"] == "mss"
    assert "--tc_estimator mss" in C.resume_command(C.load_config(out))


# ----------------------------------------------------------------------------- N from the data
def test_n_is_the_number_of_distinct_images_of_the_data(shapes_npz):
    cfg = training.preset_config("test", data_path=str(shapes_npz), objective="tcvae")
    data = training.make_dataset(cfg)
    grid = 6 * 4 * 2 * data.num_scales * data.num_positions**2  # shape × azimuth × tilt × …
    assert data.num_points == int(np.prod(data.factor_sizes)) == grid
    assert isinstance(data.num_points, int)
    assert cfg.model_kwargs(data.num_points)["tc_dataset_size"] == data.num_points
    assert cfg.model_kwargs()["tc_dataset_size"] == TC_DATASET_SIZE
    model = training.build_model(cfg, data=data)
    assert (model.tc_estimator, model.tc_dataset_size) == ("mws", data.num_points)
    assert model.get_config()["tc_dataset_size"] == data.num_points
    assert training.build_model(cfg).tc_dataset_size == data.num_points  # builds the data itself
    # other objectives do not use N: the model records the default
    beta = training.preset_config("test", data_path=str(shapes_npz))
    assert beta.model_kwargs(data.num_points)["tc_dataset_size"] == TC_DATASET_SIZE
    assert training.build_model(beta, data=data).tc_dataset_size == TC_DATASET_SIZE


# ----------------------------------------------------------------------------- the script
def test_tc_batch_bias_simulation_table():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "tc_batch_bias", ROOT / "scripts" / "tc_batch_bias.py"
    )
    tcb = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tcb)
    rows = tcb.simulate([4, 8], [100, 1000], [0.5], images=64, latent_dim=3)
    by = {(r["estimator"], r["n"]): r["tc"] for r in rows}
    assert set(by) == {("mws", 100), ("mws", 1000), ("mss", 100), ("mss", 1000),
                       ("mws, no constant", None)}  # fmt: skip
    for m in (
        4,
        8,
    ):  # MWS's N moves it by (D − 1)·log(N ratio); dlib's value drops (D − 1)·log(N·M)
        assert by["mws", 1000][m] - by["mws", 100][m] == pytest.approx(2 * math.log(10), abs=1e-4)
        dropped = by["mws", 100][m] - 2 * math.log(100 * m)
        assert by["mws, no constant", None][m] == pytest.approx(dropped, abs=1e-9)
    table = tcb.main(["--batches", "4", "8", "--images", "64", "--sizes", "100", "1000",
                      "--sigmas", "0.5", "--latent_dim", "3"])  # fmt: skip
    assert "| σ | estimator | N | M = 4 | M = 8 |" in table
    assert "| 0.5 | mss | 1 000 |" in table and "| 0.5 | mws, no constant | any |" in table
    with pytest.raises(SystemExit):  # MSS needs N ≥ M
        tcb.main(["--batches", "8", "--images", "64", "--sizes", "4"])
