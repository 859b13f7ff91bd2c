"""The certificate: how far the program's own density confirms an amortized posterior.

A :class:`Certificate` is what :func:`amortize.refine.importance` concludes
from the importance weights of amortized draws; it travels with the draws as
``certificate_*`` attributes of the posterior group (:meth:`Certificate.to_attrs`)
and comes back with :func:`amortize.certificate`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from amortize.errors import RefineError

__all__ = ["Certificate"]


@dataclass(frozen=True)
class Certificate:
    """How far the program's own density confirms an amortized posterior.

    Attributes
    ----------
    method : str
        ``"importance"`` (plain importance sampling over all latents),
        ``"importance (joint)"`` (the same for a program with groups, where
        those plain weights are already reliable; see
        :func:`amortize.refine.weights.importance`),
        ``"hierarchical importance"`` (per-group importance sampling squared,
        programs with groups; ``", indicators summed out"`` where each group's
        latent is one mixture indicator) or ``"importance, chain summed out"``
        (a hidden Markov chain summed out by the forward algorithm, see
        :mod:`amortize.refine.chains`).
    khat : float
        Pareto k̂ of the (outer) importance weights: at most ``threshold`` (0.7
        for a thousand draws or more) means importance-weighted estimates are
        reliable, so ``refine="psis"`` is exact up to Monte Carlo error; above
        it, the amortized posterior misses mass the program puts somewhere
        (under-training, or data unlike the simulations). It certifies that q
        *covers* the posterior; how close q itself is shows in
        ``relative_ess`` (1 when q is exact).
    relative_ess : float
        Effective sample size of the (Pareto-smoothed) outer weights over the number of draws.
    num_draws : int
        Outer draws the weights were computed on.
    inner_draws : int or None
        M, local draws per group and outer draw (hierarchical importance only).
    levels : dict of plate → {"khat", "relative_ess", "worst"}
        Per group level, the local factor's own check: for each group, the
        Pareto k̂ of its weights p(θ_j, y_j | φ) / q(θ_j | φ, y_j) over 256
        local draws, at each of 8 global draws φ from the proposal; the
        median over φ, for the worst group (its label in ``worst``); and the
        smallest relative ESS of a group's inner weights.
    joint_khat, joint_relative_ess : float
        The same for plain weights over all latents at once (for comparison;
        they degrade with the number of groups even when every factor is good).
    log_marginal_likelihood : float
        log p̂(y), the mean of the outer weights (an unbiased estimate of p(y) on
        the natural scale; biased low on the log scale when the weights are poor).
    threshold : float
        The k̂ above which estimates are unreliable for ``num_draws`` draws.
    zero_density : float
        Share of the weighed draws that the program's density rules out (log
        density −∞: outside its support, e.g. a non-decision time above the
        fastest response). Such draws get weight zero after ``refine="psis"``;
        unrefined, ``sample`` warns about them.
    """

    method: str
    khat: float
    relative_ess: float
    num_draws: int
    inner_draws: int | None
    levels: dict = field(default_factory=dict)
    joint_khat: float = math.nan
    joint_relative_ess: float = math.nan
    log_marginal_likelihood: float = math.nan
    threshold: float = 0.7
    zero_density: float = 0.0

    @property
    def ok(self) -> bool:
        """True when the (outer) k̂ is at most ``threshold``.

        For hierarchical importance sampling the outer weight of a global draw
        is itself an unbiased importance weight (it carries every group's
        estimate p̂(y_j | φ)), so a local factor whose weights spike shows up
        in the outer weights' tail: the outer k̂ is the diagnostic of the whole
        scheme. The per-level k̂ (from 256 local draws at a few global draws)
        locates a poor local factor; small-sample Pareto fits of nearly
        constant weights can read high there, so it does not decide ``ok``.
        """
        return bool(np.isfinite(self.khat) and self.khat <= self.threshold)

    def to_attrs(self) -> dict:
        """Flat attributes for a DataTree group (``certificate_*``; levels as ``certificate_<plate>_khat``)."""
        out = {"certificate_method": self.method, "certificate_khat": float(self.khat),
               "certificate_relative_ess": float(self.relative_ess),
               "certificate_num_draws": int(self.num_draws),
               "certificate_inner_draws": int(self.inner_draws or 0),
               "certificate_joint_khat": float(self.joint_khat),
               "certificate_joint_relative_ess": float(self.joint_relative_ess),
               "certificate_log_marginal_likelihood": float(self.log_marginal_likelihood),
               "certificate_threshold": float(self.threshold),
               "certificate_zero_density": float(self.zero_density),
               "certificate_ok": int(self.ok)}
        for plate, level in self.levels.items():
            out[f"certificate_{plate}_khat"] = float(level["khat"])
            out[f"certificate_{plate}_relative_ess"] = float(level["relative_ess"])
            out[f"certificate_{plate}_worst"] = str(level["worst"])
        return out

    @classmethod
    def from_attrs(cls, attrs) -> "Certificate":
        """Read a certificate back from a group's attributes (see :meth:`to_attrs`)."""
        if "certificate_khat" not in attrs:
            raise RefineError("This posterior carries no certificate: it was sampled with certify=False, "
                              "or by another library. Sample it again with certify=True.")
        levels = {}
        for key in attrs:
            if key.startswith("certificate_") and key.endswith("_worst"):
                plate = key[len("certificate_"):-len("_worst")]
                levels[plate] = {"khat": float(attrs[f"certificate_{plate}_khat"]),
                                 "relative_ess": float(attrs[f"certificate_{plate}_relative_ess"]),
                                 "worst": attrs[key]}
        return cls(method=str(attrs["certificate_method"]), khat=float(attrs["certificate_khat"]),
                   relative_ess=float(attrs["certificate_relative_ess"]),
                   num_draws=int(attrs["certificate_num_draws"]),
                   inner_draws=int(attrs["certificate_inner_draws"]) or None, levels=levels,
                   joint_khat=float(attrs["certificate_joint_khat"]),
                   joint_relative_ess=float(attrs["certificate_joint_relative_ess"]),
                   log_marginal_likelihood=float(attrs["certificate_log_marginal_likelihood"]),
                   threshold=float(attrs["certificate_threshold"]),
                   zero_density=float(attrs.get("certificate_zero_density", 0.0)))

    def to_dict(self) -> dict:
        return asdict(self) | {"ok": self.ok}

    def __str__(self) -> str:
        verdict = "OK" if self.ok else "NOT CONFIRMED"
        lines = [f"certificate ({self.method}, {self.num_draws} draws"
                 + (f", {self.inner_draws} per group" if self.inner_draws else "") + f"): {verdict}",
                 f"  k̂ {self.khat:.2f} (threshold {self.threshold:.2f}), relative ESS {self.relative_ess:.2f}"]
        for plate, level in self.levels.items():
            lines.append(f"  {plate}: worst k̂ {level['khat']:.2f} ({level['worst']}), "
                         f"smallest relative ESS {level['relative_ess']:.2f}")
        if self.zero_density:
            lines.append(f"  {self.zero_density:.1%} of the draws have density zero under the program")
        if self.method != "importance":
            lines.append(f"  plain importance over all latents: k̂ {self.joint_khat:.2f}, "
                         f"relative ESS {self.joint_relative_ess:.3f}")
        return "\n".join(lines)
