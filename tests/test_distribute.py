"""MirroredStrategy correctness: 2 logical CPU devices must train like 1 device on a fixed batch.

The 2-replica runs happen in a subprocess: ``tf.config.set_logical_device_configuration`` has to be
called before TensorFlow initialises its devices, which the test process has long done. The batch
is a real one (16 images of the bpy render); MirroredStrategy gives each replica 8 of them.

What BetaVAE.train_step must get right under tf.distribute (see its docstring):
- the per-replica loss is scaled by 1/R, so the SUM all-reduce of gradients is the gradient of
  the global-batch mean (checked with plain SGD: Adam's update is nearly invariant to a constant
  gradient scale, so it would hide a missing or doubled 1/R);
- the Mean trackers are weighted by the local batch and read across replicas, so history.csv
  holds global means, not replica 0's (the two halves of the batch have different losses).

and Sampling must give each replica its own rows of the global ε draw (replicas share the
SeedGenerator state), so that the real, noisy Adam step equals the single-device one. The gradient
checks patch Sampling to z = mean, so that they test the gradient aggregation alone.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import training

REPO = Path(__file__).resolve().parents[1]
RTOL = 1e-5  # "within 1e-5": relative, since the loss is a sum over 1024 pixels (≈ 750 nats)

SCRIPT = r"""
import json, sys
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
import numpy as np

import dataset
import training
import variationAutoEncoder as vae

cfg = training.preset_config("test", beta=4.0, seed=0, data_path=sys.argv[1])
x = next(iter(dataset.ShapesDataset(sys.argv[1], image_size=32).tf_dataset(16, seed=0)))[0]
x = x.numpy()  # (16, 32, 32, 1): the fixed batch
one = tf.distribute.get_strategy()
two = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
LR, STEPS = 1e-3, 3
out = {"replicas": two.num_replicas_in_sync}


def batches(b):
    return tf.data.Dataset.from_tensor_slices(b).batch(len(b)).repeat()


def logs(h):
    return {k: [float(v) for v in vs] for k, vs in h.history.items()}


def evaluate(model, b):
    r = model.evaluate(batches(b).take(1), verbose=0, return_dict=True)
    return {k: float(v) for k, v in r.items()}


# One model per strategy, same seed: identical initial weights (and ε seed state).
models = {name: training.build_model(cfg, s) for name, s in (("one", one), ("two", two))}
start = {name: [v.numpy() for v in m.variables] for name, m in models.items()}
for name, m in models.items():
    # test_step (eval mode: z = mean, no noise) on the whole batch
    out[f"eval_{name}"] = evaluate(m, x)
    if name == "one":  # each replica's half on its own
        out["eval_halves"] = [evaluate(m, x[:8])["loss"], evaluate(m, x[8:])["loss"]]
    # the real path: one Adam step with sampled ε
    out[f"adam_{name}"] = logs(m.fit(batches(x), epochs=1, steps_per_epoch=1, verbose=0))

# ε per replica: each replica holds the same SeedGenerator state
with two.scope():
    layer = vae.Sampling(seed=0)
zeros = tf.zeros((2, cfg.latent_dim))
eps = two.run(tf.function(lambda: layer((zeros, zeros))))
out["eps_per_replica"] = [e.numpy().tolist() for e in two.experimental_local_results(eps)]

# SGD steps from the initial weights, with the noise-free forward pass
vae.Sampling.call = lambda self, inputs: inputs[0]
grads, weights = {}, {}
for (name, m), strategy in zip(models.items(), (one, two)):
    for v, a in zip(m.variables, start[name]):
        v.assign(a)
    with strategy.scope():
        m.compile(optimizer=keras.optimizers.SGD(LR), jit_compile=False)
    h1 = m.fit(batches(x), epochs=1, steps_per_epoch=1, verbose=0)
    grads[name] = [(a - v.numpy()) / LR for a, v in zip(start[name], m.variables) if v.trainable]
    h2 = m.fit(batches(x), initial_epoch=1, epochs=STEPS, steps_per_epoch=1, verbose=0)
    out[f"sgd_logs_{name}"] = [logs(h1), logs(h2)]
    weights[name] = [v.numpy() for v in m.trainable_variables]
g1, g2 = grads["one"], grads["two"]
out["grad_max"] = max(float(np.abs(g).max()) for g in g1)
out["grad_maxdiff"] = max(float(np.abs(a - b).max()) for a, b in zip(g1, g2))
out["grad_ratio"] = float(sum((a * b).sum() for a, b in zip(g1, g2)) / sum((a * a).sum() for a in g1))
out["weights_maxdiff"] = max(float(np.abs(a - b).max()) for a, b in zip(weights["one"], weights["two"]))
print("RESULT " + json.dumps(out))
"""


@pytest.fixture(scope="module")
def mirrored(shapes_npz):
    r = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(shapes_npz)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    lines = [x for x in r.stdout.splitlines() if x.startswith("RESULT ")]
    assert r.returncode == 0 and lines, r.stdout[-3000:] + r.stderr[-5000:]
    return json.loads(lines[-1][len("RESULT ") :])


pytestmark = pytest.mark.slow


def test_two_logical_cpus_give_two_replicas(mirrored):
    assert mirrored["replicas"] == 2


def test_eval_loss_matches_one_device(mirrored):
    one, two = mirrored["eval_one"], mirrored["eval_two"]
    assert one.keys() == two.keys()
    for k in one:  # loss, reconstruction, kl, capacity, kl_0..kl_5
        np.testing.assert_allclose(two[k], one[k], rtol=RTOL, atol=1e-6, err_msg=k)


def test_reported_metrics_are_global_means_not_one_replicas(mirrored):
    halves, one, two = mirrored["eval_halves"], mirrored["eval_one"], mirrored["eval_two"]
    # the halves differ enough that replica 0's own mean would fail the check above
    assert abs(halves[0] - one["loss"]) > 10 * RTOL * one["loss"]
    np.testing.assert_allclose(np.mean(halves), one["loss"], rtol=RTOL)
    np.testing.assert_allclose(two["loss"], one["loss"], rtol=RTOL)


def test_gradient_step_matches_one_device(mirrored):
    # all-reduced gradient == single-device gradient of the global-batch mean (not 2x, not 1/2x)
    assert mirrored["grad_maxdiff"] <= RTOL * mirrored["grad_max"], mirrored
    np.testing.assert_allclose(mirrored["grad_ratio"], 1.0, rtol=RTOL)
    # ... and three SGD steps later the weights and the logged losses still agree
    assert mirrored["weights_maxdiff"] < 1e-5, mirrored["weights_maxdiff"]
    for logs_one, logs_two in zip(mirrored["sgd_logs_one"], mirrored["sgd_logs_two"]):
        for key in logs_one:  # every tracker, at every step
            np.testing.assert_allclose(
                logs_two[key], logs_one[key], rtol=RTOL, atol=1e-6, err_msg=key
            )
    losses = mirrored["sgd_logs_one"][0]["loss"] + mirrored["sgd_logs_one"][1]["loss"]
    assert len(losses) == 3 and losses[-1] < losses[0]  # the steps did move the model


def test_replicas_draw_the_single_device_noise(mirrored):
    """Each replica keeps its rows of the global ε draw: different noise per replica, and the
    real step (Adam, sampled z) equals one device's on the global batch."""
    eps = mirrored["eps_per_replica"]
    assert eps[0] != eps[1]
    one, two = mirrored["adam_one"], mirrored["adam_two"]
    assert one.keys() == two.keys() and np.isfinite(one["loss"][0])
    for key in one:
        np.testing.assert_allclose(two[key], one[key], rtol=RTOL, atol=1e-6, err_msg=key)


def test_mirrored_on_a_plain_cpu_is_one_replica():
    """--distribute mirrored without GPUs: TensorFlow shows one CPU device, so one replica."""
    import tensorflow as tf

    if len(tf.config.list_logical_devices("CPU")) != 1:
        pytest.skip("this process has several logical CPU devices")
    cfg = training.preset_config("test", distribute="mirrored")
    strategy = training.make_strategy(cfg)
    assert isinstance(strategy.strategy, tf.distribute.MirroredStrategy)
    assert strategy.num_replicas_in_sync == 1
    auto = training.make_strategy(training.preset_config("test"))  # "auto" without GPUs
    assert auto.num_replicas_in_sync == 1
