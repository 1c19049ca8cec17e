"""Files that survive a crash: all-or-nothing writes and plain JSON-able values.

Used for checkpoints, metrics.json, tokenizers, ONNX files and bundle manifests: a crash or a
Colab disconnect at any moment leaves the old file or the new one, never half of one.
"""

from __future__ import annotations

import errno
import math
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch


class DiskFullError(OSError):
    """The disk filled up during a write; the previous version of the file is untouched."""


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some filesystems refuse directory fsync
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], Any]) -> Path:
    """Write via ``write(fileobj)`` to a temp file beside ``path``, fsync, then rename over it.

    A crash at any point leaves either the old file or the new one, and no temp file behind
    (a hard kill's leftover is removed by the next write a minute later). The file gets the
    usual permissions (0666 minus the umask, e.g. 0644), not the temp file's private 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        try:  # left over from a process killed mid-write
            if time.time() - stale.stat().st_mtime > 60:
                stale.unlink()
        except OSError:
            pass
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            raise DiskFullError(
                errno.ENOSPC,
                f"the disk is full while writing {path}; the previous version is untouched. "
                "Fix: free space (delete old runs/ or checkpoints) and save again.") from exc
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_text(text: str, path: str | os.PathLike) -> Path:
    """:func:`atomic_write` for UTF-8 text."""
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def to_plain(value: Any) -> Any:
    """Plain JSON-able values (no pickle needed): for checkpoint configs, metrics.json and
    manifests. Tensors and NumPy scalars become numbers or lists; NaN/inf become strings."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        value = value.item() if value.numel() == 1 else value.tolist()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN; keep it visible rather than crash
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    return value if isinstance(value, (bool, int, float, str)) or value is None else str(value)
