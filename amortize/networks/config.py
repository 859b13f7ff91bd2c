"""Sizes and kinds of the networks: :class:`NetworkConfig` (defaults suit most models on a CPU)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from amortize.networks.mlp import ACTIVATIONS

__all__ = ["AUTO_QUANTILES", "NetworkConfig"]


#: Quantiles per data feature that ``NetworkConfig(quantiles=None)`` gives the levels where independent
#: mixture indicators live.
AUTO_QUANTILES = 16


@dataclass(frozen=True, kw_only=True)
class NetworkConfig:
    """Sizes and kinds of the networks (defaults suit most models on a CPU).

    Parameters
    ----------
    summary : {"deepset", "set_transformer"}
        Pooling over the instances of each plate.
    summary_width : int
        Hidden width of the summary networks.
    summary_depth : int
        Hidden layers of each summary MLP.
    embed_dim : int
        Width of an instance embedding (the data summary a local factor sees).
    pooled_dim : int
        Width of a plate's pooled summary, handed to the enclosing level.
    attention_heads : int
        Heads of the set transformer.
    flow : {"spline", "affine"}
        Element-wise bijector of the coupling layers.
    flow_layers : int
        Coupling layers per flow.
    flow_hidden : int
        Hidden width of each coupling conditioner.
    flow_depth : int
        Hidden layers of each conditioner after the context projection (0 is
        fastest: one hidden layer in all, shared with the context projection).
    spline_bins : int
    spline_bound : float
        Splines act on [-bound, bound] in standardized units (linear outside).
    activation : {"gelu", "silu", "relu", "tanh"}
    ordered_window : int
        Steps each embedding of an ordered (time) level sees: the current
        step and the ``ordered_window - 1`` steps before it, a causal
        convolution of that width, followed by the level's masked pooling. 2
        suits first-order (Markov) series such as an AR(1) response, whose
        likelihood is a product over consecutive pairs; an AR(p) response
        needs at least p + 1.
    extremes : bool
        Summaries also pool extremes: the maximum of the instance embeddings
        and the minimum and maximum of each raw input feature (off by
        default). Turn it on when a parameter bounds the data, e.g. a
        diffusion model's non-decision time, which lies below every response
        time of its group: a mean-pooled summary can only approximate a
        minimum.
    quantiles : int or None
        Summaries also pass this many quantiles of each of a level's own
        data features: where the data split into clusters (a mixture's
        component locations and weights) shows in the empirical quantile
        function, which a mean-pooled embedding can only approximate with
        learned bump functions. ``None`` (the default): ``AUTO_QUANTILES``
        (16) at the levels where independent mixture indicators live, none
        elsewhere (hidden Markov chains too: there they cost a fifth of the
        steps and gain nothing, docs/mixtures.md); 0: none anywhere; N: N at
        every level with data. Measured in
        docs/mixtures.md (a 1-D mixture: 2.6 nats sharper at equal steps;
        Old Faithful: from 12 to 8 NUTS sds off).
    local_flow, local_flow_hidden, local_flow_depth : optional
        Kind, width and depth of the flows of local factors (those inside a
        plate), when they should differ from the global ones (default: the
        same). Sampling cost is dominated by local flows (one pass per draw
        and instance), so a lean local flow buys latency where it costs least.
    scalar_local_hidden : int or None
        Largest width of the flows of one-dimensional local factors (a scalar
        group effect) where ``local_flow_hidden`` is not given (narrower
        ``flow_hidden`` stays as it is): such a flow is one
        spline whose 25 parameters depend on the context alone, and 32 units
        learn it as well as 64 (measured at equal steps: conjugate two-level
        model, worst mean error 0.115 vs 0.147 exact sds; hierarchical
        Poisson, local relative ESS 0.95 vs 0.96) at half the latency (1000
        draws of 50 groups: 43 → 12 ms jitted). ``None``: ``flow_hidden``, as
        before (archives saved before this setting existed load with it).
    """

    summary: str = "deepset"
    summary_width: int = 64
    summary_depth: int = 2
    embed_dim: int = 32
    pooled_dim: int = 32
    attention_heads: int = 4
    flow: str = "spline"
    flow_layers: int = 4
    flow_hidden: int = 64
    flow_depth: int = 1
    spline_bins: int = 8
    spline_bound: float = 5.0
    activation: str = "silu"
    ordered_window: int = 2
    extremes: bool = False
    quantiles: int | None = None
    local_flow: str | None = None
    local_flow_hidden: int | None = None
    local_flow_depth: int | None = None
    scalar_local_hidden: int | None = 32

    def __post_init__(self):
        if self.summary not in ("deepset", "set_transformer"):
            raise ValueError(f"NetworkConfig.summary={self.summary!r}; use 'deepset' or 'set_transformer'.")
        for name in ("flow", "local_flow"):
            value = getattr(self, name)
            if value not in ("spline", "affine") and not (name == "local_flow" and value is None):
                raise ValueError(f"NetworkConfig.{name}={value!r}; use 'spline' or 'affine'.")
        if self.local_flow_hidden is not None and self.local_flow_hidden < 1:
            raise ValueError(f"NetworkConfig.local_flow_hidden must be positive; got {self.local_flow_hidden}.")
        if self.scalar_local_hidden is not None and self.scalar_local_hidden < 1:
            raise ValueError(f"NetworkConfig.scalar_local_hidden must be positive; got {self.scalar_local_hidden}.")
        if self.local_flow_depth is not None and self.local_flow_depth < 0:
            raise ValueError(f"NetworkConfig.local_flow_depth must be >= 0; got {self.local_flow_depth}.")
        if self.quantiles is not None and (not isinstance(self.quantiles, int) or self.quantiles < 0):
            raise ValueError(f"NetworkConfig.quantiles is a number of quantiles, 0 or more, or None (automatic); "
                             f"got {self.quantiles!r}.")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"NetworkConfig.activation={self.activation!r}; use one of {sorted(ACTIVATIONS)}.")
        for name in ("summary_width", "summary_depth", "embed_dim", "pooled_dim",
                     "attention_heads", "flow_layers", "flow_hidden", "spline_bins"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"NetworkConfig.{name} must be a positive integer; got {getattr(self, name)}.")
        if self.summary == "set_transformer" and self.summary_width % self.attention_heads:
            raise ValueError(
                f"NetworkConfig.summary_width={self.summary_width} must be divisible by "
                f"attention_heads={self.attention_heads}."
            )
        if self.flow_depth < 0:
            raise ValueError(f"NetworkConfig.flow_depth must be >= 0; got {self.flow_depth}.")
        if int(self.ordered_window) < 2:
            raise ValueError(f"NetworkConfig.ordered_window must be at least 2 (the current step and its "
                             f"predecessor); got {self.ordered_window}.")
        if self.spline_bound <= 0:
            raise ValueError(f"NetworkConfig.spline_bound must be positive; got {self.spline_bound}.")

    def to_dict(self) -> dict:
        return asdict(self)

    def flow_settings(self, local: bool, dim: int | None = None) -> tuple[str, int, int]:
        """(kind, hidden, depth) of a global (``local=False``) or local factor's flow of ``dim`` dimensions."""
        if not local:
            return self.flow, self.flow_hidden, self.flow_depth
        hidden = self.local_flow_hidden
        if hidden is None:
            hidden = self.flow_hidden
            if dim == 1 and self.scalar_local_hidden:
                hidden = min(hidden, self.scalar_local_hidden)
        return (self.local_flow or self.flow, hidden,
                self.flow_depth if self.local_flow_depth is None else self.local_flow_depth)

    @classmethod
    def fast(cls, **overrides) -> "NetworkConfig":
        """Latency-first preset: lean affine flows for local factors, splines for global ones.

        Sampling a data set runs the local flow once per draw and instance
        (50,000 passes for 1000 draws of 50 groups) and the global flow once per
        draw, so the local flows set the latency: ``local_flow="affine",
        local_flow_hidden=32, local_flow_depth=0``, and ReLU activations (no
        exponentials on those 50,000 passes). See docs/performance.md for the
        measured figures. Affine coupling is less flexible than splines; check
        the local posteriors (SBC, :mod:`amortize.diagnostics`) before relying
        on it for strongly non-Gaussian group parameters.
        """
        return cls(**{"local_flow": "affine", "local_flow_hidden": 32, "local_flow_depth": 0,
                      "activation": "relu", **overrides})
