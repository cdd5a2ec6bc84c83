"""The report's text pieces: study strings escaped for HTML, numbers to 3 decimals, and the
dash that stands for a missing value (JSON null)."""

from __future__ import annotations

import math
from html import escape
from typing import Any

__all__ = ["MISSING", "esc", "fmt"]

MISSING = "–"


def esc(x: Any) -> str:
    """``x`` as text safe inside HTML (quotes escaped too)."""
    return escape(str(x), quote=True)


def fmt(x: Any, signed: bool = False) -> str:
    """A number with 3 decimals (``signed``: with its sign, a true minus); ``MISSING`` when
    ``x`` is not a finite number."""
    if not isinstance(x, (int, float)) or isinstance(x, bool) or not math.isfinite(x):
        return MISSING
    return f"{x:+.3f}".replace("-", "−") if signed else f"{x:.3f}"
