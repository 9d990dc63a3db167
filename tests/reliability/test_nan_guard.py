"""NaN/inf: the run stops with a message, the last good checkpoint is intact and loadable, and
nothing non-finite is ever checkpointed. Plus the numerical guard rail of the encoder: a
log-variance far out of range does not overflow exp (variationAutoEncoder.LOGVAR_MIN/MAX)."""

from __future__ import annotations

import numpy as np
import pytest
from reliability_helpers import STRESS, call_main, check_final_files, history_values

import training
from sbd_vae import rundir

pytestmark = pytest.mark.slow
T = ["train", "--preset", "test", "--quiet"]


def test_huge_learning_rate_stops_with_a_message(shapes_npz, tmp_path, capsys, record):
    """--lr 1e6 diverges within a few steps: exit 2, a one-line error naming the run, the step and
    the fix (--fresh: a resume with a lower lr would be refused as a changed config); no
    checkpoint, no non-finite history row; re-running gives the same message, not a traceback."""
    run = tmp_path / "run"
    argv = [*T, "--out", str(run), "--data_path", shapes_npz, "--lr", "1e6"]
    ok = False
    try:
        code, err = call_main(training.main, argv, capsys)
        assert code == 2 and "Traceback" not in err, err
        assert "loss became" in err and ("nan" in err or "inf" in err)
        assert str(run) in err and "--fresh" in err and "no checkpoint was written" in err
        assert rundir.list_checkpoints(run) == []
        assert all(np.isfinite(float(v)) for row in history_values(run).values() for v in row[1:])
        code2, err2 = call_main(training.main, argv, capsys)
        assert code2 == 2 and err2.splitlines()[-1] == err.splitlines()[-1]
        code3, err3 = call_main(
            training.main, [*T, "--out", str(run), "--data_path", shapes_npz, "--stop_at", "10",
                            "--fresh"], capsys)  # fmt: skip
        assert code3 == 0, err3  # the advice works
        ok = True
    finally:
        record("NaN: huge learning rate (CLI)", ok)


def test_nan_loss_mid_run_keeps_the_last_good_checkpoint_across_reruns(
    shapes_npz, tmp_path, monkeypatch, record, nan_after
):
    """A NaN loss at step 46: stops with NonFiniteLoss, ckpt-40 intact; re-running resumes from
    it and stops at the same step again, leaving ckpt-40 byte-identical."""
    run = tmp_path / "run"
    cfg = training.preset_config("test", data_path=str(shapes_npz))
    real = training.make_dataset
    monkeypatch.setattr(training, "make_dataset", lambda c: nan_after(real(c), 45))
    ok = False
    try:
        for _ in range(2):
            with pytest.raises(training.NonFiniteLoss, match=r"step 46(.|\n)*ckpt-00000040\.npz"):
                training.train(cfg, run, progress=False)
            ckpts = rundir.list_checkpoints(run)
            assert [p.name for p in ckpts] == ["ckpt-00000020.npz", "ckpt-00000040.npz"]
            blob = ckpts[-1].read_bytes()
        assert ckpts[-1].read_bytes() == blob
        assert check_final_files(run) == []
        assert max(history_values(run)) == 40  # no row for the diverged interval
        model = training.build_model(cfg)
        assert rundir.restore_latest(run, model)["step"] == 40
        assert all(np.isfinite(v.numpy()).all() for v in model.variables)
        ok = True
    finally:
        record("NaN: loss at step 46 (rerun twice)", ok)


@pytest.mark.parametrize("objective", ["tcvae", "factorvae"])
def test_nan_in_an_objective_with_state_keeps_the_last_good_checkpoint(
    objective, shapes_npz, tmp_path, monkeypatch, record, nan_after
):
    """β-TCVAE (its minibatch estimator) and FactorVAE (its discriminator and that one's Adam,
    checkpointed beside the model): a NaN batch at step 46 stops the run by name with ckpt-40
    intact, every array in it finite (the discriminator's state included), and it restores.
    STRESS=1: re-running stops at the same step and leaves ckpt-40 byte-identical."""
    run = tmp_path / "run"
    cfg = training.preset_config("test", data_path=str(shapes_npz), objective=objective,
                                 steps=60)  # fmt: skip
    real = training.make_dataset
    monkeypatch.setattr(training, "make_dataset", lambda c: nan_after(real(c), 45))
    ok = False
    try:
        blob = None
        for _ in range(2 if STRESS else 1):
            with pytest.raises(training.NonFiniteLoss, match=r"step 46(.|\n)*ckpt-00000040\.npz"):
                training.train(cfg, run, progress=False)
            ckpts = rundir.list_checkpoints(run)
            assert [p.name for p in ckpts] == ["ckpt-00000020.npz", "ckpt-00000040.npz"]
            assert blob is None or ckpts[-1].read_bytes() == blob
            blob = ckpts[-1].read_bytes()
        assert check_final_files(run) == []  # every checkpointed array is finite
        assert max(history_values(run)) == 40
        model = training.build_model(cfg, data=real(cfg))
        assert rundir.restore_latest(run, model)["step"] == 40
        if objective == "factorvae":  # the discriminator's Adam state was saved and restored
            slots = model.discriminator_state.slots
            assert slots and any(np.abs(v.numpy()).sum() > 0 for v in slots)
        ok = True
    finally:
        record(f"NaN: loss at step 46, {objective}", ok)


def test_non_finite_weights_are_never_checkpointed(shapes_npz, tmp_path, monkeypatch, record):
    """A finite loss can come with a non-finite update (an overflowing gradient): the weights are
    NaN at the end of step 40 while every logged loss is finite. The checkpoint at 40 must be
    refused, not written, and ckpt-20 stays the last good one."""
    from sbd_vae import callbacks

    run = tmp_path / "run"
    cfg = training.preset_config("test", data_path=str(shapes_npz))
    real_end = callbacks.History.on_epoch_end

    def poison_at_40(self, epoch, logs=None):
        out = real_end(self, epoch, logs)
        if self.step() == 40:  # after the (finite) history row, before the checkpoint callback
            w = self.model.encoder.head.kernel
            w.assign(np.full(w.shape, np.nan, np.float32))
        return out

    monkeypatch.setattr(callbacks.History, "on_epoch_end", poison_at_40)
    ok = False
    try:
        with pytest.raises(training.NonFiniteLoss, match=r"non-finite(.|\n)*ckpt-00000020\.npz"):
            training.train(cfg, run, progress=False)
        assert [p.name for p in rundir.list_checkpoints(run)] == ["ckpt-00000020.npz"]
        assert check_final_files(run) == []
        ok = True
    finally:
        record("NaN weights with a finite loss (never checkpointed)", ok)


@pytest.mark.parametrize("bias", [1e4, -1e4, 1e30])
def test_logvar_far_out_of_range_does_not_overflow(bias, ref_run, record):
    """A trained model whose log-variance head is pushed far out of range: encode, the loss and a
    few Adam steps all stay finite (logvar is clipped to [LOGVAR_MIN, LOGVAR_MAX] before exp)."""
    import keras

    from variationAutoEncoder import LOGVAR_MAX, LOGVAR_MIN

    cfg = training.load_config(ref_run["out"])
    model = training.build_model(cfg)
    trained = keras.models.load_model(ref_run["out"] / "model.keras", compile=False)
    for v, w in zip(model.variables, trained.variables):
        v.assign(w)
    head = model.encoder.head
    d = cfg.latent_dim
    bias_vec = head.bias.numpy()
    bias_vec[d:] = bias  # the log-variance half of the head
    head.bias.assign(bias_vec)
    x = np.random.RandomState(0).rand(8, cfg.image_size, cfg.image_size, 1).astype("float32")
    ok = False
    try:
        _, logvar = model.encode(x)
        logvar = np.asarray(logvar)
        assert logvar.min() >= LOGVAR_MIN and logvar.max() <= LOGVAR_MAX
        for _ in range(3):
            logs = model.train_on_batch(x, return_dict=True)
            assert all(np.isfinite(float(v)) for v in logs.values()), logs
        assert all(np.isfinite(v.numpy()).all() for v in model.trainable_variables)
        ok = True
    finally:
        record("log-variance far out of range (exp guard)", ok)
