"""Start-up: ``import regulab`` and the command line's ``--help`` / ``--version`` load neither torch
nor anything heavier; the public names load on first use; the train path leaves the optional
heavy packages alone. Each check runs in a fresh interpreter and reads its ``sys.modules`` (no
timings here: ``bench/startup.py`` measures them)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

import regulab
from regulab.cli import build_parser

from .conftest import REPO

HEAVY = ("sklearn", "scipy", "matplotlib", "optuna", "sqlalchemy", "cv2", "pandas")


def python(*args: str) -> subprocess.CompletedProcess:
    """``python ARGS`` with this checkout's ``src`` first on the path."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=120)


def loaded_after(code: str) -> list[str]:
    """The top-level packages of ``HEAVY`` and torch that ``code`` leaves in ``sys.modules``."""
    done = python("-c", f"{code}\nimport json, sys\n"
                        f"print(json.dumps([m for m in {HEAVY + ('torch',)!r} if m in sys.modules]))")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def imported(importtime: str) -> set[str]:
    """The modules named in ``python -X importtime``'s report (stderr)."""
    return {line.rsplit("|", 1)[1].strip() for line in importtime.splitlines() if line.startswith("import time:")}


def test_import_regulab_loads_nothing_heavy_and_not_torch():
    assert loaded_after("import regulab\nassert regulab.__version__") == []


def test_the_train_path_leaves_the_optional_packages_alone():
    """What a plain run imports up front: torch and the run store's SQLAlchemy, not scikit-learn,
    SciPy, pandas, Matplotlib, Optuna nor OpenCV."""
    assert loaded_after("import regulab.runs.run") == ["sqlalchemy", "torch"]


def test_a_whole_regulab_train_imports_only_torch_and_the_store(tmp_path):
    """A run start to end (split, network, Adam, checkpoint, store, final evaluation) through
    the command: no scikit-learn, SciPy or pandas (the split is NumPy's), no torch._dynamo
    (``engine.optimizers.Steps`` and ``no_dynamo_import``) and no SymPy (``nn.models.materialize``)
    -- together 2-3 s of CPU before a tiny network's first step; nor the viewers' packages,
    MLflow and TensorBoard, which only ``[log]`` imports."""
    done = python("-X", "importtime", "-m", "regulab", "train", "examples/quickstart.toml",
                  "--set", "train.epochs=2", "--set", "train.progress=false", "--out", str(tmp_path / "run"))
    assert done.returncode == 0, done.stderr
    tops = {m.split(".")[0] for m in imported(done.stderr)}
    assert {"torch", "sqlalchemy", "numpy"} <= tops
    assert not tops & {"sklearn", "scipy", "pandas", "sympy", "matplotlib", "optuna", "mlflow", "tensorboard"}, tops
    assert not any(m.startswith("torch._dynamo") for m in imported(done.stderr))


def test_public_names_load_on_first_use():
    done = python("-c", "import sys, regulab\n"
                        "from regulab import train, Config\n"
                        "import regulab.runs.run as r, regulab.config.core as c\n"
                        "assert train is r.train is regulab.train and Config is c.Config\n"
                        "assert regulab.nn is sys.modules['regulab.nn']\n"
                        "print('torch' in sys.modules)")
    assert done.returncode == 0 and done.stdout.strip() == "True", done.stderr


def test_every_public_name_resolves_and_is_listed():
    for name in regulab.__all__:
        assert getattr(regulab, name) is not None, name
    assert set(regulab.__all__) <= set(dir(regulab)) and "__version__" in dir(regulab)
    with pytest.raises(AttributeError, match="has no attribute 'tarin'"):
        regulab.tarin       # noqa: B018


def test_python_m_regulab_version_loads_no_torch():
    done = python("-X", "importtime", "-m", "regulab", "--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"regulab {regulab.__version__}\n"
    modules = imported(done.stderr)
    assert "regulab.cli" in modules and "torch" not in modules, sorted(modules)


def test_python_m_regulab_is_the_command():
    done = python("-m", "regulab")
    assert done.returncode == 2 and done.stderr.startswith("regulab: error:"), done.stderr


def test_help_of_every_command_and_version_load_no_torch():
    """``regulab --help``, ``--version`` and each subcommand's ``--help`` through ``cli.main``,
    as the console script calls it, in one fresh interpreter."""
    commands = re.search(r"\{([^}]*)\}", build_parser().format_usage()).group(1).split(",")
    argvs = [["--help"], ["--version"]] + [[c, "--help"] for c in commands] + [["explain", "backprop", "--help"]]
    code = ("import contextlib, io, json, sys\n"
            "from regulab.cli import main\n"
            "codes = []\n"
            f"for argv in {argvs!r}:\n"
            "    out = io.StringIO()\n"
            "    with contextlib.redirect_stdout(out):\n"
            "        try:\n"
            "            main(argv)\n"
            "        except SystemExit as e:\n"
            "            codes.append((e.code, out.getvalue()))\n"
            f"print(json.dumps([codes, [m for m in {HEAVY + ('torch',)!r} if m in sys.modules]]))")
    done = python("-c", code)
    assert done.returncode == 0, done.stderr
    codes, loaded = json.loads(done.stdout)
    assert len(codes) == len(argvs) and all(c == 0 for c, _ in codes), codes
    assert codes[1][1] == f"regulab {regulab.__version__}\n"
    assert all(text.startswith("usage: regulab") for _, text in codes[:1] + codes[2:])
    assert "train" in commands and loaded == []
