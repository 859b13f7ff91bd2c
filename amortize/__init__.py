"""amortize: NumPyro programs in, amortized posteriors out.

Write a generative model as a plain NumPyro program; :func:`compile` derives
how its posterior factorizes over plates, builds summary networks and
normalizing flows, and :meth:`Amortizer.fit` trains them on simulations from
the program. Afterwards :meth:`Amortizer.sample` returns the posterior of any
data set in milliseconds as an ArviZ ``DataTree`` (InferenceData schema).
"""

from amortize._version import __version__  # noqa: F401

from amortize.amortizer import Amortizer, compile  # noqa: E402
from amortize.build import NetworkConfig  # noqa: E402
from amortize.comparison import ModelComparison, compare  # noqa: E402
from amortize.design import Design  # noqa: E402
from amortize.devices import use_cpu_cores  # noqa: E402
from amortize.errors import (  # noqa: E402
    AmortizationGapWarning,
    AmortizeError,
    AmortizerFileError,
    CertificateWarning,
    DataError,
    ModelError,
    ModelWarning,
    RefineError,
    TrainingError,
)
from amortize.refine import Certificate, certificate  # noqa: E402
from amortize.refine.consistency import SelfConsistency  # noqa: E402
from amortize.loading import load  # noqa: E402
from amortize.loop import TrainConfig  # noqa: E402
from amortize import diagnostics, models, reference  # noqa: E402

__all__ = [
    "Amortizer",
    "AmortizationGapWarning",
    "AmortizeError",
    "AmortizerFileError",
    "Certificate",
    "CertificateWarning",
    "DataError",
    "Design",
    "ModelComparison",
    "ModelError",
    "ModelWarning",
    "NetworkConfig",
    "RefineError",
    "SelfConsistency",
    "TrainConfig",
    "TrainingError",
    "certificate",
    "compare",
    "compile",
    "diagnostics",
    "load",
    "models",
    "reference",
    "use_cpu_cores",
]
