"""The metric registry: name → ``Metric`` (function, protocol counts, how it samples).

``compute_metrics`` runs every entry of ``REGISTRY`` (or the ones asked for), in this order.
Adding a metric is one new module in this folder that defines ``METRIC = Metric(...)`` (see
base.py, and mig.py for the shortest example) and one entry in ``REGISTRY`` below (with its
import); metrics.json, the report's scores.csv and its plots pick its outputs up by name. A count it needs that the protocol table lacks is one
more entry per protocol in ``protocol.PROTOCOLS``.
"""

from __future__ import annotations

from ..protocol import PROTOCOLS
from .base import Metric
from .beta_vae import METRIC as BETA_VAE
from .dci import METRIC as DCI
from .factor_vae import METRIC as FACTOR_VAE
from .irs import METRIC as IRS
from .mig import METRIC as MIG
from .modularity import METRIC as MODULARITY
from .sap import METRIC as SAP
from .unsupervised import METRIC as UNSUPERVISED

# name -> Metric, in the order compute_metrics runs them (a new metric: an import above, an entry here)
REGISTRY: dict[str, Metric] = {
    m.name: m for m in (MIG, DCI, SAP, MODULARITY, BETA_VAE, FACTOR_VAE, IRS, UNSUPERVISED)
}

# The suite's RNG streams in the order their seeds are drawn from the caller's RandomState (one
# draw of len(streams()) integers), so every metric has its own stream whatever else runs. This
# is the order of the first six metrics, which every published number used; the streams of a
# metric registered later are appended after them (``streams``), so no earlier seed moves: IRS
# and the unsupervised scores (added later, deterministic) own the streams "irs", "unsupervised".
STREAMS = (
    "data", "beta_vae_data", "factor_vae_data",
    "mig", "dci", "sap", "modularity_explicitness", "beta_vae", "factor_vae",
)  # fmt: skip


def register(metric: Metric) -> Metric:
    """Adds ``metric`` to ``REGISTRY`` (for a metric defined outside this folder)."""
    if metric.name in REGISTRY:
        raise ValueError(f"a metric named {metric.name!r} is already registered")
    REGISTRY[metric.name] = metric
    return metric


def streams() -> list[str]:
    """Every stream name, ``STREAMS`` first, then those of later metrics in registry order."""
    names = list(STREAMS)
    for m in REGISTRY.values():
        names += [s for s in m.streams if s not in names]
    return names


def metric_counts(protocol: str) -> dict:
    """The counts of ``PROTOCOLS[protocol]`` that some registered metric reads, in table order:
    what ``compute_metrics`` records (and a report compares to decide whether scores are stale)."""
    used = {c for m in REGISTRY.values() for c in m.counts}
    return {k: v for k, v in PROTOCOLS[protocol].items() if k in used}
