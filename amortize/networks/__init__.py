"""Summary networks, conditional flows and their building blocks."""
from amortize.networks.flows import ConditionalFlow
from amortize.networks.mlp import MLP
from amortize.networks.summary import LevelSummary

__all__ = ["ConditionalFlow", "LevelSummary", "MLP"]
