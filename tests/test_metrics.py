"""Disentanglement metrics on synthetic ground truth (as disentanglement_lib tests them).

An identity code scores about 1, a rotation of the factors is entangled, noise scores chance,
collapsed and constant extra dims change nothing and never give NaN.
"""

import math
import warnings

import numpy as np
import pytest

from sbd_vae.metrics import (
    PROTOCOLS,
    beta_vae_score,
    compute_metrics,
    dci,
    encode_factors,
    factor_vae_score,
    mig,
    modularity_explicitness,
    sap,
)

SIZES = (5, 8, 6, 10)  # four factors; small so the tests stay fast


class GridSampler:
    """Ground truth whose "image" of a factor row is the row itself, shape (n, 1, K, 1)."""

    def __init__(self, sizes=SIZES, names=None):
        self.factor_sizes = list(sizes)
        self.factor_names = list(names or [f"f{k}" for k in range(len(sizes))])

    def sample_factors(self, n, rng):
        return np.stack([rng.randint(s, size=n) for s in self.factor_sizes], axis=1)

    def images_from_factors(self, factors):
        f = np.asarray(factors)
        return f.astype(np.float32).reshape(len(f), 1, -1, 1)


class Encoder:
    """Deterministic encoders of GridSampler images; records every call's batch size.

    kind: identity (factors + 0.05 noise), rotation (standardised factors, random rotation),
    noise (a fixed random code per factor combination). extra: append a collapsed (1e-4 noise)
    and an exactly constant dim.
    """

    def __init__(self, sampler, kind="identity", extra=False, seed=0):
        r = np.random.RandomState(seed)
        self.sizes = np.asarray(sampler.factor_sizes)
        k = len(self.sizes)
        self.table = r.randn(int(np.prod(self.sizes)), k)  # per-combination noise
        self.rotation = np.linalg.qr(r.randn(k, k))[0]
        self.collapsed = 1e-4 * r.randn(int(np.prod(self.sizes)))
        self.kind, self.extra, self.calls = kind, extra, []

    def __call__(self, images):
        f = np.rint(images.reshape(len(images), -1)).astype(int)  # (n, K)
        self.calls.append(len(f))
        idx = np.ravel_multi_index(tuple(f.T), tuple(self.sizes))
        if self.kind == "identity":
            z = f + 0.05 * self.table[idx]
        elif self.kind == "rotation":
            z = ((f - (self.sizes - 1) / 2) / self.sizes) @ self.rotation
        else:
            z = self.table[idx]
        if self.extra:
            z = np.column_stack([z, self.collapsed[idx], np.full(len(f), 3.0)])
        return z.astype(np.float32)


def codes_for(kind, n, seed=0, extra=False):
    sampler = GridSampler()
    factors = sampler.sample_factors(n, np.random.RandomState(seed))
    enc = Encoder(sampler, kind, extra)
    return enc(sampler.images_from_factors(factors)).astype(np.float64), factors


def split(codes, factors, n_train):
    return codes[:n_train], factors[:n_train], codes[n_train:], factors[n_train:]


def all_finite(d):
    return all(math.isfinite(v) for v in d.values() if isinstance(v, float))


# ------------------------------------------------------------------ array-level cores
def test_identity_codes_score_near_one():
    tt = split(*codes_for("identity", 1500), 1000)
    assert mig(tt[0], tt[1]) > 0.9
    assert dci(*tt)["disentanglement"] > 0.95
    assert sap(*tt, continuous=True) > 0.9
    me = modularity_explicitness(*tt)
    assert me["modularity"] > 0.9 and me["explicitness_test"] > 0.9


def test_rotated_factors_are_entangled():
    codes, factors = codes_for("rotation", 2000)
    assert mig(codes, factors) < 0.4


def test_noise_scores_chance():
    factors = GridSampler().sample_factors(1500, np.random.RandomState(0))
    tt = split(np.random.RandomState(1).randn(1500, 4), factors, 1000)  # independent of factors
    assert mig(tt[0], tt[1]) < 0.05
    d = dci(*tt)
    assert d["disentanglement"] < 0.15 and d["completeness"] < 0.15
    # informativeness near the majority-class rate of each factor (uniform: 1/size)
    assert d["informativeness_test"] < np.mean(1 / np.asarray(SIZES)) + 0.1
    assert sap(*tt) < 0.05 and sap(*tt, continuous=True) < 0.02
    assert abs(modularity_explicitness(*tt)["explicitness_test"] - 0.5) < 0.06


def test_collapsed_and_constant_dims_change_nothing_and_give_no_nan():
    # MIG's plug-in MI of a 20-bin noise dim is biased by ~(bins-1)(classes-1)/2N nats: use N=5000
    big, big_more = codes_for("identity", 5000), codes_for("identity", 5000, extra=True)
    assert abs(mig(*big_more) - mig(*big)) < 0.01
    base = split(*codes_for("identity", 1500), 1000)
    more = split(*codes_for("identity", 1500, extra=True), 1000)
    assert more[0].shape[1] == base[0].shape[1] + 2 and np.ptp(more[0][:, -1]) == 0
    d_base, d_more = dci(*base), dci(*more)
    assert abs(d_more["disentanglement"] - d_base["disentanglement"]) < 0.02
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no 0/0 anywhere
        scores = [mig(more[0], more[1]), sap(*more), sap(*more, continuous=True)]
        scores += [*d_more.values(), *modularity_explicitness(*more).values()]
        const_only = (np.full((1000, 2), 7.0), base[1], np.full((500, 2), 7.0), base[3])
        scores += [mig(const_only[0], const_only[1]), sap(*const_only, continuous=True)]
        scores += [*dci(*const_only).values(), *modularity_explicitness(*const_only).values()]
    assert all(math.isfinite(s) for s in scores)


def test_single_valued_factor_is_skipped_with_warning():
    codes, factors = codes_for("identity", 1500)
    with_const = np.column_stack([factors, np.zeros(len(factors), int)])
    with pytest.warns(UserWarning, match="column 4"):
        value = mig(codes, with_const)
    assert value == mig(codes, factors)
    tt = split(codes, with_const, 1000)
    with pytest.warns(UserWarning, match="single value"):
        assert sap(*tt, continuous=True) == sap(*split(codes, factors, 1000), continuous=True)


def test_bad_shapes_raise():
    codes, factors = codes_for("identity", 100)
    with pytest.raises(ValueError, match=r"\(100, 4\).*\(99, 4\)"):
        mig(codes, factors[:99])
    with pytest.raises(ValueError, match="codes_test.*factors_test"):
        dci(codes, factors, codes[:50], factors[:40])
    with pytest.raises(ValueError, match="2-D"):
        mig(codes[:, 0], factors)
    with pytest.raises(ValueError, match="NaN"):
        mig(np.where(codes > 3, np.nan, codes), factors)


def test_fast_dci_reproduces_reference_when_codes_have_few_values():
    # With <= 255 distinct values per dim the fast backend's thresholds are sklearn's own, so it
    # must reproduce GradientBoostingClassifier() (up to tie-breaking between equal splits).
    r = np.random.RandomState(1)
    factors = np.stack([r.randint(4, size=300), r.randint(2, size=300)], axis=1)
    codes = np.column_stack(  # noisy enough that all 100 stages keep changing the importances
        [factors + 0.8 * r.randn(300, 2), factors[:, 0] + factors[:, 1], r.randn(300)]
    )
    tt = split(codes, factors, 250)
    fast = dci(*tt, return_importance=True)
    ref = dci(*tt, backend="reference", return_importance=True)
    np.testing.assert_allclose(fast["importance"], ref["importance"], atol=0.01)
    for key in ("disentanglement", "completeness", "informativeness_train"):
        assert abs(fast[key] - ref[key]) < 0.01, (key, fast, ref)


# ------------------------------------------------------------------ sampler-level scores
def test_beta_vae_and_factor_vae_identity_and_noise():
    s = GridSampler()
    kw = dict(batch_size=16, num_train=300, num_eval=150)
    enc = Encoder(s, "identity", extra=True)
    assert beta_vae_score(s, enc, np.random.RandomState(0), **kw)["eval_accuracy"] > 0.95
    fv = factor_vae_score(s, enc, np.random.RandomState(0), num_variance_estimate=1000, **kw)
    assert fv["eval_accuracy"] > 0.95 and fv["num_active_dims"] == len(SIZES)
    # chunked: full 256-image calls except the last of each of the two scores' encoding passes
    assert max(enc.calls) == 256 and sum(c < 256 for c in enc.calls) <= 2
    chance = 1 / len(SIZES)
    noise = Encoder(s, "noise")
    assert beta_vae_score(s, noise, np.random.RandomState(0), **kw)["eval_accuracy"] < chance + 0.15
    fv = factor_vae_score(s, noise, np.random.RandomState(0), num_variance_estimate=1000, **kw)
    assert fv["eval_accuracy"] < chance + 0.15


def test_factor_vae_all_collapsed_warns_without_nan():
    s = GridSampler()
    with pytest.warns(UserWarning, match="collapsed"):
        fv = factor_vae_score(
            s, lambda x: np.zeros((len(x), 3)), np.random.RandomState(0), 8, 20, 10, 100
        )
    assert fv == {"train_accuracy": 0.0, "eval_accuracy": 0.0, "num_active_dims": 0.0}


def test_encode_factors_encodes_each_distinct_image_once():
    s = GridSampler()
    enc = Encoder(s, "identity")
    factors = np.repeat(s.sample_factors(300, np.random.RandomState(0)), 3, axis=0)
    codes = encode_factors(s, enc, factors, chunk=100)
    assert codes.shape == (900, 4) and sum(enc.calls) == len(np.unique(factors, axis=0))
    np.testing.assert_array_equal(codes[0::3], codes[1::3])
    with pytest.raises(ValueError, match="'f0' has values outside"):
        encode_factors(s, enc, np.full((2, 4), 8))
    with pytest.raises(ValueError, match="NaN"):
        encode_factors(s, lambda x: np.full((len(x), 2), np.nan), factors)


def test_compute_metrics_quick_is_reproducible_and_scores_identity():
    s = GridSampler(SIZES + (1,), names=["a", "b", "c", "d", "flat"])

    def run(seed, which=None):
        enc = Encoder(GridSampler(), "identity", extra=True)
        fn = lambda x: enc(x[:, :, :4])  # noqa: E731  (drop the single-valued factor's column)
        with pytest.warns(UserWarning, match="'flat'"):
            return compute_metrics(s, fn, np.random.RandomState(seed), "quick", which, False)

    a, b = run(0), run(0)
    strip = lambda d: {k: v for k, v in d.items() if not k.startswith("time_")}  # noqa: E731
    assert strip(a) == strip(b)
    assert a["protocol"] == "quick" and a["num_train"] == PROTOCOLS["quick"]["num_train"]
    assert a["num_images_encoded"] <= np.prod(SIZES) < a["num_images_requested"]
    assert all_finite(a)
    assert a["mig"] > 0.9 and a["dci_disentanglement"] > 0.95 and a["sap_continuous"] > 0.9
    assert a["beta_vae_eval_accuracy"] > 0.95 and a["factor_vae_eval_accuracy"] > 0.95
    assert a["factor_vae_num_active_dims"] == 4
    # per-factor scores, named after the factors; the single-valued one is not scored
    for kind in ("mig", "informativeness"):
        assert set(a["per_factor"][kind]) == {"a", "b", "c", "d"}
        assert min(a["per_factor"][kind].values()) > 0.9
    # a metric's number does not depend on which other metrics run
    assert run(0, ["factor_vae"])["factor_vae_eval_accuracy"] == a["factor_vae_eval_accuracy"]


# ------------------------------------------------------------------ the registry
def _code_spread(data, seed):
    """A dummy metric on the shared train codes: the mean standard deviation of the code."""
    return {"dummy_spread": float(data.codes["train"].std(axis=0).mean()), "dummy_seed": seed}


def _own_sample(sampler, rng, counts, active):
    """A dummy that draws its own factor set (as BetaVAE and FactorVAE do)."""
    return {"pool": np.asarray(sampler.sample_factors(counts["num_test"], rng))}, {}


def _own_score(data, seed):
    return {"dummy_own": float(np.abs(data.codes["pool"]).mean())}


def test_a_registered_metric_runs_in_compute_metrics(monkeypatch):
    """One registry entry is all compute_metrics needs; registering metrics moves no earlier number
    (their streams are appended after the published ones)."""
    from sbd_vae.metrics import Metric, registry

    s = GridSampler()
    enc = Encoder(s, "identity")
    before = compute_metrics(s, enc, np.random.RandomState(0), "quick", progress=False)
    monkeypatch.setitem(registry.REGISTRY, "dummy", Metric("dummy", _code_spread))
    own = Metric("dummy_own", _own_score, counts=("num_test",), sample=_own_sample)
    monkeypatch.setitem(registry.REGISTRY, "dummy_own", own)
    after = compute_metrics(s, enc, np.random.RandomState(0), "quick", progress=False)
    assert after["dummy_spread"] > 1 and after["dummy_own"] > 0 and "time_dummy_s" in after
    assert registry.streams()[-3:] == ["dummy", "dummy_own_data", "dummy_own"]
    strip = lambda d: {k: v for k, v in d.items() if not k.startswith(("time_", "num_images"))}  # noqa: E731
    assert {k: v for k, v in strip(after).items() if k in before} == strip(before)
    alone = compute_metrics(s, enc, np.random.RandomState(0), "quick", ["dummy"], progress=False)
    assert alone["dummy_spread"] == after["dummy_spread"]
    assert alone["dummy_seed"] == after["dummy_seed"]  # its own stream, whatever else runs
    with pytest.raises(ValueError, match="unknown metrics"):
        compute_metrics(s, enc, np.random.RandomState(0), "quick", ["nope"], progress=False)
    needy = Metric("needy", _code_spread, counts=("num_things",))
    monkeypatch.setitem(registry.REGISTRY, "needy", needy)
    with pytest.raises(ValueError, match=r"num_things.*protocol\.py"):
        compute_metrics(s, enc, np.random.RandomState(0), "quick", ["needy"], progress=False)
