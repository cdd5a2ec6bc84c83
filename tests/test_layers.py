"""The import rule of ARCHITECTURE.md, enforced on every module of ``src/regulab``.

Layers, lowest first; a module may import its own package and the packages of lower layers,
never a higher one, and never a sibling unless the sibling edge is listed (``SIBLINGS``)::

    ground      errors checks limits io paths metrics callbacks diagnose version user_code verify
    config      config/ and each modality's section (modalities/<m>/section.py)
    report      report/                  (ground only: it draws what it is given)
    blocks      data/ nn/ | modalities/ (-> data) | regularize/ (-> nn)
    engine      engine/
    runs        runs/
    features    studies/ sweeps/ explain sklearn
    cli         cli, __main__; and the package itself (``regulab/__init__``, the public API)

Every import counts, also one inside a function; only imports for type annotations (under
``if TYPE_CHECKING:``) are left out, since they never run. Beyond the layers: imports are absolute
(``from regulab.x.y import z``, no relative imports), no module imports another module's
``_private`` name, and every module can be imported by its dotted path.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "regulab"

GROUND = ("errors", "checks", "limits", "io", "paths", "metrics", "callbacks", "diagnose", "version",
          "user_code", "verify")
LAYERS = [("ground", GROUND), ("config", ("config", "section")), ("report", ("report",)),
          ("blocks", ("data", "nn", "modalities", "regularize")), ("engine", ("engine",)),
          ("runs", ("runs",)), ("features", ("studies", "sweeps", "explain", "sklearn")),
          ("cli", ("cli", "__main__", "regulab"))]
# (importer, imported) in one layer
SIBLINGS = {("config", "section"), ("modalities", "data"), ("regularize", "nn"), ("__main__", "cli")}
ONLY = {"report": {"ground", "report"}}     # packages that may import no more than these layers


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def unit(module: str) -> str:
    """The package a module belongs to for the rule: ``regulab.runs.run`` -> "runs"; a
    modality's section -> "section"; ``regulab`` itself -> "regulab"."""
    parts = module.split(".")
    if len(parts) == 1:
        return "regulab"
    if parts[1] == "modalities" and parts[-1] == "section":
        return "section"
    return parts[1]


def layer(u: str) -> tuple[int, str]:
    for rank, (name, units) in enumerate(LAYERS):
        if u in units:
            return rank, name
    raise AssertionError(f"package '{u}' has no layer in tests/test_layers.py (ARCHITECTURE.md)")


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(path: Path) -> list[tuple[int, str, list[str], int]]:
    """(line, imported module, imported names, relative level) of every regulab import."""
    out = []
    tree = ast.parse(path.read_text(), str(path))
    typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                   and ast.unparse(block.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")
                   for stmt in block.body for n in ast.walk(stmt)}
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level or (node.module or "").split(".")[0] == "regulab":
                out.append((node.lineno, node.module or "", [a.name for a in node.names], node.level))
        elif isinstance(node, ast.Import):
            out += [(node.lineno, a.name, [], 0) for a in node.names if a.name.split(".")[0] == "regulab"]
    return out


def target(module: str, name: str) -> str:
    """What ``from module import name`` depends on: the submodule when ``name`` is one."""
    return f"{module}.{name}" if f"{module}.{name}" in MODULES else module


def violations() -> list[str]:
    bad = []
    for module, path in MODULES.items():
        mine = unit(module)
        rank, lname = layer(mine)
        for line, imported, names, level in imports(path):
            where = f"{path.relative_to(SRC)}:{line}"
            if level:
                bad.append(f"{where}: relative import (write 'from regulab.... import ...')")
                continue
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if private:
                bad.append(f"{where}: imports the private name(s) {private} of {imported}")
            for dep in {target(imported, n) for n in names} or {imported}:
                other = unit(dep)
                if other == mine or (dep == "regulab" and not names):
                    continue
                if dep == "regulab":
                    bad.append(f"{where}: imports the package's public API ({names}) from inside it")
                    continue
                orank, oname = layer(other)
                allowed = ONLY.get(mine)
                if allowed is not None and oname not in allowed:
                    bad.append(f"{where}: {mine} may import only {sorted(allowed)}; got {dep}")
                elif orank > rank:
                    bad.append(f"{where}: {mine} ({lname}) imports upward: {dep} ({oname})")
                elif orank == rank and (mine, other) not in SIBLINGS and lname != "ground":
                    bad.append(f"{where}: {mine} imports its sibling {other} ({dep}); "
                               f"allowed sibling edges: {sorted(SIBLINGS)}")
    return bad


def test_nothing_imports_upward_nor_a_private_name():
    bad = violations()
    assert not bad, f"{len(bad)} import(s) break the rule of ARCHITECTURE.md:\n" + "\n".join(bad)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_every_module_imports_by_its_dotted_path(module):
    m = importlib.import_module(module)
    assert m.__name__ == module and Path(m.__file__).resolve() == MODULES[module].resolve()


def test_the_rule_sees_what_it_should():
    """The checker itself: an upward import, a sibling import, a private name and a relative
    import are each reported."""
    assert layer(unit("regulab.runs.run"))[0] > layer(unit("regulab.engine.trainer"))[0]
    assert unit("regulab.modalities.audio.section") == "section"
    assert layer("section")[1] == "config" and layer("modalities")[1] == "blocks"
    assert target("regulab.engine", "trainer") == "regulab.engine.trainer"
