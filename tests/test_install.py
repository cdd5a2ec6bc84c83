"""A plain install is the whole product (issue 17): ``tests/install_check.sh`` runs ``pip install .``
of this checkout in a fresh venv (torch==2.13.0 first), then, offline, checks ``regulab --version``,
``python -m regulab --version`` and a one-epoch run of every built-in ``regulab datasets`` lists,
refuses ``video:DIR`` in one line without the ``[video]`` extra, then installs a wheel built from
the checkout with that extra and runs the video example. The slowest test of the suite (2-4
minutes: it installs everything once)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from .conftest import REPO


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_a_plain_install_of_a_wheel_trains_every_builtin():
    # no folder given: the script works in a temporary one and removes it (the venv holds torch)
    done = subprocess.run(["bash", str(REPO / "tests" / "install_check.sh")],
                          capture_output=True, text=True, env={**_env(), "PYTHON": sys.executable})
    tail = (done.stdout + done.stderr)[-4000:]
    assert done.returncode == 0, tail
    assert "trained one epoch from a plain install, then the wheel and the video example" in done.stdout, tail


def _env() -> dict[str, str]:
    """The environment, less what would point the fresh venv's runs at this suite's settings."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("REGULAB_", "PYTHONPATH", "VIRTUAL_ENV"))}
