"""Matplotlib figures as PNG bytes on the Agg backend (no display): the one place pictures are rendered.

Training's curves (`ml.training.plots`) and screening's heat maps and enrichment curves use it; it imports
matplotlib alone, so a screen that draws pictures does not pay for the evaluation libraries.
"""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt


def png_bytes(figure: plt.Figure) -> bytes:
    """``figure`` as PNG (90 dpi, tight box), then closed, so a long process does not keep every figure."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()
