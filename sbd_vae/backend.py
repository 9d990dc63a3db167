"""Which Keras backend runs, and the few things that differ between backends, in one place.

TensorFlow is the default and first-class backend; JAX (``KERAS_BACKEND=jax``) runs everything
too, and on JAX ``tensorflow`` is never imported, so the code works where it is not installed
(GPU machines with JAX only). Every backend-specific branch in the package goes through here.

Nothing is imported or computed when this module is imported; ``name()`` reads Keras' choice.
"""

from __future__ import annotations

import os

BACKENDS = ("tensorflow", "jax")


def name() -> str:
    """The running Keras backend ("tensorflow" or "jax"); ValueError for any other."""
    import keras

    b = keras.backend.backend()
    if b not in BACKENDS:
        raise ValueError(
            f"KERAS_BACKEND={b!r} is not supported: set KERAS_BACKEND to one of {BACKENDS}"
        )
    return b


def requested() -> str:
    """The backend Keras will use, read without importing Keras (env var, else tensorflow)."""
    return os.environ.get("KERAS_BACKEND", "tensorflow")


SUPPORTED = ("tensorflow", "jax")  # the backends this code's training steps are written for


def check_requested() -> None:
    """Raises ValueError naming the fix when ``KERAS_BACKEND`` asks for a backend this code does
    not run on, or one that is not installed in this Python; imports nothing (``find_spec``),
    so a CLI can call it before Keras would fail with a traceback."""
    import importlib.util
    import sys

    want = requested()
    if want not in SUPPORTED:
        raise ValueError(
            f"KERAS_BACKEND={want}: this code runs on {' or '.join(SUPPORTED)}; unset "
            "KERAS_BACKEND (TensorFlow) or set KERAS_BACKEND=jax"
        )
    if importlib.util.find_spec(want) is None:
        other = "jax" if want == "tensorflow" else "tensorflow"
        raise ValueError(
            f"KERAS_BACKEND={want}: {want} is not installed in this Python ({sys.executable}); "
            f"install it (requirements.txt), or set KERAS_BACKEND={other}"
        )


def is_jax() -> bool:
    return name() == "jax"


def jit(fn):
    """``fn`` compiled for the running backend: ``tf.function`` (retraced only for new shape
    ranks) or ``jax.jit``. Only for functions of tensors whose captured state does not change:
    a jitted JAX function freezes the variable values it closes over at trace time."""
    if is_jax():
        import jax

        return jax.jit(fn)
    import tensorflow as tf

    return tf.function(fn, reduce_retracing=True)


def retraces_per_shape() -> bool:
    """True where a jitted function compiles a new program for every new input shape (JAX);
    callers then pad batches to a few fixed sizes. False on TF (``jit`` relaxes shapes)."""
    return is_jax()


def versions() -> dict:
    """{"backend": name, "keras": version, <backend>: version}: what a run records."""
    import keras

    b = name()
    if b == "jax":
        import jax

        v = jax.__version__
    else:
        import tensorflow as tf

        v = tf.__version__
    return {"backend": b, "keras": keras.__version__, b: v}


# ----------------------------------------------------------------------------- TensorBoard
class ScalarWriter:
    """TensorBoard scalars through ``tensorboard.summary.Writer``, TensorBoard's own writer that
    needs no ML framework: one implementation for both backends. On JAX, TensorBoard is told to
    use its TensorFlow stub (its ``tensorboard.compat.notf`` switch), so TensorFlow is not
    imported even where it is installed. ``ScalarWriter.open`` returns None where TensorBoard
    is not installed (a bare GPU machine): history.csv is the log of record, TB a view of it."""

    def __init__(self, writer):
        self.writer = writer

    @classmethod
    def open(cls, logdir) -> ScalarWriter | None:
        import sys
        import types

        if is_jax():
            sys.modules.setdefault("tensorboard.compat.notf", types.ModuleType("notf"))
        try:
            from tensorboard.summary import Writer
        except ImportError:
            return None
        return cls(Writer(str(logdir)))

    def scalars(self, step: int, values: dict) -> None:
        for tag, value in values.items():
            self.writer.add_scalar(tag, float(value), step=int(step))
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


# ----------------------------------------------------------------------------- devices
class DataParallel:
    """Synchronous data parallelism over the local devices, the backend's own way:
    ``tf.distribute.MirroredStrategy`` on TensorFlow, ``keras.distribution.DataParallel`` on
    JAX (the step sees the global batch; XLA shards it and all-reduces the gradients).
    ``replicas`` is the number of devices; ``scope()`` is entered around building, compiling
    and fitting the model. The devices: every GPU, else every CPU device (one, unless tests
    split it: ``XLA_FLAGS=--xla_force_host_platform_device_count=2`` on JAX, logical devices on
    TensorFlow). ``mode`` is --distribute: "auto" (data-parallel when >1 GPU) | "off" |
    "mirrored"."""

    def __init__(self, mode: str):
        self.distribution = None
        if is_jax():
            import jax
            import keras

            gpus = [d for d in jax.devices() if d.platform == "gpu"]
            devices = gpus or jax.devices()
            on = mode == "mirrored" or (mode == "auto" and len(gpus) > 1)
            if on and len(devices) > 1:
                self.distribution = keras.distribution.DataParallel(devices=devices)
            self.replicas = len(devices) if self.distribution is not None else 1
            self.strategy = None
        else:
            import tensorflow as tf

            gpus = tf.config.list_logical_devices("GPU")
            if mode == "mirrored" or (mode == "auto" and len(gpus) > 1):
                # On CPU-only machines MirroredStrategy() has one replica: the CPU.
                self.strategy = tf.distribute.MirroredStrategy()
            else:
                self.strategy = tf.distribute.get_strategy()
            self.replicas = self.strategy.num_replicas_in_sync

    @property
    def num_replicas_in_sync(self) -> int:  # the name tf.distribute strategies use
        return self.replicas

    def scope(self):
        import contextlib

        if self.strategy is not None:
            return self.strategy.scope()
        if self.distribution is not None:
            return self.distribution.scope()
        return contextlib.nullcontext()
