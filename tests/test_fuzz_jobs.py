"""The fuzz suite (issue 16), study and sweep files: Hypothesis builds them from valid parts (a
tiny base config, variants and a search space of keys in their ranges, the files' own keys),
then perhaps mutates them (a value replaced by junk, a key misspelled or added at any depth, a
table removed), and runs ``regulab study`` / ``regulab sweep`` on them end to end. Each case
holds the property of ``tests.fuzzing`` for jobs (``job_case``): exit 0 with the job's files, or
exit 2 with one line and nothing written (no directory, no store), or exit 3 for a run that
diverged. Every failure found was fixed at its source and is kept as an ``@example``.
"""

from __future__ import annotations

import json

from hypothesis import event, example, given, settings
from hypothesis import strategies as st

from .fuzzing import KEY, VALID, VALUES, case, cases, fuzz_environment, job_case  # noqa: F401
from .test_fuzz import nested, render

# a base of two tiny epochs on 60 rows: a study of 3 variants x 2 seeds trains in a second
TINY_BASE = {"data": {"dataset": "moons", "n_samples": 60}, "model": {"hidden": [4]},
             "train": {"epochs": 2, "batch_size": 30, "progress": False}}
MEMBER = ["model.dropout", "regularization.l2", "regularization.l1", "optim.lr", "model.input_dropout",
          "regularization.label_smoothing", "regularization.input_noise"]
NAMES = st.sampled_from(["baseline", "l2", "drop", "a", "x-1", "combination", "b c", "", "é", "a" * 200])


def _mutated(draw, doc: dict) -> dict:
    """``doc`` as is (2 times in 3), or with one change: a value replaced by any TOML value, a
    key added (real, misspelled or unknown) at some depth, or an entry removed."""
    paths = _paths(doc)
    kind = draw(st.sampled_from(["none"] * 6 + ["value", "key", "drop"]))
    event(f"mutation {kind}")
    if kind == "none" or not paths:
        return doc
    path = draw(st.sampled_from(paths))
    *parents, last = path
    table = doc
    for p in parents:
        table = table[p]
    if kind == "value":
        table[last] = draw(VALUES)
    elif kind == "drop":
        del table[last]
    else:
        target = table[last] if isinstance(table[last], dict) else table
        target[draw(KEY | st.sampled_from(["seeds", "kind", "trials", "space", "variants", "low"]))] = draw(VALUES)
    return doc


def _paths(obj: dict, at: tuple = ()) -> list[tuple]:
    return [p for k, v in obj.items() for p in [(*at, k), *(_paths(v, (*at, k)) if isinstance(v, dict) else [])]]


def _member_value(draw, key: str):
    return draw(VALID[key]) if key in VALID else draw(st.sampled_from([0.0, 0.1, 0.3]))


def _strengths(draw, key: str) -> list:
    """Two distinct values of ``key``, sorted (a grid's values, a variant's tune)."""
    values = draw(st.lists(VALID.get(key, st.sampled_from([0.0, 0.1, 0.3])), min_size=2, max_size=2, unique=True))
    return sorted(values)


@st.composite
def study_files(draw) -> str:
    """A study file: [study] (kind compare or grid, 1-2 seeds, population, budget, combine,
    search), a tiny [base] with keys in range, 1-3 variants (overrides of member keys, meta keys:
    label, tune over 2 strengths, members), a [grid] table for a grid; then perhaps mutated."""
    kind = draw(st.sampled_from(["compare", "compare", "compare", "grid"]))
    combine = draw(st.sampled_from([0, 0, 2]))
    study = {"name": draw(st.sampled_from(["fz", "fz", "fz", "b c", "../x"])), "kind": kind,
             "seeds": draw(st.sampled_from([1, 2, 2, [3, 5]])), "population": draw(st.sampled_from([64, 0, 2])),
             "budget": draw(st.sampled_from(["config", "score", "equal"])),
             "combine": combine, "search": draw(st.sampled_from([0, 2])) if combine else 0}
    base = json.loads(json.dumps(TINY_BASE))
    for k in draw(st.lists(st.sampled_from(["model.activation", "optim.name", "data.preprocess",
                                            "model.batchnorm", "regularization.ema"]), max_size=2, unique=True)):
        nested({k: draw(VALID[k])}, base)
    doc = {"study": study, "base": base}
    if kind == "grid":
        key = draw(st.sampled_from(MEMBER))
        doc["grid"] = {"key": key, "values": _strengths(draw, key)}
    else:
        variants = {}
        for name in draw(st.lists(NAMES, min_size=1, max_size=3, unique=True)):
            v: dict = {}
            for key in draw(st.lists(st.sampled_from(MEMBER), max_size=2, unique=True)):
                v[key] = _member_value(draw, key)
            meta = draw(st.sampled_from(["", "", "label", "tune", "members"]))
            if meta == "label":
                v["label"] = draw(st.text(max_size=8))
            elif meta == "tune":
                key = draw(st.sampled_from(MEMBER))
                v.pop(key, None)
                v["tune"] = {key: _strengths(draw, key)}
            elif meta == "members":
                v["members"] = 2
            variants[name] = v
        doc["variants"] = {"baseline": {}, **variants} if draw(st.booleans()) else variants
    return render(_mutated(draw, doc))


@settings(max_examples=cases(12, 40))
@given(study_files())
def test_fuzzed_study_files(text):
    with case() as root:
        job_case(root, "study", text, ["results.json", "report.html", "study.json"])


DIMENSIONS = {
    "optim.lr": st.sampled_from([{"low": 1e-3, "high": 1e-1, "log": True}, {"low": 0.01, "high": 0.1},
                                 {"choices": [0.01, 0.1]}, {"values": [0.003, 0.03]}]),
    "model.dropout": st.sampled_from([{"low": 0.0, "high": 0.5, "step": 0.25}, {"choices": [0.0, 0.5]},
                                      {"values": [0.0, 0.2]}]),
    "model.hidden": st.sampled_from([{"choices": [[4], [8, 4]]}, {"values": [[2], [4]]}]),
    "regularization.l2": st.sampled_from([{"low": 1e-5, "high": 1e-2, "log": True}, {"values": [0.0, 0.01]}]),
    "optim.name": st.just({"choices": ["adam", "sgd"]}),
}


@st.composite
def sweep_files(draw) -> str:
    """A sweep file: [sweep] (a sampler, 1-3 trials, a metric and direction, a pruner, a seed, a
    population), a tiny [base], 1-2 dimensions in [space]; then perhaps mutated."""
    sampler = draw(st.sampled_from(["tpe", "random", "grid"]))
    sweep = {"name": draw(st.sampled_from(["fz", "fz", "fz", "b c", ""])), "sampler": sampler,
             "trials": draw(st.integers(1, 3)), "seed": draw(st.sampled_from([0, 1, 5000, 2**31 - 1, 2**31])),
             "pruner": draw(st.sampled_from(["none", "median", "hyperband"])),
             "population": draw(st.sampled_from([1, 2, 8]))}
    if draw(st.booleans()):
        sweep["metric"], sweep["direction"] = draw(st.sampled_from(
            [("val_acc", "maximize"), ("val_loss", "minimize"), ("val_acc", "minimize"), ("train_loss", "minimize")]))
    if sampler == "grid":
        sweep.pop("trials")     # the grid's size
    space = {}
    for key in draw(st.lists(st.sampled_from(sorted(DIMENSIONS)), min_size=1, max_size=2, unique=True)):
        dim = draw(DIMENSIONS[key])
        space[key] = dim if sampler != "grid" or "values" in dim else {"values": dim.get("choices", [0.01])}
    doc = {"sweep": sweep, "base": json.loads(json.dumps(TINY_BASE)), "space": space}
    return render(_mutated(draw, doc))


FOUND_SEED = ('[sweep]\nname = "fz"\nsampler = "tpe"\ntrials = 1\nseed = {}\n[base]\n'
              'data = {{dataset = "moons", n_samples = 60}}\nmodel = {{hidden = [4]}}\n'
              'train = {{epochs = 2, batch_size = 30, progress = false}}\n[space]\n'
              '"model.dropout" = {{low = 0.0, high = 0.5, step = 0.25}}\n')


@settings(max_examples=cases(10, 30))
@given(sweep_files())
@example(FOUND_SEED.format(2**31)).via("found: a seed of 2^31 or more raised NumPy's ValueError (a traceback)")
@example(FOUND_SEED.format(5000)).via("found: a sampler seed >= 4295 times 1_000_003 passed 2^32: ValueError")
def test_fuzzed_sweep_files(text):
    with case() as root:
        job_case(root, "sweep", text, ["sweep.json", "report.html"])
