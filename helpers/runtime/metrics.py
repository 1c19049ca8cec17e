"""``runs/<track>/<notebook>/metrics.json``: every training notebook's results, settings and
versions, for comparing runs (week 0; ``make results`` and ``make determinism`` read them)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from helpers.runtime import env
from helpers.runtime.files import atomic_write_text, to_plain


def write_metrics(track: str, notebook: str, metrics: Mapping[str, Any], *,
                  config: Mapping[str, Any] | None = None,
                  extra: Mapping[str, Any] | None = None, runs: str | os.PathLike | None = None) -> Path:
    """Write ``runs/<track>/<notebook>/metrics.json``: final metrics, profile, settings and
    versions, so learners and study groups can compare runs (week 0, used by every training
    notebook). Returns the path."""
    for label, value in (("track", track), ("notebook", notebook)):
        if not value or "/" in value or value.startswith("."):
            raise ValueError(f"{label}={value!r} must be a plain folder name like 'transformer'")
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
                                               "helpers", "device", "gpus", "colab")},
        "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    path = Path(runs) if runs is not None else env.runs_dir()
    path = path / track / notebook / "metrics.json"
    atomic_write_text(json.dumps(record, indent=2, sort_keys=False) + "\n", path)
    return path


def read_metrics(track: str, notebook: str, runs: str | os.PathLike | None = None) -> dict:
    path = (Path(runs) if runs is not None else env.runs_dir()) / track / notebook / "metrics.json"
    return json.loads(path.read_text())
