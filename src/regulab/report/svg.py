"""How every report plot is drawn and turned into inline SVG; the plot modules share these.

Every figure is a ``matplotlib.figure.Figure`` (never pyplot, so no global figure manager and
no backend switch) drawn inside ``matplotlib.rc_context(RC)`` (so ``rcParams`` are untouched
outside it). The SVG keeps text as text (``svg.fonttype = none``), hashes its ids with a fixed
salt and carries no date, so the same results give the same bytes; its XML prolog and metadata
are stripped and its ids prefixed with the plot's name, so several SVGs can share one page.
Labels are plain text: matplotlib escapes ``<``, ``&`` and quotes itself, and ``$`` is escaped
here (``plain``) so that no label is parsed as mathtext.
"""

from __future__ import annotations

import io
import math
import re
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import matplotlib
from matplotlib.figure import Figure

__all__ = ["RC", "WIDTH", "figure", "to_svg", "shared_legend", "plain", "variant_label", "num"]

RC = {"svg.fonttype": "none", "svg.hashsalt": "regulab", "font.family": "sans-serif",
      "font.size": 9, "axes.titlesize": 9, "axes.labelsize": 9, "legend.fontsize": 8,
      "xtick.labelsize": 8, "ytick.labelsize": 8, "axes.grid": True, "grid.alpha": 0.3,
      "axes.spines.top": False, "axes.spines.right": False, "legend.frameon": False}
WIDTH = 10.0          # inches: the page shows a figure at most at this size (96 px per inch)


def num(x: Any) -> float:
    """``x`` as a float; nan when it is not a number (None, a string, a bool)."""
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else math.nan


def plain(text: Any, limit: int = 40) -> str:
    """Plain text for matplotlib: one line, at most ``limit`` characters, ``$`` escaped (no
    mathtext), no leading underscore (which would hide it from legends)."""
    s = " ".join(str(text).split())
    s = s if len(s) <= limit else s[: limit - 1] + "…"
    s = s.replace("$", r"\$")
    return " " + s if s.startswith("_") else s


def variant_label(v: dict[str, Any], limit: int = 40) -> str:
    """A variant's label (or name) as ``plain`` text."""
    return plain(v.get("label") or v.get("name") or "?", limit)


@contextmanager
def figure(width: float, height: float) -> Iterator[Figure]:
    """A new figure of ``width`` x ``height`` inches under the report's ``RC``."""
    with matplotlib.rc_context(RC), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)     # nan means and empty log axes
        yield Figure(figsize=(width, height), layout="constrained")


def shared_legend(fig: Figure, axes: Iterable[Any]) -> None:
    """One legend above the panels of ``fig``, each label of ``axes`` once (small multiples)."""
    seen: dict[str, Any] = {}
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(lab, h)
    fig.legend(list(seen.values()), list(seen), loc="outside upper center", ncols=max(len(seen), 1))


def _tag(m: re.Match, prefix: str) -> str:
    t = m.group(0)
    t = re.sub(r'(\sid=")', rf"\g<1>{prefix}-", t)
    t = t.replace("url(#", f"url(#{prefix}-")
    return re.sub(r'(href=")#', rf"\g<1>#{prefix}-", t)


def to_svg(fig: Figure, prefix: str) -> str:
    """The figure as an inline ``<svg>``: no prolog or metadata, ids prefixed with ``prefix``,
    a ``max-width`` of its natural size (the page scales it down, never up)."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None})
    svg = buf.getvalue()
    svg = svg[svg.index("<svg"):]
    svg = re.sub(r"<metadata>.*?</metadata>\s*", "", svg, flags=re.S)
    svg = re.sub(r"<[^>]+>", lambda m: _tag(m, prefix), svg)    # tags only: text is escaped
    px = round(fig.get_figwidth() * 96)
    return svg.replace("<svg ", f'<svg role="img" style="max-width:{px}px" ', 1).strip()
