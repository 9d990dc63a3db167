"""The measurement protocol, on synthetic ground truth with known answers: active units (Burda et
al. 2016), the reconstruction's entropy floor, per-factor MIG, the Welch rule over seeds, the
convergence check, and the metric grids sized to the image."""

import math

import numpy as np
import pytest

import dataset
from sbd_vae import convergence, encoding, evaluation, metrics, significance


# ----------------------------------------------------------------------------- active units
def test_active_units_is_the_variance_of_the_posterior_mean():
    rng = np.random.RandomState(0)
    mean = np.zeros((5000, 4))
    mean[:, 0] = rng.normal(0, 1.0, 5000)  # var 1: active
    mean[:, 1] = rng.normal(0, 0.2, 5000)  # var 0.04: active
    mean[:, 2] = rng.normal(0, 0.05, 5000)  # var 0.0025: inactive, though not constant
    mean[:, 3] = 3.0  # a constant offset carries nothing: inactive
    act = encoding.unit_activity(mean)
    assert act == pytest.approx([1.0, 0.04, 0.0025, 0.0], rel=0.1, abs=1e-9)
    assert encoding.active_units(mean) == 2
    assert encoding.ACTIVE_VAR == 0.01


# ----------------------------------------------------------------------------- reconstruction
def test_entropy_floor_known_answers():
    binary = np.zeros((3, 8, 8, 1))
    binary[:, 2:5] = 1.0
    assert evaluation.entropy_floor(binary) == pytest.approx(0.0, abs=1e-6)
    grey = np.full((2, 8, 8, 1), 0.5)
    assert evaluation.entropy_floor(grey) == pytest.approx(64 * math.log(2))
    # Gaussian with fixed σ: the normaliser per image, whatever the pixels
    assert evaluation.entropy_floor(grey, "gaussian", 0.1) == pytest.approx(
        64 * math.log(0.1 * math.sqrt(2 * math.pi))
    )


def test_the_floor_is_the_best_bernoulli_reconstruction():
    """No logits do better than predicting the grey target itself, and those reach the floor."""
    import keras

    rng = np.random.RandomState(1)
    x = rng.uniform(0, 1, (4, 6, 6, 1)).astype(np.float32)
    floor = evaluation.entropy_floor(x)
    exact = np.log(x / (1 - x))
    nll = keras.ops.convert_to_numpy(
        keras.ops.binary_crossentropy(x, exact, from_logits=True)
    ).reshape(4, -1)
    assert nll.sum(1).mean() == pytest.approx(floor, rel=1e-4)
    worse = keras.ops.convert_to_numpy(
        keras.ops.binary_crossentropy(x, exact + 0.3, from_logits=True)
    ).reshape(4, -1)
    assert worse.sum(1).mean() > floor


# ----------------------------------------------------------------------------- per-factor MIG
def test_mig_per_factor_identity_code_and_a_missing_factor():
    rng = np.random.RandomState(0)
    factors = rng.randint(0, 8, size=(4000, 3))
    codes = factors.astype(float) + rng.normal(0, 0.01, factors.shape)
    codes[:, 2] = rng.normal(size=4000)  # factor 2 is not in the code at all
    gaps = metrics.mig_per_factor(codes, factors)
    assert gaps[0] > 0.9 and gaps[1] > 0.9 and gaps[2] < 0.05
    assert metrics.mig(codes, factors) == pytest.approx(gaps.mean())


# ----------------------------------------------------------------------------- significance
def _records(values_by_beta):
    return [{"beta": b, "m": v} for b, vs in values_by_beta.items() for v in vs]


def test_welch_rule_calls_a_difference_real_only_at_p_below_alpha():
    clear = _records({1: [0.10, 0.11, 0.12], 4: [0.50, 0.52, 0.49], 16: [0.3, 0.1, 0.6]})
    c = significance.compare_betas(clear, "m")
    assert c["best"] == 4 and c["better"] == [1] and c["tied"] == [16]
    assert c["tests"][1]["p"] < 0.05 <= c["tests"][16]["p"]
    # the README's old claim: MIG 0.103 ± 0.044 vs 0.055 ± 0.027 over 2 seeds is no claim at all
    two = _records({2: [0.072, 0.134], 1: [0.036, 0.074]})
    c = significance.compare_betas(two, "m")
    assert not c["comparable"] and "no comparison" in c["statement"] and not c["better"]


def test_welch_matches_scipy():
    from scipy.stats import ttest_ind

    a, b = [1.0, 2.0, 4.0], [3.0, 5.0, 6.0, 8.0]
    w = significance.welch(a, b)
    ref = ttest_ind(a, b, equal_var=False)
    assert w["t"] == pytest.approx(ref.statistic) and w["p"] == pytest.approx(ref.pvalue)


# ----------------------------------------------------------------------------- convergence
def _history(loss, kls):
    steps = np.arange(1, len(loss) + 1) * 50
    return [
        {"step": int(s), "loss": float(lo), **{f"kl_{i}": float(k) for i, k in enumerate(row)}}
        for s, lo, row in zip(steps, loss, kls)
    ]


def test_convergence_flags_a_moving_latent_and_a_moving_loss():
    rng = np.random.RandomState(0)
    n = 80
    flat_loss = 100 + rng.normal(0, 0.5, n)
    flat_kl = np.tile([2.0, 0.005], (n, 1)) + rng.normal(0, 0.02, (n, 2))
    c = convergence.convergence(_history(flat_loss, flat_kl))
    assert c["converged"] and c["moving"] == [] and abs(c["loss_change"]) < 0.02

    rising = flat_kl.copy()
    rising[:, 1] += np.linspace(0, 1.5, n)  # a latent switching on late in training
    c = convergence.convergence(_history(flat_loss, rising))
    assert not c["converged"] and c["moving"] == [1] and "z1" in c["note"]

    falling = np.linspace(150, 100, n)  # still 7% down over the tail
    c = convergence.convergence(_history(falling, flat_kl))
    assert not c["converged"] and c["loss_change"] < -0.02 and "loss" in c["note"]


# ----------------------------------------------------------------------------- metric grids
@pytest.mark.parametrize(
    "size, scale_range, pos_range, expect",
    [
        (32, (0.6, 0.9), (-0.1, 0.1), (4, 7)),  # the study: 6.4 px of travel, 3.8 px of radius
        (32, (0.35, 0.7), (-0.2, 0.2), (5, 13)),
        (128, (0.35, 0.7), (-0.2, 0.2), (8, 16)),  # the paper setting keeps its full grid
    ],
)
def test_grid_steps_are_at_least_one_pixel(size, scale_range, pos_range, expect):
    r_max = 0.4
    n_scale, n_pos = dataset.grid_sizes(size, scale_range, pos_range, r_max)
    assert (n_scale, n_pos) == expect
    pos = np.linspace(*pos_range, n_pos) * size  # pixels
    assert np.diff(pos).min() >= 1.0 - 1e-9
    radius = np.linspace(*scale_range, n_scale) * r_max * size
    if n_scale > 1:
        assert np.diff(radius).min() >= 1.0 - 1e-9
    # one more value would put two neighbours less than a pixel apart (unless capped)
    if n_pos < dataset.MAX_POSITIONS:
        assert np.diff(np.linspace(*pos_range, n_pos + 1) * size).min() < 1.0


def test_dataset_grid_defaults_to_the_image(shapes_npz):
    ds = dataset.ShapesDataset(shapes_npz, image_size=32, scale_range=(0.6, 0.9),
                               pos_range=(-0.1, 0.1))  # fmt: skip
    assert ds.num_positions == 7 and ds.factor_sizes[-2:] == [7, 7]
    assert 3 <= ds.num_scales <= 4  # r_max of the real render is a little under 0.4
    explicit = dataset.ShapesDataset(shapes_npz, image_size=32, num_positions=3)
    assert explicit.num_positions == 3
