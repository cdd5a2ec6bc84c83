"""Files: atomic checkpoints (tensors in safetensors, everything else as JSON in its header),
atomic writes, new output directories and JSON without NaN.

A checkpoint is one file. Any nested state -- ``model.state_dict()``, ``optimizer.state_dict()``,
generator states, callback state, the metric history -- is split into its tensors, stored
as safetensors entries, and a JSON skeleton that points to them, stored in the safetensors
metadata under ``"regulab"``. Nothing is pickled, so loading a checkpoint someone hands you
cannot run code.

Every file is written to a temporary name in the same directory, flushed, ``fsync``-ed and
renamed over the target (``os.replace`` is atomic on POSIX), then the directory is
``fsync``-ed: a process killed at any moment leaves either the old file or the new one.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from regulab.errors import CheckpointError, ConfigError
from regulab.paths import MAX_NAME, is_plain_name, out_dir, shown, writable_dir

__all__ = ["atomic_write", "save_tensors", "load_tensors", "save_state", "load_state", "check_out_dir",
           "new_dir", "finite_json"]

FORMAT_VERSION = 1


def atomic_write(path: str | Path, data: bytes | str) -> None:
    """Write ``data`` to ``path`` so that a crash leaves the old or the new content, never a mix."""
    path = Path(path)
    if isinstance(data, str):
        data = data.encode("utf-8")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _plain(t: torch.Tensor) -> torch.Tensor:
    # safetensors wants contiguous CPU tensors that share no memory
    return t.detach().to("cpu").contiguous().clone()


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor],
                 metadata: dict[str, str] | None = None) -> None:
    """``tensors`` to a safetensors file, atomically."""
    atomic_write(path, st_save({k: _plain(v) for k, v in tensors.items()}, metadata=metadata))


def load_tensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, metadata) of a safetensors file; a bad file raises ``CheckpointError``."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint file '{path}' does not exist") from None
    except OSError as e:      # a directory, no permission, ...
        raise CheckpointError(f"checkpoint file '{path}' cannot be read ({e.strerror or e})") from None
    try:
        tensors = st_load(data)
        n = int.from_bytes(data[:8], "little")
        header = json.loads(data[8:8 + n])
    except (SafetensorError, ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"checkpoint file '{path}' is corrupted or not safetensors ({e})") from None
    return tensors, header.get("__metadata__", {}) or {}


def _pack(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Replace tensors by references ``t0, t1, ...`` (numbered in traversal order, so no two
    keys can collide); keep dict keys' types (optimizer state uses int keys)."""
    if isinstance(obj, torch.Tensor):
        name = f"t{len(tensors)}"
        tensors[name] = obj
        return {"__tensor__": name}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {k: _pack(v, tensors) for k, v in obj.items()}
        return {"__items__": [[k, _pack(v, tensors)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return [_pack(v, tensors) for v in obj]
    return obj


def _unpack(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__items__" in obj:
            return {k: _unpack(v, tensors) for k, v in obj["__items__"]}
        return {k: _unpack(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_unpack(v, tensors) for v in obj]
    return obj


def save_state(path: str | Path, state: dict[str, Any]) -> None:
    """Save a nested dict of tensors and JSON values to one safetensors file, atomically."""
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _pack(state, tensors)
    meta = {"regulab": json.dumps({"version": FORMAT_VERSION, "state": skeleton})}
    save_tensors(path, tensors, meta)


def load_state(path: str | Path) -> dict[str, Any]:
    """The nested dict ``save_state`` wrote; a damaged or foreign file raises ``CheckpointError``."""
    tensors, meta = load_tensors(path)
    try:
        doc = json.loads(meta["regulab"])
        if doc.get("version") != FORMAT_VERSION:
            raise ValueError(f"format version {doc.get('version')!r}, expected {FORMAT_VERSION}")
        return _unpack(doc["state"], tensors)
    except (KeyError, ValueError, TypeError) as e:
        raise CheckpointError(f"checkpoint file '{path}' is not a regulab checkpoint ({e})") from None


def check_out_dir(path: str | Path) -> Path:
    """``--out`` must be new or an empty directory (nothing of the user's is overwritten),
    creatable and writable, checked before any work (``regulab.paths.out_dir``)."""
    return out_dir(path)


def new_dir(stem: str, out: str | Path | None) -> Path:
    """``out`` (checked: new or empty), else ``runs/<stem>-<timestamp>[-n]``, a new path
    (``stem`` a plain name, ``runs/`` a writable directory or creatable)."""
    if out is not None:
        return check_out_dir(out)       # raw: Path("") would be "."
    if not is_plain_name(stem):
        raise ConfigError(f"the name {shown(stem)} must be a plain name (at most {MAX_NAME} characters, "
                          "no '/', not '..', no control characters): it names the directory")
    writable_dir("runs", "the default output folder runs/")
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path, n = Path("runs") / f"{stem}-{stamp}", 1
    while path.exists():
        n += 1
        path = Path("runs") / f"{stem}-{stamp}-{n}"
    return path


def finite_json(d: dict[str, Any]) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}
