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
