"""Checks of predicted class probabilities: accuracy, calibration (ECE, reliability curve), confusion.

Used for posterior model probabilities (:func:`amortize.compare`): on
held-out simulations the true class is known, and a calibrated classifier's
predicted probability p of a class comes true a fraction p of the time.

The expected calibration error of class k (one against the rest; Guo et al.
2017, Elsemüller et al. 2023) splits the predicted probabilities of k into
``bins`` equal-width bins and averages, weighted by the share of predictions
in each bin, the gap between the mean predicted probability and the observed
frequency of k:

    ECE_k = Σ_b (n_b / n) · |mean_{i∈b} p_ik − mean_{i∈b} 1[true_i = k]|.

Even exact probabilities have an ECE above zero on finitely many data sets
(each bin's frequency is a binomial estimate): compare against
:func:`calibration_noise_floor`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = [
    "ClassificationCheck",
    "check_indicators",
    "calibration_curve",
    "calibration_noise_floor",
    "check_classification",
    "confusion_matrix",
    "expected_calibration_error",
    "plot_calibration",
    "plot_confusion",
]


def _checked(probabilities, labels) -> tuple[np.ndarray, np.ndarray]:
    probabilities = np.asarray(probabilities, np.float64)
    labels = np.asarray(labels)
    if probabilities.ndim != 2 or labels.shape != probabilities.shape[:1]:
        raise ValueError(f"Expected probabilities (n, classes) and labels (n,); got shapes "
                         f"{probabilities.shape} and {labels.shape}.")
    if labels.size and (labels.min() < 0 or labels.max() >= probabilities.shape[1]):
        raise ValueError(f"Labels must be class indices in 0..{probabilities.shape[1] - 1}.")
    return probabilities, labels.astype(int)


def calibration_curve(probabilities, labels, bins: int = 10) -> dict[str, np.ndarray]:
    """Reliability curve of every class, one against the rest.

    Parameters
    ----------
    probabilities : ``(n, classes)``
        Predicted probabilities, rows summing to one.
    labels : ``(n,)`` int
        True class of each row.
    bins : int
        Equal-width bins on [0, 1].

    Returns
    -------
    dict
        ``predicted`` and ``observed`` ``(classes, bins)``: mean predicted
        probability and observed frequency in each bin (NaN where empty), and
        ``count`` ``(classes, bins)``.
    """
    probabilities, labels = _checked(probabilities, labels)
    n_classes = probabilities.shape[1]
    edges = np.linspace(0.0, 1.0, bins + 1)
    predicted = np.full((n_classes, bins), np.nan)
    observed = np.full((n_classes, bins), np.nan)
    count = np.zeros((n_classes, bins), int)
    for k in range(n_classes):
        p = probabilities[:, k]
        which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
        hit = (labels == k).astype(np.float64)
        count[k] = np.bincount(which, minlength=bins)
        filled = count[k] > 0
        predicted[k, filled] = (np.bincount(which, p, minlength=bins) / np.maximum(count[k], 1))[filled]
        observed[k, filled] = (np.bincount(which, hit, minlength=bins) / np.maximum(count[k], 1))[filled]
    return {"predicted": predicted, "observed": observed, "count": count, "edges": edges}


def expected_calibration_error(probabilities, labels, bins: int = 10) -> np.ndarray:
    """ECE of every class, one against the rest: ``(classes,)`` in probability units (0 = calibrated)."""
    curve = calibration_curve(probabilities, labels, bins)
    n = max(int(curve["count"][0].sum()), 1)
    gaps = np.nan_to_num(np.abs(curve["predicted"] - curve["observed"]))
    return (curve["count"] * gaps).sum(-1) / n


def calibration_noise_floor(probabilities, bins: int = 10, *, draws: int = 200, seed: int = 0) -> np.ndarray:
    """Expected ECE ``(classes,)`` if ``probabilities`` were exactly right, by simulation.

    Draws labels from the predicted probabilities themselves ``draws`` times
    and averages their ECE: a perfectly calibrated classifier checked on the
    same number of data sets scores about this much.
    """
    probabilities = np.asarray(probabilities, np.float64)
    rng = np.random.default_rng(seed)
    cumulative = np.cumsum(probabilities, axis=1)
    total = np.zeros(probabilities.shape[1])
    for _ in range(draws):
        u = rng.uniform(size=(probabilities.shape[0], 1)) * cumulative[:, -1:]
        labels = np.minimum((u > cumulative).sum(1), probabilities.shape[1] - 1)
        total += expected_calibration_error(probabilities, labels, bins)
    return total / draws


def confusion_matrix(probabilities, labels) -> np.ndarray:
    """Counts ``(classes, classes)``: row = true class, column = most probable class."""
    probabilities, labels = _checked(probabilities, labels)
    n_classes = probabilities.shape[1]
    predicted = probabilities.argmax(1)
    return np.bincount(labels * n_classes + predicted, minlength=n_classes**2).reshape(n_classes, n_classes)


@dataclass
class ClassificationCheck:
    """Accuracy, calibration and confusion of predicted class probabilities on labelled data.

    Attributes
    ----------
    names : list of str
        Class (model) names.
    accuracy : float
        Share of rows whose most probable class is the true one.
    ece : ``(classes,)``
        Expected calibration error per class (one against the rest).
    noise_floor : ``(classes,)``
        The ECE exact probabilities would score on as many rows.
    confusion : ``(classes, classes)``
        Row = true class, column = most probable class.
    curve : dict
        :func:`calibration_curve`.
    log_score : float
        Mean log probability of the true class (higher is better).
    n : int
        Rows checked.
    """

    names: list
    accuracy: float
    ece: np.ndarray
    noise_floor: np.ndarray
    confusion: np.ndarray
    curve: dict
    log_score: float
    n: int
    bins: int = 10

    @property
    def max_ece(self) -> float:
        return float(np.max(self.ece))

    def to_dict(self) -> dict:
        """JSON-able numbers of the check and of its figures."""
        return {
            "names": list(self.names), "n": self.n, "accuracy": self.accuracy,
            "log_score": self.log_score, "bins": self.bins,
            "ece": dict(zip(self.names, self.ece.tolist())),
            "ece_noise_floor": dict(zip(self.names, self.noise_floor.tolist())),
            "confusion": self.confusion.tolist(),
            "calibration_curve": {k: np.asarray(v).tolist() for k, v in self.curve.items()},
        }

    def __str__(self) -> str:
        eces = ", ".join(f"{n} {e:.4f} (noise floor {f:.4f})"
                         for n, e, f in zip(self.names, self.ece, self.noise_floor))
        return f"accuracy {self.accuracy:.3f} on {self.n} cases; ECE {eces}"


def check_classification(probabilities, labels, names: Sequence[str] | None = None,
                         bins: int = 10) -> ClassificationCheck:
    """Accuracy, ECE (with its noise floor), confusion matrix and reliability curve.

    Parameters
    ----------
    probabilities : ``(n, classes)``
    labels : ``(n,)`` int
    names : class names (default ``"0"``, ``"1"``, ...)
    bins : int
    """
    probabilities, labels = _checked(probabilities, labels)
    names = list(names) if names is not None else [str(k) for k in range(probabilities.shape[1])]
    truth = probabilities[np.arange(len(labels)), labels]
    return ClassificationCheck(
        names=names, accuracy=float(np.mean(probabilities.argmax(1) == labels)),
        ece=expected_calibration_error(probabilities, labels, bins),
        noise_floor=calibration_noise_floor(probabilities, bins),
        confusion=confusion_matrix(probabilities, labels),
        curve=calibration_curve(probabilities, labels, bins),
        log_score=float(np.mean(np.log(np.clip(truth, 1e-12, 1.0)))), n=int(len(labels)), bins=bins)


def plot_calibration(check: ClassificationCheck, path=None):
    """Reliability diagram per class: observed frequency against predicted probability.

    Points lie on the diagonal for a calibrated classifier; their size shows
    how many predictions fell in the bin.
    """
    from amortize.diagnostics._matplotlib import plt, save

    n_classes = len(check.names)
    fig, axes = plt.subplots(1, n_classes, figsize=(3.2 * n_classes, 3.2), squeeze=False)
    curve = check.curve
    for k, ax in enumerate(axes[0]):
        ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls="--")
        counts = curve["count"][k]
        sizes = 10 + 80 * counts / max(counts.max(), 1)
        ax.plot(curve["predicted"][k], curve["observed"][k], color="C0", lw=1)
        ax.scatter(curve["predicted"][k], curve["observed"][k], s=sizes, color="C0", zorder=3)
        ax.set_title(f"{check.names[k]}\nECE {check.ece[k]:.3f} (floor {check.noise_floor[k]:.3f})",
                     fontsize=9)
        ax.set_xlabel("predicted probability")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_aspect("equal")
    axes[0, 0].set_ylabel("observed frequency")
    fig.suptitle(f"Calibration on {check.n} held-out simulations (accuracy {check.accuracy:.3f})",
                 fontsize=10)
    fig.tight_layout()
    return save(fig, path)


def plot_confusion(check: ClassificationCheck, path=None):
    """Confusion matrix as row shares: each true class's data sets by their most probable class."""
    from amortize.diagnostics._matplotlib import plt, save

    n_classes = len(check.names)
    shares = check.confusion / np.maximum(check.confusion.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.2 * n_classes + 2.2, 1.2 * n_classes + 1.6))
    image = ax.imshow(shares, vmin=0, vmax=1, cmap="Blues")
    for i in range(n_classes):
        for j in range(n_classes):
            ax.text(j, i, f"{shares[i, j]:.2f}\n({check.confusion[i, j]})", ha="center", va="center",
                    fontsize=8, color="white" if shares[i, j] > 0.6 else "black")
    ax.set_xticks(range(n_classes), check.names, rotation=30, ha="right")
    ax.set_yticks(range(n_classes), check.names)
    ax.set_xlabel("most probable model")
    ax.set_ylabel("true model")
    fig.colorbar(image, ax=ax, fraction=0.046, label="share of the true model's data sets")
    fig.tight_layout()
    return save(fig, path)


def check_indicators(amortizer, num_datasets: int = 200, num_samples: int = 200, seed: int = 0,
                     bins: int = 10, chunk: int = 50) -> dict[str, ClassificationCheck]:
    """Accuracy and calibration of every discrete latent's marginal posterior, on held-out simulations.

    Simulates ``num_datasets`` data sets from the program, samples each one's
    posterior, and checks q(z_i = k | y) (the mean over draws of the
    classifier's probabilities given each draw of the continuous latents)
    against the simulated indicators of every real unit.

    Parameters
    ----------
    amortizer : a trained Amortizer with at least one discrete latent
    num_datasets : int
    num_samples : int
        Posterior draws per data set.
    seed : int
    bins : int
    chunk : int
        Data sets per sampler call (one compiled sampler for all).

    Returns
    -------
    dict of indicator → ClassificationCheck
    """
    import jax

    from amortize.errors import AmortizeError
    from amortize.simulate import simulate_in_chunks, unpack_factor

    graph, factorization = amortizer.graph, amortizer.factorization
    indicators = [f for f in factorization if f.is_classifier]
    if not indicators:
        raise AmortizeError("This program has no discrete latent site: there are no indicators to check.")
    sampler = amortizer.sampler(class_probabilities=True)
    sim_key, draw_key = jax.random.split(jax.random.fold_in(jax.random.key(seed), 23))
    n_chunks = -(-num_datasets // chunk)
    sim = simulate_in_chunks(sim_key, graph, factorization, n_chunks * chunk, chunk=chunk)
    marginals: dict[str, list] = {f.name: [] for f in indicators}
    for i, key in enumerate(jax.random.split(draw_key, n_chunks)):
        rows = slice(i * chunk, (i + 1) * chunk)
        _, probabilities = sampler(key, {k: v[rows] for k, v in sim.data.items()},
                                   {k: v[rows] for k, v in sim.masks.items()}, int(num_samples))
        for factor in indicators:
            marginals[factor.name].append(
                np.asarray(probabilities["indicator_probabilities"][factor.targets[0]]).mean(axis=1))
    valid = np.asarray(sim.valid)
    checks = {}
    for factor in indicators:
        site = factor.targets[0]
        truth = np.asarray(unpack_factor(sim.latents[factor.name], factor, graph)[site])
        marginal = np.concatenate(marginals[factor.name])
        keep = valid.copy()
        if factor.path:
            mask = np.asarray(sim.masks[factor.path[-1]])
            keep = mask & valid.reshape((-1,) + (1,) * (mask.ndim - 1))
        keep[num_datasets:] = False
        checks[site] = check_classification(marginal[keep], truth[keep], [str(k) for k in range(factor.classes)],
                                            bins)
    return checks
