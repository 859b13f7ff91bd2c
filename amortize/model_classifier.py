"""The classifier behind amortized model comparison: its network, its simulations and its loss.

Following Elsemüller et al. (2023, "A Deep Learning Method for Comparing
Bayesian Hierarchical Models"): data sets are simulated from several NumPyro
programs that share their data sites, the model index drawn from the prior
model probabilities (:func:`simulate_models`); a hierarchical summary network
(the same masked, permutation-invariant level summaries the posterior
amortizer uses, invariant over groups and over observations within groups)
feeds a softmax classifier (:class:`ComparisonNetwork`), trained by
cross-entropy (:func:`cross_entropy`). Its output for a new data set
approximates the posterior model probabilities p(M_k | y): the minimizer of
the expected cross-entropy over p(M) p(y | M) is exactly p(M | y).

Ragged groups (observations missing within groups) are masked, as in the
posterior amortizer; every batch is simulated with ragged sizes. The facade
users hold is :class:`amortize.comparison.ModelComparison`.
"""

from __future__ import annotations

from typing import Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from amortize.build import NetworkSpec, data_standardization, embed, summary_networks
from amortize.errors import ModelError
from amortize.graph import ModelGraph, factorize
from amortize.loop import valid_mean
from amortize.networks import MLP
from amortize.simulate import simulate

__all__ = ["ComparisonBatch", "ComparisonNetwork", "check_compatible", "cross_entropy", "model_logits",
           "prior_vector", "simulate_models"]


class ComparisonBatch(NamedTuple):
    """Simulated data sets with the model each came from.

    Attributes
    ----------
    data : dict of site → ``(B, *plates, features)``, zero where masked out.
    masks : dict of plate → ``(B, *plates_down_to_it)`` bool.
    model_index : ``(B,)`` int, position of the true model in :attr:`ModelComparison.names`.
    valid : ``(B,)`` bool, False where the simulation produced NaN or inf.
    """

    data: dict
    masks: dict
    model_index: jax.Array
    valid: jax.Array


class ComparisonNetwork(nnx.Module):
    """Hierarchical summary of the data and a classifier over the models.

    Attributes
    ----------
    summaries, root : the level summaries and root encoder of
        :func:`amortize.build.summary_networks`.
    head : MLP
        Global embedding ``(B, embed_dim)`` → logits ``(B, models)``.
    data_loc, data_scale : per data site, ``(features,)`` standardization.
    """

    def __init__(self, spec: NetworkSpec, n_models: int, *, rngs: nnx.Rngs):
        c = spec.config
        self.summaries, self.root = summary_networks(spec, rngs=rngs)
        self.head = MLP((c.embed_dim, c.summary_width, c.summary_width, n_models),
                        activation=c.activation, rngs=rngs)
        self.data_loc, self.data_scale = data_standardization(spec)


def model_logits(net: ComparisonNetwork, spec: NetworkSpec, data: dict, masks: dict) -> jax.Array:
    """Unnormalized log posterior model probabilities ``(B, models)`` of padded data sets."""
    return net.head(embed(net, spec, data, masks)["global"])


def simulate_models(key: jax.Array, graphs: Sequence[ModelGraph], log_prior: jax.Array,
                    batch_size: int) -> ComparisonBatch:
    """Simulate ``batch_size`` data sets, each from a model drawn from the prior (pure; jit it).

    Every model simulates the whole batch with the same key, hence the same
    ragged sizes (masks), and each data set keeps the output of its drawn
    model: programs are cheap next to the networks, and one compiled function
    serves every draw of models.
    """
    choice_key, sim_key = jax.random.split(key)
    index = jax.random.categorical(choice_key, log_prior, shape=(batch_size,))
    sims = [simulate(sim_key, graph, factorize(graph), batch_size) for graph in graphs]
    rows = jnp.arange(batch_size)

    def pick(arrays):
        return jnp.stack(arrays)[index, rows]

    data = {name: pick([s.data[name] for s in sims]) for name in graphs[0].data_names}
    return ComparisonBatch(data, sims[0].masks, index, pick([s.valid for s in sims]))


def cross_entropy(net: ComparisonNetwork, spec: NetworkSpec, batch: ComparisonBatch):
    """Mean over valid simulations of -log q(true model | data), and the accuracy."""
    log_q = jax.nn.log_softmax(model_logits(net, spec, batch.data, batch.masks))
    nll = -jnp.take_along_axis(log_q, batch.model_index[:, None], axis=1)[:, 0]
    correct = (jnp.argmax(log_q, axis=1) == batch.model_index).astype(jnp.float32)
    return valid_mean(nll, batch.valid), {"accuracy": valid_mean(correct, batch.valid)}


def check_compatible(graphs: Mapping[str, ModelGraph]) -> None:
    """Every model must have the first one's plates and data sites (names, nesting, shapes)."""
    names = list(graphs)
    first_name, first = names[0], graphs[names[0]]
    for name in names[1:]:
        graph = graphs[name]
        for plate in set(first.plates) | set(graph.plates):
            if plate not in graph.plates or plate not in first.plates:
                has, lacks = (first_name, name) if plate in first.plates else (name, first_name)
                raise ModelError(
                    f"Model `{lacks}` has no plate `{plate}`, which model `{has}` has: models compared "
                    f"must share their plates (levels). Give both programs the same plates.")
            a, b = first.plates[plate], graph.plates[plate]
            if (a.parent, a.ordered) != (b.parent, b.ordered):
                raise ModelError(
                    f"Plate `{plate}` is nested in {a.parent or 'no plate'} in model `{first_name}` and in "
                    f"{b.parent or 'no plate'} in model `{name}` (ordered: {a.ordered} vs {b.ordered}); "
                    f"models compared must nest their plates the same way.")
        for site in first.data_names:
            a, b = first.sites[site], graph.sites[site]
            if (a.path, a.event_shape) != (b.path, b.event_shape):
                raise ModelError(
                    f"Data site `{site}` has plates {a.path} and event shape {a.event_shape} in model "
                    f"`{first_name}` but plates {b.path} and event shape {b.event_shape} in model "
                    f"`{name}`; the models' data must have the same shape.")


def prior_vector(prior, names: Sequence[str]) -> np.ndarray:
    """Prior model probabilities ``(models,)`` in the order of ``names``, checked.

    ``prior``: None (uniform), a mapping of name → probability (missing names
    get 0) or a sequence in the order of ``names``; it must be a probability
    vector (non-negative, finite, summing to 1), else :class:`ModelError`.
    """
    if prior is None:
        return np.full(len(names), 1.0 / len(names))
    if isinstance(prior, Mapping):
        unknown = set(prior) - set(names)
        if unknown:
            raise ModelError(f"prior names {sorted(unknown)}, which are not among the models {list(names)}.")
        prior = [prior.get(name, 0.0) for name in names]
    vector = np.asarray(prior, np.float64)
    if vector.shape != (len(names),) or not np.all(np.isfinite(vector)) or np.any(vector < 0):
        raise ModelError(f"prior must give one non-negative probability per model ({list(names)}); got {prior!r}.")
    if not np.isclose(vector.sum(), 1.0, atol=1e-6):
        raise ModelError(f"The prior model probabilities must sum to 1; they sum to {vector.sum():.6g}.")
    return vector
