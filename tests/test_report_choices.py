"""The report's figures and notes for answers a user can trust: each variant's epochs, the clean
train curve and what the running train score measures, the best variant's confusion matrix,
the tuned strengths' curves, the combination search's trials, and intervals of no width --
each drawn when the results hold it, absent when they do not, robust to None and NaN."""

from __future__ import annotations

import math
import re

import pytest

from regulab.report import selection
from regulab.studies.report import plot_plan, render_html

from .report_fixtures import EVIL, fake_study
from .test_report import Page

L2 = [1e-5, 1e-4, 1e-3, 1e-2]
TUNED = {"key": "regularization.l2", "values": L2, "val_mean": [0.71, 0.74, 0.78, 0.69],
         "val_std": [0.01, 0.02, 0.01, 0.03], "train_mean": [0.99, 0.95, 0.88, 0.72],
         "chosen": 1e-3, "log_x": True, "method": "grid"}
DROPOUTS = {"key": "model.dropout", "values": [[0.1, 0.5], [0.2, 0.5], [0.3, 0.3]],
            "val_mean": [0.70, None, float("nan")], "val_std": None, "train_mean": [0.9, 0.85],
            "chosen": [0.2, 0.5], "log_x": False, "method": "grid"}
TRIALS = [(0, 1e-4, 0.1, 0.80), (1, 1e-3, 0.3, 0.83), (2, 1e-2, 0.5, None), (3, 3e-3, 0.2, 0.86),
          (4, 1e-5, 0.0, 0.78), (5, 2e-3, 0.25, float("nan")), (6, 5e-4, 0.4, 0.84),
          (7, 1e-3, 0.1, 0.85)]
SEARCH = {"method": "optuna-tpe", "keys": ["regularization.l2", "model.dropout"], "metric": "val_acc",
          "trials": [{"number": n, "params": {"regularization.l2": l2, "model.dropout": p},
                      "value": v, "seeds": 1} for n, l2, p, v in TRIALS],
          "best": {"number": 3, "params": {"regularization.l2": 3e-3, "model.dropout": 0.2},
                   "value": 0.86}}
CLASSES = ["zero", "one", f"two {EVIL}"]
MATRIX = [[50, 3, 2], [4, 45, 1], [0, 2, 61]]


def study(**fields):
    """fake_study("compare") with ``fields`` set on the results; ``tuned`` goes to variant-1."""
    results = fake_study("compare", n_variants=4)
    tuned = fields.pop("tuned", None)
    if tuned is not None:
        next(v for v in results["variants"] if v["name"] == "variant-1")["tuned"] = tuned
    results.update(fields)
    return results


def ids(results):
    return [p.id for p in plot_plan(results)]


def svg_of(text: str, plot_id: str) -> str:
    return re.search(rf'<figure class="plot" id="plot-{plot_id}">(.*?)</figure>', text, re.S).group(1)


def row_of(text: str, name: str) -> dict[str, str]:
    rows = Page(text).rows
    return dict(zip(rows[0], next(r for r in rows if len(r) == len(rows[0]) and name in r[1])))


def test_nothing_new_without_the_fields():
    results = study()
    text = render_html(results)
    assert ids(results) == ["summary", "curves"]
    assert "Combination search" not in text and "tuned:" not in text
    assert "identical across seeds" not in text
    caption = plot_plan(results)[1].caption
    assert "with regularization on (dropout, noise and augmentation active)" in caption
    assert "<code>train.eval_train = true</code> logs a clean train score" in caption
    assert "train, eval mode" not in svg_of(text, "curves")


def test_the_clean_train_score_is_its_own_line():
    results = study()
    for v in results["variants"]:
        for r in v["runs"]:
            for h in r["history"]:
                h["clean_train_acc"] = h["train_acc"] + 0.05
    results["variants"][0]["runs"][0]["history"][2]["clean_train_acc"] = None     # robust to gaps
    text = render_html(results)
    assert "Dashed blue: the clean train score" in plot_plan(results)[1].caption
    assert "train, eval mode" in svg_of(text, "curves")       # the legend names the line


def test_the_table_shows_each_variants_epochs():
    results = study()
    v = results["variants"][1]
    v.update(epochs_mean=16.0, best_epoch_mean=34 / 3)
    text = render_html(results)
    assert row_of(text, "variant-1")["Epochs (best / run)"] == "11.3 / 16"
    # an entry without the means (an older results.json): from its runs (all 20, best 20)
    assert row_of(text, "baseline")["Epochs (best / run)"] == "20 / 20"
    for r in results["variants"][2]["runs"]:
        r["results"].update(best_epoch=None, epochs_run=None)
    assert row_of(render_html(results), "variant-2")["Epochs (best / run)"] == "–"


def test_the_confusion_matrix_of_the_best_variant():
    results = study()
    best = next(v for v in results["variants"] if v["name"] == results["best"])
    results["confusion"] = {"variant": best["name"], "classes": CLASSES, "matrix": MATRIX, "runs": 3}
    assert ids(results) == ["summary", "curves", "confusion"]
    plot = plot_plan(results)[2]
    assert "the best variant" in plot.caption and "summed over 3 runs" in plot.caption
    svg = svg_of(render_html(results), "confusion")
    assert all(c in svg for c in ("zero", "one", "two &lt;script&gt;")) and "<script" not in svg
    assert all(f">{n}<" in svg for row in MATRIX for n in row)        # every count printed
    # a cell that is missing shows as a dash; a malformed matrix is not drawn
    results["confusion"]["matrix"] = [[50, None, 2], [4, 45, 1], [0, float("nan"), 61]]
    assert ">–<" in plot_plan(results)[2].draw()
    results["confusion"]["matrix"] = [[1, 2], [3, 4]]
    assert "confusion" not in ids(results)
    results["confusion"] = None
    assert "confusion" not in ids(results)


def test_many_classes_leave_the_counts_out():
    classes = [f"c{i}" for i in range(25)]
    results = study(confusion={"variant": "baseline", "classes": classes, "runs": 1,
                               "matrix": [[7 if i == j else 1 for j in range(25)] for i in range(25)]})
    plot = next(p for p in plot_plan(results) if p.id == "confusion")
    assert "counts not printed above 20 classes" in plot.caption and "summed over 1 run:" in plot.caption
    assert "c24" in plot.draw() and ">7<" not in plot.draw()


def test_tuned_strengths_are_drawn_and_named():
    results = study(tuned=TUNED)
    assert ids(results) == ["summary", "curves", "tuned"]
    text = render_html(results)
    plot = plot_plan(results)[2]
    assert "chosen on validation only" in plot.caption and "scored once, for the chosen value" in plot.caption
    svg = svg_of(text, "tuned")
    assert "0.001" in svg and "regularization.l2" in svg and "chosen (on validation)" in svg
    assert "tuned: 0.001" in row_of(text, "variant-1")["Variant"]
    assert "tuned:" not in row_of(text, "variant-2")["Variant"]


def test_tuned_values_that_are_not_numbers_sit_at_categories():
    results = study(tuned=TUNED)
    results["variants"][2]["tuned"] = DROPOUTS      # lists; None and NaN scores; short lists
    svg = next(p for p in plot_plan(results) if p.id == "tuned").draw()
    assert "[0.1, 0.5]" in svg and "[0.3, 0.3]" in svg and "model.dropout" in svg
    assert "tuned: [0.2, 0.5]" in row_of(render_html(results), "variant-2")["Variant"]
    assert selection.value_text(1e-5) == "1e-5" and selection.value_text(True) == "true"


def test_tuned_panels_stop_at_the_limit():
    results = fake_study("compare", n_variants=selection.MAX_TUNED + 3, seeds=1)
    for v in results["variants"]:
        v["tuned"] = TUNED
    plot = next(p for p in plot_plan(results) if p.id == "tuned")
    assert f"Showing the {selection.MAX_TUNED} best ranked of {selection.MAX_TUNED + 3}" in plot.caption
    assert plot.draw().count("chosen (on validation)") == 1        # one shared legend


def test_the_search_shows_its_trials_and_its_best_five():
    results = study(search=SEARCH)
    assert ids(results) == ["summary", "curves", "search"]
    text = render_html(results)
    plot = plot_plan(results)[2]
    assert "optuna-tpe" in plot.caption and "validation only" in plot.caption
    assert "each of the 8 trials" in plot.caption
    assert "best: trial 3" in svg_of(text, "search")
    table = re.search(r'<table class="search">.*?</table>', text, re.S).group(0)
    rows = Page(table).rows
    assert rows[0] == ["Trial", "regularization.l2", "model.dropout", "val_acc", "Seeds"]
    scored = sorted((t for t in TRIALS if isinstance(t[3], float) and not math.isnan(t[3])),
                    key=lambda t: -t[3])[:5]
    assert [r[0] for r in rows[1:]] == [str(t[0]) for t in scored] == ["3", "7", "6", "1", "0"]
    assert rows[1] == ["3", "0.003", "0.2", "0.860", "1"]
    assert "Best: trial 3, 0.860" in text


def test_a_choice_at_the_grid_edge_says_so():
    plot = next(p for p in plot_plan(study(tuned={**TUNED, "at_edge": True})) if p.id == "tuned")
    assert "at the grid's edge" in plot.draw()
    plot = next(p for p in plot_plan(study(tuned=TUNED)) if p.id == "tuned")
    assert "at the grid's edge" not in plot.draw()


def test_the_search_table_names_the_techniques_each_trial_merged():
    trials = [{**t, "parts": ["l2", "drop"] if t["number"] % 2 else ["l2"]} for t in SEARCH["trials"]]
    text = render_html(study(search={**SEARCH, "trials": trials}))
    rows = Page(re.search(r'<table class="search">.*?</table>', text, re.S).group(0)).rows
    assert rows[0] == ["Trial", "Techniques", "regularization.l2", "model.dropout", "val_acc", "Seeds"]
    assert rows[1][:2] == ["3", "l2 + drop"] and rows[5][:2] == ["0", "l2"]


def test_a_loss_is_searched_downwards():
    search = {**SEARCH, "metric": "val_loss", "best": {"number": 4, "value": 0.78}}
    assert not selection.maximizes(search)
    assert [t["number"] for t in selection.top_trials(search, 3)] == [4, 0, 1]
    assert selection.maximizes({**search, "direction": "maximize"})
    assert "best: trial 4" in next(p for p in plot_plan(study(search=search)) if p.id == "search").draw()


def test_an_interval_of_no_width_says_so():
    results = study()
    v = next(x for x in results["variants"] if x["name"] == "variant-2")
    v.update(delta_test=0.01, delta_test_ci95=[0.01, 0.01], significant=True, ci_seeds_to_halve=None)
    results["best"] = "variant-2"
    text = render_html(results)
    assert "no width: identical across seeds" in row_of(text, "variant-2")["Δ test vs baseline"]
    assert "identical across seeds: the interval [+0.010, +0.010] has no width" in text   # the answer
    assert "Identical across seeds: dropout p=0.2 changed the test score by the same amount" in text
    others = sorted(x["delta_test_ci95"][1] - x["delta_test_ci95"][0] for x in results["variants"]
                    if x["delta_test_ci95"] and x is not v)
    assert f"intervals are {others[len(others) // 2]:.3f} wide (median)" in text
    assert "0.000 wide" not in text


def test_an_interval_a_rounding_off_its_mean_draws():
    """The paired interval of a change identical across seeds, computed in floats, may lie a
    rounding beside the mean (0.1 + 0.2 - 0.3 > 0): its bar has no negative half-width."""
    results = study()
    v = next(x for x in results["variants"] if x["name"] == "variant-2")
    v.update(delta_test=0.01, delta_test_ci95=[0.01 + 1e-17 * 2, 0.01 + 4e-17], significant=True)
    assert "<svg" in render_html(results)


@pytest.mark.parametrize("metric", ["acc", "r2"])
def test_everything_at_once_is_a_well_formed_page(metric):
    results = fake_study("compare", n_variants=4, metric=metric)
    results["variants"][1]["tuned"] = TUNED
    results["variants"][2]["tuned"] = DROPOUTS
    results.update(search=SEARCH, confusion={"variant": "variant-1", "classes": CLASSES,
                                             "matrix": MATRIX, "runs": 2})
    for r in results["variants"][0]["runs"]:
        for h in r["history"]:
            h[f"clean_train_{metric}"] = float("nan")
    page = Page(render_html(results))
    assert not page.errors and not page.stack
    assert len(page.figures) == 5 and all(f["svg"] and f["figcaption"] for f in page.figures)
    assert len(page.ids) == len(set(page.ids))
