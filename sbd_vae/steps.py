"""BetaVAE's training and test steps, one per Keras backend: the gradient machinery, and nothing
of the objective.

Keras calls ``train_step(data)`` on TensorFlow and ``train_step(state, data)`` on JAX, where the
step is a pure function of the model's state (the JAX trainer passes the variables' values and
takes the new ones back). ``BetaVAE.train_step`` / ``test_step`` hand both here. Each backend's
step runs the same ``model.compute_terms``; only how the gradients are taken and applied differs:

- TensorFlow: a ``tf.GradientTape`` (Keras wraps the step in a ``tf.function``); under
  ``tf.distribute`` each replica's losses are scaled by 1/R, so the SUM all-reduce of the
  gradients gives the global-batch mean.
- JAX: ``jax.value_and_grad`` of the step's losses, with the model's variables read from (and
  written to) the values the trainer threads through (Keras' ``StatelessScope``), and each
  optimiser's ``stateless_apply``.

What the step needs of the model (``variationAutoEncoder.BetaVAE``): ``images_of(data)``,
``compute_terms(x, training) -> (loss, terms)``, ``update_trackers(batch, loss, terms)``,
``optimizer`` with ``vae_variables()`` (what it updates), and ``auxiliaries()``: the auxiliary
networks of the objective (``hparams.AUXILIARY_NETS``; FactorVAE's discriminator, Kim & Mnih
2018), each trained on its own loss term with its own optimiser, whose state is model state
(``OptimizerState``: checkpointed, so a resume is bit-exact). An auxiliary net's loss must reach
only its own weights (``stop_gradient`` on what it reads), and the VAE's loss must not reach them
(FactorVAE reads it through ``Discriminator.frozen``): the step then differentiates the sum of the
losses once and hands each optimiser its own variables' gradients. A new objective with an
auxiliary net is a registry entry there, and no code here.

Importing this module imports Keras and the package's backend module only; TensorFlow and JAX
are imported inside their own step.
"""

from __future__ import annotations

import functools
import operator

import keras
from keras import ops

from . import backend


def train_step(model, *args):
    """One training step of ``model`` on the running backend: (data) on TensorFlow, (state,
    data) on JAX. Returns the logs (and, on JAX, the new state)."""
    return _jax_train_step(model, *args) if backend.is_jax() else _tf_train_step(model, *args)


def test_step(model, *args):
    """One evaluation step (no update): (data) on TensorFlow, (state, data) on JAX."""
    return _jax_test_step(model, *args) if backend.is_jax() else _tf_test_step(model, *args)


def auxiliary_loss(model, terms):
    """The sum of the auxiliary nets' loss terms, or 0.0 without any. Each reaches only its own
    net's weights, so the gradient of the sum is each net's own loss gradient. (A single net's
    term is returned as it is: no ``0 +`` in the graph.)"""
    losses = [terms[aux.loss] for aux, _, _ in model.auxiliaries()]
    return functools.reduce(operator.add, losses) if losses else 0.0


# ----------------------------------------------------------------------------- TensorFlow
def _tf_train_step(model, data):
    import tensorflow as tf  # only on the TF backend: JAX never imports TensorFlow

    x = model.images_of(data)  # (B, S, S, 1); labels are ignored
    vae_vars = model.vae_variables()
    auxiliaries = model.auxiliaries()
    with tf.GradientTape(persistent=bool(auxiliaries)) as tape:
        loss, terms = model.compute_terms(x, training=True)
        # 1/R per replica, so the SUM all-reduce of gradients gives the global-batch mean.
        replicas = float(tf.distribute.get_strategy().num_replicas_in_sync)
        scaled = model.optimizer.scale_loss(loss / replicas)  # loss scale (float16)
        aux_losses = [terms[aux.loss] / replicas for aux, _, _ in auxiliaries]
    grads = tape.gradient(scaled, vae_vars)
    model.optimizer.apply_gradients(zip(grads, vae_vars))
    # each auxiliary net with its own optimiser, on the gradient of its own loss
    for (_, net, optimizer), aux_loss in zip(auxiliaries, aux_losses):
        own = net.trainable_variables
        optimizer.apply_gradients(zip(tape.gradient(aux_loss, own), own))
    if auxiliaries:
        del tape
    return model.update_trackers(ops.shape(x)[0], loss, terms)


def _tf_test_step(model, data):
    x = model.images_of(data)
    loss, terms = model.compute_terms(x, training=False)
    return model.update_trackers(ops.shape(x)[0], loss, terms)


# ----------------------------------------------------------------------------- JAX
def _stateless(pairs, fn):
    """Runs ``fn()`` with the model's variables read from (and written to) the values in
    ``pairs`` [(variable, value)]: Keras' StatelessScope, as ``stateless_call`` uses.
    Returns (fn's result, {id(variable): new value} for the variables fn assigned)."""
    with keras.StatelessScope(state_mapping=pairs) as scope:
        out = fn()
    updates = {}
    for v, _ in pairs:
        new = scope.get_current_value(v)
        if new is not None:
            updates[id(v)] = new
    return out, updates


def _jax_train_step(model, state, data):
    import jax

    trainable, non_trainable, opt_vars, metric_vars = state
    x = model.images_of(data)  # (B, S, S, 1), the global batch (sharded over devices)
    fixed = [*zip(model.non_trainable_variables, non_trainable),
             *zip(model.optimizer.variables, opt_vars)]  # fmt: skip

    def loss_fn(values):
        pairs = [*zip(model.trainable_variables, values), *fixed]

        def terms():
            loss, t = model.compute_terms(x, training=True)
            return model.optimizer.scale_loss(loss) + auxiliary_loss(model, t), (loss, t)

        (scaled, aux), updates = _stateless(pairs, terms)
        # the SeedGenerator states (non-trainable) advance inside the step
        new_nt = [updates.get(id(v), val) for v, val in zip(model.non_trainable_variables,
                                                               non_trainable)]  # fmt: skip
        return scaled, (aux, new_nt)

    (_, ((loss, terms), non_trainable)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        trainable
    )
    # Each optimiser updates its own variables: the VAE's, then each auxiliary net's (whose
    # optimiser's state is non-trainable model state: OptimizerState).
    trainable, non_trainable = list(trainable), list(non_trainable)
    index = {id(v): i for i, v in enumerate(model.trainable_variables)}
    vae = [index[id(v)] for v in model.vae_variables()]
    new, opt_vars = model.optimizer.stateless_apply(
        opt_vars, [grads[i] for i in vae], [trainable[i] for i in vae]
    )
    for i, value in zip(vae, new):
        trainable[i] = value
    slot_of = {id(v): i for i, v in enumerate(model.non_trainable_variables)}
    for _, net, optimizer in model.auxiliaries():
        slots = [slot_of[id(v)] for v in optimizer.variables]
        own = [index[id(v)] for v in net.trainable_variables]
        new, new_slots = optimizer.stateless_apply(
            [non_trainable[i] for i in slots], [grads[i] for i in own],
            [trainable[i] for i in own],
        )  # fmt: skip
        for i, value in zip(own, new):
            trainable[i] = value
        for i, value in zip(slots, new_slots):
            non_trainable[i] = value
    logs, metric_vars = _jax_trackers(model, metric_vars, ops.shape(x)[0], loss, terms)
    return logs, (trainable, non_trainable, opt_vars, metric_vars)


def _jax_test_step(model, state, data):
    trainable, non_trainable, metric_vars = state
    x = model.images_of(data)
    pairs = [*zip(model.trainable_variables, trainable),
             *zip(model.non_trainable_variables, non_trainable)]  # fmt: skip
    (loss, terms), _ = _stateless(pairs, lambda: model.compute_terms(x, training=False))
    logs, metric_vars = _jax_trackers(model, metric_vars, ops.shape(x)[0], loss, terms)
    return logs, (trainable, non_trainable, metric_vars)


def _jax_trackers(model, metric_vars, batch, loss, terms):
    """The trackers' update, statelessly: (logs, the metric variables' new values)."""
    pairs = list(zip(model.metrics_variables, metric_vars))
    logs, updates = _stateless(pairs, lambda: model.update_trackers(batch, loss, terms))
    return logs, [updates.get(id(v), val) for v, val in pairs]
