"""Code the user names: ``FILE.py:NAME`` or ``package.module:NAME``, and Python objects in a config.

Two config keys hold the user's code: ``model.factory`` (an ``nn.Module`` class or a function
returning one) and ``data.dataset = "python:FILE.py:NAME"`` (a function returning the data).
Each is written ``FILE.py:NAME`` -- a Python file, relative to the config file's folder
(``resolve``) -- or ``package.module:NAME``, an importable module. ``load_object`` imports it.

Loading a Python file runs its code, as ``python FILE.py`` would: regulab only ever loads a file
a config key or argument names, and never one found by looking around.

From Python, the same keys take the object itself (``rl.train(cfg, model=MyNet, data=ds)``);
the config then holds it, and what is written of it (``config.toml``, the run store) is
``describe(obj)``: ``module:NAME`` when the object can be imported again by that name, else
``python-object:<its type>`` -- which reads back as a reminder to pass the object again.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

from regulab.errors import ConfigError, RegulabInputError, did_you_mean, invalid

__all__ = ["FORM", "OBJECT", "is_spec", "resolve", "load_object", "describe", "is_plain",
           "portable"]

FORM = "FILE.py:NAME or package.module:NAME"
OBJECT = "python-object:"      # what is written for an object that cannot be named


def is_plain(v: Any) -> bool:
    """Whether ``v`` is a value TOML can hold (a user's object is not)."""
    if v is None or isinstance(v, (bool, int, float, str)):
        return True
    if isinstance(v, (list, tuple)):
        return all(is_plain(x) for x in v)
    if isinstance(v, dict):
        return all(isinstance(k, str) and is_plain(x) for k, x in v.items())
    return False


def is_spec(text: str) -> bool:
    """Whether ``text`` has the form ``target:NAME`` with both parts non-empty."""
    target, sep, name = text.rpartition(":")
    return bool(sep and target and name and not text.startswith(OBJECT))


def resolve(spec: str, base: str | Path | None) -> str:
    """``spec`` with a relative ``FILE.py`` made absolute against the folder ``base`` (the config
    file's); a module path, an absolute file or ``base`` None: unchanged."""
    target, sep, name = spec.rpartition(":")
    if base is None or not target.endswith(".py") or Path(target).is_absolute():
        return spec
    return f"{(Path(base) / target).resolve()}{sep}{name}"


def _import_file(path: Path, field: str, error: type[RegulabInputError]):
    """The module of a Python file, imported once per path (its code runs then)."""
    name = "regulab_user_" + hashlib.sha1(str(path).encode()).hexdigest()[:12]
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise invalid(field, f"{FORM} (a Python file)", str(path), error=error)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module          # classes defined there pickle (data-parallel processes)
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        del sys.modules[name]
        raise error(f"{_kind(field)} '{field}': running '{path}' raised {type(e).__name__}: "
                    f"{_one_line(e)}") from None
    return module


def _kind(field: str) -> str:
    return getattr(field, "kind", "config key")


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or "(no message)"


def load_object(spec: str, field: str, error: type[RegulabInputError] = ConfigError) -> Any:
    """The object ``spec`` names (``FILE.py:NAME`` or ``package.module:NAME``); ``field`` is the
    key in errors. A missing file, module or name, or a file that raises: one-line ``error``."""
    if not isinstance(spec, str) or not is_spec(spec):
        if isinstance(spec, str) and spec.startswith(OBJECT):
            again = {"model.factory": "model=", "data.dataset": "data="}.get(str(field), "it")
            raise error(f"{_kind(field)} '{field}' was a Python object ({spec[len(OBJECT):]}) in the "
                        f"run that wrote it; pass the object again ({again})")
        raise invalid(field, FORM, spec, error=error)
    target, _, name = spec.rpartition(":")
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_file():
            raise invalid(field, f"{FORM}, with an existing file", spec, error=error)
        module = _import_file(path.resolve(), field, error)
    else:
        try:
            module = importlib.import_module(target)
        except ModuleNotFoundError as e:
            raise invalid(field, f"{FORM}, with an importable module ({_one_line(e)})", spec,
                          error=error) from None
        except Exception as e:
            raise error(f"{_kind(field)} '{field}': importing '{target}' raised "
                        f"{type(e).__name__}: {_one_line(e)}") from None
    obj = module
    for part in name.split("."):
        if not hasattr(obj, part):
            names = [n for n in dir(obj) if not n.startswith("_")]
            raise error(f"{_kind(field)} '{field}' names '{name}', which '{target}' does not define; "
                        f"got {spec!r}{did_you_mean(part, names)}")
        obj = getattr(obj, part)
    return obj


def describe(obj: Any) -> str:
    """How a user's object is written: ``module:NAME`` when importing ``module`` gives back this
    very object, else ``python-object:<its type or name>``."""
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if module and qualname and module != "__main__" and "<" not in qualname:
        mod = sys.modules.get(module)
        file = getattr(mod, "__file__", None)
        found: Any = mod
        for part in qualname.split("."):
            found = getattr(found, part, None)
        if found is obj:
            if module.startswith("regulab_user_") and file:
                return f"{file}:{qualname}"
            return f"{module}:{qualname}"
    kind = qualname if qualname and callable(obj) else type(obj).__qualname__
    return f"{OBJECT}{kind}"


def portable(v: Any) -> Any:
    """``v`` with every user object replaced by ``describe(obj)``: what TOML and JSON hold."""
    if isinstance(v, dict):
        return {k: portable(x) for k, x in v.items()}
    if type(v) in (list, tuple) and all(is_plain(x) or isinstance(x, dict) for x in v):
        return [portable(x) for x in v]     # e.g. a list of tables; a tuple (X, y) is one object
    return v if is_plain(v) else describe(v)
