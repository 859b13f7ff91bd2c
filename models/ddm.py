"""Hierarchical diffusion decision models (the multilevel paper's Experiment 2).

Each subject's responses follow a diffusion decision model,
:class:`DDM` ``(drift ν, boundary α, non-decision time τ, bias β)``, whose
value is a pair (response time in s, decision 1 = upper / 0 = lower boundary).
Subjects are the plate ``subject``, their trials the plate ``trial``; data
``y`` has shape ``(subject, trial, 2)``.

Model A (three multilevel parameters, one shared bias)::

    mu_drift ~ N(0.5, 0.3)        sigma_drift ~ LogNormal(-1, 1)     drift_j ~ N(mu_drift, sigma_drift)
    mu_boundary ~ N(0, 0.05)      sigma_boundary ~ LogNormal(-3, 1)  boundary_j ~ LogNormal(mu_boundary, sigma_boundary)
    mu_ndt ~ N(-1, 0.3)           sigma_ndt ~ LogNormal(-1, 0.3)     ndt_j ~ LogNormal(mu_ndt, sigma_ndt)
    bias ~ Beta(50, 50)
    y_jt ~ DDM(drift_j, boundary_j, ndt_j, bias)

Model B: as A, but the bias varies by subject,
``bias_j ~ BetaProportion(mu_bias, kappa_bias)``, ``mu_bias ~ Beta(50, 50)``,
``kappa_bias ~ Gamma(5, 3)``.

(The paper writes log σ ~ N(m, s); ``LogNormal(m, s)`` is the same prior on σ.)

Responses are coded by the response given: 1 = "word", 0 = "nonword"
(:func:`load`). A single drift and a bias centred at 1/2 describe a subject's
tendency toward one *response*; with accuracy coding a starting-point bias
would mean knowing the answer before the stimulus, and the prior on the mean
drift, N(0.5, 0.3), could not reach the 96 % accuracy of the data.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import numpyro
import numpyro.distributions as dist

from amortize.models._wiener import DDM, choice_probability, distribution_function, log_density

__all__ = ["DDM", "model_a", "model_b", "load", "nuts_init", "SIZES", "log_density", "distribution_function",
           "choice_probability"]

#: The paper's amortization range: 10–30 subjects, 1–100 trials each. It covers the
#: real data of :func:`load` (17 subjects, 94–96 uncensored trials in block 4).
SIZES = {"subject": (10, 30), "trial": (1, 100)}


def _drift_boundary_ndt():
    mu_drift = numpyro.sample("mu_drift", dist.Normal(0.5, 0.3))
    sigma_drift = numpyro.sample("sigma_drift", dist.LogNormal(-1.0, 1.0))
    mu_boundary = numpyro.sample("mu_boundary", dist.Normal(0.0, 0.05))
    sigma_boundary = numpyro.sample("sigma_boundary", dist.LogNormal(-3.0, 1.0))
    mu_ndt = numpyro.sample("mu_ndt", dist.Normal(-1.0, 0.3))
    sigma_ndt = numpyro.sample("sigma_ndt", dist.LogNormal(-1.0, 0.3))
    return lambda: (numpyro.sample("drift", dist.Normal(mu_drift, sigma_drift)),
                    numpyro.sample("boundary", dist.LogNormal(mu_boundary, sigma_boundary)),
                    numpyro.sample("ndt", dist.LogNormal(mu_ndt, sigma_ndt)))


def model_a(n_subject, n_trial, y=None):
    """Model A: subject-level drift, boundary and non-decision time; one shared bias."""
    subject_parameters = _drift_boundary_ndt()
    bias = numpyro.sample("bias", dist.Beta(50.0, 50.0))
    with numpyro.plate("subject", n_subject, dim=-2):
        drift, boundary, ndt = subject_parameters()
        with numpyro.plate("trial", n_trial, dim=-1):
            numpyro.sample("y", DDM(drift, boundary, ndt, bias), obs=y)


def model_b(n_subject, n_trial, y=None):
    """Model B: as model A, with a subject-level bias around a common mean."""
    subject_parameters = _drift_boundary_ndt()
    mu_bias = numpyro.sample("mu_bias", dist.Beta(50.0, 50.0))
    kappa_bias = numpyro.sample("kappa_bias", dist.Gamma(5.0, 3.0))
    with numpyro.plate("subject", n_subject, dim=-2):
        drift, boundary, ndt = subject_parameters()
        bias = numpyro.sample("bias", dist.BetaProportion(mu_bias, kappa_bias))
        with numpyro.plate("trial", n_trial, dim=-1):
            numpyro.sample("y", DDM(drift, boundary, ndt, bias), obs=y)


def nuts_init(data: dict):
    """A NumPyro init strategy for NUTS on these programs: each subject's non-decision time starts at
    half its fastest response time (the prior median, e^-1 s, lies above some subjects' fastest
    responses, where the density is zero). Pass as ``amortize.reference.nuts(..., init_strategy=...)``."""
    from numpyro.infer import init_to_value

    fastest = np.array([np.min(np.asarray(y)[:, 0]) for y in data["y"]], np.float32)
    return init_to_value(values={"ndt": 0.5 * fastest[:, None], "mu_ndt": float(np.log(0.5 * np.median(fastest)))})


def load(folder, *, condition: str = "accuracy", block: int = 4) -> tuple[dict, list[int]]:
    """Read one block of Wagenmakers et al. (2008), Experiment 1 (lexical decision).

    Parameters
    ----------
    folder : path
        The shared ``wagenmakers2008_speed_acc`` folder (``speed_acc.csv``).
    condition : {"accuracy", "speed"}
        Instruction condition; the paper uses accuracy.
    block : int
        Trial block (1–20); the paper uses block 4, an accuracy block.

    Returns
    -------
    data : dict
        ``{"y": [array (trials_j, 2) per subject]}``: response time in seconds
        and the response, 1 = "word", 0 = "nonword". Trials the data set marks
        as censored (uninterpretable responses, rt < 0.18 s or > 3 s) are left out.
    subjects : list of int
        Participant ids, in the order of the groups.
    """
    path = Path(folder) / "speed_acc.csv"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found; pass the shared wagenmakers2008_speed_acc folder.")
    responses: dict[int, list[tuple[float, float]]] = {}
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            if row["condition"] != condition or int(row["block"]) != block or row["censor"] == "TRUE":
                continue
            if row["response"] not in ("word", "nonword"):
                continue
            responses.setdefault(int(row["id"]), []).append(
                (float(row["rt"]), 1.0 if row["response"] == "word" else 0.0))
    if not responses:
        raise ValueError(f"No trials for condition={condition!r}, block={block} in {path}; blocks alternate "
                         f"between conditions (block 4 is an accuracy block).")
    subjects = sorted(responses)
    return {"y": [np.asarray(responses[s], np.float32) for s in subjects]}, subjects
