"""The ``Amortizer`` facade: compile, fit, sample, save, load.

Everything stochastic takes an explicit seed; the pure pieces live in
:mod:`amortize.train`, :mod:`amortize.infer`, :mod:`amortize.refine` and
:mod:`amortize.convert`. One concept, the object users hold; it runs past
400 lines because more than half of them are the numpydoc of its public
methods, which users read with ``help()``. Each method delegates: no
algorithm lives here.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from typing import Any, Callable, Mapping, Sequence

import jax
from flax import nnx

from amortize._version import __version__
from amortize import persist
from amortize.build import AmortizerNetwork, NetworkConfig, network_spec
from amortize.convert import to_datatree, with_deterministics
from amortize.prepare import prepare_data
from amortize.design import Design, make_design
from amortize.errors import AmortizationGapWarning, AmortizeError, DataError, ModelError
from amortize.graph import Factorization, ModelGraph, build_graph, factorize
from amortize.infer import gather_instances, make_latent_sampler, make_sampler
from amortize.program.adapted import AdaptedProgram
from amortize.program.arguments import adapt
from amortize.misspecification import QUANTILE, make_summarizer, summary_check
from amortize.refine.consistency import SelfConsistency, self_consistency_loss
from amortize.refine.sampling import posterior_draws
from amortize.simulate import chunked_simulator, simulate_data_set
from amortize.train import TrainConfig, checked_budget, fit_network, set_standardization

__all__ = ["Amortizer", "compile"]


class Amortizer:
    """A compiled program with its networks: fit it once, then sample in milliseconds.

    Create one with :func:`amortize.compile` or :func:`amortize.load`.

    Attributes
    ----------
    graph : ModelGraph
        Sites, plates and parents of the program.
    factorization : Factorization
        The posterior factorization; ``print`` it to read it.
    network_config : NetworkConfig
    history : dict or None
        Training history of the last :meth:`fit` (``None`` before training).
    """

    def __init__(self, graph: ModelGraph, factorization: Factorization,
                 network_config: NetworkConfig | None = None):
        self.graph = graph
        self.factorization = factorization
        self.network_config = network_config or NetworkConfig()
        self.spec = network_spec(graph, factorization, self.network_config)
        self.network: AmortizerNetwork | None = None
        self.history: dict | None = None
        self._sampler = None
        self._latent_sampler = None
        self._densities = {}  # compiled program densities by padded sizes (certificates, refinement)
        self._chunked_simulator = None
        self._summary_check = None  # where the training simulations' summaries lie (see summary_check)
        self._training = (None, 1.0)  # (design, design_share) of the simulations of the last fit

    def __repr__(self) -> str:
        sizes = ", ".join(f"{p}: {r}" for p, r in self.graph.size_ranges.items())
        status = "trained" if self.network is not None else "untrained"
        return f"Amortizer({self.factorization}; sizes {{{sizes}}}; {status})"

    @property
    def sizes(self) -> dict[str, tuple[int, int]]:
        """Training range of every plate."""
        return self.graph.size_ranges

    def init(self, seed: int = 0, pilot_size: int = 1024) -> "Amortizer":
        """Create fresh networks and set their standardization from pilot simulations.

        :meth:`fit` calls this on an untrained amortizer; call it yourself to
        start over.
        """
        key = jax.random.key(seed)
        init_key, pilot_key = jax.random.split(key)
        net = AmortizerNetwork(self.spec, rngs=nnx.Rngs(params=init_key))
        pilot = self._simulator()(pilot_key, pilot_size)
        if not pilot.valid.any():
            raise AmortizeError(
                "None of the pilot simulations were finite: the program produces NaN or inf "
                "under its priors. Check the priors of every latent site."
            )
        set_standardization(net, self.spec, pilot)
        self.network = net
        self._sampler = self._latent_sampler = None
        return self

    def fit(self, steps: int | None = None, batch_size: int = 64, seed: int = 0, *,
            time_limit: float | None = None, config: TrainConfig | None = None,
            simulation_budget: int | None = None, progress: bool = True,
            checkpoint=None, checkpoint_every: float = 300.0,
            design: Design | Mapping[str, Any] | None = None, design_share: float = 1.0,
            self_consistency: SelfConsistency | bool | None = None) -> dict:
        """Train on simulations from the program.

        Ctrl-C (KeyboardInterrupt) stops training cleanly: the networks keep
        what the completed steps learned, ``history["interrupted"]`` is True,
        and a later ``fit`` trains on from there.

        Parameters
        ----------
        steps : int, optional
            Optimizer steps: default 5000, or no limit but the time budget when
            ``time_limit`` is given.
        batch_size : int
            Simulated data sets per step.
        seed : int
            Seeds network initialization (first fit only), simulations and validation.
        time_limit : float, optional
            Wall-clock budget in seconds for the whole call, including network
            initialization and compilation. The learning rate decays with the
            elapsed share of the budget, and training stops before a chunk of
            steps that would overrun it. The number of steps then depends on
            the machine (``len(history["loss"])`` says how many ran), so two
            budgeted runs with the same seed need not match; give ``steps``
            alone for a reproducible run.
        config : TrainConfig, optional
            Optimizer, schedule, clipping, validation; defaults are Adam with
            warm-up and cosine decay, clipping at global norm 1.
        simulation_budget : int, optional
            Simulate this many data sets once and train on them for
            ``steps * batch_size / simulation_budget`` epochs, instead of fresh
            simulations at every step (online training, the default).
        progress : bool
            Show a progress bar with the training and validation loss.
        checkpoint : str or Path, optional
            Save the amortizer there (as :meth:`save` does, atomically) at a
            validation at least every ``checkpoint_every`` seconds, and when
            training ends or is interrupted. Resume after a crash with
            ``am.load(checkpoint).fit(...)``: the weights carry over; the
            optimizer's state and learning-rate schedule start afresh.
        checkpoint_every : float
            Seconds between checkpoints (default 300).
        design : Design or mapping of site → values, optional
            Design-focused training: simulate every training data set on this
            observed design (its plate sizes and covariates, from
            :meth:`design_of` or a data set, whose responses are ignored) and
            amortize over the parameters only. Exact for data on that design,
            and sharper per step: no padding beyond the design's largest group,
            nothing about other designs to learn. Without it, sizes are drawn
            over the compiled ranges (range training). See docs/design.md.
        design_share : float
            With ``design``, the share of every batch simulated on it (default
            1); the rest is range training, so the networks stay usable on
            other designs.
        self_consistency : SelfConsistency or bool, optional
            Add the self-consistency loss (Schmitt et al. 2024): the variance
            of the program's log importance weights over a few draws from the
            networks, zero for the exact posterior, switched on after a
            warm-up (``True``: the defaults of :class:`SelfConsistency`).
            Costs K + L more passes of the flows and of the program's density
            per step. See docs/design.md.

        Returns
        -------
        dict
            Training history (see :func:`amortize.train.fit_network`); also
            kept as ``self.history``.
        """
        started = time.perf_counter()
        steps = checked_budget(steps, batch_size, time_limit)
        config = config or TrainConfig()
        if design is not None and not isinstance(design, Design):
            design = self.design_of(design)
        if not 0.0 < float(design_share) <= 1.0:
            raise AmortizeError(f"design_share is the share of each batch simulated on the design, in (0, 1]; "
                                f"got {design_share}.")
        if (design, float(design_share)) != self._training:
            self._training = (design, float(design_share))
            self._chunked_simulator = None
        if self.network is None:
            self.init(seed, config.pilot_size)
        key = jax.random.fold_in(jax.random.key(seed), 1)
        remaining = None if time_limit is None else time_limit - (time.perf_counter() - started)
        on_validation = None
        if checkpoint is not None:
            last = [time.perf_counter()]

            def on_validation(history):
                if time.perf_counter() - last[0] >= checkpoint_every:
                    self.history = history
                    self.save(checkpoint)
                    last[0] = time.perf_counter()

        extra_loss = None
        if self_consistency:
            settings = self_consistency if isinstance(self_consistency, SelfConsistency) else SelfConsistency()
            observed = None if settings.data is None else prepare_data(self.graph, settings.data,
                                                                       index=settings.index)
            extra_loss = self_consistency_loss(self.graph, self.factorization, self.spec, settings, observed)
        self.history = fit_network(
            self.network, self.spec, self.graph, self.factorization, key=key, steps=steps,
            batch_size=batch_size, config=config, time_limit=remaining,
            simulation_budget=simulation_budget, progress=progress, simulator=self._simulator(),
            on_validation=on_validation, design=design, design_share=float(design_share), extra_loss=extra_loss)
        self._sampler = self._latent_sampler = self._summary_check = None
        if checkpoint is not None:
            self.save(checkpoint)
        return self.history

    def _simulator(self):
        if self._chunked_simulator is None:
            design, share = self._training
            self._chunked_simulator = chunked_simulator(self.graph, self.factorization, design=design,
                                                        design_share=share)
        return self._chunked_simulator

    @property
    def training_design(self) -> Design | None:
        """The observed design the last :meth:`fit` simulated on (None: range training)."""
        return self._training[0]

    def design_of(self, data: Mapping[str, Any], *, index: Mapping[str, Any] | None = None,
                  covariates: Sequence[str] | None = None) -> Design:
        """The design of a data set, for ``fit(design=...)``: plate sizes and covariate values.

        Parameters
        ----------
        data : mapping of site → values
            A data set in any form :meth:`sample` takes; its responses are not used.
        index : mapping of plate → labels, optional
            Long format, as in :meth:`sample`.
        covariates : sequence of str, optional
            Data sites whose observed values training conditions on; default:
            the data sites another data site depends on (radon's ``floor``).

        Examples
        --------
        >>> design = amortizer.design_of(data, index=index)        # doctest: +SKIP
        >>> amortizer.fit(time_limit=300, design=design)          # doctest: +SKIP
        """
        return make_design(self.graph, data, index=index, covariates=covariates)

    def data_of(self, *args, **kwargs) -> dict[str, Any]:
        """The data set of one call of the program, for :meth:`sample`, :meth:`design_of` and the diagnostics.

        For a program compiled from a call (``compile(model, args=..., kwargs=...)``):
        pass the arguments as you would call the program; the result maps every
        data site and covariate to its values.

        Examples
        --------
        >>> idata = amortizer.sample(amortizer.data_of(J, sigma, y=y))   # doctest: +SKIP
        """
        if not isinstance(self.graph.model, AdaptedProgram):
            raise DataError("data_of reads a call of a program compiled from a call (compile(model, args=..., "
                            "kwargs=...)); this one takes its data as a mapping of site → values: "
                            f"{{{', '.join(repr(n) + ': ...' for n in self.graph.data_names)}}}.")
        return self.graph.model.data_of(args, kwargs)

    def _require_trained(self):
        if self.network is None:
            raise AmortizeError("This amortizer is not trained yet; call `amortizer.fit(...)` first.")

    def draws(self, data: Mapping[str, Any], num_samples: int = 1000, seed: int = 0, *,
              index: Mapping[str, Any] | None = None, coords: Mapping[str, Any] | None = None):
        """Posterior draws as NumPy arrays, without building a DataTree.

        Returns
        -------
        draws : dict of site → ``(num_samples, [n_instances], *event)``
        prepared : PreparedData
            The padded data, labels and instance order.
        """
        draws, _, prepared = self._draws_and_probabilities(data, num_samples, seed, index, coords, False)
        return draws, prepared

    def _draws_and_probabilities(self, data, num_samples, seed, index, coords, probabilities: bool):
        self._require_trained()
        if int(num_samples) < 1:
            raise DataError(f"num_samples must be a positive integer; got {num_samples}.")
        prepared = prepare_data(self.graph, data, index=index, coords=coords,
                                pad_to=self.graph.max_sizes())
        raw = self.sampler(probabilities)(jax.random.key(seed), prepared.data, prepared.masks,
                                               int(num_samples))
        raw, class_probabilities = raw if probabilities else (raw, {})
        return (gather_instances(raw, prepared, self.graph),
                {group: gather_instances(values, prepared, self.graph)
                 for group, values in class_probabilities.items()}, prepared)

    def sampler(self, class_probabilities: bool = False):
        """The pure, jitted amortized sampler for batches of prepared data sets.

        ``sampler(key, data, masks, num_samples) -> {site: (B, S, *plates, *event)}``,
        constrained draws of B data sets at once: ``data`` holds per data
        site ``(B, *plates, features)`` and ``masks`` per plate ``(B, *plates)``
        at the trained maximum sizes, as :func:`amortize.simulate.simulate`
        returns them (simulation-based calibration runs it on thousands of
        simulated data sets). No certificate, no refinement: for one real
        data set use :meth:`sample`. Compiled once per amortizer and kept.

        With ``class_probabilities``: ``(draws, {indicator: (B, S, *plates, classes)})``.

        Raises
        ------
        AmortizeError
            The amortizer is not trained yet.
        """
        self._require_trained()
        if self._sampler is None:
            self._sampler = {}
        if class_probabilities not in self._sampler:
            self._sampler[class_probabilities] = make_sampler(
                self.network, self.spec, self.graph, self.factorization,
                class_probabilities=class_probabilities)
        return self._sampler[class_probabilities]

    def sample(self, data: Mapping[str, Any], num_samples: int = 1000, seed: int = 0, *,
               index: Mapping[str, Any] | None = None, coords: Mapping[str, Any] | None = None,
               num_chains: int | None = None, certify: bool = True, refine: str | None = None,
               proposals: int | None = None, nuts_options: Mapping[str, Any] | None = None):
        """Posterior draws for one data set, as an ArviZ DataTree, certified by the program's density.

        Parameters
        ----------
        data : mapping of site → values
            Every data site, as a rectangular array ``(*plates, *event)``,
            nested per-group lists of arrays, or long-format rows (with ``index``).
        num_samples : int
            Total number of draws, split evenly into chains.
        seed : int
        index : mapping of plate → labels, optional
            Long format: one label per row for every enclosing plate; the labels
            become the plate's coordinates.
        coords : mapping of plate → labels, optional
            Labels for the instances of a plate (rectangular or ragged data).
        num_chains : int, optional
            The draws are independent; splitting them into chains lets ArviZ's
            R-hat and ESS work as usual. Default: 4, or the largest number up to
            4 that divides ``num_samples``.
        certify : bool
            Weight the draws by the program's own density and report Pareto k̂
            and the relative effective sample size (per group level for
            multilevel programs) in the posterior group's attributes
            (``certificate_*``; read them back with :func:`amortize.certificate`).
            Costs one evaluation of the program per draw, and for a program
            with groups whose plain weights are not confirmed (k̂ above the
            threshold) the hierarchical weights' passes of the local networks;
            turn it off for latency-critical calls. Programs with a site that has no
            ``log_prob`` are sampled without a certificate (with a warning).
        refine : {None, "psis", "nuts", "auto"}
            Correct the amortized draws with the program's density:
            ``"psis"`` resamples ``proposals`` amortized draws by their
            Pareto-smoothed importance weights (per group level:
            importance sampling squared; the proposals come from the
            defensive mixture 0.9 q + 0.1 q₂, q with a twice wider base
            normal, and the certificate is theirs); ``"nuts"`` runs NUTS on the program
            started from amortized draws with their covariance as the mass
            matrix and a short warm-up; ``"auto"`` uses psis where its k̂ is at
            most 0.7 and nuts otherwise. The posterior group's attrs say which
            ran and why (``refine``, ``refine_reason``). See docs/refinement.md.
        proposals : int, optional
            Amortized draws weighted by ``refine="psis"`` (default
            ``max(num_samples, 4000)``) or by the certificate (default
            ``max(num_samples, 1000)``).
        nuts_options : mapping, optional
            For ``refine="nuts"``: ``num_warmup`` (default 200),
            ``target_accept_prob`` (0.8), ``max_tree_depth`` (10),
            ``adapt_mass_matrix`` (False: keep the amortized covariance),
            ``chain_method`` ("vectorized" or "sequential"). The run is
            compiled once per data size and kept: a further data set of the
            same sizes does not compile again. When the certificate is not
            confirmed (k̂ above 0.7), the defaults become a diagonal mass
            matrix started from the amortized variances and adapted over 500
            warm-up steps.

        Returns
        -------
        xarray.DataTree
            ``posterior`` with dims ``(chain, draw, <plate>, ...)``,
            ``observed_data``; ``indicator_probabilities`` for discrete latents;
            ``sample_stats`` after ``refine="nuts"``.

        Raises
        ------
        DataError
            Unknown or missing data site, wrong shape, NaN or inf.
        RefineError
            An unknown ``refine``; refinement of a program without a density;
            ``refine="nuts"`` on a program with discrete latents.

        Warns
        -----
        AmortizationGapWarning
            A plate's size is outside the trained range, or the data's summary
            lies beyond what 99.5% of simulations from the program give
            (:meth:`summary_check`): the networks extrapolate.
        CertificateWarning
            The certificate's k̂ is above 0.7: the draws are not confirmed by
            the program's density (under-trained networks, or data unlike the
            simulations).
        """
        num_chains = _chains_for(num_samples, num_chains)
        posterior = posterior_draws(self.latent_sampler(), self.graph, self.factorization, data,
                                    int(num_samples), seed, index=index, coords=coords, num_chains=num_chains,
                                    certify=certify, refine=refine, proposals=proposals,
                                    nuts_options=nuts_options, cache=self._densities)
        groups = {"sample_stats": posterior.sample_stats} if posterior.sample_stats else None
        draws = with_deterministics(posterior.draws, posterior.prepared, self.graph)
        tree = to_datatree(draws, posterior.prepared, self.graph, num_chains=num_chains,
                           attrs={"inference_library_version": __version__}, groups=groups,
                           class_probabilities=posterior.probabilities)
        tree["posterior"].attrs.update(posterior.attrs)
        check, summarize = self.summary_check()
        distance = float(check.distance(summarize(posterior.prepared.data, posterior.prepared.masks))[0])
        tree["posterior"].attrs.update(summary_distance=distance, summary_threshold=check.threshold)
        if not distance <= check.threshold:
            outside = check.out_of_range({n: posterior.prepared.values[n] for n in self.graph.data_names})
            warnings.warn(
                f"These data are unlike the training simulations: their summary lies at Mahalanobis distance "
                f"{distance:.1f} from the simulations' summaries, where {QUANTILE:.1%} of data sets simulated "
                f"from the program lie below {check.threshold:.1f} (Schmitt et al. 2023)"
                + (f"; outside the simulations: {'; '.join(outside)}" if outside else "")
                + ". The networks extrapolate here: check the data's scale and units against the priors, "
                "widen the priors or the training sizes and train again, and see the certificate "
                "(am.certificate) or refine=.",
                AmortizationGapWarning, stacklevel=2)
        return tree

    def summary_check(self):
        """Where the training simulations' summaries lie, and the summarizer: ``(SummaryCheck, summarize)``.

        Calibrated once per training on 2048 fresh simulations (a fixed seed);
        :meth:`sample` records each data set's ``summary_distance`` and the
        ``summary_threshold`` in the posterior group's attributes, and warns
        beyond it. See :mod:`amortize.misspecification`.
        """
        self._require_trained()
        if self._summary_check is None:
            summarize = make_summarizer(self.network, self.spec)
            simulation = self._simulator()(jax.random.key(20231), 2048)
            paths = {n: self.graph.sites[n].path for n in self.graph.data_names}
            self._summary_check = (summary_check(summarize, simulation, data_paths=paths), summarize)
        return self._summary_check

    def simulate(self, sizes: Mapping[str, int], seed: int = 0) -> tuple[dict, dict]:
        """Draw one test data set from the program, with the parameters it was drawn with.

        Parameters
        ----------
        sizes : mapping of plate → int
            Every plate's size, e.g. ``{"group": 8, "obs": 5}``.
        seed : int

        Returns
        -------
        truth : dict of latent site → array ``(*plates, *event)``
        data : dict of data site → array ``(*plates, *event)``, ready for :meth:`sample`

        Examples
        --------
        >>> truth, data = amortizer.simulate({"group": 8, "obs": 5}, seed=1)  # doctest: +SKIP
        >>> idata = amortizer.sample(data)                                     # doctest: +SKIP
        """
        missing = set(self.graph.plates) - set(sizes)
        if missing:
            raise DataError(f"simulate() needs the size of every plate; missing {sorted(missing)} "
                            f"(plates: {', '.join(self.graph.plates)}).")
        return simulate_data_set(jax.random.key(seed), self.graph, {p: int(sizes[p]) for p in self.graph.plates})

    def latent_sampler(self):
        """The jitted unconstrained sampler with log q (see :func:`amortize.infer.make_latent_sampler`)."""
        self._require_trained()
        if self._latent_sampler is None:
            self._latent_sampler = make_latent_sampler(self.network, self.spec)
        return self._latent_sampler

    def validate(self, path, **kwargs):
        """Validate this amortizer and write a report folder (PNG, JSON, markdown).

        See :func:`amortize.diagnostics.validate` for the arguments (``data=``,
        ``reference=``, ``logo=``, ...).
        """
        from amortize.diagnostics.report import validate

        return validate(self, path, **kwargs)

    def save(self, path) -> None:
        """Write the trained amortizer to ``path`` (one file; see :func:`amortize.load`)."""
        self._require_trained()
        manifest = persist.manifest(persist.FORMAT, self, self.graph, fingerprint=self.graph.fingerprint(),
                                    adapted=isinstance(self.graph.model, AdaptedProgram))
        persist.write_archive(path, manifest, self.network, self.graph.model)

    @classmethod
    def from_archive(cls, archive: persist.Archive, model: Callable | None = None) -> "Amortizer":
        """Rebuild a saved amortizer (see :func:`amortize.load`, which reads the archive and dispatches here)."""
        manifest = archive.manifest
        if model is None:
            model = persist.restore_programs(archive.programs, archive.path, "am.load(path, model=my_model)")
        elif manifest.get("adapted") and not isinstance(model, AdaptedProgram):
            # The argument roles were read from a call at compile time: wrap the function given in them.
            stored = persist.restore_programs(archive.programs, archive.path, "am.load(path) without model=")
            model = stored.with_model(model)
        graph = persist.checked_graph(model, manifest, manifest["fingerprint"], archive.path)
        # Archives from before scalar_local_hidden and quantiles existed were built with flow_hidden there
        # and without quantile features.
        config = NetworkConfig(**{"scalar_local_hidden": None, "quantiles": 0, **manifest["network_config"]})
        amortizer = cls(graph, factorize(graph), config)
        network = AmortizerNetwork(amortizer.spec, rngs=nnx.Rngs(0))
        persist.fill_weights(network, archive.weights, archive.path)
        amortizer.network = network
        amortizer.history = persist.history_of(manifest)
        return amortizer


def _chains_for(num_samples: int, num_chains: int | None) -> int:
    """Chains to split ``num_samples`` iid draws into (see :meth:`Amortizer.sample`)."""
    if int(num_samples) < 1:
        raise DataError(f"num_samples must be a positive integer; got {num_samples}.")
    if num_chains is None:
        return max(c for c in (1, 2, 3, 4) if num_samples % c == 0)
    if num_chains < 1 or num_samples % num_chains:
        raise DataError(
            f"num_samples={num_samples} must be a positive multiple of num_chains={num_chains}; "
            f"leave num_chains out to have it chosen."
        )
    return int(num_chains)


def compile(model: Callable, data: Sequence[str] | None = None, sizes: Mapping[str, Any] | None = None, *,
            network: NetworkConfig | None = None, args: Sequence[Any] | None = None,
            kwargs: Mapping[str, Any] | None = None, covariates: Mapping[str, Any] | None = None) -> Amortizer:
    """Compile a NumPyro program into an (untrained) amortizer.

    Two ways to say what the program's arguments are:

    * **a call with data** (``args=``, ``kwargs=``, as given to NumPyro's
      ``MCMC.run`` without the key): the program stays exactly as written.
      amortize reads each argument's role from the call (see
      :mod:`amortize.program.arguments`): an argument passed as ``obs=`` is
      data, an integer that sizes a plate is that plate's size, an array
      whose first axis follows a plate (``len(y)`` sizes it, or it is used
      per instance) is per instance of that plate — data or, if never
      observed, a covariate drawn during training from ``covariates[name]``
      (default: the call's rows, resampled); everything else is passed as
      in the call. Get a data set for :meth:`Amortizer.sample` from any call
      with :meth:`Amortizer.data_of`.
    * **amortize's convention**: the size of plate ``P`` is the argument
      ``n_P``, data sites are keyword arguments ``y=None`` observed by
      ``obs=y``.

    Parameters
    ----------
    model : callable
        A NumPyro program.
    data : sequence of str, optional
        The observed sites (required without ``args``/``kwargs``; with them,
        default: every site observed through an argument).
    sizes : mapping of plate → (min, max)
        Training range of each plate's size (per enclosing instance for
        nested plates). At inference the sizes come from the data.
    network : NetworkConfig, optional
        Network kinds and sizes. From a call whose series starts from p values
        of its own (an AR(p) ``scan``), ``ordered_window`` is raised to p + 1.
    args, kwargs : optional
        One call of the program with real data.
    covariates : mapping of argument → Distribution, optional
        The training design of covariate arguments (with ``args``/``kwargs``).

    Returns
    -------
    Amortizer

    Raises
    ------
    ModelError
        A program that breaks the plate-size convention, a discrete latent, a
        site coupling the instances of a plate, an unknown data site, ...

    Examples
    --------
    >>> import numpyro, numpyro.distributions as dist
    >>> import amortize as am
    >>> def model(n_group, n_obs, y=None):
    ...     mu = numpyro.sample("mu", dist.Normal(0, 1))
    ...     tau = numpyro.sample("tau", dist.HalfNormal(1))
    ...     sigma = numpyro.sample("sigma", dist.HalfNormal(1))
    ...     with numpyro.plate("group", n_group, dim=-2):
    ...         theta = numpyro.sample("theta", dist.Normal(mu, tau))
    ...         with numpyro.plate("obs", n_obs, dim=-1):
    ...             numpyro.sample("y", dist.Normal(theta, sigma), obs=y)
    >>> amortizer = am.compile(model, data=["y"], sizes={"group": (2, 50), "obs": (1, 30)})
    >>> print(amortizer.factorization)
    p(mu, tau, sigma | y) · Π_group p(theta | mu, tau, sigma, y[group])

    NumPyro's eight schools, unchanged, from the call ``(J, sigma, y=y)``:

    >>> def eight_schools(J, sigma, y=None):
    ...     mu = numpyro.sample("mu", dist.Normal(0, 5))
    ...     tau = numpyro.sample("tau", dist.HalfCauchy(5))
    ...     with numpyro.plate("J", J):
    ...         theta = numpyro.sample("theta", dist.Normal(mu, tau))
    ...         numpyro.sample("obs", dist.Normal(theta, sigma), obs=y)
    >>> import numpy as np
    >>> y = np.array([28.0, 8, -3, 7, -1, 1, 18, 12]); sigma = np.array([15.0, 10, 16, 11, 9, 11, 10, 18])
    >>> amortizer = am.compile(eight_schools, args=(8, sigma), kwargs={"y": y}, sizes={"J": (4, 16)})
    >>> print(amortizer.factorization)
    p(mu, tau | obs, sigma) · Π_J p(theta | mu, tau, obs[J], sigma[J])
    """
    if args is not None or kwargs is not None:
        program = adapt(model, args or (), kwargs, covariates=covariates, data=data, sizes=sizes)
        model, data = program, list(program.data_sites + program.covariate_sites)
        order = max((r.start for r in program.roles.values()), default=0)
        network = network or NetworkConfig()
        if order and network.ordered_window < order + 1:
            # A series the program starts from `order` values of its own is an AR(order): each step's
            # likelihood spans order + 1 steps, and the embedding's window must see them.
            network = dataclasses.replace(network, ordered_window=order + 1)
    elif covariates is not None:
        raise ModelError("covariates= describes arguments of a call; pass the call too (args=..., kwargs=...).")
    if data is None:
        raise ModelError("Name the observed sites (data=['y']), or pass one call of the program with its data "
                         "(args=..., kwargs=...) so that amortize reads them from it.")
    if sizes is None:
        raise ModelError("sizes= is missing: give the training range of every plate's size, "
                         "e.g. sizes={'group': (2, 50)}.")
    graph = build_graph(model, data, sizes)
    return Amortizer(graph, factorize(graph), network)
