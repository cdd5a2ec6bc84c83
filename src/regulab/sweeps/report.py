"""A sweep's own offline report: ``<sweep dir>/report.html``, written with ``best.json``.

One self-contained page (no scripts, no network): the sweep's spec line, its best trial and
test scores, every trial as a table, and Optuna's own matplotlib plots of the study, each an
inline SVG -- the optimization history (each trial's value and the best so far), the parameter
importances (Optuna's default fANOVA estimate, drawn when at least two trials finished and the
space has a parameter that varied) and the parallel coordinates (each trial a line through its
parameter values, coloured by its value). A plot Optuna cannot draw for this study (too few
trials, a single value) is named with the reason instead. For the live view, Optuna's dashboard
reads the same study from the run store (README, "Hyperparameter sweeps").
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path
from typing import Any

import optuna

from regulab.errors import reason
from regulab.io import atomic_write
from regulab.report import esc

__all__ = ["PLOTS", "write_report", "figures"]

# (title, Optuna's matplotlib function)
PLOTS = (("Optimization history", "plot_optimization_history"),
         ("Parameter importances", "plot_param_importances"),
         ("Parallel coordinates", "plot_parallel_coordinate"))


def _svg(ax: Any) -> str:
    """The figure of ``ax`` (or of the first of an array of axes) as an SVG string; closed after."""
    import matplotlib.pyplot as plt
    first = ax.flat[0] if hasattr(ax, "flat") else ax
    fig = first.figure
    fig.set_size_inches(7.5, 4.2)
    fig.tight_layout()
    buf = io.StringIO()
    fig.savefig(buf, format="svg")
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]


def figures(study: optuna.Study) -> list[tuple[str, str | None, str | None]]:
    """``(title, svg, why not)`` of each plot of ``PLOTS`` for ``study``. Optuna's plots set
    matplotlib's ggplot style for the whole process (``plt.style.use``): inside ``rc_context``
    it is undone after them, so a study report drawn later in the process looks the same."""
    import matplotlib
    from optuna.visualization import matplotlib as vis
    out = []
    with matplotlib.rc_context():
        for title, name in PLOTS:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")     # Optuna marks these plots experimental
                    out.append((title, _svg(getattr(vis, name)(study)), None))
            except (ValueError, RuntimeError, ZeroDivisionError) as e:
                out.append((title, None, reason(e) or type(e).__name__))
    return out


def write_report(spec: Any, study: optuna.Study, sweep_dir: Path, rows: list[dict[str, Any]],
                 best: dict[str, Any] | None) -> Path:
    """Write ``sweep_dir/report.html`` for ``study`` (its trials as ``rows``, ``trial_rows``'s)
    and its ``best`` trial (None: no trial finished); returns its path."""
    keys = list(dict.fromkeys(k for r in rows for k in r["params"]))
    head = "".join(f"<th>{esc(k)}</th>" for k in ["trial", "state", spec.metric, *keys])
    body = "".join(
        "<tr>" + "".join(f"<td>{esc(v)}</td>" for v in
                         [r["number"], r["state"], "-" if r["value"] is None else f"{r['value']:.4g}",
                          *(json.dumps(r["params"].get(k)) if k in r["params"] else "-" for k in keys)])
        + "</tr>" for r in rows)
    if best is None:
        summary = "<p>No trial finished.</p>"
    else:
        tests = {k: v for k, v in (best.get("test") or {}).items() if isinstance(v, (int, float))}
        summary = (f"<p><b>Best: trial {esc(best['trial'])}</b>, {esc(spec.metric)} = "
                   f"{best['value']:.4g} on validation; test: "
                   f"{esc(', '.join(f'{k} = {v:.4g}' for k, v in tests.items()) or 'not scored')}; "
                   f"params: <code>{esc(json.dumps(best['params']))}</code>.</p>")
    plots = "".join(f"<h2>{esc(title)}</h2>" + (svg if svg is not None else
                                                f"<p>Not drawn: {esc(why)}</p>")
                    for title, svg, why in figures(study))
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>sweep {esc(spec.name)}</title>"
            "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}"
            "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px}</style>"
            f"</head><body><h1>Sweep {esc(spec.name)}</h1>"
            f"<p>{esc(len(rows))} trials, sampler {esc(spec.sampler)}, pruner {esc(spec.pruner)}, "
            f"{esc(spec.direction)} {esc(spec.metric)}.</p>{summary}{plots}"
            f"<h2>Trials</h2><table><tr>{head}</tr>{body}</table></body></html>\n")
    path = sweep_dir / "report.html"
    atomic_write(path, page)
    return path
