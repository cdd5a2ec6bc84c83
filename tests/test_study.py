"""Studies end to end: runs over seeds, aggregates recomputed, the run store, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats as scipy_stats

import regulab as rl
from regulab.cli import main
from regulab.runs.store import RunStore
from regulab.studies import aggregate
from regulab.studies.spec import Variant
from regulab.studies.study import load_results

from .conftest import assert_refused, study_once, write

STUDY = """
[study]
name = "tiny"
description = "Does <dropout> help & how?"
seeds = 2
combine = 2
quick = { "train.epochs" = 2 }
[base]
data = { dataset = "moons", n_samples = 300 }
model = { hidden = [16] }
optim = { lr = 0.01 }
train = { epochs = 4, batch_size = 32, early_stopping = false, progress = false }
[variants.baseline]
[variants.l2]
regularization.l2 = 1e-3
[variants.drop]
label = "dropout <0.2>"
model.dropout = 0.2
[variants.ens]
members = 2
"""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, data_cache):
    """One finished study shared by the tests below (trained once)."""
    root = tmp_path_factory.mktemp("study")
    return root, study_once(root, data_cache, STUDY)[1]


def test_study_directory_and_runs(tiny):
    root, res = tiny
    study = root / "s"
    assert {p.name for p in study.iterdir()} >= {"study.json", "results.json", "report.html", "runs"}
    names = [v["name"] for v in res["variants"]]
    assert names[:4] == ["baseline", "l2", "drop", "ens"]
    for v in res["variants"]:
        assert [r["seed"] for r in v["runs"]] == [0, 1]
        for r in v["runs"]:
            run_dir = study / r["run_dir"]
            assert run_dir.is_dir()
            if v["name"] != "ens":
                saved = json.loads((run_dir / "results.json").read_text())
                assert saved["test_acc"] == r["results"]["test_acc"]
                # the test split is scored once, at the end: no epoch row mentions it
                assert not any(k.startswith("test") for h in r["history"] for k in h)
                assert len(r["history"]) == 4
    ens = next(v for v in res["variants"] if v["name"] == "ens")
    assert (study / ens["runs"][1]["run_dir"] / "member-1" / "results.json").is_file()
    assert "train_acc" in ens["runs"][0]["results"]


def test_aggregates_recomputed(tiny):
    _, res = tiny
    for v in res["variants"]:
        for key in ("train_acc", "val_acc", "test_acc", "val_loss"):
            xs = np.array([r["results"][key] for r in v["runs"]])
            assert v["stats"][key]["mean"] == pytest.approx(xs.mean())
            assert v["stats"][key]["std"] == pytest.approx(xs.std(ddof=1))
        gaps = [r["results"]["train_acc"] - r["results"]["val_acc"] for r in v["runs"]]
        assert v["stats"]["gap"]["mean"] == pytest.approx(np.mean(gaps))
    base = next(v for v in res["variants"] if v["name"] == "baseline")
    for v in res["variants"]:
        assert v["delta_test"] == pytest.approx(v["stats"]["test_acc"]["mean"]
                                                - base["stats"]["test_acc"]["mean"])
    by_rank = sorted(res["variants"], key=lambda v: v["rank"])
    vals = [v["stats"]["val_acc"]["mean"] for v in by_rank]
    assert vals == sorted(vals, reverse=True) and res["best"] == by_rank[0]["name"]
    assert sorted(v["rank"] for v in res["variants"]) == list(range(1, len(res["variants"]) + 1))
    assert res["machine"]["torch"] and res["seeds"] == [0, 1] and res["metric"] == "acc"


@pytest.mark.filterwarnings("ignore:Precision loss:RuntimeWarning")   # scipy, on equal runs
def test_intervals_and_verdicts_recomputed(tiny):
    _, res = tiny
    base = next(v for v in res["variants"] if v["name"] == "baseline")
    for v in res["variants"]:
        if v is base:
            assert v["delta_test_ci95"] is None
            continue
        x, y = ([r["results"]["test_acc"] for r in e["runs"]] for e in (v, base))
        if v["name"] == "ens":      # members seeded seed * 3: not the baseline's initial weights
            ref = scipy_stats.ttest_ind(x, y, equal_var=False).confidence_interval(0.95)
            assert v["ci_method"] == "welch t"
        else:                       # runs listed seed by seed, as the baseline's
            ref = scipy_stats.ttest_rel(x, y).confidence_interval(0.95)
            assert v["ci_method"] == "paired t" and v["ci_n"] == 2
        if np.isfinite(ref.low):
            assert v["delta_test_ci95"] == pytest.approx([ref.low, ref.high], abs=1e-9)
        assert v["significant"] == bool(v["delta_test_ci95"][0] > 0 or v["delta_test_ci95"][1] < 0)
        train, val = v["stats"]["train_acc"]["mean"], v["stats"]["val_acc"]["mean"]
        assert v["fit"]["bias"] == pytest.approx(1.0 - train)
        assert v["fit"]["variance"] == pytest.approx(train - val)
        assert v["verdict"].startswith(v["fit"]["diagnosis"]) and v["advice"]


def test_the_study_table_shows_the_interval():
    from regulab.cli import _study_table
    stat = {"mean": 0.5, "std": 0.01}
    row = {"rank": 1, "name": "l2", "stats": {f"{s}_acc": stat for s in ("train", "val", "test")},
           "delta_test": 0.03, "delta_test_ci95": [0.01, 0.05], "significant": True,
           "verdict": "overfit (high variance, low bias)"}
    table = _study_table({"metric": "acc", "variants": [row]})
    assert "+0.030* [+0.010, +0.050]  overfit (high variance, low bias)" in table
    row.update(delta_test_ci95=None, significant=False)
    assert "+0.030 " in _study_table({"metric": "acc", "variants": [row]})


def test_store_holds_the_study_and_report_rerenders(tiny, capsys):
    root, res = tiny
    store = RunStore(str(root / "r.db"))
    rows = store.runs()
    study_rows = [r for r in rows if r["kind"] == "study"]
    assert len(study_rows) == 1 and study_rows[0]["status"] == "completed"
    n_runs = sum(len(v["runs"]) for v in res["variants"]) + 2 * 2   # + ensemble members
    assert len([r for r in rows if r["kind"] == "train"]) == n_runs - 2  # ens seeds are members
    report = root / "s" / "report.html"
    before = report.read_bytes()
    report.unlink()
    assert main(["report", str(root / "s")]) == 0         # the store named in study.json
    assert "report.html" in capsys.readouterr().out
    assert report.read_bytes() == before
    loaded = load_results(root / "s")
    assert [v["name"] for v in loaded["variants"]] == [v["name"] for v in res["variants"]]


def test_report_escapes_user_strings(tiny):
    root, _ = tiny
    html = (root / "s" / "report.html").read_text()
    assert "<dropout>" not in html and "&lt;dropout&gt;" in html
    assert "dropout &lt;0.2&gt;" in html


def test_python_api(workdir):
    cfg = rl.load_config(None, {"data.dataset": "moons", "data.n_samples": 200, "model.hidden": [8],
                                "train.epochs": 2, "train.progress": False})
    res = rl.study(cfg, variants={"l2": {"regularization.l2": 1e-3}}, seeds=2, out="s")
    assert [v["name"] for v in res.results["variants"]] == ["baseline", "l2"]
    assert res.report.is_file() and res.variant("l2")["stats"]["val_acc"]["mean"] is not None
    grid = rl.study(cfg, kind="grid", seeds=1, out="g",
                    options={"key": "model.dropout", "values": [0.0, 0.5]})
    assert [v["x"] for v in grid.results["variants"]] == [0.0, 0.5]
    assert grid.results["analysis"] == {"key": "model.dropout", "log_x": False}


def test_summarize_and_combination_rules():
    def entry(name, vals, tests, members=1):
        runs = [{"seed": s, "fold": None,
                 "results": {"train_acc": 1.0, "val_acc": a, "test_acc": t, "train_loss": 0.1,
                             "val_loss": 1.0, "test_loss": 1.0}}
                for s, (a, t) in enumerate(zip(vals, tests))]
        return aggregate.summarize(Variant(name, members=members), runs, 10)
    variants = [Variant("base"), Variant("a", {"model.dropout": 0.1}),
                Variant("b", {"model.dropout": 0.3}), Variant("c", {"regularization.l2": 1.0}),
                Variant("d", {"regularization.l1": 1.0}), Variant("e", {"x.y": 1}, members=3),
                Variant("f", {"regularization.ema": 0.9}, combine=False)]
    entries = [entry("base", [0.60, 0.62], [0.6, 0.6]), entry("a", [0.70, 0.70], [0.7, 0.72]),
               entry("b", [0.71, 0.71], [0.7, 0.7]), entry("c", [0.65, 0.65], [0.6, 0.6]),
               entry("d", [0.615, 0.615], [0.6, 0.6]), entry("e", [0.9, 0.9], [0.9, 0.9], members=3),
               entry("f", [0.9, 0.9], [0.9, 0.9])]
    # b is best and beats the baseline by more than its std; a shares b's key; d is within
    # the baseline's std but may still help b (the forward step tries it); e, f may not combine
    picked = aggregate.combination_candidates(entries, variants, "base", "acc")
    assert [v.name for v in picked] == ["b", "c", "d"]
    # nothing to build on when the best is within the baseline's std
    assert aggregate.combination_candidates(entries[:1] + entries[4:5], variants, "base", "acc") == []
    aggregate.rank(entries, "acc")
    aggregate.against_baseline(entries, "base", "acc")
    a = entries[1]
    # +0.10 and +0.12 over two seeds: the paired interval, 0.11 -+ t(0.975, 1) * 0.01, holds 0
    assert a["delta_test"] == pytest.approx(0.11) and not a["significant"]
    half = scipy_stats.t.ppf(0.975, 1) * np.std([0.1, 0.12], ddof=1) / np.sqrt(2)
    assert a["delta_test_ci95"] == pytest.approx([0.11 - half, 0.11 + half])
    assert a["ci_method"] == "paired t" and entries[5]["ci_method"] == "welch t"    # members=3
    assert a["stats"]["test_acc"]["std"] == pytest.approx(np.std([0.7, 0.72], ddof=1))
    assert entries[3]["delta_test"] == pytest.approx(0.0) and not entries[3]["significant"]
    assert a["verdict"] == "overfit" and "dropout" in a["advice"]
    assert [e["rank"] for e in entries] == [7, 4, 3, 5, 6, 1, 2]


def test_bad_study_cli_writes_nothing(workdir, capsys):
    write(workdir / "bad.toml", STUDY.replace('model.dropout = 0.2', 'model.dropout = 2.0'))
    code = main(["study", "bad.toml", "--out", "out"])
    assert_refused(capsys, code, ["variant 'drop'", "model.dropout", "2.0"], workdir)
    assert not (workdir / "runs").exists()
    write(workdir / "bad2.toml", STUDY.replace('"moons"', '"moonz"'))
    code = main(["study", "bad2.toml", "--out", "out"])
    assert_refused(capsys, code, ["data.dataset", "moonz"], workdir)
    assert not (workdir / "runs").exists()
    (workdir / "out").mkdir()
    (workdir / "out" / "keep.txt").write_text("mine")
    write(workdir / "tiny.toml", STUDY)
    code = main(["study", "tiny.toml", "--out", "out"])
    assert code == 2 and (workdir / "out" / "keep.txt").read_text() == "mine"
    assert "--out" in capsys.readouterr().err and not (workdir / "runs").exists()
    capsys.readouterr()
    assert main(["report", "nowhere"]) == 2
    assert "study.json" in capsys.readouterr().err


def test_real_report_in_chromium(tiny, tmp_path):
    """The tiny study's own report: no console error, every planned plot laid out, a screenshot."""
    from regulab.studies.report import plot_plan
    from tests.test_report_browser import open_in_chromium, require_chromium
    require_chromium()
    root, res = tiny
    logs, sizes, shot = open_in_chromium(root / "s" / "report.html", tmp_path / "tiny.png")
    assert not [e for e in logs if e.get("level") == "SEVERE"], logs
    assert [s["id"] for s in sizes] == [f"plot-{p.id}" for p in plot_plan(res)]
    assert [s["id"] for s in sizes] == ["plot-summary", "plot-curves", "plot-confusion"]
    assert all(s["width"] > 300 and s["height"] > 100 for s in sizes), sizes
    assert shot.stat().st_size > 10_000


def test_bad_layer_names_refused_before_training(workdir, capsys):
    write(workdir / "w.toml", '[study]\nkind = "weights"\nseeds = 1\n[base]\n'
          'data = { dataset = "moons" }\n[weights]\nlayers = ["fc7"]\n[variants.a]\n')
    code = main(["study", "w.toml", "--out", "out"])
    assert_refused(capsys, code, ["weights.layers", "fc7", "fc1"], workdir)
    write(workdir / "d.toml", '[study]\nkind = "dropout_activations"\nseeds = 1\n[base]\n'
          'data = { dataset = "moons" }\n[dropout_activations]\nlayers = ["act9"]\n[variants.a]\n')
    code = main(["study", "d.toml", "--out", "out"])
    assert_refused(capsys, code, ["dropout_activations.layers", "act9"], workdir)
    assert not (workdir / "runs").exists()
