"""A study's report: the page of ``regulab.report`` with its kind's figures and answer.

The report itself knows no kind; here the study's kind (``KINDS[results["kind"]]``) gives the
figures that follow the summary chart and the training curves, and the answer sentence where
it has one. A results dict of a kind this version does not know gets the generic page.
``run_study`` and ``regulab report DIR`` write the report through ``render_report``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from regulab import report
from regulab.studies.kinds import KINDS, Kind

__all__ = ["render_report", "render_html", "plot_plan"]


def _kind(results: dict[str, Any]) -> Kind:
    return KINDS.get(results.get("kind")) or Kind()


def plot_plan(results: dict[str, Any]) -> list[report.Plot]:
    """The report's figures (ids and captions, not drawn): the generic ones, then the kind's."""
    return report.plot_plan(results, _kind(results).figures(results))


def render_html(results: dict[str, Any]) -> str:
    """The report page of a study's ``results`` (the ``results.json`` dict) as a string."""
    kind = _kind(results)
    return report.render_html(results, kind.figures(results), kind.answer(results))


def render_report(results: dict[str, Any], path: str | Path) -> Path:
    """Write the report of a study's ``results`` to ``path`` atomically; return the path."""
    kind = _kind(results)
    return report.render_report(results, path, kind.figures(results), kind.answer(results))
