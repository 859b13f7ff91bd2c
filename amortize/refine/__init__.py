"""Certify and correct amortized posteriors with the program's own density.

* :func:`importance` — importance weights p(θ, y) / q(θ | y) of amortized
  draws, per group for multilevel programs (importance sampling squared),
  their Pareto k̂ (:class:`Certificate`), and resampling (``refine="psis"``).
* :func:`warm_nuts` — NUTS on the same program started from amortized draws
  with their covariance as the mass matrix (``refine="nuts"``).
* :mod:`amortize.refine.pareto` — Pareto-smoothed importance sampling (``psis``, ``pareto_khat``, ``relative_ess``).

See docs/refinement.md for the methods and their limits.
"""

from amortize.refine.certificate import Certificate
from amortize.refine.weights import ImportanceResult, importance
from amortize.refine.pareto import pareto_khat, psis, relative_ess

__all__ = ["Certificate", "ImportanceResult", "certificate", "importance", "psis", "pareto_khat", "relative_ess"]


def certificate(tree) -> Certificate:
    """The certificate of a posterior returned by :meth:`amortize.Amortizer.sample`.

    Parameters
    ----------
    tree : xarray.DataTree
        With the ``certificate_*`` attributes of its ``posterior`` group.

    Returns
    -------
    Certificate
        ``print`` it for a summary; ``.ok``, ``.khat``, ``.relative_ess``, ``.levels``.

    Raises
    ------
    RefineError
        The tree was sampled with ``certify=False`` or comes from elsewhere.
    """
    return Certificate.from_attrs(tree["posterior"].attrs)
