"""Amortized comparison of hierarchical models: posterior model probabilities in milliseconds.

The facade :class:`ModelComparison` (created by :func:`compare`): several
NumPyro programs over the same data and a classifier of which one produced a
data set — fit, predict, validate, save. The classifier itself, its
simulations and its loss (Elsemüller et al. 2023) are in
:mod:`amortize.model_classifier`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from amortize import persist
from amortize.build import NetworkConfig, network_spec
from amortize.prepare import prepare_data
from amortize.errors import AmortizeError, AmortizerFileError, ModelError
from amortize.graph import ModelGraph, build_graph
from amortize.loop import TrainConfig, checked_budget, optimize
from amortize.model_classifier import (ComparisonBatch, ComparisonNetwork, check_compatible, cross_entropy,
                                       model_logits, prior_vector, simulate_models)
from amortize.simulate import Simulation, in_chunks
from amortize.train import set_standardization

__all__ = ["ModelComparison", "compare"]


class ModelComparison:
    """Several programs over the same data and a classifier of which one produced a data set.

    Create one with :func:`amortize.compare`; :meth:`fit` trains it on
    simulations from all models, :meth:`predict` returns posterior model
    probabilities of a data set, :meth:`validate` checks them on held-out
    simulations.

    Attributes
    ----------
    names : tuple of str
        Model names, in the order of every probability vector.
    graphs : dict of name → ModelGraph
    prior : ``(models,)`` prior model probabilities.
    network_config : NetworkConfig
    history : dict or None
        Training history of the last :meth:`fit` (``val_loss`` is the
        cross-entropy, ``val_accuracy`` the held-out accuracy).
    """

    def __init__(self, graphs: Mapping[str, ModelGraph], prior=None,
                 network_config: NetworkConfig | None = None):
        self.graphs = dict(graphs)
        self.names = tuple(self.graphs)
        check_compatible(self.graphs)
        self.prior = prior_vector(prior, self.names)
        self.network_config = network_config or NetworkConfig()
        self.spec = network_spec(self.graph, None, self.network_config)
        self.network: ComparisonNetwork | None = None
        self.history: dict | None = None
        self._predictor = None
        self._host_simulator = None

    @property
    def graph(self) -> ModelGraph:
        """The first model's graph: plates and data sites, shared by all models."""
        return self.graphs[self.names[0]]

    @property
    def sizes(self) -> dict[str, tuple[int, int]]:
        """Training range of every plate."""
        return self.graph.size_ranges

    def __repr__(self) -> str:
        status = "trained" if self.network is not None else "untrained"
        prior = ", ".join(f"{n}: {p:.3g}" for n, p in zip(self.names, self.prior))
        return f"ModelComparison({{{prior}}}; sizes {self.sizes}; {status})"

    def _simulate_batch(self, key: jax.Array, batch_size: int) -> ComparisonBatch:
        log_prior = jnp.log(jnp.asarray(self.prior, jnp.float32))
        return simulate_models(key, [self.graphs[n] for n in self.names], log_prior, batch_size)

    def simulate(self, num_datasets: int, seed: int = 0) -> ComparisonBatch:
        """Simulate data sets from models drawn from the prior, on the host (NumPy arrays).

        One compiled function simulates 512 at a time, whatever ``num_datasets``.
        """
        if self._host_simulator is None:
            self._host_simulator = in_chunks(self._simulate_batch, 512)
        return self._host_simulator(jax.random.key(seed), int(num_datasets))

    def init(self, seed: int = 0, pilot_size: int = 1024) -> "ModelComparison":
        """Fresh networks, with data standardization set from pilot simulations of all models.

        Raises
        ------
        ModelError
            A model whose simulations are all NaN or inf.
        """
        init_key, pilot_key = jax.random.split(jax.random.key(seed))
        net = ComparisonNetwork(self.spec, len(self.names), rngs=nnx.Rngs(params=init_key))
        pilot = self.simulate(pilot_size, seed=int(jax.random.randint(pilot_key, (), 0, 2**31 - 1)))
        for k, name in enumerate(self.names):
            drawn = pilot.model_index == k
            if drawn.any() and not pilot.valid[drawn].any():
                raise ModelError(
                    f"Every pilot simulation of model `{name}` has NaN or inf data: check the priors "
                    f"of its latent sites.")
        set_standardization(net, self.spec, Simulation({}, pilot.data, pilot.masks, pilot.valid))
        self.network = net
        self._predictor = None
        return self

    def fit(self, steps: int | None = None, batch_size: int = 64, seed: int = 0, *,
            time_limit: float | None = None, config: TrainConfig | None = None,
            simulation_budget: int | None = None, progress: bool = True) -> dict:
        """Train the classifier on simulations from all models (cross-entropy).

        The arguments are those of :meth:`amortize.Amortizer.fit`. A second
        call continues from the current weights with a fresh learning-rate
        schedule (fine-tuning, e.g. after :meth:`with_sizes`).

        Returns
        -------
        dict
            The training history; ``val_accuracy`` is the held-out accuracy.
        """
        started = time.perf_counter()
        steps = checked_budget(steps, batch_size, time_limit)
        config = config or TrainConfig()
        if self.network is None:
            self.init(seed, config.pilot_size)
        key = jax.random.fold_in(jax.random.key(seed), 1)
        remaining = None if time_limit is None else time_limit - (time.perf_counter() - started)
        spec = self.spec
        self.history = optimize(
            self.network, lambda net, batch, key, fraction: cross_entropy(net, spec, batch), self._simulate_batch,
            lambda k, n: self.simulate(n, seed=int(jax.random.randint(k, (), 0, 2**31 - 1))),
            key=key, steps=steps, batch_size=batch_size, config=config, time_limit=remaining,
            simulation_budget=simulation_budget, progress=progress)
        self._predictor = None
        return self.history

    def _require_trained(self):
        if self.network is None:
            raise AmortizeError("This model comparison is not trained yet; call `comparison.fit(...)` first.")

    def probabilities(self, data: Mapping[str, Any], masks: Mapping[str, Any], chunk: int = 512) -> np.ndarray:
        """Posterior model probabilities ``(B, models)`` of padded data sets, ``chunk`` at a time.

        Parameters
        ----------
        data : dict of site → ``(B, *plates, features)`` (as in :class:`ComparisonBatch`)
        masks : dict of plate → ``(B, *plates)`` bool
        chunk : int
            Data sets per network call (bounds the memory of large batches).
        """
        self._require_trained()
        if self._predictor is None:
            graphdef, state = nnx.split(self.network)
            spec = self.spec

            @jax.jit
            def predict(state, data, masks):
                return jax.nn.softmax(model_logits(nnx.merge(graphdef, state), spec, data, masks), axis=-1)

            self._predictor = lambda data, masks: predict(state, data, masks)
        size = len(next(iter(masks.values())))
        return np.concatenate([
            np.asarray(self._predictor({k: v[i:i + chunk] for k, v in data.items()},
                                       {k: v[i:i + chunk] for k, v in masks.items()}), np.float64)
            for i in range(0, size, chunk)])

    def _prepare(self, data, index, coords):
        prepared = prepare_data(self.graph, data, index=index, coords=coords, pad_to=self.graph.max_sizes())
        return prepared.data, prepared.masks

    def predict(self, data: Mapping[str, Any], *, index: Mapping[str, Any] | None = None,
                coords: Mapping[str, Any] | None = None) -> dict[str, float]:
        """Posterior model probabilities of one data set.

        Parameters
        ----------
        data : mapping of site → values
            Rectangular arrays, per-group lists of arrays (ragged groups) or
            long-format rows with ``index``, as in :meth:`amortize.Amortizer.sample`.
        index, coords : optional
            As in :meth:`amortize.Amortizer.sample`.

        Returns
        -------
        dict of model name → probability (summing to one)

        Raises
        ------
        DataError
            Unknown or missing data site, a shape that does not fit the plates, NaN or inf.
        """
        padded, masks = self._prepare(data, index, coords)
        return dict(zip(self.names, self.probabilities(padded, masks)[0].tolist()))

    def predict_many(self, datasets: Sequence[Mapping[str, Any]], chunk: int = 256) -> np.ndarray:
        """Posterior model probabilities ``(n, models)`` of many data sets, evaluated in batches.

        Each data set is a mapping as in :meth:`predict` (sizes may differ);
        they are padded to a common shape and classified ``chunk`` at a time.
        """
        prepared = [self._prepare(d, None, None) for d in datasets]
        if not prepared:
            return np.zeros((0, len(self.names)))

        def stacked(which, name):
            arrays = [p[which][name] for p in prepared]
            shape = np.max([a.shape for a in arrays], axis=0)
            return np.concatenate([np.pad(a, [(0, s - n) for s, n in zip(shape, a.shape)]) for a in arrays])

        data = {n: stacked(0, n) for n in prepared[0][0]}
        masks = {n: stacked(1, n) for n in prepared[0][1]}
        return self.probabilities(data, masks, chunk)

    def validate(self, num_datasets: int = 5000, seed: int = 12345, *, path=None, bins: int = 10):
        """Accuracy, calibration (ECE) and confusion on held-out simulations; plots with ``path``.

        Parameters
        ----------
        num_datasets : int
            Held-out simulations (models drawn from the prior, sizes ragged
            over the trained range).
        seed : int
        path : str or Path, optional
            A folder to write ``calibration.png``, ``confusion.png`` and
            ``comparison.json`` (every number of the check and its figures).
        bins : int
            Bins of the calibration curve and ECE.

        Returns
        -------
        amortize.diagnostics.ClassificationCheck
        """
        from amortize.diagnostics.classification import check_classification, plot_calibration, plot_confusion

        self._require_trained()
        batch = self.simulate(num_datasets, seed)
        valid = np.asarray(batch.valid)
        probabilities = self.probabilities(batch.data, batch.masks)
        check = check_classification(probabilities[valid], np.asarray(batch.model_index)[valid],
                                     self.names, bins)
        if path is not None:
            import json

            out = Path(path)
            out.mkdir(parents=True, exist_ok=True)
            plot_calibration(check, out / "calibration.png")
            plot_confusion(check, out / "confusion.png")
            (out / "comparison.json").write_text(json.dumps(
                {**check.to_dict(), "prior": dict(zip(self.names, self.prior.tolist())),
                 "sizes": self.sizes}, indent=1))
        return check

    def save(self, path) -> None:
        """Write the trained comparison to ``path`` (one file); :func:`amortize.load` reads it back."""
        self._require_trained()
        first = next(iter(self.graphs.values()))
        manifest = persist.manifest(persist.COMPARISON_FORMAT, self, first, models=list(self.names),
                                    prior=self.prior.tolist(),
                                    fingerprints={name: g.fingerprint() for name, g in self.graphs.items()})
        persist.write_archive(path, manifest, self.network, {name: g.model for name, g in self.graphs.items()})

    @classmethod
    def from_archive(cls, archive: persist.Archive, models: Mapping[str, Callable] | None = None
                     ) -> "ModelComparison":
        """Rebuild a saved comparison (see :func:`amortize.load`, which reads the archive and dispatches here)."""
        manifest, path = archive.manifest, archive.path
        names = manifest["models"]
        if models is None:
            models = persist.restore_programs(archive.programs, path, "am.load(path, model={'name': program, ...})")
        if not isinstance(models, Mapping) or list(models) != names:
            raise AmortizerFileError(
                f"{path} holds a comparison of the models {names}; pass model= as a mapping with "
                f"exactly those names, in that order.")
        graphs = {name: persist.checked_graph(models[name], manifest, manifest["fingerprints"][name], path,
                                              label=f"Model `{name}`") for name in names}
        comparison = cls(graphs, manifest["prior"], NetworkConfig(**{"quantiles": 0, **manifest["network_config"]}))
        network = ComparisonNetwork(comparison.spec, len(names), rngs=nnx.Rngs(0))
        persist.fill_weights(network, archive.weights, path)
        comparison.network = network
        comparison.history = persist.history_of(manifest)
        return comparison

    def with_sizes(self, sizes: Mapping[str, Any]) -> "ModelComparison":
        """The same models over new size ranges, starting from these trained weights (transfer learning).

        Train on small data sets first (cheap steps), then call
        ``comparison.with_sizes(larger).fit(...)`` to fine-tune, as Elsemüller
        et al. do; the summary networks do not depend on the number of groups
        or observations, so every weight carries over.
        """
        self._require_trained()
        graphs = {name: build_graph(graph.model, graph.data_names, sizes) for name, graph in self.graphs.items()}
        other = ModelComparison(graphs, self.prior, self.network_config)
        network = ComparisonNetwork(other.spec, len(self.names), rngs=nnx.Rngs(0))
        # Copies: training donates the weights' buffers, and this comparison keeps its own.
        nnx.update(network, jax.tree.map(lambda x: jnp.array(x, copy=True), nnx.state(self.network)))
        other.network = network
        return other


def compare(models: Mapping[str, Callable], data: Sequence[str], sizes: Mapping[str, Any], *,
            prior=None, network: NetworkConfig | None = None) -> ModelComparison:
    """Compile several NumPyro programs over the same data for amortized model comparison.

    Parameters
    ----------
    models : mapping of name → program
        At least two NumPyro programs with the same plates and data sites
        (names, nesting and shapes); their latent sites may differ.
    data : sequence of str
        The observed sites.
    sizes : mapping of plate → (min, max)
        Training range of each plate's size, as in :func:`amortize.compile`.
    prior : mapping of name → probability, or sequence, optional
        Prior model probabilities (default uniform).
    network : NetworkConfig, optional
        Sizes of the summary networks (the classifier head has two hidden
        layers of ``summary_width``).

    Returns
    -------
    ModelComparison

    Raises
    ------
    ModelError
        Fewer than two models, a model that does not compile or run, models
        whose plates or data sites differ (naming the model and the site), a
        prior that is not a probability vector over the models.

    Examples
    --------
    >>> import amortize as am
    >>> from amortize.models import hierarchical_comparison as hc
    >>> cmp = am.compare({"pooled": hc.pooled, "hierarchical": hc.hierarchical},
    ...                  data=["y"], sizes={"group": (2, 20), "obs": (1, 20)})
    >>> cmp.names
    ('pooled', 'hierarchical')
    """
    if not isinstance(models, Mapping) or len(models) < 2:
        raise ModelError("compare() needs a mapping of at least two named models, e.g. "
                         "{'pooled': model_a, 'hierarchical': model_b}.")
    graphs = {}
    for name, model in models.items():
        if not callable(model):
            raise ModelError(f"Model `{name}` is not callable; pass the NumPyro program itself.")
        try:
            graphs[str(name)] = build_graph(model, data, sizes)
        except AmortizeError as error:
            raise ModelError(f"Model `{name}`: {error}") from None
        except Exception as error:  # the program itself failed to run under its priors
            raise ModelError(
                f"Model `{name}` failed to run under its priors ({type(error).__name__}: {error}); "
                f"check that it runs as a NumPyro program with sizes {dict(sizes)}.") from error
    return ModelComparison(graphs, prior, network)
