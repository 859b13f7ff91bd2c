"""Exceptions and warnings raised by amortize.

Every error raised on user input is a subclass of :class:`AmortizeError`, and
its message names the site or plate involved, what was found, and the fix.
"""

__all__ = [
    "AmortizeError",
    "ModelError",
    "DataError",
    "TrainingError",
    "AmortizerFileError",
    "AmortizationGapWarning",
    "RefineError",
    "CertificateWarning",
]


class AmortizeError(Exception):
    """Base class of every error amortize raises on user input."""


class ModelError(AmortizeError, ValueError):
    """The program, or the arguments to :func:`amortize.compile`, cannot be amortized as written."""


class DataError(AmortizeError, ValueError):
    """Data passed to :meth:`Amortizer.sample` does not fit the compiled program."""


class TrainingError(AmortizeError, ValueError, RuntimeError):
    """Training cannot start or go on (a non-positive budget; a loss that stays non-finite)."""


class AmortizerFileError(AmortizeError, OSError):
    """A saved amortizer is missing, corrupted, or does not match the program."""


class AmortizationGapWarning(UserWarning):
    """Inference is asked outside the range the networks were trained on."""


class RefineError(AmortizeError, ValueError):
    """A posterior cannot be certified or refined as asked (no density, too few draws, unknown method)."""


class CertificateWarning(UserWarning):
    """The program's own density does not confirm the amortized posterior (Pareto k̂ above 0.7)."""


class ModelWarning(UserWarning):
    """The program compiles, but amortize runs it differently from how its author may expect (e.g. an
    argument that is never passed and keeps its default)."""
