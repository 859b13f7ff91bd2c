"""Summary networks, conditional flows and classifiers, and their building blocks."""
from amortize.networks.classifier import ConditionalClassifier, SequenceClassifier
from amortize.networks.flows import ConditionalFlow
from amortize.networks.mlp import MLP
from amortize.networks.summary import LevelSummary

__all__ = ["ConditionalClassifier", "ConditionalFlow", "LevelSummary", "MLP", "SequenceClassifier"]
