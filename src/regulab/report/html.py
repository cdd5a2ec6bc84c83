"""The study report: one self-contained HTML page (inline CSS and SVG; no script, nothing
fetched), written atomically.

Sections, in order: the question and its answer (best variant on validation, its test score
and change against the baseline; or the answer the caller gives); the summary table (rank,
train/val/test score mean ± std, gap = train - val, the fraction of the baseline's gap closed,
change in test score against the baseline with its 95% interval, epochs kept and run, verdict;
a tuned variant's chosen value beside its label), the diagnosis rule and each variant's
advice; the plots (``plot_plan``: the summary chart, the training curves, the best variant's
confusion matrix, the tuned strengths' curves and the combination search's trials where the
results hold them, then the figures the caller gives); the search's best trials; the
combination; each variant's resolved config and the machine (``appendix``). Every string that
comes from the study (names, labels, description, overrides, config values, machine) goes
through ``html.escape(quote=True)`` (``esc``, ``regulab.report.text``); a missing value (JSON
null) shows as "–" (``MISSING``).

The page knows no study kind: ``regulab.studies.report`` passes each kind's figures and
answer (``regulab.studies.kinds``), built with ``Plot``, ``esc`` and ``fmt``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from regulab.io import atomic_write
from regulab.report import plots, selection
from regulab.report.appendix import configs_section, machine_section
from regulab.report.plots import by_rank, score_key, score_name
from regulab.report.selection import search_table, value_text
from regulab.report.text import MISSING, esc, fmt

__all__ = ["render_report", "render_html", "plot_plan", "Plot", "esc", "fmt", "MISSING"]

CSS = """
body{margin:0;background:#eef0f3;color:#1d2330;
 font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:1100px;margin:0 auto;padding:20px 28px 48px;background:#fff;box-sizing:border-box}
h1{font-size:1.65rem;margin:.3em 0 .2em;overflow-wrap:anywhere}
h2{font-size:1.2rem;margin:1.8em 0 .5em;border-bottom:1px solid #e3e6eb;padding-bottom:.2em}
.kind{font-size:.8rem;font-weight:600;background:#e8effc;color:#2e5aac;padding:2px 8px;
 border-radius:10px;vertical-align:middle;white-space:nowrap}
.answer{background:#f3f7ff;border-left:4px solid #2e6fd8;padding:10px 14px}
.meta{color:#555;font-size:.9rem}
.scroll{overflow-x:auto}
table{border-collapse:collapse;font-size:.85rem;width:100%}
th,td{padding:5px 6px;border-bottom:1px solid #e3e6eb;text-align:left;vertical-align:top}
th{background:#f6f7f9}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.variant{min-width:9rem;max-width:18rem;overflow-wrap:anywhere}
td.advice{min-width:9rem;max-width:22rem;color:#444}
.name{color:#667085;font-size:.8rem}
.tag{font-size:.72rem;background:#eef0f3;border-radius:8px;padding:0 6px;margin-left:4px;
 white-space:nowrap;overflow-wrap:normal;display:inline-block}
.sig{font-weight:700}
.overfit{color:#b42318}.underfit{color:#b54708}.good{color:#067647}
figure.plot{margin:22px 0}
figure.plot svg{display:block;width:100%;height:auto;margin:0 auto}
figcaption{font-size:.88rem;color:#475467;margin:6px auto 0;max-width:60rem}
details{margin:4px 0;border:1px solid #e3e6eb;border-radius:4px;padding:4px 10px}
summary{cursor:pointer;overflow-wrap:anywhere}
pre{overflow-x:auto;background:#f6f7f9;padding:10px;font-size:.8rem;margin:6px 0}
"""


class Plot(NamedTuple):
    """One figure of the report: its id, its caption (HTML, already escaped) and how to draw
    it (a function returning the SVG)."""
    id: str
    caption: str
    draw: Callable[[], str]


def render_report(results: dict[str, Any], path: str | Path, figures: Sequence[Plot] = (),
                  answer: str | None = None) -> Path:
    """Write the report of a study's ``results`` (the ``results.json`` dict) to ``path``, a
    single self-contained HTML file, atomically (a temp file in the same directory, then
    ``os.replace``); return the path. ``figures`` and ``answer`` as in ``render_html``."""
    path = Path(path)
    atomic_write(path, render_html(results, figures, answer))
    return path


def render_html(results: dict[str, Any], figures: Sequence[Plot] = (),
                answer: str | None = None) -> str:
    """The report page as a string (see the module docstring for its sections): ``figures``
    follow the summary chart and the training curves; ``answer`` (HTML, already escaped), when
    given, replaces the best-variant sentence at the top."""
    name = esc(results.get("name") or "study")
    body = [f'<h1>{name} <span class="kind">{esc(results.get("kind") or "?")}</span></h1>',
            _intro(results, answer), '<h2 id="summary">Summary</h2>', _table(results)]
    drawn = [f'<figure class="plot" id="plot-{p.id}">\n{p.draw()}\n<figcaption>{p.caption}'
             "</figcaption>\n</figure>" for p in plot_plan(results, figures)]
    if drawn:
        body += ['<h2 id="plots">Plots</h2>', *drawn]
    body += [_forward(results), search_table(results), _combination(results), configs_section(results),
             machine_section(results)]
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{name} · regulab study report</title>\n<style>{CSS}</style>\n</head>\n"
            "<body>\n<main>\n" + "\n".join(b for b in body if b) + "\n</main>\n</body>\n</html>\n")


def plot_plan(results: dict[str, Any], figures: Sequence[Plot] = ()) -> list[Plot]:
    """The report's figures, in order: the summary chart when there is at least one variant;
    the training curves when any run has a history; the confusion matrix, the tuned-strength
    curves and the search's trials when ``results`` holds them (``confusion``, a variant's
    ``tuned``, ``search``); then ``figures``, those of the study's kind
    (``regulab.studies.kinds``), as given."""
    vs, n = results.get("variants") or [], len(results.get("variants") or [])
    score = score_name(results)
    out: list[Plot] = []
    if vs:
        base = next((v for v in vs if v["name"] == results.get("baseline")), None)
        line = f"; dashed line: the baseline, {esc(base.get('label'))}" if base else ""
        right = (f" Right: the change in test {score} against the baseline with its 95% "
                 "interval over seeds (filled: the interval excludes 0)."
                 if any(isinstance(v.get("delta_test_ci95"), list) for v in vs) else "")
        out.append(Plot("summary", f"Test {score} of each variant, mean ± std over runs (error "
                        f"bars), best ranked on top{line}. The axis is zoomed to the scores."
                        + right,
                        lambda: plots.summary_chart(results)))
    if any(r.get("history") for v in vs for r in v.get("runs") or []):
        cut = f" Showing the {plots.MAX_PANELS} best ranked of {n} variants." \
            if n > plots.MAX_PANELS else ""
        clean = (" Dashed blue: the clean train score, the train split scored in eval mode after "
                 "each epoch as validation is." if plots.has_clean_train(results) else
                 " <code>train.eval_train = true</code> logs a clean train score per epoch.")
        out.append(Plot("curves", f"Training curves: train and validation {score} per epoch, "
                        "mean over runs with a ± std band (thin lines: runs of unequal length); "
                        "dashed vertical line: the mean best epoch where early stopping cut "
                        f"training. The train {score} is measured during training, with "
                        "regularization on (dropout, noise and augmentation active) and averaged "
                        "over the epoch's batches, so it can sit below validation (the table's "
                        f"train {score} is scored once after training, in eval mode).{clean}{cut}",
                        lambda: plots.training_curves(results)))
    return out + _choices(results) + list(figures)


def _choices(results: dict[str, Any]) -> list[Plot]:
    """The confusion matrix, the tuned strengths and the search, where ``results`` has them."""
    out, score = [], score_name(results)
    c = results.get("confusion")
    if isinstance(c, dict) and c.get("matrix") and len(c.get("classes") or []) == len(c["matrix"]):
        v = _variant(results, c.get("variant")) or {}
        which = "the best variant, " if c.get("variant") == results.get("best") else ""
        runs = c.get("runs")
        many = (f" (counts not printed above {plots.MAX_CELL_TEXT} classes)"
                if len(c["classes"]) > plots.MAX_CELL_TEXT else "")
        out.append(Plot("confusion", f"Test confusion matrix of {which}<strong>"
                        f"{esc(v.get('label') or c.get('variant'))}</strong>, summed over "
                        f"{esc(runs)} run{'s' * (runs != 1)}: rows are the true classes, columns "
                        "the predicted ones; each cell gives its count, its colour the share of its "
                        f"row (the diagonal: each class's recall){many}.",
                        lambda: plots.confusion_chart(results)))
    tuned = selection.tuned_variants(results)
    if tuned:
        cut = (f" Showing the {selection.MAX_TUNED} best ranked of {len(tuned)} tuned variants."
               if len(tuned) > selection.MAX_TUNED else "")
        out.append(Plot("tuned", f"Tuned strengths: each tuned variant's validation {score} "
                        f"(mean ± std over seeds) and train {score} (dashed) at each value tried; "
                        "the star marks the value chosen, named in each panel's title. Each "
                        "strength was chosen on validation only; the test split was scored once, "
                        f"for the chosen value.{cut}", lambda: selection.tuned_curves(results)))
    search = results.get("search")
    if isinstance(search, dict) and search.get("trials"):
        keys = ", ".join(f"<code>{esc(k)}</code>" for k in search.get("keys") or []) or MISSING
        out.append(Plot("search", f"Combination search ({esc(search.get('method') or '?')}) over "
                        f"{keys}: each of the {len(search['trials'])} trials' validation score "
                        f"(<code>{esc(search.get('metric') or 'val_' + score_key(results))}</code>) "
                        "by trial number, the best so far as a line, the best trial starred. The "
                        "search looked at validation only; the test split chose nothing.",
                        lambda: selection.search_trials(results)))
    return out


# --- pieces ---------------------------------------------------------------------------------

def _ms(stat: Any) -> str:
    """'mean ± std' with 3 decimals; '–' when the mean is missing."""
    stat = stat or {}
    m, s = fmt(stat.get("mean")), fmt(stat.get("std"))
    return m if m == MISSING or s == MISSING else f"{m} ± {s}"


def _duration(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)) or not math.isfinite(seconds):
        return MISSING
    s = round(seconds)
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    return f"{s // 60} min {s % 60:02d} s" if s >= 60 else f"{seconds:.1f} s"


def _variant(results: dict[str, Any], name: Any) -> dict[str, Any] | None:
    return next((v for v in results.get("variants") or [] if v["name"] == name), None)


def _answer(results: dict[str, Any]) -> str:
    vs, score = results.get("variants") or [], score_key(results)
    if not vs:
        return "This study trains no variants and holds no measurements."
    best = _variant(results, results.get("best")) or by_rank(vs)[0]
    base = _variant(results, results.get("baseline"))
    out = (f"Best on validation: <strong>{esc(best.get('label'))}</strong> (validation "
           f"{_ms(best['stats'].get(f'val_{score}'))}, test {_ms(best['stats'].get(f'test_{score}'))}")
    if base is best:
        out += "); it is the baseline: no variant beats it on validation"
    elif base is not None:
        d = fmt(best.get("delta_test"), signed=True)
        label = str(base.get("label") or base.get("name") or "")
        named = esc(label) if label.lower().startswith("baseline") else f"the baseline {esc(label)}"
        out += f", {d} against {named}{_ci_text(best)})"
    else:
        out += ")"
    return out + f". Verdict: {esc(best.get('verdict') or MISSING)}."


def _ci(v: dict[str, Any]) -> str:
    """'[lo, hi]' of the test change's 95% interval; '' when there is none."""
    ci = v.get("delta_test_ci95")
    return f"[{fmt(ci[0], signed=True)}, {fmt(ci[1], signed=True)}]" if isinstance(ci, list) else ""


def _no_width(v: dict[str, Any]) -> bool:
    """Whether the test change's interval is a point: every seed gave the same change."""
    ci = v.get("delta_test_ci95")
    return isinstance(ci, list) and fmt(ci[0]) != MISSING and ci[0] == ci[1]


def _ci_text(v: dict[str, Any]) -> str:
    """The interval in words: which test, how wide with the seeds used, how many would halve
    it; that there is none with fewer than 2 runs, and that one of no width measures nothing."""
    ci = v.get("delta_test_ci95")
    if not isinstance(ci, list):
        return "; no interval: fewer than 2 seeds"
    if _no_width(v):
        return (f"; identical across seeds: the interval {_ci(v)} has no width, which says "
                "nothing about other seeds")
    n = v.get("ci_n")
    seeds = f"{n} paired seeds" if isinstance(n, int) else \
        f"{n[0]} and {n[1]} runs" if isinstance(n, list) else "the seeds"
    halve = v.get("ci_seeds_to_halve")
    where = "excludes 0" if v.get("significant") else "holds 0"
    return (f"; 95% interval {_ci(v)} ({esc(v.get('ci_method') or 't')}), {where}; "
            f"{fmt(ci[1] - ci[0])} wide with {seeds}"
            + (f", {halve} seeds would halve it" if isinstance(halve, int) else ""))


def _intro(results: dict[str, Any], answer: str | None) -> str:
    seeds = ", ".join(esc(s) for s in results.get("seeds") or []) or MISSING
    runs = sum(len(v.get("runs") or []) for v in results.get("variants") or [])
    trained = results.get("runs_trained")
    runs = f"{runs} runs" + (f" ({trained} trained, with the tuning candidates and search trials)"
                             if isinstance(trained, int) and trained > runs else "")
    desc = results.get("description")
    quick = " · quick mode" if results.get("quick") else ""
    answer = _answer(results) if answer is None else answer
    return ((f"<p>{esc(desc)}</p>\n" if desc else "") + f'<p class="answer">{answer}</p>\n'
            f'<p class="meta">Seeds: {seeds} · {runs} · score: {score_name(results)} · '
            f"total time: {_duration(results.get('seconds'))}{quick}</p>")


def _table(results: dict[str, Any]) -> str:
    vs, score = by_rank(results.get("variants") or []), score_key(results)
    if not vs:
        return "<p>This study trains no variants.</p>"
    short = "R²" if score == "r2" else "acc"
    head = ["Rank", "Variant", "Params", f"Train {short}", f"Val {short}", f"Test {short}",
            "Gap (train − val)", "Gap closed", "Δ test vs baseline", "Epochs (best / run)", "Verdict"]
    rows = []
    for v in vs:
        st = v.get("stats") or {}
        tags = "".join(f'<span class="tag">{t}</span>' for t, on in
                       (("baseline", v["name"] == results.get("baseline")),
                        ("best", v["name"] == results.get("best"))) if on)
        delta = fmt(v.get("delta_test"), signed=True)
        if v.get("significant") and delta != MISSING:
            delta = f'<span class="sig" title="the 95% interval excludes 0">{delta} ✱</span>'
        if _ci(v) and delta != MISSING:
            delta += f'<br><span class="name">{_ci(v)}</span>'
            if _no_width(v):
                delta += '<br><span class="name">no width: identical across seeds</span>'
        verdict = v.get("verdict") or MISSING
        params = f"{v['params']:,}" if isinstance(v.get("params"), int) else MISSING
        cells = [f'<td class="num">{esc(v.get("rank") if v.get("rank") is not None else MISSING)}</td>',
                 f'<td class="variant">{esc(v.get("label"))}{_tuned_tag(v)}{tags}<br><span class="name">'
                 f'{esc(v["name"])}</span></td>', f'<td class="num">{params}</td>',
                 *(f'<td class="num">{_ms(st.get(k))}</td>'
                   for k in (f"train_{score}", f"val_{score}", f"test_{score}", "gap")),
                 f'<td class="num">{_closed(v)}</td>', f'<td class="num">{delta}</td>',
                 f'<td class="num">{_epochs(v)}</td>',
                 f'<td class="{esc(verdict.split()[0])}">{esc(verdict)}</td>']
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return ('<div class="scroll"><table class="summary">\n<thead><tr>'
            + "".join(f"<th>{h}</th>" for h in head) + "</tr></thead>\n<tbody>\n"
            + "\n".join(rows) + "\n</tbody></table></div>\n<p class=\"meta\">Mean ± std over "
            "runs; ranked on validation (the test set chooses nothing); under each change, its "
            "95% t interval over the seeds (paired by seed; Welch where the seeds differ); ✱: "
            "the interval excludes 0. Epochs: the epoch whose weights were kept and the epochs "
            f"trained, means over runs.{_precision(vs)}</p>\n" + _diagnosis(vs))


def _tuned_tag(v: dict[str, Any]) -> str:
    """" (tuned: 0.001)" after a tuned variant's label: the value chosen on validation."""
    t = v.get("tuned")
    if not isinstance(t, dict) or "chosen" not in t:
        return ""
    return (f' <span class="tag" title="{esc(t.get("key") or "")} chosen on validation">tuned: '
            f'{esc(value_text(t["chosen"]))}</span>')


def _epochs(v: dict[str, Any]) -> str:
    """'best / run': the mean epoch kept and the mean epochs trained (from the runs when the
    entry predates ``epochs_mean``)."""
    res = [r.get("results") or {} for r in v.get("runs") or []]
    out = []
    for key, field in (("best_epoch_mean", "best_epoch"), ("epochs_mean", "epochs_run")):
        x = v.get(key)
        if fmt(x) == MISSING:
            xs = [r[field] for r in res if fmt(r.get(field)) != MISSING]
            x = sum(xs) / len(xs) if xs else None
        out.append(MISSING if fmt(x) == MISSING else f"{x:.1f}".removesuffix(".0"))
    return MISSING if out == [MISSING, MISSING] else " / ".join(out)


def _precision(vs: list[dict[str, Any]]) -> str:
    """How wide the intervals are (the median) and how many seeds would halve them."""
    widths = sorted(v["delta_test_ci95"][1] - v["delta_test_ci95"][0] for v in vs
                    if isinstance(v.get("delta_test_ci95"), list) and not _no_width(v)
                    and fmt(v["delta_test_ci95"][1] - v["delta_test_ci95"][0]) != MISSING)
    halves = sorted(v["ci_seeds_to_halve"] for v in vs if isinstance(v.get("ci_seeds_to_halve"), int))
    runs = max((len(v.get("runs") or []) for v in vs), default=0)
    points = [esc(v.get("label")) for v in vs if _no_width(v)]
    none = (f" Identical across seeds: {', '.join(points)} changed the test score by the same "
            "amount for every seed, so the interval has no width; that measures no uncertainty, "
            "it does not remove it." if points else "")
    if not widths:
        return (" No intervals: fewer than 2 seeds." if vs and runs < 2 else "") + none
    out = (f" With {runs} runs per variant the intervals are {fmt(widths[len(widths) // 2])} "
           "wide (median)")
    return out + (f"; about {halves[len(halves) // 2]} runs would halve them." if halves else ".") + none


def _closed(v: dict[str, Any]) -> str:
    """The fraction of the baseline's gap a variant closes, as a percentage."""
    x = (v.get("fit") or {}).get("gap_closed")
    return f"{round(100 * x)}%".replace("-", "−") if fmt(x) != MISSING else MISSING


def _diagnosis(vs: list[dict[str, Any]]) -> str:
    """The rule once (bias and variance, each graded), how many variants each diagnosis fits,
    then each variant's advice, best ranked first."""
    from regulab.diagnose import BIAS_GRADES, VARIANCE_GRADES
    (b1, b2), (v1, v2) = BIAS_GRADES, VARIANCE_GRADES
    ref = next((v["fit"]["reference"] for v in vs if (v.get("fit") or {}).get("reference")), 1.0)
    rule = (f"<p>Bias = {fmt(ref)} − train score, graded low ≤ {b1} &lt; moderate ≤ {b2} &lt; "
            f"high; variance = the gap, train − validation score, graded low ≤ {v1} &lt; moderate "
            f"≤ {v2} &lt; high. <em>underfit</em>: bias above low; <em>overfit</em>: variance above "
            "low; both can hold at once. Gap closed = (baseline's gap − variant's gap) / "
            "baseline's gap.</p>")
    items = []
    for name in ("overfit", "underfit and overfit", "underfit", "good fit"):
        with_it = [v for v in vs if ((v.get("fit") or {}).get("diagnosis")
                                     or (v.get("verdict") or "").split(" (")[0]) == name]
        if with_it:
            names = ", ".join(esc(v.get("label")) for v in with_it)
            items.append(f'<li><span class="{name.split()[0]}">{name}</span>: {len(with_it)} '
                         f"variant(s): {names}.</li>")
    advice = "".join(f'<li><strong>{esc(v.get("label"))}</strong>: <span class="'
                     f'{esc((v.get("verdict") or "").split(" ")[0])}">{esc(v.get("verdict"))}'
                     f'</span>. {esc(v["advice"])}.</li>' for v in vs if v.get("advice"))
    return ('<h3 id="diagnosis">Diagnosis</h3>\n' + rule + '<ul class="diagnosis">'
            + "".join(items) + "</ul>"
            + (f'\n<h3 id="advice">Advice</h3>\n<ul class="advice">{advice}</ul>' if advice else "")
            ) if items else ""


def _forward(results: dict[str, Any]) -> str:
    """The forward step (``studies.search.forward``): the best variant alone and merged with
    each other candidate, on validation, best pair first."""
    rows = [r for r in results.get("forward") or [] if isinstance(r, dict)]
    if not rows:
        return ""
    score = esc(score_key(results))

    def label(name: Any) -> str:
        return esc((_variant(results, name) or {}).get("label") or name)

    best = label((rows[0].get("parts") or [MISSING])[0])
    body = "".join(
        f"<tr><td>{best}" + (f" + {label(r['partner'])}" if r.get("partner") else " alone")
        + f'</td><td class="num">{fmt(r.get("value"))}</td><td class="num">'
        + (MISSING if r.get("gain") is None else f"{r['gain']:+.3f}") + "</td></tr>" for r in rows)
    return (f'<h2 id="forward">What adds to {best}</h2>\n<p>Each candidate merged with the best '
            "variant on validation, at the strength chosen for it alone, over "
            f"{esc(rows[0].get('seeds', MISSING))} seeds; those that beat the best variant alone "
            f"are the combination's parts, best pair first (val_{score}; the test split chose "
            'nothing).</p>\n<div class="scroll"><table class="search">\n<thead><tr><th>Variant</th>'
            f"<th>val_{score}</th><th>Gain</th></tr></thead>\n<tbody>{body}</tbody></table></div>")


def _combination(results: dict[str, Any]) -> str:
    combo = results.get("combination")
    if not combo:
        return ""
    v = _variant(results, combo.get("name"))
    parts = [_variant(results, p) for p in combo.get("parts") or []]
    items = "".join(f"<li>{esc(p.get('label') if p else name)} <span class=\"name\">{esc(name)}"
                    "</span></li>" for p, name in zip(parts, combo.get("parts") or []))
    score = score_key(results)
    result = (f" It reached test {_ms(v['stats'].get(f'test_{score}'))} (rank "
              f"{esc(v.get('rank', MISSING))}, {esc(v.get('verdict') or MISSING)})." if v else "")
    label = esc(v.get("label") or combo.get("name")) if v else esc(combo.get("name"))
    return (f'<h2 id="combination">Combination</h2>\n<p><strong>{label}</strong> <span '
            f'class="name">{esc(combo.get("name"))}</span> merges the overrides of:</p>\n'
            f"<ul>{items}</ul>\n<p>{result}</p>")
