"""Every example study file runs (its --quick version) and its report holds the kind's plots."""

from __future__ import annotations

import json
import os
import re
import shutil

import pytest

from regulab.cli import main

from .conftest import EXAMPLES

KIND_PLOTS = {    # the figures each kind's report must show, beyond the summary and the curves
    "compare": [], "grid": ["score-curve"], "learning_curve": ["score-curve"],
    "capacity": ["score-curve"], "kfold": ["kfold"], "transfer": ["transfer"],
    "multitask": ["heads"], "dropout_activations": ["hist"], "weights": ["hist"],
    "init": ["init-stats-0", "init-hist-0", "init-stats-1", "init-hist-1"],
}


@pytest.mark.parametrize("path", sorted((EXAMPLES / "studies").glob("*.toml")), ids=lambda p: p.stem)
def test_example_study_quick(path, workdir, capsys):
    assert main(["study", str(path), "--quick", "--out", "s", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "report: " in out and "report.html" in out
    res = json.loads((workdir / "s" / "results.json").read_text())
    html = (workdir / "s" / "report.html").read_text()
    figures = re.findall(r'<figure class="plot" id="plot-([a-z0-9-]+)">\s*<svg', html)
    # every kind with runs: the summary, the curves and the best variant's test confusion matrix
    expected = ([] if res["kind"] == "init" else ["summary", "curves", "confusion"]) + KIND_PLOTS[res["kind"]]
    assert figures == expected, (figures, expected)
    if res["kind"] == "init":
        assert len(res["analysis"]["curves"]) == 8
    else:
        runs = [r for v in res["variants"] for r in v["runs"]]
        assert runs and all(r["results"]["test_acc"] is not None for r in runs)
    if res["kind"] == "kfold":
        sizes = {v["name"]: sum(r["results"]["n_test"] for r in v["runs"]) for v in res["variants"]}
        assert set(sizes.values()) == {1797}     # every digit held out exactly once
    if shutil.which("chromium") or os.environ.get("REGULAB_REQUIRE_CHROMIUM") == "1":
        from tests.test_report_browser import open_in_chromium  # the real report, in a browser
        logs, sizes, shot = open_in_chromium(workdir / "s" / "report.html")
        assert not [e for e in logs if e.get("level") == "SEVERE"], logs
        assert [s["id"] for s in sizes] == [f"plot-{f}" for f in expected]
        assert all(s["width"] > 50 and s["height"] > 50 for s in sizes), sizes
        assert shot.stat().st_size > 10_000
    if res["kind"] == "transfer":
        assert (workdir / "s" / "source" / "seed-0" / "model.safetensors").is_file()
        assert res["analysis"]["source"]["val_acc"] > 0.5
