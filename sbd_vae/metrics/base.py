"""What a metric of the suite is (``Metric``) and what ``compute_metrics`` hands it (``Inputs``).

A metric module defines its paper's function (an array-level core, or a sampler-level score that
draws its own factors) and one ``Metric`` entry, ``METRIC``, that tells ``compute_metrics`` how
to run it: which protocol counts it reads, whether it draws its own factor sets (``sample``) or
scores the suite's shared train/test sets, and how it turns codes into numbers (``score``).
``registry.REGISTRY`` lists the entries.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Metric:
    """One metric of the suite, as ``compute_metrics`` runs it.

    name:   its key in ``compute_metrics(metrics=[...])``, its RNG stream and ``time_<name>_s``.
    score:  ``score(data: Inputs, seed: int) -> dict``: its outputs, floats named as they appear
            in metrics.json and scores.csv (``"mig"``, ``"dci_completeness"``, …), plus optionally
            ``"per_factor": {kind: {factor name: float}}``. ``seed`` is the metric's own stream.
    counts: the entries of ``protocol.PROTOCOLS`` it reads (``data.counts``); a new count is a new
            entry in that table.
    sample: ``sample(sampler, rng, counts, active) -> (blocks, labels)`` for a metric that draws
            its own factor sets (BetaVAE, FactorVAE): ``blocks`` {name: int factors (..., K)} are
            encoded with everything else (``data.codes[name]`` (..., D)), ``labels`` {name: array}
            come back as ``data.labels``. ``rng`` is the stream ``<name>_data``. None: the metric
            scores the shared ``"train"``/``"test"`` sets (``data.train_test()``).
    """

    name: str
    score: Callable[[Inputs, int], dict]
    counts: tuple[str, ...] = ("num_train", "num_test")
    sample: Callable | None = None

    @property
    def streams(self) -> tuple[str, ...]:
        """The RNG streams this metric consumes (``registry.STREAMS`` orders them)."""
        return ((f"{self.name}_data",) if self.sample is not None else ()) + (self.name,)


@dataclass
class Inputs:
    """What ``Metric.score`` gets: the encoded factor sets of one ``compute_metrics`` call."""

    sampler: object  # the ground-truth sampler (factor_names, factor_sizes, …)
    active: np.ndarray  # (K',) indices of the factors with more than one value
    counts: dict  # the protocol's counts (protocol.PROTOCOLS[protocol])
    options: dict  # compute_metrics' options, e.g. {"dci_backend": "fast"}
    codes: dict[str, np.ndarray] = field(default_factory=dict)  # block -> codes (..., D)
    factors: dict[str, np.ndarray] = field(default_factory=dict)  # block -> factors (..., K)
    labels: dict[str, np.ndarray] = field(default_factory=dict)  # from Metric.sample

    def train_test(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(codes_train (N, D), factors_train (N, K'), codes_test (M, D), factors_test (M, K')):
        the shared sets, restricted to the factors with more than one value."""
        a = self.active
        return self.codes["train"], self.factors["train"][:, a], self.codes["test"], self.factors["test"][:, a]  # fmt: skip

    def by_factor(self, values) -> dict:
        """{factor name: value} for the active factors that vary in the train set, in the order
        of ``values`` (the array-level cores skip single-valued columns, see
        ``common.varying_columns``)."""
        names = [str(self.sampler.factor_names[i]) for i in self.active]
        cols = np.asarray(self.factors["train"][:, self.active]).T
        varying = [n for n, col in zip(names, cols) if len(np.unique(col)) > 1]
        return {n: float(v) for n, v in zip(varying, values)}
