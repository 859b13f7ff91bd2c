"""``amortize.load``: read a saved file and hand it to the facade that wrote it.

The archive format lives in :mod:`amortize.persist`; each facade rebuilds
itself (:meth:`Amortizer.from_archive`, :meth:`ModelComparison.from_archive`).
This module only dispatches on the archive's format, so that neither facade
imports the other and :mod:`~amortize.persist` imports neither.
"""

from __future__ import annotations

from amortize.amortizer import Amortizer
from amortize.comparison import ModelComparison
from amortize.persist import COMPARISON_FORMAT, read_archive

__all__ = ["load"]


def load(path, model=None):
    """Load an amortizer written by :meth:`Amortizer.save` (or a comparison, by :meth:`ModelComparison.save`).

    Parameters
    ----------
    path : str or Path
    model : callable, or mapping of name → callable for a model comparison, optional
        The program(s) to attach. By default the pickled programs in the file
        are used; pass them when their module has moved. Each must compile
        to the same graph as the saved one.

    Returns
    -------
    Amortizer or ModelComparison
        Draws (or probabilities) under the same seed equal those of the saved one.

    Raises
    ------
    AmortizerFileError
        The file is missing, not an amortizer, corrupted, from an incompatible
        version, or its program does not match.
    """
    archive = read_archive(path)
    if archive.manifest["format"] == COMPARISON_FORMAT:
        return ModelComparison.from_archive(archive, model)
    return Amortizer.from_archive(archive, model)
