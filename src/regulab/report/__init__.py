"""A study's HTML report: ``render_report(results, path)`` writes one self-contained page
(inline CSS and SVG plots, nothing fetched) from a study's ``results.json`` dict.

``plot_plan(results)`` lists the figures the page will hold (ids and captions) without
drawing them; ``render_html(results)`` returns the page as a string.
"""

from regulab.report.html import Plot, plot_plan, render_html, render_report

__all__ = ["render_report", "render_html", "plot_plan", "Plot"]
