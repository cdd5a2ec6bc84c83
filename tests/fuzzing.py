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
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "quick"))
EXAMPLES = settings.default.max_examples

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
    beyond the bound for the ``WORK`` keys)."""
    k = draw(KEY)
    if k == "train.nproc":      # no data-parallel processes in-process (tests/test_distributed.py)
        return k, draw(NO_PROCESSES)
    return k, draw(plausible(k) if draw(st.integers(0, 2)) else SMALL if k in WORK else VALUES)
