"""Sleepstudy (Belenky et al. 2003; lme4): correlated varying intercepts and slopes.

    beta_0 ~ Normal(250, 50)              average reaction time on day 0 (ms)
    beta_1 ~ Normal(10, 10)               average change per day of deprivation (ms/day)
    sd_subject ~ HalfNormal((50, 15))     between-subject sds of intercept and slope
    L ~ LKJCholesky(2, concentration=2)   their correlation (Cholesky factor)
    sigma ~ HalfNormal(50)                within-subject noise (ms)
    b_j ~ MultivariateNormal((beta_0, beta_1), diag(sd_subject) L)      for subjects j
    reaction_jt ~ Normal(b_j0 + b_j1 · days_jt, sigma)                  for observations t of subject j

This is ``Reaction ~ Days + (Days | Subject)`` with weakly informative priors on
the millisecond scale. ``days`` (days of deprivation) is a covariate: the summary networks see
(day, reaction) pairs, without which a set of reaction times says nothing
about a slope (a permutation-invariant summary cannot know which value came on
which day). During training the program draws days from the design
distribution Uniform(0, 9); at inference the observed days (0 to 9) are data.
"""

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

__all__ = ["model", "SIZES", "load"]

#: Training ranges: 5–30 subjects with 5–10 observations each.
SIZES = {"subject": (5, 30), "day": (5, 10)}


def model(n_subject, n_day, days=None, reaction=None):
    beta_0 = numpyro.sample("beta_0", dist.Normal(250.0, 50.0))
    beta_1 = numpyro.sample("beta_1", dist.Normal(10.0, 10.0))
    sd_subject = numpyro.sample("sd_subject", dist.HalfNormal(jnp.array([50.0, 15.0])).to_event(1))
    corr_cholesky = numpyro.sample("corr_cholesky", dist.LKJCholesky(2, concentration=2.0))
    sigma = numpyro.sample("sigma", dist.HalfNormal(50.0))
    scale_tril = sd_subject[..., :, None] * corr_cholesky
    with numpyro.plate("subject", n_subject, dim=-2):
        b = numpyro.sample("b", dist.MultivariateNormal(jnp.stack([beta_0, beta_1], -1), scale_tril=scale_tril))
        with numpyro.plate("day", n_day, dim=-1):
            days = numpyro.sample("days", dist.Uniform(0.0, 9.0), obs=days)
            numpyro.sample("reaction", dist.Normal(b[..., 0] + b[..., 1] * days, sigma), obs=reaction)


def load(folder):
    """The lme4 data as ``({"days": (18, 10), "reaction": (18, 10)}, {"subject": labels})``.

    Parameters
    ----------
    folder : str or Path
        The shared ``sleepstudy`` folder (``sleepstudy.csv``: Reaction, Days, Subject).
    """
    from pathlib import Path

    table = np.genfromtxt(Path(folder) / "sleepstudy.csv", delimiter=",", names=True)
    subjects = np.unique(table["Subject"]).astype(int)
    reaction = np.full((len(subjects), int(table["Days"].max()) + 1), np.nan)
    for row in table:
        reaction[np.searchsorted(subjects, int(row["Subject"])), int(row["Days"])] = row["Reaction"]
    if np.isnan(reaction).any():
        raise ValueError("sleepstudy.csv does not have every subject on every day.")
    day = np.broadcast_to(np.arange(reaction.shape[1], dtype=float), reaction.shape).copy()
    return {"days": day, "reaction": reaction}, {"subject": subjects}
