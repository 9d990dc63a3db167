"""Disentanglement metrics: one module per metric, a registry, and the suite driver.

- array-level cores ``mig``, ``dci``, ``sap``, ``modularity_explicitness`` take codes (N, D)
  float and factors (N, K) int and return a float or a dict of floats;
- ``irs`` (codes, factors) and ``unsupervised_scores`` (codes alone: Gaussian total and
  Wasserstein correlation, mean pairwise mutual information) return dicts;
- ``beta_vae_score``, ``factor_vae_score`` draw their own factor batches from a sampler;
- ``compute_metrics(sampler, encode_fn, rng, protocol)`` runs every entry of
  ``registry.REGISTRY`` on one de-duplicated encoding pass (``sampling.encode_factors``).

Layout: common.py (input checks, binned mutual information), one module per metric (mig.py,
dci.py, sap.py, modularity.py, beta_vae.py, factor_vae.py, irs.py, unsupervised.py; each ends with its ``METRIC`` entry),
base.py (``Metric``, ``Inputs``), registry.py (``REGISTRY``, the RNG streams), sampling.py
(drawing and encoding factor sets), suite.py (``compute_metrics``). The sample counts are
``sbd_vae.protocol.PROTOCOLS``. The package's ``mig``, ``dci``, ``sap`` and ``irs`` are the functions (they
shadow their modules' names here): import a module's other names from the module itself, e.g.
``from sbd_vae.metrics.dci import DCI_FAST_BINS``.

Deliberate differences from disentanglement_lib (google-research, evaluation/metrics/*.py), each
detailed in its function's docstring:
- an exactly constant code dimension never produces NaN (entropy, correlation, standardisation,
  modularity's max-MI denominator are guarded);
- a factor with a single value is skipped with a warning instead of dividing by its zero entropy;
- FactorVAE maps the argmin over *active* dims back to the true dim index (the library indexes
  the vote matrix with the position inside the active subset) and reports the true active count;
- DCI defaults to a numpy re-implementation of ``GradientBoostingClassifier()``'s boosting and
  importances on binned codes (``dci._boost``); ``backend="reference"`` runs the library's
  configuration itself (bench/bench_metrics.py reports speed-up and agreement);
- IRS reports the number of varying latents as ``num_active_dims`` (the library sums their code
  values) and keeps constant latents in its per-latent outputs (score 0, weight 0);
- the Gaussian total and Wasserstein correlations leave an exactly constant latent out of the
  covariance (the library's total correlation is NaN then).
"""

from ..protocol import PROTOCOLS
from .base import Inputs, Metric
from .beta_vae import beta_vae_score
from .dci import dci
from .factor_vae import factor_vae_score
from .irs import irs
from .mig import mig, mig_per_factor
from .modularity import modularity_explicitness
from .registry import REGISTRY, register
from .sampling import ENCODE_CHUNK, encode_factors
from .sap import sap
from .suite import compute_metrics
from .unsupervised import unsupervised_scores

__all__ = [
    "PROTOCOLS", "REGISTRY", "ENCODE_CHUNK", "Inputs", "Metric", "beta_vae_score",
    "compute_metrics", "dci", "encode_factors", "factor_vae_score", "irs", "mig",
    "mig_per_factor", "modularity_explicitness", "register", "sap", "unsupervised_scores",
]  # fmt: skip
