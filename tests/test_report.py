"""The study report (``regulab.report``): one well-formed, self-contained HTML file per study
kind with the expected figures, every study string escaped, missing values as "–", written
atomically and byte-for-byte reproducible."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from html import escape
from html.parser import HTMLParser

import pytest

from regulab.studies.report import plot_plan, render_report

from .conftest import REPO
from .report_fixtures import EVIL, EXPECTED_FIGURES, KINDS, fake_study

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
        "track", "wbr"}


class Page(HTMLParser):
    """Checks that tags nest and close; records each ``figure.plot`` (does it hold an svg and a
    figcaption), the table rows as cell texts, and every src/href value and id."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.seen: set[str] = set()
        self.figures: list[dict[str, bool]] = []
        self.rows: list[list[str]] = []
        self.links: list[str] = []
        self.ids: list[str] = []
        self._cell: list[str] | None = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.handle_startendtag(tag, attrs)
        if tag not in VOID:
            self.stack.append(tag)
        a = dict(attrs)
        if tag == "figure" and a.get("class") == "plot":
            self.figures.append({"svg": False, "figcaption": False})
        elif tag in ("svg", "figcaption") and "figure" in self.stack[:-1] and self.figures:
            self.figures[-1][tag] = True
        elif tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_startendtag(self, tag, attrs):
        self.seen.add(tag)
        for k, v in attrs:
            if k in ("src", "href") or k.endswith(":href"):
                self.links.append(v or "")
            if k == "id":
                self.ids.append(v or "")

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes <{self.stack[-1] if self.stack else None}>")
            return
        self.stack.pop()
        if tag in ("td", "th") and self._cell is not None and self.rows:
            self.rows[-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


@pytest.fixture(scope="module", params=KINDS)
def report(request, tmp_path_factory):
    """(kind, results, path, text) of each kind's report, rendered once for the module."""
    results = fake_study(request.param)
    path = render_report(results, tmp_path_factory.mktemp(request.param) / "report.html")
    return request.param, results, path, path.read_text(encoding="utf-8")


def test_report_is_well_formed_html(report):
    kind, _, path, text = report
    assert path.name == "report.html" and path.is_file()
    assert text.startswith("<!DOCTYPE html>")
    page = Page(text)
    assert not page.errors and not page.stack, (page.errors, page.stack)
    assert {"html", "head", "meta", "title", "style", "body", "main", "h1", "table"} <= page.seen
    assert len(page.ids) == len(set(page.ids)), "ids collide between inline SVGs"


def test_report_has_the_expected_figures(report):
    kind, results, _, text = report
    page = Page(text)
    assert len(page.figures) == EXPECTED_FIGURES[kind] == len(plot_plan(results))
    assert text.count('<figure class="plot"') == EXPECTED_FIGURES[kind]
    assert all(f["svg"] and f["figcaption"] for f in page.figures), page.figures
    assert "<?xml" not in text and "<!DOCTYPE svg" not in text


def test_report_fetches_nothing(report):
    _, _, _, text = report
    page = Page(text)
    assert all(link.startswith("#") for link in page.links), page.links   # in-page refs only
    assert not {"script", "link", "img", "iframe", "object"} & page.seen
    assert "@import" not in text and "url(http" not in text
    rest = re.sub(r'\sxmlns(:\w+)?="[^"]*"', "", text)     # namespaces are names, not fetches
    assert "http://" not in rest and "https://" not in rest


def test_study_strings_are_escaped(report):
    kind, results, _, text = report
    assert "<script" not in text.lower() and EVIL not in text
    assert text.count("alert(1)") == text.count("&lt;script&gt;alert(1)")
    assert "&lt;b&gt;bold&lt;/b&gt;" in text and "<b>" not in text
    assert "Fake CPU &lt;x86&gt; &amp; co" in text
    if results["variants"]:
        assert escape(EVIL, quote=True) in text                 # table, configs
        svg = "".join(re.findall(r"<svg.*?</svg>", text, flags=re.S))
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in svg   # the plots' own labels
        assert "<script" not in svg


def test_missing_values_render_as_a_dash(tmp_path):
    results = fake_study("compare")
    v = results["variants"][2]
    v["stats"]["test_acc"] = {"mean": None, "std": None}
    v["stats"]["gap"] = {"mean": 0.1, "std": None}
    v.update(delta_test=None, rank=None, verdict=None, params=None)
    results["machine"]["cpu"] = None
    results["seconds"] = None
    text = render_report(results, tmp_path / "report.html").read_text(encoding="utf-8")
    rows = Page(text).rows
    head = rows[0]
    row = next(r for r in rows if len(r) == len(head) and v["name"] in r[1])
    cell = dict(zip(head, row))
    assert cell["Rank"] == cell["Params"] == cell["Test acc"] == "–"
    assert cell["Δ test vs baseline"] == cell["Verdict"] == "–"
    assert cell["Gap (train − val)"] == "0.100"
    assert ["cpu", "–"] in rows
    assert "total time: –" in text


def test_render_is_atomic(tmp_path, monkeypatch):
    checkpoint = importlib.import_module("regulab.io")
    path = tmp_path / "report.html"
    path.write_text("old")
    render_report(fake_study("compare", n_variants=2, seeds=1), path)
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]
    assert path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")

    def crash(*args):
        raise OSError("disk full")
    path.write_text("old")
    monkeypatch.setattr(checkpoint.os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        render_report(fake_study("compare", n_variants=2, seeds=1), path)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


@pytest.mark.parametrize("kind", ["compare", "kfold"])
def test_render_is_deterministic(kind, tmp_path):
    a = render_report(fake_study(kind), tmp_path / "a.html").read_bytes()
    b = render_report(fake_study(kind), tmp_path / "b.html").read_bytes()
    assert a == b


def test_render_leaves_matplotlib_alone(tmp_path):
    """No rcParams changed, no backend chosen, no pyplot imported (in a fresh interpreter)."""
    code = (
        "import sys, matplotlib\n"
        "from regulab.studies.report import render_report\n"
        "from tests.report_fixtures import fake_study\n"
        "raw = lambda: dict(dict.items(matplotlib.rcParams))  # no backend resolution\n"
        "before = raw()\n"
        f"render_report(fake_study('kfold', n_variants=2, seeds=2), {str(tmp_path / 'r.html')!r})\n"
        "assert raw() == before, 'rcParams changed'\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("kind, kwargs, figures", [
    ("grid", {"seeds": 1}, 3),                       # one run per variant: std 0
    ("learning_curve", {"metric": "r2"}, 3),         # regression
    ("compare", {"n_variants": 32, "seeds": 1}, 2),  # many variants
    ("weights", {"n_variants": 1}, 3),
])
def test_report_survives_unusual_studies(kind, kwargs, figures, tmp_path):
    results = fake_study(kind, **kwargs)
    if kwargs.get("n_variants") == 32:
        results["variants"][5]["label"] = "a long variant label " * 8
        results["variants"][6]["name"] = "x" * 120
    text = render_report(results, tmp_path / "report.html").read_text(encoding="utf-8")
    page = Page(text)
    assert not page.errors and len(page.figures) == figures == len(plot_plan(results))
    if kwargs.get("metric") == "r2":
        assert "Test R²" in text and "Test acc" not in text


def test_plots_follow_the_data(tmp_path):
    """No histograms, no heads, no history: those figures go, the rest stays."""
    results = fake_study("dropout_activations")
    results["analysis"]["hist"] = []
    assert [p.id for p in plot_plan(results)] == ["summary", "curves"]
    results = fake_study("multitask")
    results["analysis"]["heads"] = []
    for v in results["variants"]:
        for r in v["runs"]:
            r["history"] = []
    assert [p.id for p in plot_plan(results)] == ["summary"]
    results = fake_study("init")
    results["analysis"]["curves"] = []
    text = render_report(results, tmp_path / "report.html").read_text(encoding="utf-8")
    assert plot_plan(results) == [] and '<figure class="plot"' not in text
    assert "trains no variants" in text


def test_the_report_draws_what_it_is_given(tmp_path):
    """``regulab.report`` knows no kind: alone it draws the generic figures and answer; the
    figures and answer a caller gives (a kind's, through ``regulab.studies.report``) come out
    as given, after the generic ones."""
    from regulab import report
    grid = fake_study("grid")
    assert [p.id for p in report.plot_plan(grid)] == ["summary", "curves"]
    assert [p.id for p in plot_plan(grid)] == ["summary", "curves", "score-curve"]
    mine = report.Plot("mine", "my caption &amp; more", lambda: "<svg></svg>")
    assert [p.id for p in report.plot_plan(grid, [mine])] == ["summary", "curves", "mine"]
    init = fake_study("init")
    assert "holds no measurements" in report.render_html(init)
    text = report.render_html(init, [mine], answer="<strong>42</strong>")
    assert ('<figure class="plot" id="plot-mine">\n<svg></svg>\n<figcaption>my caption &amp; '
            "more</figcaption>") in text
    assert '<p class="answer"><strong>42</strong></p>' in text
    future = {**fake_study("compare"), "kind": "future"}     # a kind this version lacks
    assert [p.id for p in plot_plan(future)] == ["summary", "curves"]
    assert "Best on validation" in render_report(future, tmp_path / "r.html").read_text()


def test_changes_carry_their_intervals_and_the_seeds_that_would_halve_them(tmp_path):
    results = fake_study("compare")
    v = next(x for x in results["variants"] if x["name"] == "variant-2")
    lo, hi = v["delta_test_ci95"]
    text = render_report(results, tmp_path / "report.html").read_text(encoding="utf-8")
    rows = Page(text).rows
    cell = dict(zip(rows[0], next(r for r in rows if len(r) == len(rows[0]) and v["name"] in r[1])))
    assert f"[{lo:+.3f}, {hi:+.3f}]".replace("-", "−") in cell["Δ test vs baseline"]
    assert ("✱" in cell["Δ test vs baseline"]) == (lo > 0 or hi < 0)
    widths = sorted(x["delta_test_ci95"][1] - x["delta_test_ci95"][0] for x in results["variants"]
                    if x["delta_test_ci95"])
    assert f"intervals are {widths[len(widths) // 2]:.3f} wide (median)" in text
    assert "12 runs would halve them" in text       # the fixture's 4 x 3 seeds
    svg = plot_plan(results)[0].draw()
    assert "vs baseline (95% CI)" in svg
    # one seed: no interval, and the page says why
    one = fake_study("compare", seeds=1)
    text = render_report(one, tmp_path / "one.html").read_text(encoding="utf-8")
    assert "No intervals: fewer than 2 seeds." in text
    assert "vs baseline (95% CI)" not in plot_plan(one)[0].draw()


def test_verdicts_and_advice_are_listed(tmp_path):
    results = fake_study("compare")
    v = results["variants"][1]
    v.update(verdict="underfit and overfit (high variance, high bias)",
             advice="Train accuracy 0.65: too strong, lower the strength or train longer",
             fit={"diagnosis": "underfit and overfit", "gap_closed": 0.62, "reference": 1.0})
    text = render_report(results, tmp_path / "report.html").read_text(encoding="utf-8")
    rows = Page(text).rows
    cell = dict(zip(rows[0], next(r for r in rows if len(r) == len(rows[0]) and v["name"] in r[1])))
    assert cell["Gap closed"] == "62%" and cell["Verdict"].startswith("underfit and overfit")
    assert "too strong, lower the strength or train longer" in text
    assert '<span class="underfit">underfit and overfit</span>: 1 variant(s)' in text
