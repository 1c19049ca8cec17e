"""``runs/<track>/<notebook>/metrics.json``: every training notebook's results, settings and
versions, for comparing runs (week 0; ``make results`` and ``make determinism`` read them)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import subprocess
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

import helpers
from helpers.runtime import env
from helpers.runtime.files import atomic_write, atomic_write_text, to_plain

PACKAGE_ROOT = Path(helpers.__file__).resolve().parent.parent  # the checkout holding helpers/


def _git(*args: str, cwd: Path) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def code_version(root: str | os.PathLike | None = None) -> dict[str, Any]:
    """Which code produced a run: ``{"commit": sha or None, "dirty": bool or None,
    "helpers": version}``. The commit is the git checkout's that holds this ``helpers`` package
    (``dirty``: tracked files differed from it); outside a git checkout (a pip install on Colab)
    or without git, ``commit`` and ``dirty`` are None and the package version says what ran."""
    root = Path(root) if root is not None else PACKAGE_ROOT
    record: dict[str, Any] = {"commit": None, "dirty": None, "helpers": helpers.__version__}
    top = _git("rev-parse", "--show-toplevel", cwd=root) if root.is_dir() else None
    if top is None or Path(top).resolve() != root.resolve():
        return record  # not a checkout, or helpers sits inside someone else's repository
    record["commit"] = _git("rev-parse", "HEAD", cwd=root)
    status = _git("status", "--porcelain", "--untracked-files=no", cwd=root)
    record["dirty"] = None if status is None else bool(status)
    return record


def hardware() -> str:
    """``'NVIDIA A100-SXM4-40GB'`` (every visible GPU), else ``'CPU: <model>, <n> cores, <t>
    torch threads'``: what a run's numbers depend on beyond the code and the versions."""
    if torch.cuda.is_available():
        return ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"CPU: {model}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"


def write_metrics(track: str, notebook: str, metrics: Mapping[str, Any], *,
                  config: Mapping[str, Any] | None = None,
                  extra: Mapping[str, Any] | None = None, runs: str | os.PathLike | None = None) -> Path:
    """Write ``runs/<track>/<notebook>/metrics.json``: final metrics, profile, settings,
    versions, the code's git commit (:func:`code_version`) and the hardware (:func:`hardware`),
    so learners and study groups can compare runs (week 0, used by every training notebook).
    Returns the path. The figures this kernel saved for the run (:func:`save_figure`) are named
    in it with their checksums: the results gallery shows only those."""
    folder = _run_folder(track, notebook, runs)
    report = env.environment_report()
    cfg = dict(config or {})
    record = {
        "track": track,
        "notebook": notebook,
        "profile": cfg.get("profile", report["profile"]),
        "metrics": to_plain(dict(metrics)),
        "settings": to_plain(cfg),
        "extra": to_plain(dict(extra or {})),
        "environment": {k: report[k] for k in ("python", "torch", "torchvision", "numpy",
                                               "helpers", "device", "gpus", "colab")}
        | code_version() | {"hardware": hardware()},
        "figures": dict(_FIGURES.get(folder.resolve(), {})),
        "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    path = folder / "metrics.json"
    atomic_write_text(json.dumps(record, indent=2, sort_keys=False) + "\n", path)
    return path


def _run_folder(track: str, notebook: str, runs: str | os.PathLike | None) -> Path:
    for label, value in (("track", track), ("notebook", notebook)):
        if not value or "/" in value or value.startswith("."):
            raise ValueError(f"{label}={value!r} must be a plain folder name like 'transformer'")
    return (Path(runs) if runs is not None else env.runs_dir()) / track / notebook


# run folder -> {figure name: {"file", "sha256", "caption"}}: what this kernel saved
_FIGURES: dict[Path, dict[str, dict[str, str]]] = {}


def save_figure(fig, track: str, notebook: str, name: str, caption: str, *,
                runs: str | os.PathLike | None = None) -> Path:
    """Save a matplotlib figure of this run as ``runs/<track>/<notebook>/figures/<name>.png``
    and name it, with its caption and checksum, in the run's next ``metrics.json``, so that
    ``make results`` can show it in the results gallery (docs/RESULTS.md). Call it before
    ``plt.show()``. The PNG carries no timestamp: the same figure gives the same bytes."""
    folder = _run_folder(track, notebook, runs)
    if not name.replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"name={name!r}: use letters, digits, '-' and '_' (it becomes a file name)")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
    data = buffer.getvalue()
    path = atomic_write(folder / "figures" / f"{name}.png", lambda f: f.write(data))
    _FIGURES.setdefault(folder.resolve(), {})[name] = {
        "file": f"figures/{name}.png", "sha256": hashlib.sha256(data).hexdigest(), "caption": caption}
    return path


def read_metrics(track: str, notebook: str, runs: str | os.PathLike | None = None) -> dict:
    path = (Path(runs) if runs is not None else env.runs_dir()) / track / notebook / "metrics.json"
    return json.loads(path.read_text())
