"""Tuned strengths, the searched combination and study budgets (issue 14): the choice made on
validation only, the test split scored once for the chosen strength, every candidate reported."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from regulab.cli import main
from regulab.errors import ConfigError
from regulab.studies import search, tune
from regulab.studies.spec import study_from_dict
from regulab.studies.variant import Tune, Variant, read_tune

from .conftest import assert_refused, study_once, write

BASE = {"data": {"dataset": "moons", "n_samples": 300, "split": [0.7, 0.3, 0.0]},
        "model": {"hidden": [16]}, "optim": {"lr": 0.01},
        "train": {"epochs": 4, "batch_size": 32, "early_stopping": False, "progress": False}}


# -- reading `tune` --------------------------------------------------------------------------

def test_a_list_and_a_range():
    t = read_tune("variants.l2.tune", {"regularization.l2": [1e-5, 1e-3, 1e-1]})
    assert t == Tune("regularization.l2", (1e-5, 1e-3, 1e-1), True)      # spans 10^4: log axis
    assert not read_tune("t", {"model.dropout": [0.1, 0.5]}).log
    geo = read_tune("t", {"regularization.l2": {"low": 1e-4, "high": 1e-1, "n": 4, "log": True}})
    assert geo.values == pytest.approx((1e-4, 1e-3, 1e-2, 1e-1)) and geo.log
    lin = read_tune("t", {"model.dropout": {"low": 0.1, "high": 0.5, "n": 3}})
    assert lin.values == pytest.approx((0.1, 0.3, 0.5)) and not lin.log
    ints = read_tune("t", {"train.patience": {"low": 2, "high": 8, "n": 4}})
    assert ints.values == (2, 4, 6, 8)
    # a nested name is the dotted key (its current name)
    assert read_tune("t", {"augment.image.translate": [0.1, 0.2]}).key == "image.translate"


@pytest.mark.parametrize("value, words", [
    ({"regularization.l2": [1e-3]}, ["2 or more distinct"]),
    ({"regularization.l2": [1e-3, 1e-3]}, ["distinct"]),
    ({"regularization.l2": [1e-3], "model.dropout": [0.1]}, ["one config key"]),
    ({"regularization.l2": {"low": 1e-2, "high": 1e-3}}, ["low < high"]),
    ({"regularization.l2": {"low": 0.0, "high": 1e-3, "log": True}}, ["> 0 with log"]),
    ({"regularization.l2": {"low": 1e-4, "high": 1e-3, "n": 1}}, ["from 2 to 50"]),
    ({"regularization.l2": {"low": 1e-4, "high": 1e-3, "steps": 3}}, ["low, high, n, log"]),
    ({"nope.l2": [1, 2]}, ["config key"]),
    ("regularization.l2", ["one config key"]),
])
def test_bad_tune_is_one_line(value, words):
    with pytest.raises(ConfigError) as e:
        read_tune("variants.l2.tune", value)
    msg = str(e.value)
    assert "\n" not in msg and "variants.l2.tune" in msg and all(w in msg for w in words)


def test_study_refuses_bad_tuning_and_search_before_anything_runs():
    raw = {"study": {"seeds": 1}, "base": BASE, "variants": {"baseline": {}}}
    with pytest.raises(ConfigError, match="members"):
        study_from_dict({**raw, "variants": {"e": {"members": 2, "tune": {"model.dropout": [0.1, 0.2]}}}})
    with pytest.raises(ConfigError, match=r"study.search.*combine"):
        study_from_dict({**raw, "study": {"seeds": 1, "search": 4}})
    # each candidate's config is checked: a strength the config refuses names its variant
    with pytest.raises(ConfigError, match=r"variant 'd@2'.*model.dropout"):
        study_from_dict({**raw, "variants": {"d": {"tune": {"model.dropout": [0.1, 2.0]}}}})
    with pytest.raises(ConfigError, match="budget"):
        study_from_dict({**raw, "study": {"seeds": 1, "budget": "long"}})


def test_candidates_choose_and_curve_recomputed():
    v = Variant("l2", {"model.dropout": 0.1}, "L2", tune=Tune("regularization.l2", (1e-4, 1e-2)))
    c = tune.candidates(v)
    assert [x.name for x in c] == ["l2@0.0001", "l2@0.01"]
    assert c[1].overrides == {"model.dropout": 0.1, "regularization.l2": 1e-2, "eval.test": False}
    assert not any(x.combine for x in c)

    def runs(vals, trains, tests=None):
        return [{"results": {"val_acc": a, "train_acc": t, "epochs_run": 5,
                             **({} if tests is None else {"test_acc": tests[i]})}}
                for i, (a, t) in enumerate(zip(vals, trains))]
    # the second candidate has the better validation mean; a test score that would favour the
    # first changes nothing
    cand = [runs([0.70, 0.72], [1.0, 1.0], tests=[0.99, 0.99]), runs([0.74, 0.73], [0.9, 0.8])]
    assert tune.choose(cand, "acc") == 1
    got = tune.curve(v.tune, cand, 1, "acc")
    assert got["val_mean"] == pytest.approx([0.71, 0.735])
    assert got["val_std"] == pytest.approx([np.std([0.70, 0.72], ddof=1), np.std([0.74, 0.73], ddof=1)])
    assert got["train_mean"] == pytest.approx([1.0, 0.85])
    assert got["chosen"] == 1e-2 and got["chosen_index"] == 1 and got["method"] == "grid"
    assert tune.choose([runs([0.7], [1]), runs([0.7], [1])], "acc") == 0     # ties: the first
    assert not got["at_edge"]                       # two strengths: every choice is an end
    three = Tune("regularization.l2", (1e-4, 1e-3, 1e-2))
    cand3 = [runs([0.70], [1.0]), runs([0.72], [1.0]), runs([0.75], [1.0])]
    assert tune.curve(three, cand3, tune.choose(cand3, "acc"), "acc")["at_edge"]
    assert not tune.curve(three, cand3, 1, "acc")["at_edge"]


def test_search_space_from_the_tuned_parts():
    parts = [Variant("l2", {"regularization.l2": 1e-3}, tune=Tune("regularization.l2", (1e-5, 1e-3, 1e-1), True)),
             Variant("aug", {"image.translate": 0.1}),
             Variant("h", {"model.hidden": [8]}, tune=Tune("model.hidden", ([8], [16]))),
             Variant("p", {"train.patience": 3}, tune=Tune("train.patience", (2, 4)))]
    assert search.dimensions(parts) == {
        "regularization.l2": {"low": 1e-5, "high": 1e-1, "log": True, "int": False},
        "model.hidden": {"choices": [[8], [16]]},
        "train.patience": {"low": 2, "high": 4, "log": False, "int": True}}


# -- end to end ------------------------------------------------------------------------------

HAND_VS_TUNED = """
[study]
name = "tuning"
seeds = 2
[base]
data = { dataset = "mnist1d", split = [0.8, 0.2, 0.0], train_size = 600 }
model = { dropout = 0.6 }
optim = { lr = 0.01 }
train = { epochs = 6, batch_size = 100, early_stopping = false, progress = false }
[variants.baseline]
label = "dropout 0.6 (the user's network)"
[variants.hand]
label = "dropout 0.9, picked by hand"
model.dropout = 0.9
[variants.tuned]
label = "dropout, tuned"
tune = { "model.dropout" = [0.9, 0.0] }
"""


@pytest.fixture(scope="module")
def tuned_study(tmp_path_factory, data_cache):
    return study_once(tmp_path_factory.mktemp("tune"), data_cache, HAND_VS_TUNED)


def _entry(results, name):
    return next(v for v in results["variants"] if v["name"] == name)


def test_hand_picked_strength_hurts_the_tuned_one_helps(tuned_study):
    study_dir, r = tuned_study
    hand, tuned = _entry(r, "hand"), _entry(r, "tuned")
    assert hand["delta_val"] < 0 and hand["delta_test"] < 0          # 0.9 hurts the network
    assert tuned["tuned"]["chosen"] == 0.0 and tuned["overrides"] == {"model.dropout": 0.0}
    assert tuned["delta_val"] > 0 and tuned["delta_test"] > 0        # the tuned strength helps
    assert tuned["rank"] < _entry(r, "baseline")["rank"] < hand["rank"]
    # the curve: both strengths' validation means, recomputed from the candidates' own runs
    for value, mean in zip(tuned["tuned"]["values"], tuned["tuned"]["val_mean"]):
        accs = [json.loads((study_dir / f"runs/tuned@{value:g}/seed-{s}/results.json").read_text())["val_acc"]
                for s in (0, 1)]
        assert mean == pytest.approx(np.mean(accs))
    # the study's runs: the baseline's, the hand-set variant's and both candidates', per seed
    assert r["runs_trained"] == 2 * 4


def test_only_the_chosen_strength_is_scored_on_test(tuned_study):
    study_dir, r = tuned_study
    for s in (0, 1):
        lost = study_dir / f"runs/tuned@0.9/seed-{s}"
        kept = study_dir / f"runs/tuned@0/seed-{s}"
        assert not any(k.startswith("test_") for k in json.loads((lost / "results.json").read_text()))
        assert "test" not in json.loads((lost / "evaluation.json").read_text())
        kept_results = json.loads((kept / "results.json").read_text())
        assert "test_acc" in kept_results
        assert "confusion_matrix" in json.loads((kept / "evaluation.json").read_text())["test"]
        run = next(x for x in _entry(r, "tuned")["runs"] if x["seed"] == s)
        assert run["results"]["test_acc"] == kept_results["test_acc"]
    # the best variant's test confusion matrix, summed over its runs, for the report
    best = _entry(r, r["best"])
    assert r["confusion"]["variant"] == r["best"] and r["confusion"]["runs"] == 2
    assert sum(map(sum, r["confusion"]["matrix"])) == sum(x["results"]["n_test"] for x in best["runs"])


def _npz(path: Path, permute_test: bool) -> None:
    from sklearn.datasets import make_moons
    X, y = make_moons(900, noise=0.2, random_state=0)
    y_test = y[600:]
    if permute_test:
        y_test = np.random.default_rng(0).permutation(y_test)
    np.savez(path, X=X[:600].astype(np.float32), y=y[:600], X_test=X[600:].astype(np.float32),
             y_test=y_test)


def test_the_test_split_never_chooses(workdir):
    """Two studies whose data differ only in the test labels choose the same strengths, with the
    same validation scores: nothing but validation enters a choice."""
    chosen = []
    for i, permute in enumerate((False, True)):
        _npz(workdir / f"d{i}.npz", permute)
        raw = {"study": {"name": f"t{i}", "seeds": 1, "combine": 2, "search": 3},
               "base": {**BASE, "data": {"dataset": f"npz:d{i}.npz", "split": [0.8, 0.2, 0.0]},
                        "optim": {"lr": 1e-3}, "train": {**BASE["train"], "batch_size": 200}},
               "variants": {"baseline": {}, "lr": {"tune": {"optim.lr": [1e-3, 0.05]}},
                            "b": {"tune": {"train.batch_size": [200, 8]}}}}
        from regulab.studies.study import run_study
        res = run_study(study_from_dict(raw), out=f"s{i}", db=str(workdir / "r.db"), render=False)
        r = res.results
        chosen.append(([(v["name"], (v.get("tuned") or {}).get("chosen"),
                         v["stats"]["val_acc"]["mean"]) for v in r["variants"]],
                       [(t["params"], t["value"]) for t in r["search"]["trials"]],
                       r["combination"]["overrides"]))
        tests = [v["stats"]["test_acc"]["mean"] for v in r["variants"]]
    assert chosen[0] == chosen[1]
    assert tests != [None] * len(tests)


SEARCHED = """
[study]
name = "searched"
seeds = 2
combine = 2
search = 3
[base]
data = { dataset = "mnist1d", split = [0.8, 0.2, 0.0], train_size = 600 }
model = { dropout = 0.8 }
regularization = { input_noise = 2.0 }
optim = { lr = 0.01 }
train = { epochs = 5, batch_size = 100, early_stopping = false, progress = false }
[variants.baseline]
[variants.dropout]
tune = { "model.dropout" = [0.0, 0.2] }
[variants.noise]
tune = { "regularization.input_noise" = [0.01, 0.1] }
"""


def test_the_combination_is_searched_on_validation(workdir, capsys):
    write(workdir / "s.toml", SEARCHED)
    assert main(["study", "s.toml", "--out", "s", "--db", str(workdir / "r.db"), "--quiet"]) == 0
    out = capsys.readouterr().out
    r = json.loads((workdir / "s" / "results.json").read_text())
    found, combo = r["search"], r["combination"]
    assert found["method"] == "optuna-tpe" and found["metric"] == "val_acc"
    assert sorted(found["keys"]) == ["model.dropout", "regularization.input_noise"]
    assert [t["number"] for t in found["trials"]] == [0, 1, 2]
    chosen = {v["tuned"]["key"]: v["tuned"]["chosen"] for v in r["variants"] if v.get("tuned")}
    parts = found["parts"]
    assert sorted(parts) == ["dropout", "noise"]
    # the first trial: the parts merged as tuned alone; the second: the best part alone
    assert found["trials"][0]["parts"] == parts and found["trials"][0]["params"] == chosen
    best_part = next(v for v in r["variants"] if v["name"] == parts[0])
    assert best_part["rank"] == min(v["rank"] for v in r["variants"] if v["name"] in parts)
    assert found["trials"][1]["parts"] == parts[:1]
    assert found["trials"][1]["params"] == {best_part["tuned"]["key"]: best_part["tuned"]["chosen"]}
    assert found["trials"][1]["value"] == pytest.approx(best_part["stats"]["val_acc"]["mean"])
    for t in found["trials"]:
        ranges = {"model.dropout": (0.0, 0.2), "regularization.input_noise": (0.01, 0.1)}
        for k, x in t["params"].items():
            assert ranges[k][0] <= x <= ranges[k][1]
        accs = [json.loads((workdir / "s" / d / "results.json").read_text()) for d in t["run_dirs"]]
        assert t["value"] == pytest.approx(np.mean([a["val_acc"] for a in accs]))
        scored = [any(k.startswith("test_") for k in a) for a in accs]
        # the best part alone is its chosen candidate's runs, trained and scored once already
        assert scored == [t["number"] in (found["best"]["number"], 1)] * 2
    chosen_dir = f"runs/{parts[0]}@{best_part['tuned']['chosen']:g}"
    assert [d.rsplit("/", 1)[0] for d in found["trials"][1]["run_dirs"]] == [chosen_dir] * 2
    assert not (workdir / "s/runs/combination@t1").exists()
    best = max(found["trials"], key=lambda t: (t["value"], -t["number"]))
    assert found["best"]["number"] == best["number"]
    assert {k: combo["overrides"][k] for k in best["params"]} == best["params"]
    assert combo["parts"] == best["parts"]
    # on validation the combination is at least as good as the merge and as its best part
    entry = next(v for v in r["variants"] if v["name"] == "combination")
    assert entry["stats"]["val_acc"]["mean"] >= max(t["value"] for t in found["trials"][:2]) - 1e-12
    assert "Optuna trials on validation" in out and "tuned dropout: model.dropout" in out
    # the forward step: the best part alone, then merged with the other (a pair that beat it)
    steps = r["forward"]
    assert steps[0]["partner"] is None and steps[0]["parts"] == parts[:1]
    assert steps[1]["partner"] == parts[1] and steps[1]["gain"] > 0
    assert steps[1]["value"] == pytest.approx(steps[0]["value"] + steps[1]["gain"])
    assert steps[1]["value"] == pytest.approx(found["trials"][0]["value"])   # the same runs
    # the trial 0 runs are the pair's, the trial 1 runs a candidate's: neither trained again
    assert r["runs_trained"] == 2 * (1 + 2 + 2 + 1 + 1)     # baseline, candidates, pair, trial 2


class _PairRunner:
    """A stand-in for the study's runner: each variant's validation score per seed is the sum
    of its parts' (``value`` by override key) plus the seed / 1000, and it records what the
    forward step asked it to train."""

    def __init__(self, seeds, value):
        from regulab.studies.kinds.base import Job
        self.jobs, self.value, self.trained = [Job(s) for s in seeds], value, []

    def train_populations(self, variants, jobs=None):
        self.trained += [(v.name, tuple(j.seed for j in jobs)) for v in variants]

    def run_variant(self, v, jobs=None):
        score = sum(self.value.get(k, 0.0) for k in v.overrides)
        assert v.overrides["eval.test"] is False            # the test split stays off
        return [{"seed": j.seed, "run_dir": f"runs/{v.name}/seed-{j.seed}",
                 "results": {"val_acc": score + j.seed / 1000}} for j in jobs]


def test_forward_step_ranks_partners_by_what_they_add_to_the_best():
    """The forward step trains the best variant merged with each candidate on the first
    FORWARD_SEEDS seeds and keeps those whose pair beats the best alone, best pair first --
    whatever they scored alone."""
    assert search.FORWARD_SEEDS == 2
    value = {"image.translate": 0.80, "regularization.label_smoothing": 0.05,
             "model.dropout": -0.02, "regularization.ema": 0.01}
    runner = _PairRunner([0, 1, 2], value)
    best = Variant("augment", {"image.translate": 0.1})
    others = [Variant("dropout", {"model.dropout": 0.2}), Variant("ema", {"regularization.ema": 0.99}),
              Variant("ls", {"regularization.label_smoothing": 0.1})]
    best_runs = [{"seed": s, "results": {"val_acc": 0.80 + s / 1000}} for s in (0, 1, 2)]
    ranked, rows = search.forward(runner, best, others, "acc", best_runs)
    assert [v.name for v in ranked] == ["ls", "ema"]               # dropout's pair is worse
    assert runner.trained == [(f"augment+{o.name}", (0, 1)) for o in others]
    alone = 0.80 + 0.0005
    assert rows[0] == {"partner": None, "parts": ["augment"], "value": pytest.approx(alone),
                       "gain": 0.0, "seeds": 2, "run_dirs": []}
    assert [r["partner"] for r in rows[1:]] == ["ls", "ema", "dropout"]       # best pair first
    assert [r["gain"] for r in rows[1:]] == pytest.approx([0.05, 0.01, -0.02])
    assert rows[1]["run_dirs"] == ["runs/augment+ls/seed-0", "runs/augment+ls/seed-1"]
    # nothing adds: no partner
    ranked, rows = search.forward(_PairRunner([0, 1], {"image.translate": 0.8, "model.dropout": -0.1}),
                                  best, others[:1], "acc",
                                  [{"seed": s, "results": {"val_acc": 0.8 + s / 1000}} for s in (0, 1)])
    assert ranked == [] and rows[1]["gain"] == pytest.approx(-0.1)


def test_budgets(workdir):
    from regulab.studies.study import run_study
    raw = {"study": {"seeds": 1, "budget": "equal"}, "base": {**BASE, "train": {
        **BASE["train"], "early_stopping": True, "patience": 1, "epochs": 5}},
        "variants": {"baseline": {}, "d": {"model.dropout": 0.3}}}
    r = run_study(study_from_dict(raw), out="eq", db=str(workdir / "r.db"), render=False).results
    assert r["budget"] == "equal"
    assert all(run["results"]["epochs_run"] == 5 for v in r["variants"] for run in v["runs"])
    spec = study_from_dict({**raw, "study": {"seeds": 1, "budget": "score"}})
    cfg = spec.config(spec.variants[1], 0)
    assert cfg.train.early_stopping and cfg.train.restore_best and cfg.train.monitor == "auto"
    assert cfg.train.patience == 1            # the configs' own patience and cap stay
    # a variant's own train keys apply over the budget's
    spec = study_from_dict({**raw, "study": {"seeds": 1, "budget": "score"},
                            "variants": {"baseline": {}, "x": {"train.early_stopping": False}}})
    assert not spec.config(spec.variants[1], 0).train.early_stopping


def test_bad_tune_in_a_study_file_writes_nothing(workdir, capsys):
    write(workdir / "bad.toml", HAND_VS_TUNED.replace('[0.9, 0.0]', '[0.9]'))
    code = main(["study", "bad.toml", "--out", "out"])
    assert_refused(capsys, code, ["variants.tuned.tune", "model.dropout", "2 or more"], workdir)


def test_python_api_tunes_and_budgets(workdir):
    import regulab as rl
    cfg = rl.load_config(None, {"data.dataset": "moons", "data.n_samples": 200, "model.hidden": [8],
                                "train.epochs": 3, "train.progress": False})
    res = rl.study(cfg, variants={"l2": {"tune": {"regularization.l2": [1e-4, 1e-1]}}}, seeds=2,
                   budget="equal", out="s")
    l2 = res.variant("l2")
    assert l2["tuned"]["values"] == [1e-4, 1e-1] and l2["tuned"]["chosen"] in (1e-4, 1e-1)
    assert res.results["budget"] == "equal" and res.results["runs_trained"] == 2 * 3
    assert all(r["results"]["epochs_run"] == 3 for v in res.results["variants"] for r in v["runs"])
