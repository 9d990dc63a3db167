"""β-TCVAE and DIP-VAE: the estimators against closed forms, the losses built from their terms,
short real trainings of each objective, and the refusal of bad arguments."""

import json
from contextlib import redirect_stderr
from io import StringIO
from pathlib import Path

import keras
import numpy as np
import pytest
from keras import ops

import training
import variationAutoEncoder as V
from sbd_vae import hparams, rundir
from sbd_vae.sweep import run_name, sweep_index

NEW = ("tcvae", "dipvae_i", "dipvae_ii")
TRAINED = (*NEW, "factorvae")  # every objective this file trains for real


def _t(*arrays):
    return [ops.convert_to_tensor(np.asarray(a, "float32")) for a in arrays]


# ----------------------------------------------------------------------------- total correlation
# A correlated Gaussian aggregate: μ(x) ~ N(0, A Aᵀ), q(z|x) = N(μ(x), s² I). Then q(z) is exactly
# N(0, Σ) with Σ = A Aᵀ + s² I whatever s, so the decomposition has closed forms:
#   TC = ½ (Σ_l log Σ_ll − log det Σ),  MI = ½ (log det Σ − D log s²),
#   dim-wise KL = ½ Σ_l (Σ_ll − 1 − log Σ_ll).
# s is not taken → 0: with point posteriors the batch estimate of q(z) is a sum of spikes, whose TC
# is (D − 1) log N, not the Gaussian's. s = 0.5 keeps each posterior narrow next to the aggregate
# (variances ≈ 1) and wide next to the spacing of 2000 samples in 3-d, so the estimate converges.
A = np.array([[1.0, 0.0, 0.0], [0.8, 0.6, 0.0], [0.5, -0.3, 0.5]])  # corr(z0, z1) ≈ 0.64
S2 = 0.25


def _gaussian_batch(b, seed, mix=A):
    rng = np.random.RandomState(seed)
    mean = rng.randn(b, 3) @ mix.T  # (B, 3)
    logvar = np.full((b, 3), np.log(S2))
    z = mean + np.sqrt(S2) * rng.randn(b, 3)
    return z, mean, logvar


def _closed_forms(mix=A):
    cov = mix @ mix.T + S2 * np.eye(3)
    logdet = np.linalg.slogdet(cov)[1]
    d = np.diag(cov)
    return {
        "tc": 0.5 * (np.log(d).sum() - logdet),
        "mi": 0.5 * (logdet - 3 * np.log(S2)),
        "dimwise_kl": 0.5 * (d - 1 - np.log(d)).sum(),
    }


@pytest.mark.parametrize("estimator", ["mss", "mws"])
def test_tc_decomposition_matches_the_closed_form_of_a_correlated_gaussian(estimator):
    exact = _closed_forms()
    assert exact["tc"] == pytest.approx(0.410, abs=1e-3)  # far from 0: a TC of 0 cannot pass
    n = V.TC_DATASET_SIZE
    codes = _t(*_gaussian_batch(2000, 0))
    est = {k: float(v) for k, v in V.tc_decomposition(*codes, n, estimator).items()}
    if estimator == "mws":  # its constant: every density log N below the plain batch average
        log_n = np.log(n)
        est = {"mi": est["mi"] - log_n, "tc": est["tc"] - 2 * log_n,
               "dimwise_kl": est["dimwise_kl"] + 3 * log_n}  # fmt: skip
    # Tolerances: over 5 seeds at B = 2000 the estimates scatter with std 0.017 (tc), 0.03 (mi)
    # and 0.007 (dim-wise KL) around means within 0.01 (tc), 0.03 (mi) of the closed forms
    # (log q̂ is biased low by Jensen, O(1/B)); ≈ 3.5 std each.
    assert est["tc"] == pytest.approx(exact["tc"], abs=0.06)
    assert est["mi"] == pytest.approx(exact["mi"], abs=0.12)
    assert est["dimwise_kl"] == pytest.approx(exact["dimwise_kl"], abs=0.03)
    if estimator == "mss":
        tc_alone = float(V.total_correlation(*codes, n, estimator))
        assert tc_alone == pytest.approx(est["tc"], abs=1e-6)


def test_tc_of_independent_latents_is_near_zero():
    independent = np.diag(np.sqrt(np.diag(A @ A.T)))  # same marginal scales, no correlation
    tc = float(V.total_correlation(*_t(*_gaussian_batch(2000, 1, independent)), estimator="mss"))
    assert abs(tc) < 0.06  # the tolerance of the correlated case, whose TC is 0.41


@pytest.mark.parametrize("estimator", ["mss", "mws"])
def test_decomposition_adds_up_to_the_one_sample_kl(estimator):
    z, mean, logvar = _gaussian_batch(64, 2)
    parts = V.tc_decomposition(*_t(z, mean, logvar), estimator=estimator)
    log_q = V.gaussian_log_density(*_t(z, mean, logvar))
    log_p = V.gaussian_log_density(*_t(z, np.zeros_like(z), np.zeros_like(z)))
    one_sample_kl = float(ops.mean(ops.sum(log_q - log_p, axis=1)))
    assert float(sum(parts.values())) == pytest.approx(one_sample_kl, abs=1e-4)


@pytest.mark.parametrize("b", [2, 3, 16])
def test_mss_weights_are_stratified_and_normalised(b):
    n = 1000.0
    w = np.exp(ops.convert_to_numpy(V.mss_log_weights(b, n)))  # (B, B)
    np.testing.assert_allclose(w.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(np.diag(w), 1 / n, rtol=1e-5)  # own posterior
    np.testing.assert_allclose(
        np.diag(np.roll(w, -1, axis=1)), (n - b + 1) / (n * (b - 1)), rtol=1e-5
    )
    rest = w[(np.eye(b) + np.roll(np.eye(b), 1, axis=1)) == 0]
    np.testing.assert_allclose(rest, 1 / (b - 1), rtol=1e-6)


# ----------------------------------------------------------------------------- DIP-VAE
def test_dip_penalties_of_a_hand_built_covariance():
    # two samples ±(2, 1): Cov[μ] = [[4, 2], [2, 1]] (1/B normalised, as in Kumar et al.)
    mean = np.array([[2.0, 1.0], [-2.0, -1.0]])
    logvar = np.log(np.full((2, 2), 0.5))  # E[σ²] = 0.5 on the diagonal for DIP-VAE-II
    cov_i = ops.convert_to_numpy(V.dip_covariance(*_t(mean, logvar), "i"))
    np.testing.assert_allclose(cov_i, [[4, 2], [2, 1]], rtol=1e-6)
    off, diag = (float(v) for v in V.dip_penalties(V.dip_covariance(*_t(mean, logvar), "i")))
    assert (off, diag) == pytest.approx((2 * 2**2, 3**2 + 0**2))
    off, diag = (float(v) for v in V.dip_penalties(V.dip_covariance(*_t(mean, logvar), "ii")))
    assert (off, diag) == pytest.approx((8.0, 3.5**2 + 0.5**2))  # diag 4.5, 1.5
    off, diag = (float(v) for v in V.dip_penalties(ops.eye(3)))
    assert (off, diag) == (0.0, 0.0)


# ----------------------------------------------------------------------------- the losses
@pytest.fixture(scope="module")
def batch():
    return np.random.RandomState(0).rand(8, 32, 32, 1).astype("float32")


def _model(objective, beta=4.0):
    keras.utils.set_random_seed(0)
    return V.build_vae(image_size=32, latent_dim=4, channels=8, hidden=16, objective=objective,
                       beta=beta, seed=0)  # fmt: skip


def test_every_objective_has_one_loss_and_its_terms():
    """One registry line per objective: the CLI's names (hparams.OBJECTIVES) and the losses
    (variationAutoEncoder.OBJECTIVE_LOSSES) agree, and each loss returns its declared terms."""
    assert list(V.OBJECTIVE_LOSSES) == list(hparams.OBJECTIVES)
    assert set(hparams.OBJECTIVE_TERMS) <= set(hparams.OBJECTIVES)


def test_beta_vae_terms_are_unchanged():
    names = ["reconstruction", "kl", "capacity", "kl_0", "kl_1", "kl_2", "kl_3"]
    assert _model("beta").term_names() == names
    assert _model("capacity").term_names() == names


@pytest.mark.parametrize("objective", NEW)
def test_each_loss_is_built_from_its_reported_terms(objective, batch):
    model = _model(objective, beta=4.0)
    loss, t = model.compute_terms(batch, training=True)
    assert list(t) == model.term_names()
    t = {k: float(v) for k, v in t.items()}
    if objective == "tcvae":
        assert model.term_names()[-3:] == ["mi", "tc", "dimwise_kl"]
        expected = t["reconstruction"] + t["mi"] + 4.0 * t["tc"] + t["dimwise_kl"]
    else:
        lambda_d = {"dipvae_i": 40.0, "dipvae_ii": 4.0}[objective]  # 10 λ_od and λ_od
        assert model.term_names()[-2:] == ["dip_offdiag", "dip_diag"]
        expected = t["reconstruction"] + t["kl"] + 4.0 * t["dip_offdiag"] + lambda_d * t["dip_diag"]
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    # β weighs only the disentangling term: β = 1 vs β = 4 differ by 3 × that term
    loss1, _ = _model(objective, beta=1.0).compute_terms(batch, training=True)
    term = t["tc"] if objective == "tcvae" else t["dip_offdiag"] + lambda_d / 4.0 * t["dip_diag"]
    assert float(loss) - float(loss1) == pytest.approx(3.0 * term, rel=1e-4, abs=1e-3)


# ----------------------------------------------------------------------------- sweeps
def test_run_names_keep_beta_vae_names_and_prefix_the_others(tmp_path):
    assert run_name(4, 0) == run_name(4, 0, "beta") == "beta4_seed0"
    assert run_name(4, 0, "tcvae") == "tcvae_beta4_seed0"
    base = training.preset_config("test")
    index = sweep_index(base, [1, 4], [0], tmp_path, objectives=["beta", "dipvae_i"])
    assert [(r["name"], r["objective"]) for r in index["runs"]] == [
        ("beta1_seed0", "beta"), ("beta4_seed0", "beta"),
        ("dipvae_i_beta1_seed0", "dipvae_i"), ("dipvae_i_beta4_seed0", "dipvae_i"),
    ]  # fmt: skip


def test_local_sweep_trains_every_objective(tmp_path):
    from sbd_vae.sweep import local_sweep

    seen = []

    def fake_train(cfg, out, fresh=False, progress=True):
        seen.append((cfg.objective, cfg.beta, out.name))
        out.mkdir(parents=True)
        rundir.write_json(out / "summary.json", {"step": cfg.steps})
        return {"loss": 1.0, "recon": 1.0, "kl": 0.0}

    base = training.preset_config("test")
    local_sweep(base, [2], [0], tmp_path, train_fn=fake_train, progress=False,
                objectives=["tcvae", "beta"])  # fmt: skip
    assert seen == [("tcvae", 2.0, "tcvae_beta2_seed0"), ("beta", 2.0, "beta2_seed0")]
    on_disk = json.loads((tmp_path / "sweep.json").read_text())
    assert [r["objective"] for r in on_disk["runs"]] == ["tcvae", "beta"]


# ----------------------------------------------------------------------------- bad arguments
@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--objective", "btcvae"], "--objective 'btcvae': choose one of"),
        (["train", "--objective", "tcvae", "--beta", "-1"], "--beta -1.0"),
        (["train", "--objective", "dipvae_ii", "--beta", "nan"], "--beta nan"),
        (["sweep", "--objectives", "beta", "tcvea", "--betas", "1"], "--objectives tcvea: choose"),
        (["sweep", "--objectives", "dipvae_i", "--betas", "1", "-2"], "--beta -2.0"),
    ],
)
def test_bad_objective_arguments_fail_before_anything_is_written(args, message, tmp_path):
    err = StringIO()
    out = tmp_path / "r"
    with redirect_stderr(err):
        code = training.main([args[0], "--preset", "test", "--out", str(out), *args[1:]])
    assert code == 2 and message in err.getvalue(), err.getvalue()
    assert "tcvae" in err.getvalue() or "β" in err.getvalue()  # the choices, or what β must be
    assert not out.exists()


# ----------------------------------------------------------------------------- real trainings
@pytest.mark.slow
@pytest.mark.parametrize("objective", TRAINED)
def test_objective_trains_saves_and_reloads(objective, shapes_npz, tmp_path):
    cfg = training.preset_config("test", data_path=str(shapes_npz), objective=objective, beta=4)
    out = tmp_path / objective
    summary = training.train(cfg, out, progress=False)
    assert summary["status"] == "done"
    history = rundir.read_history(out)
    extra = V.BetaVAE.EXTRA_TERMS[objective]
    assert all(np.isfinite(r[k]) for r in history for k in ("loss", *extra))
    assert history[-1]["loss"] < 0.8 * history[0]["loss"], [r["loss"] for r in history]
    model = keras.models.load_model(out / "model.keras")
    assert model.objective == objective and model.beta == 4.0
    assert model.term_names()[-len(extra) :] == list(extra)
    x = np.zeros((4, 32, 32, 1), "float32")
    loss, terms = model.compute_terms(x, training=False)
    assert np.isfinite(float(loss)) and set(extra) <= set(terms)
    if objective == "tcvae":  # scripts/tc_batch_bias.py on the run: one finite estimate per size
        import importlib.util

        path = Path(training.__file__).parent / "scripts" / "tc_batch_bias.py"
        spec = importlib.util.spec_from_file_location("tc_batch_bias", path)
        tcb = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(tcb)
        est = tcb.tc_by_batch(out, [16, 128], images=128)
        assert set(est) == {16, 128} and all(np.isfinite(v) for v in est.values())


# ----------------------------------------------------------------------------- FactorVAE
def test_permute_dims_permutes_each_latent_independently():
    z = ops.convert_to_tensor(np.arange(64 * 3, dtype="float32").reshape(64, 3))
    p = np.asarray(V.permute_dims(z, keras.random.SeedGenerator(0)))
    z = np.asarray(z)
    for j in range(3):  # each column holds its own values, reordered
        assert sorted(p[:, j]) == sorted(z[:, j]) and not np.array_equal(p[:, j], z[:, j])
    rows = {tuple(r) for r in z}
    assert sum(tuple(r) in rows for r in p) < 8  # rows are mixed: few survive whole


def test_factorvae_loss_and_terms(batch):
    model = _model("factorvae", beta=4.0)
    assert model.term_names()[-3:] == ["tc", "discriminator_loss", "discriminator_accuracy"]
    loss, t = model.compute_terms(batch, training=True)
    t = {k: float(v) for k, v in t.items()}
    assert float(loss) == pytest.approx(t["reconstruction"] + t["kl"] + 4.0 * t["tc"], rel=1e-6)
    # an untrained discriminator cannot tell real codes from permuted ones: loss ≈ log 2
    assert t["discriminator_loss"] == pytest.approx(np.log(2.0), abs=0.05)
    assert 0.0 <= t["discriminator_accuracy"] <= 1.0


def test_factorvae_each_network_learns_only_from_its_own_loss(batch):
    """The VAE loss (with γ·TC) must not move the discriminator, and the discriminator's loss
    must not move the encoder (Kim & Mnih 2018, Alg. 1: two optimisers, two objectives).
    (TensorFlow's tape; on JAX, test_factorvae_resume_is_bit_exact runs the same split.)"""
    if keras.backend.backend() != "tensorflow":
        pytest.skip("a TensorFlow tape")
    import tensorflow as tf

    model = _model("factorvae", beta=4.0)
    disc = model.discriminator.trainable_variables
    with tf.GradientTape(persistent=True) as tape:
        loss, t = model.compute_terms(batch, training=True)
        aux = model.auxiliary_loss(t)
    assert all(g is None for g in tape.gradient(loss, disc))
    assert all(g is None for g in tape.gradient(aux, model.encoder.trainable_variables))
    assert any(g is not None and np.abs(g).max() > 0 for g in tape.gradient(aux, disc))
    g_tc = tape.gradient(t["tc"], model.encoder.trainable_variables)  # TC reaches the encoder
    assert any(g is not None and np.abs(g).max() > 0 for g in g_tc)


@pytest.mark.parametrize("frozen", ["vae", "discriminator"])
def test_the_step_updates_each_network_with_its_own_optimiser_only(frozen, batch):
    """One real training step (``sbd_vae.steps``, on the running backend) with one optimiser's
    learning rate at 0: the networks of that optimiser stay bit for bit, the others move. The
    step knows the discriminator only as an auxiliary net of the registry (``AUXILIARY_NETS``)."""
    from sbd_vae import backend

    model = _model("factorvae", beta=4.0)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=backend.is_jax())
    model.optimizer.build(model.vae_variables())
    (aux, net, disc_opt), = model.auxiliaries()  # fmt: skip
    assert aux.name == "discriminator" and net is model.discriminator
    zero = model.optimizer if frozen == "vae" else disc_opt
    zero.learning_rate.assign(0.0)
    disc_ids = {id(v) for v in net.trainable_variables}
    before = {id(v): np.array(v) for v in model.trainable_variables}
    model.fit(batch, batch_size=8, epochs=1, verbose=0)  # one step of 8
    moved = {id(v) for v in model.trainable_variables if not np.array_equal(np.array(v),
                                                                         before[id(v)])}  # fmt: skip
    vae_ids = {id(v) for v in model.vae_variables()}
    assert moved == (disc_ids if frozen == "vae" else vae_ids)


def test_factorvae_discriminator_has_the_papers_optimizer_and_stays_out_of_the_vae_optimizer():
    model = _model("factorvae")
    opt = model.discriminator_state.get_optimizer()
    cfg = opt.get_config()
    assert (cfg["learning_rate"], cfg["beta_1"], cfg["beta_2"]) == pytest.approx((1e-4, 0.5, 0.9))
    own = {id(v) for v in model.discriminator.trainable_variables}
    assert own and not own & {id(v) for v in model.vae_variables()}
    state = {id(v) for v in model.non_trainable_variables}
    assert {id(v) for v in opt.variables} <= state  # checkpointed with the model's state


@pytest.mark.slow
def test_factorvae_resume_is_bit_exact(shapes_npz, tmp_path):
    cfg = training.preset_config("test", data_path=str(shapes_npz), objective="factorvae",
                                 beta=4, steps=60)  # fmt: skip
    training.train(cfg, tmp_path / "full", progress=False)
    training.train(cfg, tmp_path / "resumed", progress=False, stop_at=20)
    training.train(cfg, tmp_path / "resumed", progress=False)
    a, b = (
        np.load(tmp_path / n / "checkpoints" / "ckpt-00000060.npz") for n in ("full", "resumed")
    )
    names = json.loads(bytes(a["meta"]).decode())["paths"]
    # its Adam's moments are checkpointed with the model
    assert any("discriminator" in n and n.endswith("_momentum") for n in names)
    assert all(np.array_equal(a[k], b[k]) for k in a.files if k != "meta")
    drop = ("img_per_s", "elapsed_s")
    rows = [[{k: v for k, v in r.items() if k not in drop} for r in rundir.read_history(tmp_path / n)]
            for n in ("full", "resumed")]  # fmt: skip
    assert rows[0] == rows[1]


@pytest.mark.slow
def test_a_real_mixed_sweep_reports_score_vs_beta_per_objective(shapes_npz, tmp_path):
    """End to end: sweep --objectives beta factorvae over two β, then the report."""
    import latentSpace

    base = training.preset_config("test", data_path=str(shapes_npz), steps=40)
    training.sweep(base, [1, 4], [0], tmp_path, progress=False, objectives=["beta", "factorvae"])
    out = latentSpace.report(tmp_path, "quick", progress=False, metric_options={"metrics": ["mig"]})
    rows = (out / "scores.csv").read_text().splitlines()
    header = rows[0].split(",")
    got = {(r.split(",")[header.index("objective")], float(r.split(",")[header.index("beta")]))
           for r in rows[1:]}  # fmt: skip
    assert got == {(o, b) for o in ("beta", "factorvae") for b in (1.0, 4.0)}
    index = (out / "index.md").read_text()
    assert "## Scores of `beta`" in index and "## Scores of `factorvae`" in index
    assert (out / "scores_vs_beta.png").stat().st_size > 0


# ----------------------------------------------------------------------------- mixed-objective report
def _mixed_records():
    """3 seeds of β-VAE and β-TCVAE at β 1 and 4: MIG rises with β for β-VAE (0.1 → 0.5) and falls
    for β-TCVAE (0.3 → 0.05), so any pooling of the two objectives at one β shows."""
    mig = {("beta", 1.0): 0.1, ("beta", 4.0): 0.5, ("tcvae", 1.0): 0.3, ("tcvae", 4.0): 0.05}
    return [
        {"run": run_name(b, s, o), "objective": o, "beta": b, "beta_norm": b / 100, "seed": s,
         "mig": m + 0.01 * s, "recon": 100.0, "recon_excess": 1.0, "active_units": 3,
         "kl_total": 5.0}
        for (o, b), m in mig.items() for s in range(3)
    ]  # fmt: skip


def test_beta_grouping_refuses_to_mix_objectives():
    from sbd_vae import significance

    records = _mixed_records()
    with pytest.raises(ValueError, match="several objectives"):
        significance.values_by_beta(records, "mig")
    groups = significance.by_objective(list(reversed(records)))
    assert list(groups) == ["beta", "tcvae"]  # hparams.OBJECTIVES order, whatever the input's
    best = {o: significance.compare_betas(rs, "mig")["best"] for o, rs in groups.items()}
    assert best == {"beta": 4.0, "tcvae": 1.0}


def test_mixed_report_has_one_line_and_one_table_per_objective(tmp_path, monkeypatch):
    from sbd_vae import figures, report

    records = _mixed_records()
    drawn = []
    real_errorbar = __import__("matplotlib.axes", fromlist=["Axes"]).Axes.errorbar

    def spy(self, x, y, *args, **kwargs):
        drawn.append((kwargs.get("label"), list(np.round(y, 3))))
        return real_errorbar(self, x, y, *args, **kwargs)

    monkeypatch.setattr("matplotlib.axes.Axes.errorbar", spy)
    figures.plot_vs_beta(records, ["mig"], tmp_path / "mig.png", "test")
    assert (tmp_path / "mig.png").stat().st_size > 0
    assert drawn == [("beta", [0.11, 0.51]), ("tcvae", [0.31, 0.06])]

    rows = [{"run": {**r, "name": r["run"], "path": tmp_path / r["run"]}, "metrics": {},
             "convergence": {"converged": True}} for r in records]  # fmt: skip
    res = {"runs": [row["run"] for row in rows], "unfinished": [], "failed": [], "rows": rows}
    cols = ["run", "objective", "beta", "mig"]
    index = report._index_md(tmp_path, res, cols, records, ["mig"], "study", 0, "label", {})
    beta_part, tc_part = index.split("## Scores of `tcvae`")
    assert "## Scores of `beta`" in beta_part
    # each table holds its own objective's means only: pooled, β=4 would read 0.285
    assert "| 4 | 0.04 | 3 | 0.510 ± 0.010 |" in beta_part.split("## Which")[0]
    assert "| 4 | 0.04 | 3 | 0.060 ± 0.010 |" in tc_part.split("## Which")[0]
    assert "0.285" not in index
    assert "## Which differences are real of `beta`" in index
    assert "## Which differences are real of `tcvae`" in index
    assert "### `tcvae`, β = 4 (β_norm = 0.04), run `tcvae_beta4_seed0`" in index
    # and the objectives side by side at each β, with Welch's test over the 3 seeds
    assert "## Objectives compared at equal β" in index
    assert "| 4 | `tcvae` vs `beta` | 0.06 vs 0.51 | -0.45 |" in index


def test_compare_objectives_tests_each_shared_beta_and_needs_three_seeds():
    from sbd_vae.significance import compare_objectives

    rows = compare_objectives(_mixed_records(), "mig")
    assert [(r["beta"], r["objective"], r["reference"]) for r in rows] == [
        (1.0, "tcvae", "beta"), (4.0, "tcvae", "beta")]  # fmt: skip
    assert all(r["p"] < 0.05 for r in rows)  # 0.2 and 0.45 apart, seed spread 0.01
    assert rows[1]["diff"] == pytest.approx(0.06 - 0.51)
    two_seeds = [r for r in _mixed_records() if r["seed"] < 2]
    assert all(np.isnan(r["p"]) for r in compare_objectives(two_seeds, "mig"))
    only_beta = [r for r in _mixed_records() if r["objective"] == "beta"]
    assert compare_objectives(only_beta, "mig") == []
