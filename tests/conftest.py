"""Shared fixtures: every test runs in its own directory with its own run store and data cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"


@pytest.fixture(scope="session")
def data_cache(tmp_path_factory) -> Path:
    """One dataset cache for the session, so mnist1d is generated once."""
    return tmp_path_factory.mktemp("regulab-cache")


@pytest.fixture
def workdir(tmp_path, monkeypatch, data_cache) -> Path:
    """A clean working directory; the run store defaults to runs/regulab.db inside it."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("REGULAB_DB", raising=False)
    monkeypatch.setenv("REGULAB_CACHE", str(data_cache))
    return tmp_path


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def subprocess_env(data_cache: Path, db: Path | None = None) -> dict[str, str]:
    env = dict(os.environ, REGULAB_CACHE=str(data_cache), PYTHONUNBUFFERED="1")
    env.pop("REGULAB_DB", None)
    if db is not None:
        env["REGULAB_DB"] = f"sqlite:///{db}"
    return env
