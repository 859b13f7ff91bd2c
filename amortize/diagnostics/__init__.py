"""Diagnostics and plots on amortizers, training histories and posteriors."""
from amortize.diagnostics.plots import plot_history, plot_intervals, plot_marginals

__all__ = ["plot_history", "plot_intervals", "plot_marginals"]
