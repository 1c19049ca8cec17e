"""Files that survive a crash: all-or-nothing writes and plain JSON-able values.

Used for checkpoints, metrics.json, tokenizers, ONNX files and bundle manifests: a crash or a
Colab disconnect at any moment leaves the old file or the new one, never half of one.

Checksums (issue #24): a checkpoint written with ``atomic_write(..., seal=True)`` carries the
SHA-256 of the whole file in its zip archive's comment (``curriculum-sha256:<hex>``, the last
82 bytes; torch.load and zipfile ignore it), so one file holds both and a single rename keeps
them together. :func:`checksum_status` checks it before loading. Checkpoints written before
(no comment) are accepted after the zip's own CRC-32 check of every record
(``zipfile.ZipFile.testzip``), which catches changed tensor bytes; they are not re-written.
A read-only destination (a 0444 file, a folder without write permission, a read-only file
system) is refused with :class:`ReadOnlyError` naming it, before anything is written.
"""

from __future__ import annotations

import errno
import hashlib
import math
import os
import shutil
import stat
import tempfile
import time
import zipfile
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch


class DiskFullError(OSError):
    """The disk filled up during a write; the previous version of the file is untouched."""


class ReadOnlyError(PermissionError):
    """The file or its folder is read-only; nothing was written, the old file is untouched."""


class CorruptFileError(ValueError):
    """A saved file does not match its checksum (or its zip CRCs); the message names the file,
    what else exists beside it and what to do."""


SEAL_PREFIX = b"curriculum-sha256:"
_SEAL_LEN = len(SEAL_PREFIX) + 64          # the zip comment: prefix + hex digest
_EOCD = b"PK\x05\x06"                     # zip "end of central directory" record, 22 bytes + comment


def _writable(path: Path) -> bool:
    """False for a file or folder without any write permission bit (a 0444 checkpoint, a 0555
    folder: read-only on purpose, even for root) or that this user may not write."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return True
    return bool(mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)) and os.access(path, os.W_OK)


def _read_only(target: Path, path: Path, exc: BaseException | None = None) -> ReadOnlyError:
    try:
        mode = f" (mode {stat.S_IMODE(target.stat().st_mode):04o})"
    except OSError:
        mode = ""
    kind = "folder" if target != path else "file"
    why = "a read-only file system" if isinstance(exc, OSError) and exc.errno == errno.EROFS else f"read-only{mode}"
    kept = " The existing file is unchanged." if path.exists() else ""
    return ReadOnlyError(
        errno.EACCES,
        f"the {kind} {target} is {why}, so {path.name} was not saved.{kept} Fix: make it writable "
        f"(chmod u+w {target}) if it may be {'replaced' if kind == 'file' else 'written'}, or save "
        f"to another folder.")


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


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], Any], *, seal: bool = False) -> Path:
    """Write via ``write(fileobj)`` to a temp file beside ``path``, fsync, then rename over it.

    A crash at any point leaves either the old file or the new one, and no temp file behind
    (a hard kill's leftover is removed by the next write a minute later). The file gets the
    usual permissions (0666 minus the umask, e.g. 0644), not the temp file's private 0600.
    A read-only ``path`` or folder raises :class:`ReadOnlyError` (nothing written). With
    ``seal`` the written zip archive (torch.save's format) gets its SHA-256 (:func:`seal_zip`).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except PermissionError as exc:
        top = next((p for p in path.parent.parents if p.exists()), path.parent)
        raise _read_only(top, path, exc) from exc
    if path.exists() and not _writable(path):
        raise _read_only(path, path)
    if not _writable(path.parent):
        raise _read_only(path.parent, path)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        try:  # left over from a process killed mid-write
            if time.time() - stale.stat().st_mtime > 60:
                stale.unlink()
        except OSError:
            pass
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise _read_only(path.parent, path, exc) from exc
        raise
    try:
        with os.fdopen(fd, "w+b") as f:
            write(f)
            if seal:
                seal_zip(f)
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


def seal_zip(f: BinaryIO) -> str:
    """Append the SHA-256 of the zip archive just written to ``f`` (opened ``w+b``) as the
    archive's comment; returns the hex digest. The digest covers every byte before the comment
    (the comment length included), so any change of the file is detected by :func:`checksum_status`."""
    f.flush()
    size = f.seek(0, os.SEEK_END)
    f.seek(max(0, size - 22))
    eocd = f.read(22)
    if len(eocd) != 22 or eocd[:4] != _EOCD or eocd[20:22] != b"\0\0":
        raise ValueError("seal_zip: the file is not a zip archive without a comment (torch.save's format)")
    digest = hashlib.sha256()
    f.seek(0)
    left = size - 2
    while left > 0:
        chunk = f.read(min(left, 1 << 20))
        if not chunk:
            raise ValueError("seal_zip: the file shrank while it was read")
        digest.update(chunk)
        left -= len(chunk)
    length = _SEAL_LEN.to_bytes(2, "little")
    digest.update(length)
    hexdigest = digest.hexdigest()
    f.seek(size - 2)
    f.write(length + SEAL_PREFIX + hexdigest.encode("ascii"))
    f.truncate()
    return hexdigest


def _hash_prefix(path: Path, n: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while n > 0:
            chunk = f.read(min(n, 1 << 20))
            if not chunk:
                break
            digest.update(chunk)
            n -= len(chunk)
    return digest.hexdigest()


def checksum_status(path: str | os.PathLike) -> str:
    """Check a saved zip archive (a checkpoint) before it is loaded: ``"verified"`` when its
    SHA-256 (:func:`seal_zip`) matches, ``"crc"`` for an archive written without one (before
    issue #24) whose zip CRC-32s all match; otherwise :class:`CorruptFileError` (message:
    :func:`corrupt_file_message`)."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        f.seek(max(0, size - _SEAL_LEN - 22 - 64))
        tail = f.read()
    record = tail[-(_SEAL_LEN + 22):]
    if (len(record) == _SEAL_LEN + 22 and record[:4] == _EOCD
            and record[20:22] == _SEAL_LEN.to_bytes(2, "little") and record[22:22 + len(SEAL_PREFIX)] == SEAL_PREFIX):
        recorded = record[-64:].decode("ascii", "replace")
        if _hash_prefix(path, size - _SEAL_LEN) != recorded:
            raise CorruptFileError(corrupt_file_message(
                path, "its SHA-256 checksum does not match its contents (a byte changed on disk, "
                      "in a copy or in a download)"))
        return "verified"
    if SEAL_PREFIX[:8] in tail:  # a sealed file whose checksum record itself was damaged
        raise CorruptFileError(corrupt_file_message(path, "its checksum record is damaged"))
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
            # a record flagged as a folder (DOS attribute 0x10) reads as empty in torch's zip
            # reader, though its CRC still matches: a flip there must not load zeros
            bad = bad or next((i.filename for i in z.infolist() if i.external_attr & 0x10), None)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as exc:
        raise CorruptFileError(corrupt_file_message(
            path, f"it is not a readable checkpoint archive ({type(exc).__name__}: {exc})")) from exc
    if bad is not None:
        raise CorruptFileError(corrupt_file_message(
            path, f"its record {bad} fails the zip CRC-32 check (a byte changed; this file was "
                  f"written without a checksum, before issue #24)"))
    return "crc"


def other_checkpoints(path: str | os.PathLike) -> list[Path]:
    """The other ``.pt`` files that exist beside ``path`` with its name as prefix (the weight
    snapshots ``<stem>.step<N>.pt``, copies like ``<stem>.pt.bak``), oldest name first."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    return sorted(p for p in path.parent.iterdir()
                  if p != path and p.is_file() and p.name.startswith(path.stem + ".") and ".pt" in p.name)


def corrupt_file_message(path: str | os.PathLike, reason: str) -> str:
    """What to say about a corrupt checkpoint ``path``: why, the files that exist beside it
    (only those), and a fix that deletes nothing."""
    path = Path(path)
    others = other_checkpoints(path)
    moved = path.with_name(path.name + ".corrupt")
    head = f"{path} is corrupt: {reason}. It was not loaded and nothing was changed."
    if others:
        shown = ", ".join(p.name for p in others[:8]) + (f" and {len(others) - 8} more" if len(others) > 8 else "")
        snapshots = [p for p in others if ".step" in p.name]
        return (f"{head} Other checkpoints beside it in {path.parent}: {shown}"
                + (" (weight snapshots: weights only, no optimizer state, so training cannot resume "
                   "from them)" if snapshots else "")
                + f". Fix: move the corrupt file away (mv {path} {moved}) and run again: training "
                  f"starts afresh at step 0 and sets the files above aside in a folder beside it "
                  f"(nothing is deleted); to use one of them, load its weights with "
                  f"model.load_state_dict(torch.load(<file>, weights_only=True)).")
    return (f"{head} There is no other checkpoint beside it in {path.parent}. Fix: restore it from "
            f"a copy if you have one; otherwise move it away (mv {path} {moved}) and run again to "
            f"train from step 0.")


def set_aside(paths: list[Path], checkpoint_path: str | os.PathLike) -> Path | None:
    """Move ``paths`` (an earlier run's weight snapshots) into a new folder beside
    ``checkpoint_path`` (``<stem>.earlier-<time>/``) instead of deleting them; returns it."""
    paths = [Path(p) for p in paths if Path(p).exists()]
    if not paths:
        return None
    checkpoint_path = Path(checkpoint_path)
    folder = checkpoint_path.with_name(
        f"{checkpoint_path.stem}.earlier-{datetime.now().strftime('%Y%m%d-%H%M%S-%f')}")
    folder.mkdir()
    for p in paths:
        shutil.move(p, folder / p.name)
    print(f"A fresh run: the {len(paths)} weight snapshot(s) of an earlier run there were moved "
          f"to {folder} (not deleted).", flush=True)
    return folder


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
