"""Files: atomic checkpoints (tensors in safetensors, everything else as JSON in its header),
atomic writes, new output directories and JSON without NaN.

A checkpoint is one file. Any nested state -- ``model.state_dict()``, ``optimizer.state_dict()``,
generator states, callback state, the metric history -- is split into its tensors, stored
as safetensors entries, and a JSON skeleton that points to them, stored in the safetensors
metadata under ``"regulab"``. Nothing is pickled, so loading a checkpoint someone hands you
cannot run code.

Checksums (format version 2): the skeleton lists the SHA-256 of every tensor (over its dtype,
shape and bytes) and holds, as ``"skeleton_sha256"``, the SHA-256 of its own JSON written
without that key (one metadata entry: safetensors writes several in no fixed order, and the
same state must give the same bytes); ``load_state`` recomputes them all, so a single flipped bit anywhere in
the file is refused. A checkpoint of version 1 (written before the checksums) is refused with a
message naming its version: it cannot be verified. A checkpoint is read only from a regular
file (not a symbolic link, a FIFO, a device or a directory) no larger than ``max_bytes``.

Every file is written to a temporary name in the same directory, flushed, ``fsync``-ed and
renamed over the target (``os.replace`` is atomic on POSIX), then the directory is
``fsync``-ed: a process killed at any moment leaves either the old file or the new one.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import stat
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from regulab.errors import CheckpointError, ConfigError, reason
from regulab.paths import MAX_NAME, is_plain_name, out_dir, shown, writable_dir

__all__ = ["atomic_write", "save_tensors", "load_tensors", "save_state", "load_state", "check_out_dir",
           "new_dir", "finite_json", "read_regular", "tensor_digest"]

FORMAT_VERSION = 2      # 2: with checksums (module docstring); 1 is refused


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


def read_regular(path: str | Path, max_bytes: int | None = None, what: str = "checkpoint file") -> bytes:
    """The bytes of ``path`` if it is a regular file (not a symbolic link, FIFO, device or
    directory: opened without following a link or blocking, then ``fstat``-ed) of at most
    ``max_bytes``; else ``CheckpointError`` naming ``what`` and the file."""
    kinds = {stat.S_IFDIR: "a directory", stat.S_IFIFO: "a FIFO", stat.S_IFCHR: "a device",
             stat.S_IFBLK: "a device", stat.S_IFSOCK: "a socket"}
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        raise CheckpointError(f"{what} '{path}' does not exist") from None
    except OSError as e:      # ELOOP: a symbolic link; no permission, ...
        why = "it is a symbolic link" if os.path.islink(path) else e.strerror or e
        raise CheckpointError(f"{what} '{path}' cannot be read ({why}); it must be a regular file") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or (max_bytes is not None and info.st_size > max_bytes):
        os.close(fd)
        if not stat.S_ISREG(info.st_mode):
            raise CheckpointError(f"{what} '{path}' cannot be read: it must be a regular file; it is "
                                  f"{kinds.get(stat.S_IFMT(info.st_mode), 'not one')}")
        raise CheckpointError(f"{what} '{path}' must be at most {max_bytes} bytes (what this run's "
                              f"state can take); it is {info.st_size} bytes")
    with os.fdopen(fd, "rb") as f:
        try:
            return f.read()
        except OSError as e:
            raise CheckpointError(f"{what} '{path}' cannot be read ({e.strerror or e})") from None


def load_tensors(path: str | Path, max_bytes: int | None = None) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, metadata) of a safetensors file (``read_regular``); a bad file raises
    ``CheckpointError``."""
    path = Path(path)
    data = read_regular(path, max_bytes)
    try:
        tensors = st_load(data)
        n = int.from_bytes(data[:8], "little")
        header = json.loads(data[8:8 + n])
    except (SafetensorError, ValueError, UnicodeDecodeError, RecursionError) as e:
        raise CheckpointError(f"checkpoint file '{path}' is corrupted or not safetensors ({reason(e)})") from None
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


def tensor_digest(t: torch.Tensor) -> str:
    """SHA-256 (hex) of a tensor's dtype, shape and bytes: equal only for bit-identical tensors."""
    t = _plain(t)
    h = hashlib.sha256(f"{t.dtype}{tuple(t.shape)}".encode())
    h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def save_state(path: str | Path, state: dict[str, Any]) -> None:
    """Save a nested dict of tensors and JSON values to one safetensors file, atomically, with
    the checksums of every tensor and of the skeleton (module docstring)."""
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _pack(state, tensors)
    doc = {"version": FORMAT_VERSION, "state": skeleton,
           "sha256": {name: tensor_digest(t) for name, t in tensors.items()}}
    doc["skeleton_sha256"] = _sha256(json.dumps(doc))
    save_tensors(path, tensors, {"regulab": json.dumps(doc)})


def load_state(path: str | Path, max_bytes: int | None = None) -> dict[str, Any]:
    """The nested dict ``save_state`` wrote, every checksum verified; a damaged, foreign or
    version-1 file (or one over ``max_bytes``) raises ``CheckpointError``."""
    tensors, meta = load_tensors(path, max_bytes)
    try:
        doc = json.loads(meta["regulab"])
        version, digest = doc.get("version"), doc.pop("skeleton_sha256", None)
        if digest is not None and digest != _sha256(json.dumps(doc)):
            raise ValueError("the checksum of its JSON skeleton does not match: the file was changed "
                             "or damaged")
        if version != FORMAT_VERSION or digest is None:
            old = " (written before checkpoints carried checksums, so it cannot be verified)" \
                if version == 1 else ""
            raise ValueError(f"format version {version!r}{old}; this regulab reads version "
                             f"{FORMAT_VERSION} with its checksums")
        if set(doc["sha256"]) != set(tensors):
            raise ValueError("its tensors are not those its checksums list")
        for name, t in tensors.items():
            if tensor_digest(t) != doc["sha256"][name]:
                raise ValueError(f"the checksum of tensor {name} does not match: the file was changed "
                                 "or damaged")
        return _unpack(doc["state"], tensors)
    except (KeyError, ValueError, TypeError, AttributeError, RecursionError) as e:
        raise CheckpointError(f"checkpoint file '{path}' is not a regulab checkpoint or is damaged "
                              f"({reason(e)})") from None


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
