"""The public surface is small and explicit."""

import amortize as am


def test_public_names():
    assert sorted(am.__all__) == sorted([
        "Amortizer", "AmortizationGapWarning", "AmortizeError", "AmortizerFileError", "Certificate",
        "CertificateWarning", "DataError", "Design", "ModelComparison", "ModelError", "ModelWarning", "NetworkConfig", "RefineError", "SelfConsistency",
        "TrainConfig", "TrainingError", "certificate", "compare", "compile", "diagnostics", "load",
        "models", "reference", "use_cpu_cores",
    ])
    import types

    for name in am.__all__:
        value = getattr(am, name)
        # Every public name is a class, a function or a subpackage: nothing re-exported by accident.
        assert isinstance(value, (type, types.FunctionType, types.ModuleType)), name


def test_errors_share_one_base_class():
    for error in (am.ModelError, am.DataError, am.TrainingError, am.AmortizerFileError, am.RefineError):
        assert issubclass(error, am.AmortizeError)


def test_bundled_models_are_importable():
    from amortize.models import conjugate_normal, eight_schools, hierarchical_normal

    assert eight_schools.Y.shape == eight_schools.SIGMA.shape == (8,)
    assert callable(hierarchical_normal.model) and callable(conjugate_normal.exact_posterior)
