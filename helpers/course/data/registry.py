"""The dataset registry: one lookup order for every dataset of the curriculum (week 0).

:func:`load_dataset` looks in ``$CURRICULUM_DATA_DIR`` (default ``data/``) for the dataset's
official layout, then in the checksummed download cache (``$CURRICULUM_CACHE_DIR``), then
downloads into that cache; the ``smoke`` profile uses an offline stand-in instead. When
nothing works, :class:`DataUnavailableError` says which files to put where and where to get
them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from helpers.runtime import env
from helpers.runtime.config import get_profile

MANIFEST = "curriculum-manifest.json"
DOWNLOAD_TIMEOUT_S = 60.0  # a download that receives nothing for this long has failed


class DataError(RuntimeError):
    """Base class: every data problem ends in a message that names the fix."""


class DataLayoutError(DataError):
    """The dataset folder exists but does not hold the official layout (or a file is broken)."""


class DataUnavailableError(DataError):
    """No local copy, no cache, and the download failed (offline, blocked, or no source)."""


class ChecksumError(DataError):
    """A cached file no longer matches what was downloaded."""


@dataclass(frozen=True)
class DatasetSpec:
    """What the registry knows about one dataset.

    ``files`` are paths relative to ``folder``; ``"a|a.gz"`` accepts either name, and a name
    ending in ``/`` is a sub-folder that must hold at least one file.
    """

    name: str
    title: str
    folder: str
    files: tuple[str, ...]
    source: str
    load: Callable[[Path], Any]
    download: Callable[[Path], None] | None = None
    standin: Callable[..., Any] | None = None
    note: str = ""
    size_hint: str = ""
    aliases: tuple[str, ...] = field(default=())


@dataclass
class Loaded:
    """A loaded dataset and where it came from (``origin`` is one of
    ``standin``, ``local``, ``cache``, ``download``)."""

    name: str
    origin: str
    path: Path | None
    data: Any

    def describe(self) -> str:
        where = f" from {self.path}" if self.path else ""
        return f"{self.name}: {self.origin}{where}"


_REGISTRY: dict[str, DatasetSpec] = {}


def register(spec: DatasetSpec) -> DatasetSpec:
    for key in (spec.name, *spec.aliases):
        _REGISTRY[key.lower()] = spec
    return spec


def get_spec(name: str) -> DatasetSpec:
    try:
        return _REGISTRY[name.lower()]
    except KeyError:
        raise DataError(
            f"unknown dataset {name!r}; registered datasets: {', '.join(available())}"
        ) from None


def is_registered(name: str) -> bool:
    """True for a registered dataset name or alias (case-insensitive)."""
    return name.lower() in _REGISTRY


def available() -> list[str]:
    return sorted({spec.name for spec in _REGISTRY.values()})


# --------------------------------------------------------------------------- layout
def _alternatives(entry: str) -> list[str]:
    return entry.split("|")


def _present(folder: Path, entry: str) -> Path | None:
    for alt in _alternatives(entry):
        p = folder / alt
        if alt.endswith("/"):
            if p.is_dir() and any(p.iterdir()):
                return p
        elif p.is_file():
            return p
    return None


def missing_files(spec: DatasetSpec, root: Path) -> list[str]:
    """The layout entries not present under ``root/spec.folder``."""
    folder = root / spec.folder
    return [entry for entry in spec.files if _present(folder, entry) is None]


def layout_text(spec: DatasetSpec, root: Path) -> str:
    lines = [f"  {root / spec.folder}/"]
    for entry in spec.files:
        first, *others = _alternatives(entry)
        lines.append(f"      {first}" + (f"  (or {', '.join(others)})" if others else ""))
    return "\n".join(lines)


def _misplaced(spec: DatasetSpec, root: Path, limit: int = 3) -> list[Path]:
    """Required file names found elsewhere under ``root`` (a common mistake: one folder off)."""
    wanted = {Path(alt).name for entry in spec.files for alt in _alternatives(entry)
              if not alt.endswith("/")}
    found: list[Path] = []
    if not root.is_dir():
        return found
    for dirpath, dirnames, filenames in os.walk(root):
        depth = len(Path(dirpath).relative_to(root).parts)
        if depth >= 4:
            dirnames[:] = []
        for fname in filenames:
            if fname in wanted and Path(dirpath) != root / spec.folder:
                found.append(Path(dirpath) / fname)
                if len(found) >= limit:
                    return found
    return found


# --------------------------------------------------------------------------- cache
def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _layout_files(spec: DatasetSpec, root: Path) -> list[Path]:
    out = []
    for entry in spec.files:
        p = _present(root / spec.folder, entry)
        if p is None:
            continue
        out.extend(sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p])
    return out


def write_manifest(spec: DatasetSpec, root: Path) -> Path:
    """Record size and SHA-256 of every file the loader reads (the layout files, whichever
    compression is present, and everything inside folder entries), right after a download."""
    files = {str(p.relative_to(root)): {"size": p.stat().st_size, "sha256": _sha256(p)}
             for p in _layout_files(spec, root)}
    path = root / MANIFEST
    path.write_text(json.dumps({"dataset": spec.name, "files": files}, indent=1))
    return path


def verify_manifest(spec: DatasetSpec, root: Path, *, full: bool = True) -> None:
    """Check the cached files against the manifest; raise :class:`ChecksumError` naming the
    first file that changed, with the fix (delete the cache folder to download again)."""
    manifest_path = root / MANIFEST
    if not manifest_path.is_file():
        raise ChecksumError(f"the cache {root} has no {MANIFEST} (an interrupted download?). "
                            f"Fix: delete {root} and run again to download afresh.")
    try:
        recorded = json.loads(manifest_path.read_bytes().decode("utf-8"))["files"]
        recorded = {str(k): {"size": int(v["size"]), "sha256": str(v["sha256"])} for k, v in recorded.items()}
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        raise ChecksumError(f"the cache manifest {manifest_path} is corrupt ({type(exc).__name__}). "
                            f"Fix: delete {root} and run again to download afresh.") from exc
    added = sorted({str(p.relative_to(root)) for p in _layout_files(spec, root)} - set(recorded))
    if added:  # e.g. a plain x beside the downloaded x.gz: the loader would read it unchecked
        more = f" (and {len(added) - 1} more)" if len(added) > 1 else ""
        raise ChecksumError(f"cached file {root / added[0]}{more} was not part of the download. "
                            f"Fix: remove it, or delete {root} and run again to download a clean copy.")
    for rel, info in recorded.items():
        p = root / rel
        problem = None
        if not p.is_file():
            problem = "is missing"
        elif p.stat().st_size != info["size"]:
            problem = f"has {p.stat().st_size} bytes, {info['size']} were downloaded"
        elif full and _sha256(p) != info["sha256"]:
            problem = "has a different SHA-256 than when it was downloaded"
        if problem:
            raise ChecksumError(f"cached file {p} {problem}. Fix: delete {root} and run again "
                                f"to download a clean copy.")


# --------------------------------------------------------------------------- lookup
def load_dataset(name: str, *, profile: str | None = None, allow_download: bool = True,
                 data_root: str | os.PathLike | None = None,
                 cache_root: str | os.PathLike | None = None, **standin_options: Any) -> Loaded:
    """Load a registered dataset: stand-in (smoke profile), local layout, cache, download.

    ``standin_options`` size the smoke profile's stand-in (e.g. ``n_train=2000``); the real
    dataset is always loaded whole. See :func:`load_or_standin` for runs that go on without it.
    """
    spec = get_spec(name)
    if get_profile(profile, warn=False) == "smoke":
        if spec.standin is None:
            raise DataUnavailableError(f"{spec.title} has no offline stand-in for the smoke profile")
        return Loaded(spec.name, "standin", None, spec.standin(**standin_options))

    root = Path(data_root) if data_root is not None else env.data_dir()
    if data_root is not None and not root.is_dir():
        raise env.DataDirError(f"data folder {root} does not exist. Fix: create it or pass the "
                               f"folder that holds {spec.folder}/.")
    folder = root / spec.folder
    missing = missing_files(spec, root)
    if not missing:
        return Loaded(spec.name, "local", folder, spec.load(folder))
    if folder.is_dir() and len(missing) < len(spec.files):
        present = sorted(p.name for p in folder.iterdir())[:12]
        raise DataLayoutError(
            f"{spec.title}: {folder} is incomplete; missing {', '.join(missing)} "
            f"(found: {', '.join(present) or 'nothing'}). Fix: complete the official layout\n"
            f"{layout_text(spec, root)}\nor move the folder away to let it be downloaded to the cache."
        )

    misplaced = _misplaced(spec, root)
    if misplaced:
        raise DataLayoutError(
            f"{spec.title}: found {', '.join(str(p) for p in misplaced)} outside the expected "
            f"folder. Fix: move the files into the official layout\n{layout_text(spec, root)}"
        )

    cache = Path(cache_root) if cache_root is not None else env.cache_dir()
    cached = cache / spec.name
    if cached.is_dir() and not missing_files(spec, cached):
        verify_manifest(spec, cached)
        return Loaded(spec.name, "cache", cached / spec.folder, spec.load(cached / spec.folder))

    reason = "downloads are switched off (allow_download=False)"
    if allow_download and spec.download is not None:
        partial = cache / f".{spec.name}.partial-{os.getpid()}"
        shutil.rmtree(partial, ignore_errors=True)
        new_folders = [p for p in (partial, *partial.parents) if not p.exists()]
        partial.mkdir(parents=True)
        try:
            with _socket_timeout(DOWNLOAD_TIMEOUT_S):
                spec.download(partial)
            still_missing = missing_files(spec, partial)
            if still_missing:
                raise DataLayoutError(f"the download did not produce {', '.join(still_missing)}")
            write_manifest(spec, partial)
            if cached.exists():  # an incomplete earlier copy: replace it
                shutil.rmtree(cached)
            os.replace(partial, cached)
        except Exception as exc:  # offline, blocked, stalled, disk full, source changed ...
            shutil.rmtree(partial, ignore_errors=True)
            for folder in new_folders[1:]:  # the cache folders this attempt created, if empty
                with contextlib.suppress(OSError):
                    folder.rmdir()
            if _timed_out(exc):
                reason = (f"the download from {spec.source} timed out (nothing received for "
                          f"{DOWNLOAD_TIMEOUT_S:g} s: offline, or a stalled server)")
            else:
                reason = f"the download from {spec.source} failed ({type(exc).__name__}: {exc})"
        else:
            return Loaded(spec.name, "download", cached / spec.folder,
                          spec.load(cached / spec.folder))
    elif spec.download is None:
        reason = "it cannot be downloaded automatically"

    raise DataUnavailableError(_unavailable_message(spec, root, cache, reason))


def load_or_standin(name: str, **options: Any) -> Loaded:
    """:func:`load_dataset`, or, when the real data set cannot be had (no copy, no cache, no
    internet), the smoke profile's offline stand-in (``origin == "standin"``) after printing what
    is missing and how to get it. A folder that is there but incomplete still raises."""
    try:
        return load_dataset(name, **options)
    except DataUnavailableError as exc:
        spec = get_spec(name)
        if spec.standin is None:
            raise
        print(f"{exc}\nInstead, this run uses the offline stand-in of the smoke profile: its numbers "
              f"say whether the code works, not how well it does on {spec.title}.", flush=True)
        standin_options = {k: v for k, v in options.items()
                           if k not in ("profile", "allow_download", "data_root", "cache_root")}
        return Loaded(spec.name, "standin", None, spec.standin(**standin_options))


@contextlib.contextmanager
def _socket_timeout(seconds: float):
    """Every socket opened without its own timeout (urllib, as torchvision uses it) gives up
    after ``seconds`` without data, instead of waiting forever on a stalled server."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def _timed_out(exc: BaseException | None) -> bool:
    while exc is not None:
        if isinstance(exc, TimeoutError) or isinstance(getattr(exc, "reason", None), TimeoutError):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _unavailable_message(spec: DatasetSpec, root: Path, cache: Path, reason: str) -> str:
    lines = [
        f"{spec.title} is not available: no local copy, no cached copy, and {reason}.",
        "Fix, either:",
        f" 1. put the official files in this layout ({env.DATA_DIR_ENV}={root}):",
        layout_text(spec, root),
        f"    source: {spec.source}" + (f" ({spec.size_hint})" if spec.size_hint else ""),
        f" 2. run once with internet access: the download is cached in {cache / spec.name}",
        " 3. or run the offline stand-in: CURRICULUM_PROFILE=smoke",
    ]
    if spec.note:
        lines.append(f"Note: {spec.note}")
    return "\n".join(lines)
