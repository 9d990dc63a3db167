"""Put this folder first on PYTHONPATH to make ``import tensorflow`` fail, as on a machine where
TensorFlow is not installed (the JAX-only GPU machines): tests/test_backends.py uses it."""

raise ImportError("tensorflow is blocked here (tests/no_tensorflow): the JAX path must not need it")
