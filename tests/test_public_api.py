"""The public surface is small and explicit."""

import amortize as am


def test_public_names():
    assert sorted(am.__all__) == sorted([
        "Amortizer", "AmortizationGapWarning", "AmortizeError", "AmortizerFileError", "DataError",
        "ModelComparison", "ModelError", "NetworkConfig", "TrainConfig", "TrainingError", "compare", "compile",
        "diagnostics", "load",
        "models", "reference",
    ])
    for name in am.__all__:
        assert getattr(am, name) is not None


def test_errors_share_one_base_class():
    for error in (am.ModelError, am.DataError, am.TrainingError, am.AmortizerFileError):
        assert issubclass(error, am.AmortizeError)


def test_bundled_models_are_importable():
    from amortize.models import conjugate_normal, eight_schools, hierarchical_normal

    assert eight_schools.Y.shape == eight_schools.SIGMA.shape == (8,)
    assert callable(hierarchical_normal.model) and callable(conjugate_normal.exact_posterior)
