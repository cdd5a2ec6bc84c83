"""A study's workers on one machine: ``[study] workers`` processes train its runs side by side.

A study's populations are many small matrix products and elementwise kernels; PyTorch splits
each kernel over the process's threads, and on small kernels the threads' hand-offs cost what
the second core gains (the clinic's first population, 60 members on 2 cores: 0.92 s an epoch
with two threads, 1.3 s with one; two processes with one thread and 30 members each: 0.72 s,
BENCHMARKS.md "A study's workers on one machine"). Runs that train alone get one thread
anyway (``engine.threads``), so one process leaves the other cores idle while they train.

``workers = N`` (``--workers N``) runs the study as a shared study (``regulab.studies.shared``)
on its own store -- SQLite included: taking a claim is one statement on both backends -- by
the process that started it and ``N - 1`` helpers it starts here (``python -m
regulab.studies.workers``, the study handed over on the helper's stdin). Every process walks
the same plan and claims each unit of work (a population, a run alone, a deep ensemble, a test
scoring) before doing it, so each run is trained once; a population larger than its share of
the members is split (``chunk``) so that the helpers have work while it trains. Each process
registers as a worker of the machine (``engine.threads.worker``), so ``train.threads = "auto"``
gives each its share of the cores. The starting process waits until every helper has
registered (``READY_SECONDS`` at most; a helper that did not start is dropped with a warning,
and the study goes on without it), prints the progress bar and the summary, and stops its
helpers at the end; the numbers are those one process computes (each member of a population
equals its run alone to float rounding, whatever population it is in).

A study that holds objects which cannot be sent to another process (a ``model.factory`` or data
given from Python as a lambda or a local class) runs in one process, said on the "regulab"
logger. ``workers = "auto"``: one per core, at most ``AUTO_WORKERS``, and 1 when the runs train
on a GPU (one device).
"""

from __future__ import annotations

import logging
import math
import os
import pickle
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from regulab.engine import threads
from regulab.studies.spec import AUTO_WORKERS, StudySpec

__all__ = ["count", "chunk", "start", "stop", "main", "READY_SECONDS", "READY"]

log = logging.getLogger("regulab")

READY_SECONDS = 60.0        # how long the starting process waits for a helper to register
READY = b"regulab-worker-ready\n"


def count(setting: Any, device: str) -> int:
    """The number of processes for ``[study] workers = setting`` when runs train on ``device``."""
    if setting != "auto":
        return int(setting)
    return 1 if device != "cpu" else min(threads.cores(), AUTO_WORKERS)


def chunk(n: int, workers: int, population: int) -> int:
    """The largest population of ``n`` runs that may train as one for ``workers`` processes:
    ``[study] population``, and at most an equal share, so that every worker gets some."""
    return max(1, min(population, math.ceil(n / max(1, workers))))


def start(spec: StudySpec, study_dir: Path, db: str, how: tuple[bool, bool, int],
          helpers: int) -> list[subprocess.Popen]:
    """Start ``helpers`` processes that join the study in ``study_dir`` (made, with its
    ``study.json``) on the store ``db``, run as ``how`` says (quick, render, split: see
    ``studies.study.join_local``); returns those that registered as workers."""
    try:
        payload = pickle.dumps((spec, str(study_dir), db, *how))
    except Exception as e:      # a user's object that pickle cannot send (a lambda, a local class)
        log.info("the study runs in one process: it holds objects that cannot be sent to "
                 "another (%s: %s)", type(e).__name__, e)
        return []
    procs = []
    for _ in range(helpers):
        p = subprocess.Popen([sys.executable, "-m", "regulab.studies.workers"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE)
        try:
            p.stdin.write(payload)
            p.stdin.close()
        except OSError:     # died at once
            pass
        procs.append(p)
    ready = []
    deadline = time.monotonic() + READY_SECONDS
    for p in procs:
        if _wait_ready(p, deadline):
            ready.append(p)
        else:
            log.warning("a study worker did not start (exit code %s); the study goes on without it",
                        p.poll())
            stop([p], 0.0)
    return ready


def _wait_ready(p: subprocess.Popen, deadline: float) -> bool:
    """Whether helper ``p`` says it is ready before ``deadline``."""
    line = b""
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([p.stdout], [], [], left)[0]:
            return False
        byte = p.stdout.read(1)
        if not byte:        # exited
            return False
        line += byte
    return line == READY


def stop(procs: list[subprocess.Popen], wait: float = 30.0) -> None:
    """Let ``procs`` finish for up to ``wait`` seconds (they return once the report is
    written), then end them."""
    deadline = time.monotonic() + wait
    for p in procs:
        try:
            p.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if p.stdout is not None:
            p.stdout.close()


def main() -> None:
    """A helper's life: read the study from stdin, join it, say so on stdout, do its share."""
    # the study as the starting process pickled it, on the pipe it made (never read from a file)
    spec, study_dir, db, quick, render, split = pickle.loads(sys.stdin.buffer.read())
    logging.getLogger("regulab").setLevel(logging.WARNING)     # the starting process reports
    from regulab.studies.study import join_local

    def ready() -> None:
        out = os.fdopen(os.dup(1), "wb")
        out.write(READY)
        out.close()
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)         # nothing more on the pipe the parent stops reading
        os.close(devnull)
    join_local(spec, Path(study_dir), db, quick, render, split, ready)


if __name__ == "__main__":
    main()
