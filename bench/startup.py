"""Start-up cost of the command line and of ``import regulab``, and what a whole small run pays
on top of its fit.

Each command runs in a fresh process with this checkout's ``src`` (or ``--src``) first on
``PYTHONPATH``; its CPU time (user + system, ``resource.getrusage(RUSAGE_CHILDREN)`` before and
after) and wall time are the median of ``--repeats`` runs, after one untimed run (so files are in
the page cache):

    regulab --help / regulab --version      the console script (``regulab.cli:main``)
    python -m regulab --version
    python -c "import regulab"
    python -c "import torch"                the floor: every run pays it

Then one whole ``regulab train`` of the MNIST-1D baseline (examples/quickstart.toml: MLP
40-100-100-10, Adam lr 0.01, batch 100) for ``--epochs`` epochs without early stopping or
progress bar, its wall time against its ``fit_seconds`` (results.json): the difference is the
start-up, data, set-up and finish a run pays around its training loop. The data cache is warmed
by one untimed run first.

    python bench/startup.py [--repeats 5] [--train-repeats 3] [--epochs 40] [--src OTHER/src]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import cpu_name  # bench/machine.py, beside this script

REPO = Path(__file__).resolve().parents[1]
SCRIPT = Path(sys.executable).parent / "regulab"      # the venv's console script


def timed(argv: list[str], env: dict[str, str], cwd: str) -> tuple[float, float, int, str]:
    """(CPU seconds, wall seconds, exit code, first line of output) of one process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    out = (done.stdout or done.stderr).strip().splitlines()
    return cpu, wall, done.returncode, out[0] if out else ""


def median_of(argv: list[str], env: dict[str, str], cwd: str, repeats: int) -> dict:
    timed(argv, env, cwd)                                           # untimed: the page cache
    runs = [timed(argv, env, cwd) for _ in range(repeats)]
    return {"cpu": statistics.median(r[0] for r in runs), "wall": statistics.median(r[1] for r in runs),
            "rc": runs[-1][2], "says": runs[-1][3]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--train-repeats", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--src", type=Path, default=REPO / "src",
                    help="the regulab source to time (default: this checkout's; e.g. another branch's)")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="regulab-startup-")
    env = dict(os.environ, PYTHONPATH=str(args.src.resolve()), REGULAB_CACHE=str(Path(work) / "cache"),
               REGULAB_DB=f"sqlite:///{Path(work) / 'runs.db'}")
    env.pop("PYTHONDONTWRITEBYTECODE", None)    # as installed: the untimed first run caches the bytecode
    script = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-c",
                                                    "import sys; from regulab.cli import main; sys.exit(main())"]
    py = sys.executable
    commands = {"regulab --help": script + ["--help"],
                "regulab --version": script + ["--version"],
                "python -m regulab --version": [py, "-m", "regulab", "--version"],
                'python -c "import regulab"': [py, "-c", "import regulab"],
                'python -c "import torch" (floor)': [py, "-c", "import torch"]}
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores, "
          f"python {platform.python_version()}; {args.repeats} repeats, medians")
    print(f"{'command':<34} {'CPU s':>6} {'wall s':>7}  exit  output")
    for name, argv in commands.items():
        m = median_of(argv, env, work, args.repeats)
        print(f"{name:<34} {m['cpu']:>6.2f} {m['wall']:>7.2f}  {m['rc']:>4}  {m['says'][:60]}")

    train = script + ["train", str(REPO / "examples" / "quickstart.toml"), "--quiet",
                      "--set", "data.dataset=mnist1d", "--set", "model.hidden=[100,100]",
                      "--set", f"train.epochs={args.epochs}", "--set", "train.early_stopping=false",
                      "--set", "train.progress=false"]
    rows = []
    for i in range(max(args.train_repeats, 1) + 1):                 # the first warms the data cache
        out = Path(work) / f"run{i}"
        cpu, wall, rc, says = timed(train + ["--out", str(out)], env, work)
        if rc != 0:
            raise SystemExit(f"regulab train failed (exit {rc}): {says}")
        fit = json.loads((out / "results.json").read_text())["fit_seconds"]
        if i:
            rows.append((wall, fit, cpu))
    wall, fit, cpu = (statistics.median(r[k] for r in rows) for k in range(3))
    over = statistics.median(r[0] - r[1] for r in rows)
    print(f"regulab train, MNIST-1D 40-100-100-10, {args.epochs} epochs ({args.train_repeats} runs, medians): "
          f"wall {wall:.2f} s, fit_seconds {fit:.2f} s, wall - fit {over:.2f} s, CPU {cpu:.2f} s")


if __name__ == "__main__":
    main()
