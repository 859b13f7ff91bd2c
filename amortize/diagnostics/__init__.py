"""Validation of amortized posteriors (SBC, recovery, PPC, pooling, LOGO-CV) and classifiers (ECE).

Every function works on ArviZ DataTrees in amortize's layout (from
:meth:`Amortizer.sample` or :func:`amortize.reference.nuts`), and every plot
is a function that writes a PNG.
"""
from amortize.diagnostics.calibration import Calibration, calibrate, ecdf_band
from amortize.diagnostics.classification import (
    ClassificationCheck,
    calibration_curve,
    check_indicators,
    check_classification,
    confusion_matrix,
    expected_calibration_error,
    plot_calibration,
    plot_confusion,
)
from amortize.diagnostics.validation_figures import (
    plot_comparison,
    plot_logo,
    plot_pooling,
    plot_ppc,
    plot_recovery,
    plot_sbc,
    plot_series,
    series_figure_data,
)
from amortize.diagnostics.logo import LOGOWarning, elpd_difference, logo
from amortize.diagnostics.posterior_plots import plot_history, plot_intervals, plot_marginals
from amortize.diagnostics.predictive import log_likelihood, pooling_factors, posterior_predictive
from amortize.diagnostics.report import ValidationReport, validate

__all__ = [
    "Calibration",
    "ClassificationCheck",
    "calibration_curve",
    "check_indicators",
    "check_classification",
    "confusion_matrix",
    "expected_calibration_error",
    "plot_calibration",
    "plot_confusion",
    "LOGOWarning",
    "ValidationReport",
    "calibrate",
    "ecdf_band",
    "elpd_difference",
    "log_likelihood",
    "logo",
    "plot_comparison",
    "plot_history",
    "plot_intervals",
    "plot_logo",
    "plot_marginals",
    "plot_pooling",
    "plot_ppc",
    "plot_recovery",
    "plot_sbc",
    "plot_series",
    "pooling_factors",
    "posterior_predictive",
    "series_figure_data",
    "validate",
]
