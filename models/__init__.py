"""Case-study programs bundled with amortize (importable as ``amortize.models``).

Each module defines plain NumPyro programs that follow amortize's one
convention: the size of plate ``P`` is the argument ``n_P``. They are
ordinary NumPyro models: run them with NUTS, Predictive or SVI as well.

* :mod:`amortize.models.hierarchical_normal` — two-level Gaussian with unknown
  mean, group spread and noise (the multilevel paper's running example).
* :mod:`amortize.models.conjugate_normal` — the same with known spread and
  noise, whose posterior is Gaussian in closed form (used to check accuracy).
* :mod:`amortize.models.eight_schools` — Rubin's (1981) eight schools, with the
  published data and a loader for posteriordb's reference draws.
* :mod:`amortize.models.sleepstudy` — correlated varying intercepts and slopes
  (LKJ prior) for lme4's sleepstudy data.
* :mod:`amortize.models.radon` — Gelman & Hill's radon models (varying
  intercepts; varying intercepts and floor slopes) with a loader for the
  Minnesota data.
* :mod:`amortize.models.air_traffic` — the multilevel paper's AR(1) panel with
  two covariates: years are an ordered level, written as a NumPyro ``scan``.
* :class:`OrderedNormal` — a normal prior restricted to ordered vectors (mixture
  means without label switching).
* :mod:`amortize.models.gaussian_mixture`, :mod:`amortize.models.old_faithful`
  — Gaussian mixtures with explicit indicators (classifier factors).
* :mod:`amortize.models.gaussian_hmm` — the mixture paper's Gaussian hidden
  Markov model (Markov indicators) with its exact forward–backward filter.
* :mod:`amortize.models.hierarchical_comparison` — two-level models to compare
  (pooled vs hierarchical with closed-form evidence; normal vs Student-t noise).
* :mod:`amortize.models.ddm` — hierarchical diffusion decision models (shared
  or subject-level bias) with the :class:`~amortize.models.ddm.DDM`
  distribution (exact sampler, Wiener first-passage-time density) and a
  loader for Wagenmakers et al. (2008).
* :mod:`amortize.models.dutilh` — the mixture paper's hidden Markov
  evidence-accumulation model (guessing vs controlled responding, Wald and
  racing-Wald response times, the chain as a ``scan``) with a loader for
  Dutilh et al.'s speed–accuracy switching data.
"""

from amortize.models._ordered import OrderedNormal

__all__ = ["OrderedNormal"]
