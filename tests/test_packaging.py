"""What pyproject.toml promises of the package holds in the tree."""

from __future__ import annotations

import tomllib
from importlib import resources

from .conftest import REPO


def test_package_data_it_declares_exists():
    """Every file pyproject.toml lists as package data is there (``py.typed``: the package is
    typed, PEP 561), and the Python it requires has the standard library the code imports."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    declared = project["tool"]["setuptools"]["package-data"]["regulab"]
    root = resources.files("regulab")
    for pattern in declared:
        assert list((REPO / "src" / "regulab").glob(pattern)), pattern
    assert root.joinpath("py.typed").is_file()
    # tomllib (config files) is in the standard library from 3.11
    assert project["project"]["requires-python"].replace(" ", "") == ">=3.11"


def test_classifiers_agree_with_what_the_project_declares():
    """The trove classifiers say what the rest of pyproject.toml says: the Python versions (all
    within requires-python, this interpreter's among them), the license, and typed."""
    import sys
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    classifiers = project["classifiers"]
    versions = [c.rsplit(" :: ", 1)[1] for c in classifiers
                if c.startswith("Programming Language :: Python :: 3.")]
    assert versions and all(tuple(map(int, v.split("."))) >= (3, 11) for v in versions)
    assert f"{sys.version_info.major}.{sys.version_info.minor}" in versions
    assert f"License :: OSI Approved :: {project['license']['text']} License" in classifiers
    assert "Typing :: Typed" in classifiers
    assert (REPO / "src" / "regulab" / "py.typed").is_file()
