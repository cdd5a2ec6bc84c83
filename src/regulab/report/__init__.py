"""A study's HTML report: ``render_report(results, path)`` writes one self-contained page
(inline CSS and SVG plots, nothing fetched) from a study's ``results.json`` dict.

``render_html(results)`` returns the page as a string; ``plot_plan(results)`` lists its figures
(ids and captions) without drawing them. The report knows no study kind: the caller passes the
kind's figures and answer (``regulab.studies.report`` does, for every kind).
"""

from regulab.report.html import MISSING, Plot, esc, fmt, plot_plan, render_html, render_report

__all__ = ["render_report", "render_html", "plot_plan", "Plot", "esc", "fmt", "MISSING"]
