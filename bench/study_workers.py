"""The clinic (``regulab study``) with one process against ``[study] workers = "auto"``, side by
side, and the issue's measure of how much a study batches.

Each repeat runs the built-in clinic (``--quick`` with ``--quick``) twice in fresh processes,
alternating the order, once with ``--workers 1`` and once with ``--workers auto`` (one process
per core, at most 4), each into its own directory and SQLite store; the figures are each
one's study time (``results.json``'s ``seconds``) and wall time, and their ratio, median over
the repeats. Then the baseline's first run is trained again alone with one thread
(``regulab train runs/baseline/seed-0/config.toml --set train.threads=1``), and the issue's
measure is printed for both: study wall time / (network trainings x that baseline fit time),
and per epoch: study wall time / (epochs trained x the baseline's time per epoch).

    python bench/study_workers.py [--quick] [--repeats 1]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import cpu_name  # bench/machine.py, beside this script

SCRIPT = Path(sys.executable).parent / "regulab"      # the venv's console script


def study(tmp: Path, tag: str, workers: str, quick: bool) -> dict:
    out = tmp / tag
    cmd = [str(SCRIPT), "study", "--out", str(out), "--db", f"sqlite:///{tmp / tag}.db", "--quiet",
           "--workers", workers] + (["--quick"] if quick else [])
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    results = json.loads((out / "results.json").read_text())
    return {"dir": out, "wall": wall, "seconds": results["seconds"], "runs": results["runs_trained"],
            "run_dirs": len(list(out.glob("runs/**/metrics.csv"))),
            "epochs": sum(len(h) for h in _histories(out))}


def _histories(study_dir: Path) -> list[list[str]]:
    """Every run's epochs: the rows of each metrics.csv under the study (ensemble members too)."""
    return [p.read_text().splitlines()[1:] for p in study_dir.glob("runs/**/metrics.csv")]


def baseline_fit(study_dir: Path, tmp: Path) -> tuple[float, int]:
    """(fit seconds, epochs) of the study's first baseline run trained again alone, one thread."""
    cfg = study_dir / "runs" / "baseline" / "seed-0" / "config.toml"
    out = tmp / "baseline-alone"
    subprocess.run([str(SCRIPT), "train", str(cfg), "--set", "train.threads=1", "--out", str(out),
                    "--db", f"sqlite:///{tmp / 'alone.db'}", "--quiet"], check=True, stdout=subprocess.DEVNULL)
    results = json.loads((out / "results.json").read_text())
    return results["fit_seconds"], len((out / "metrics.csv").read_text().splitlines()) - 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    rows: dict[str, list[dict]] = {"1": [], "auto": []}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for r in range(args.repeats):
            for workers in (("1", "auto") if r % 2 == 0 else ("auto", "1")):
                rows[workers].append(study(tmp, f"w{workers}-{r}", workers, args.quick))
                print(f"repeat {r}, --workers {workers}: {rows[workers][-1]['seconds']:.1f} s study, "
                      f"{rows[workers][-1]['wall']:.1f} s wall", file=sys.stderr)
        fit, epochs = baseline_fit(rows["1"][0]["dir"], tmp)
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores; the clinic{' --quick' if args.quick else ''}, "
          f"{args.repeats} repeat(s), alternating")
    print(f"baseline run alone, one thread: {fit:.2f} s for {epochs} epochs ({1000 * fit / epochs:.1f} ms an epoch)\n")
    print("| --workers | study time (s) | wall (s) | runs trained | run directories | epochs trained "
          "| wall / (run directories x baseline fit) | wall / (epochs x baseline epoch) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for workers, rs in rows.items():
        wall = statistics.median(r["wall"] for r in rs)
        secs = statistics.median(r["seconds"] for r in rs)
        n, dirs, ep = rs[0]["runs"], rs[0]["run_dirs"], rs[0]["epochs"]
        print(f"| {workers} | {secs:.1f} | {wall:.1f} | {n} | {dirs} | {ep} | {wall / (dirs * fit):.2f} "
              f"| {wall / (ep * fit / epochs):.2f} |")
    ratio = statistics.median(a["seconds"] / b["seconds"] for a, b in zip(rows["auto"], rows["1"]))
    print(f"\nstudy time, auto / 1: {ratio:.2f}")


if __name__ == "__main__":
    main()
