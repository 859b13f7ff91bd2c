"""Matplotlib for every diagnostic figure: the non-interactive ``Agg`` backend (plots work on a
machine with no screen) and one way to write a PNG."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

__all__ = ["plt", "save"]


def save(fig, path):
    """Write ``fig`` to the PNG file ``path`` (its folder created) when given; return the figure."""
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120, bbox_inches="tight")
    return fig
