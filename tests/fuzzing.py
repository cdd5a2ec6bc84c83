"""What the fuzz suite's modules share (issue 16): the Hypothesis profiles, the property a case
must hold, and strategies for config values and keys.

The property, for every case run by ``train_case``: exit 0 with a run (its results.json), or
exit 2 with one line naming the problem -- no traceback, nothing written (no run directory, no
run row in the store) -- or exit 3 for a run that diverged; never exit 1 (a disk error) nor an
exception. Cases run the CLI in-process, each in a fresh directory.

Seeded (``derandomize=True``, no example database): the ``quick`` profile (the default, run by
``make test``) tries a few dozen cases per test; ``HYPOTHESIS_PROFILE=fuzz`` (``make fuzz``)
ten times as many. Each case has a deadline (``DEADLINE``), a guard against hangs, and may
raise the process's peak memory by at most ``MAX_GROWTH``; the strategies keep cases small: a
valid case trains a tiny MLP on a few hundred rows for a few epochs, the keys that size work or
start processes (``WORK``) are drawn small or far beyond their bound, and generated files are at
most a few kB.
"""

from __future__ import annotations

import io
import json
import math
import os
import resource
import sqlite3
import tempfile
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, event, settings
from hypothesis import strategies as st

from regulab.cli import main
from regulab.config.core import json_schema

DEADLINE = timedelta(seconds=20)    # a guard against hangs, far above a case's usual 0.01-1 s
MAX_GROWTH = 1 << 30                # bytes a case may add to the process's peak memory
settings.register_profile("quick", derandomize=True, database=None, max_examples=100, deadline=DEADLINE,
                          phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("fuzz", parent=settings.get_profile("quick"), max_examples=1000)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "quick")
settings.load_profile(PROFILE)
EXAMPLES = settings.default.max_examples


def cases(quick: int, fuzz: int) -> int:
    """The cases of a test whose cases cost more than a refusal's (each trains runs, a study,
    a sweep): ``quick`` in ``make test``, ``fuzz`` in ``make fuzz``."""
    return fuzz if PROFILE == "fuzz" else quick

BASE = """name = "fuzz"
[data]
dataset = "moons"
n_samples = 120
[model]
hidden = [4]
[train]
epochs = 2
batch_size = 40
"""
SCHEMA = json_schema()["properties"]
KEYS = sorted(["name"] + [f"{s}.{k}" for s, v in SCHEMA.items() if "properties" in v for k in v["properties"]])
# keys whose in-range values size work, time or processes: drawn small, or beyond their bound
WORK = {"data.n_samples", "data.workers", "data.memory_budget", "model.hidden", "model.channels",
        "model.kernel_size", "train.epochs", "train.patience", "train.nproc", "train.threads",
        "train.batch_size", "eval.mc_samples", "eval.batch_size", "text.copies", "text.max_features",
        "text.embedding_dim", "data.folds", "data.resident", "data.dataset", "model.factory",
        "transfer.source", "audio.noise_file", "image.resize", "image.random_crop", "video.size",
        "video.frames", "audio.sample_rate", "audio.seconds", "audio.n_mels", "audio.n_fft"}


# -- running the CLI on a case and checking the property -----------------------------------------

@pytest.fixture(scope="module", autouse=True)
def fuzz_environment(data_cache):
    """The session's data cache, and no run store from the environment."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("REGULAB_CACHE", str(data_cache))
        mp.delenv("REGULAB_DB", raising=False)
        yield


@contextmanager
def case():
    """A fresh working directory for one generated case (function-scoped fixtures are not
    reset between Hypothesis's examples)."""
    old = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="fuzz-") as root:
        os.chdir(root)
        try:
            yield Path(root)
        finally:
            os.chdir(old)


def _peak_rss() -> int:
    """The process's peak resident memory so far, in bytes (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def cli(argv: list[str]) -> tuple[int, str]:
    """``regulab ARGV`` in-process: (exit code, stderr); a case that raised the process's peak
    memory by more than ``MAX_GROWTH`` fails (a guard: the peak only shows the largest case)."""
    err = io.StringIO()
    before = _peak_rss()
    with redirect_stdout(io.StringIO()), redirect_stderr(err):
        code = main(argv)
    grown = _peak_rss() - before
    assert grown <= MAX_GROWTH, f"the case raised the peak memory by {grown / 2**20:.0f} MiB"
    return code, err.getvalue()


def _run_rows(db: Path) -> int:
    if not db.exists():
        return 0
    conn = sqlite3.connect(db)
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        return conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] if "runs" in tables else 0
    finally:
        conn.close()


def train_case(root: Path, config: str, sets: list[str] = ()) -> tuple[int, str]:
    """``regulab train`` on ``config`` (TOML text) with ``--set`` items; asserts the property."""
    (root / "c.toml").write_text(config, encoding="utf-8", errors="surrogatepass")
    db = root / "store" / "r.db"
    code, err = cli(["train", "c.toml", *(f"--set={s}" for s in sets), "--out", "out",
                      "--db", f"sqlite:///{db}", "--quiet"])
    event(f"exit {code}")
    assert "Traceback" not in err, err
    assert code in (0, 2, 3), (code, err)
    if code == 2:
        assert err.count("\n") == 1 and err.startswith("regulab: error: "), err
        assert not (root / "out").exists(), err
        assert _run_rows(db) == 0, err
    elif code == 0:
        assert (root / "out" / "results.json").is_file(), err
    return code, err


def job_case(root: Path, command: str, text: str, files: list[str]) -> tuple[int, str]:
    """``regulab study`` or ``regulab sweep`` on the file ``text``; asserts the property: exit 0
    with ``files`` in the job's directory, exit 2 with one line and nothing written (no
    directory, no ``runs/``, no run in the store), or exit 3 (diverged) with one line."""
    (root / "j.toml").write_text(text, encoding="utf-8", errors="surrogatepass")
    db = root / "store" / "r.db"
    code, err = cli([command, "j.toml", "--out", "out", "--db", f"sqlite:///{db}", "--quiet"])
    event(f"exit {code}")
    assert "Traceback" not in err, err
    assert code in (0, 2, 3), (code, err)
    if code in (2, 3):
        assert err.count("\n") == 1 and err.startswith("regulab: "), err
    if code == 2:
        assert not (root / "out").exists() and not (root / "runs").exists(), err
        assert _run_rows(db) == 0, err
    elif code == 0:
        for name in files:
            assert (root / "out" / name).is_file(), (name, err)
    return code, err


def check_complete_run(run_dir: Path, db: Path) -> None:
    """A finished run: every file of its directory, one metrics.csv row per epoch run, and its
    store row completed with one epoch row per epoch."""
    from regulab.runs.store import RunStore
    results = json.loads((run_dir / "results.json").read_text())
    for name in ("config.toml", "metrics.csv", "evaluation.json", "model.safetensors", "model.json"):
        assert (run_dir / name).is_file(), name
    with open(run_dir / "metrics.csv") as f:
        assert sum(1 for _ in f) == 1 + results["epochs_run"]
    store = RunStore(f"sqlite:///{db}")
    (row,) = store.runs()
    assert row["status"] == "completed"
    assert [h["epoch"] for h in store.get_run(row["id"])["history"]] == list(range(1, results["epochs_run"] + 1))
    store.close()


# -- values: TOML literals of every kind ----------------------------------------------------------

HUGE = [2**31, 2**32 - 1, 2**53 + 1, 2**63, -(2**63) - 1, 10**12, 10**30, int("9" * 400)]
FLOATS = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([1e-320, 1e300, -0.0, 0.5, 3.4e38])
STRINGS = st.text(max_size=12) | st.sampled_from(["", "auto", "none", "relu", "adam", "../x", "/dev/zero",
                                                   "csv:", "npz:x.npz", "images:/proc", "a" * 300])
SCALARS = st.integers(-3, 5) | st.sampled_from(HUGE) | FLOATS | st.booleans() | STRINGS
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.sampled_from(["a", "x", "lr", "0", "big"]), inner, max_size=3),
                      max_leaves=8)
NO_PROCESSES = st.sampled_from([0, 1, -1, 1.5, 10**12, 2**63, "2", True, [2]])
SMALL = st.integers(-2, 3) | st.sampled_from([10**12, 2**63, -(2**63), 1e300, math.nan, "x", True, [], [2]])


def toml(v) -> str:
    """``v`` as a TOML literal (inf and nan as TOML writes them)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list):
        return "[" + ", ".join(toml(x) for x in v) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {toml(x)}" for k, x in v.items()) + "}"


def _typo(k: str, i: int, c: str) -> str:
    i %= len(k) + 1
    return k[:i] + c + k[i + 1:]


KEY = (st.sampled_from(KEYS) | st.sampled_from(KEYS) | st.sampled_from(KEYS)
       | st.builds(_typo, st.sampled_from(KEYS), st.integers(0, 30), st.sampled_from(["", "_", "x", ".", "-"]))
       | st.sampled_from(["data", "optim", "extra.key", "data.seed.x", "a.b.c.d", "augment.audio.noise_snr",
                          "train.", ".lr", "", "model.hidden.0"]))


def plausible(k: str) -> st.SearchStrategy:
    """Values of the key's type in the schema (one of its options, a small number), so that some
    cases train; unknown keys get any value."""
    section, _, name = k.partition(".")
    spec = SCHEMA.get(section, {}).get("properties", {}).get(name, {})
    if "enum" in spec:
        return st.sampled_from(spec["enum"])
    return {"integer": st.integers(0, 3), "number": st.sampled_from([0.0, 0.1, 0.5, 1.0, 2.0]),
            "boolean": st.booleans(), "array": st.lists(st.integers(0, 3), max_size=2)}.get(spec.get("type"), VALUES)


@st.composite
def overrides(draw) -> tuple[str, object]:
    """A key (real, misspelled or unknown) and a value for it: of its type, or any (small or far
    beyond the bound for the ``WORK`` keys) -- or, one time in three, a key of ``VALID`` with a
    value in its valid range, so that cases of several keys train too."""
    if not draw(st.integers(0, 2)):
        k = draw(st.sampled_from(sorted(VALID)))
        return k, draw(VALID[k])
    k = draw(KEY)
    if k == "train.nproc":      # no data-parallel processes in-process (tests/test_distributed.py)
        return k, draw(NO_PROCESSES)
    return k, draw(plausible(k) if draw(st.integers(0, 2)) else SMALL if k in WORK else VALUES)


# -- valid configs: values in range, small work, no relation broken --------------------------------

def _enum(k: str) -> st.SearchStrategy:
    section, _, name = k.partition(".")
    return st.sampled_from(SCHEMA[section]["properties"][name]["enum"])


def _unit(high: float = 0.9) -> st.SearchStrategy:
    """A probability or strength in [0, high]: often 0, often a round number."""
    return st.just(0.0) | st.sampled_from([0.1, 0.5, high]) | st.floats(0.0, high)


def _positive(low: float, high: float) -> st.SearchStrategy:
    return st.sampled_from([low, high]) | st.floats(low, high)


# key -> a value its config accepts whatever the other keys of ``valid_configs`` say (data on
# which it applies: ``valid_configs`` draws the data first); work kept tiny
VALID: dict[str, st.SearchStrategy] = {
    "model.hidden": st.lists(st.integers(1, 8), max_size=2),
    "model.activation": _enum("model.activation"),
    "model.init": _enum("model.init"),
    "model.batchnorm": st.booleans(),
    "model.batchnorm_position": _enum("model.batchnorm_position"),
    "model.dropout": _unit(),
    "model.dropout_mode": _enum("model.dropout_mode"),
    "model.input_dropout": _unit(),
    "model.dropconnect": _unit(),
    "model.dropconnect_per_example": st.booleans(),
    "regularization.l1": _unit(1.0),
    "regularization.l2": _unit(1.0),
    "regularization.penalty_bias": st.booleans(),
    "regularization.max_norm": _positive(0.01, 10.0),
    "regularization.input_noise": _unit(2.0),
    "regularization.weight_noise": _unit(0.5),
    "regularization.ema": _unit(0.999),
    "optim.name": _enum("optim.name"),
    "optim.lr": _positive(1e-5, 1.0),
    "optim.momentum": _unit(0.99),
    "optim.betas": st.lists(_unit(0.999), min_size=2, max_size=2),
    "optim.alpha": _positive(0.01, 0.999),
    "optim.eps": _positive(1e-10, 1e-3),
    "optim.weight_decay": _unit(0.1),
    "optim.schedule": _enum("optim.schedule"),
    "optim.warmup_epochs": st.integers(0, 3),
    "optim.step_size": st.integers(1, 3),
    "optim.gamma": _positive(0.01, 1.0),
    "optim.plateau_patience": st.integers(0, 3),
    "optim.min_lr": st.just(0.0) | _positive(1e-8, 1e-4),
    "train.epochs": st.integers(1, 2),
    "train.batch_size": st.integers(1, 300),
    "train.seed": st.integers(0, 2**31 - 1),
    "train.early_stopping": st.booleans(),
    "train.patience": st.integers(1, 3),
    "train.min_delta": _unit(0.1),
    "train.monitor": st.sampled_from(["auto", "val_loss", "train_loss"]),
    "train.restore_best": st.booleans(),
    "train.start_from_epoch": st.integers(0, 3),
    "train.checkpoint_every": st.just("auto") | st.integers(1, 3),
    "train.eval_train": st.booleans(),
    "train.threads": st.sampled_from(["auto", 1]),
    "data.split": st.sampled_from([[0.6, 0.2, 0.2], [0.8, 0.15, 0.05], [0.5, 0.5, 0.0], [0.7, 0.3, 0.0]]),
    "data.stratify": st.booleans(),
    "data.seed": st.integers(0, 2**31 - 1),
    "data.preprocess": _enum("data.preprocess"),
    "data.bootstrap": st.booleans(),
    "eval.mc_samples": st.integers(1, 4),
    "eval.batch_size": st.integers(1, 4096),
    "eval.test": st.booleans(),
}
CLASSIFICATION = {"regularization.label_smoothing": _unit(0.5), "data.label_noise": _unit(0.5),
                  "eval.dropout_inference": _enum("eval.dropout_inference")}
IMAGE = {"model.kind": st.sampled_from(["mlp", "cnn", "linear"]),
         "model.channels": st.lists(st.integers(1, 3), min_size=1, max_size=2),
         "model.kernel_size": st.integers(1, 3), "image.rotation": _unit(180.0), "image.hflip": _unit(1.0),
         "image.vflip": _unit(1.0), "image.translate": _unit(0.3), "image.shear": _unit(30.0),
         "image.scale": st.sampled_from([[1.0, 1.0], [0.8, 1.2], [0.5, 1.0]])}


@st.composite
def valid_configs(draw) -> dict[str, object]:
    """Overrides of ``BASE`` that make a valid config: a data set (moons, sine: regression,
    digits: 8x8 images, perhaps a CNN), then up to 8 keys of ``VALID`` (and those of its task and
    modality) in their ranges. Every case must train (or diverge)."""
    dataset = draw(st.sampled_from(["moons", "moons", "sine", "digits"]))
    out: dict[str, object] = {"data.dataset": dataset}
    if dataset == "digits":
        out["data.train_size"] = draw(st.integers(30, 200))
    else:
        out["data.n_samples"] = draw(st.integers(40, 200))
    pool = {**VALID, **(CLASSIFICATION if dataset != "sine" else {}), **(IMAGE if dataset == "digits" else {})}
    for k in draw(st.lists(st.sampled_from(sorted(pool)), max_size=8, unique=True)):
        out[k] = draw(pool[k])
    epochs = out.get("train.epochs", 2)
    for k in ("train.start_from_epoch", "optim.warmup_epochs"):     # must leave an epoch after them
        if out.get(k, 0) >= epochs:
            out[k] = epochs - 1
    if out.get("model.dropconnect") and out.get("regularization.weight_noise"):   # both wrap the weights
        del out["regularization.weight_noise"]
    if out.get("optim.min_lr", 0.0) >= out.get("optim.lr", 0.01):     # a schedule decays towards it
        del out["optim.min_lr"]
    if out.get("optim.name") == "nesterov" and out.get("optim.momentum") == 0:  # its step needs one
        del out["optim.momentum"]
    event(f"data {dataset}")
    return out
