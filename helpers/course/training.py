"""What every training loop in the curriculum shares (week 0; used by both tracks).

- :func:`progress`: a ``tqdm.auto`` bar that works in Jupyter, Colab and CI logs.
- :class:`History`: loss/metric curves, plotted with one call.
- :func:`atomic_save` / :func:`save_checkpoint` / :func:`load_checkpoint`: checkpoints that
  survive a Colab disconnect mid-write (temp file, fsync, rename) and load with
  ``weights_only=True``.
- :func:`write_metrics`: ``runs/<track>/<notebook>/metrics.json`` for comparing runs.

The loops themselves are written in the open in each track's week-3/4 notebook.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import platform
import random
from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from tqdm.auto import tqdm

from helpers.course import env
from helpers.course.files import (
    CorruptFileError,
    DiskFullError,
    ReadOnlyError,
    atomic_write,
    atomic_write_text,
    checksum_status,
    corrupt_file_message,
    to_plain,
)


class CheckpointError(RuntimeError):
    """A checkpoint cannot be used as asked; the message says which field or file and why."""


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or inf (week 4, "debugging a run"). The loop stopped before
    writing a checkpoint of the bad state; the message names the step, the likely causes and
    the last good checkpoint."""


class TrainingOutOfMemoryError(RuntimeError):
    """The GPU ran out of memory during training (week 4); the message names a smaller batch
    setting to pass and the last good checkpoint, which was kept."""


def _checkpoint_note(checkpoint_path) -> str:
    if checkpoint_path is None:
        return "No checkpoint was being written (pass checkpoint_path= to keep one)."
    path = Path(checkpoint_path)
    if not path.is_file():
        return f"No good checkpoint exists yet at {path}."
    try:
        step = torch.load(path, map_location="cpu", weights_only=True).get("step")
    except Exception:  # noqa: BLE001 - only for the message
        step = "?"
    return (f"The last good checkpoint {path} (step {step}) is kept unchanged; running again "
            f"resumes from it.")


def non_finite_loss_error(step: int, value, checkpoint_path=None, *, lr_hint: str = "the learning rate",
                          amp=None) -> NonFiniteLossError:
    """The :class:`NonFiniteLossError` for a loss ``value`` at ``step`` (week 4)."""
    fp16 = amp is not None and getattr(amp, "dtype", None) == torch.float16
    return NonFiniteLossError(
        f"the training loss is {value} at step {step}; training stopped before saving this state. "
        f"Likely causes: (1) learning rate too high: lower {lr_hint} (e.g. halve it); "
        f"(2) AMP fp16 overflow{' (this run uses fp16)' if fp16 else ''}: use bf16 or keep the "
        f"GradScaler on, or train in fp32; (3) bad data: an empty or corrupt batch (check the "
        f"inputs of this step). " + _checkpoint_note(checkpoint_path))


def explain_out_of_memory(setting: str, family: str):
    """Decorator for a training loop ``loop(model, ..., cfg, *, checkpoint_path=None, ...)``:
    a ``torch.OutOfMemoryError`` becomes a :class:`TrainingOutOfMemoryError` that names a
    concrete smaller ``cfg.<setting>`` (half the current value) and the config override to
    pass (week 4)."""
    def decorate(loop):
        signature = inspect.signature(loop)

        @functools.wraps(loop)
        def wrapper(*args, **kwargs):
            try:
                return loop(*args, **kwargs)
            except torch.OutOfMemoryError as exc:
                bound = signature.bind_partial(*args, **kwargs).arguments
                cfg = bound.get("cfg")
                value = cfg[setting] if cfg is not None and setting in cfg else None
                smaller = max(1, int(value) // 2) if isinstance(value, (int, float)) else None
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                fix = (f"Fix: halve the batch: {setting}={smaller} (now {value}), e.g. "
                       f"cfg = cfg.replace({setting}={smaller}) or "
                       f"profile_config({family!r}, {setting}={smaller})"
                       if smaller else f"Fix: lower cfg.{setting}")
                raise TrainingOutOfMemoryError(
                    f"the GPU ran out of memory while training ({str(exc).splitlines()[0][:200]}). "
                    f"{fix}; also close other notebooks using the GPU (Runtime -> Restart). "
                    + _checkpoint_note(bound.get("checkpoint_path"))) from exc
        return wrapper
    return decorate


# --------------------------------------------------------------------------- progress
def progress(iterable: Iterable | None = None, *, total: int | None = None, desc: str = "",
             **kwargs):
    """``tqdm.auto.tqdm`` with settings that keep CI logs short (a bar update at most every 5 s
    when not attached to a terminal or notebook)."""
    if os.environ.get("CI"):
        kwargs.setdefault("mininterval", 5.0)
    return tqdm(iterable, total=total, desc=desc, **kwargs)


# --------------------------------------------------------------------------- history
class History:
    """Named series of (step, value) pairs: ``hist.log(step, loss=0.3, lr=1e-4)``.

    A training loop's History also carries ``run_summary`` (steps done of planned, whether the
    time limit stopped it): see :func:`report_run`."""

    def __init__(self) -> None:
        self._data: dict[str, list[tuple[int, float]]] = defaultdict(list)
        self.run_summary: dict[str, Any] | None = None

    def log(self, step: int, **values: float) -> None:
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                value = value.detach().item()
            self._data[name].append((int(step), float(value)))

    def __getitem__(self, name: str) -> list[float]:
        if name not in self._data:
            raise KeyError(f"no series {name!r} logged; logged: {', '.join(self._data) or 'none'}")
        return [v for _, v in self._data[name]]

    def steps(self, name: str) -> list[int]:
        return [s for s, _ in self._data[name]]

    def last(self, name: str) -> float:
        return self[name][-1]

    def names(self) -> list[str]:
        return list(self._data)

    def __len__(self) -> int:
        return max((len(v) for v in self._data.values()), default=0)

    def state_dict(self) -> dict[str, list[list[float]]]:
        return {k: [[s, v] for s, v in series] for k, series in self._data.items()}

    def load_state_dict(self, state: Mapping[str, list]) -> None:
        self._data = defaultdict(list, {k: [(int(s), float(v)) for s, v in series]
                                        for k, series in state.items()})

    def plot(self, *names: str, ax=None, smooth: int = 1, logy: bool = False, title: str = ""):
        """Plot the named series (all when none named) against the step; returns the axes. A
        series a run stopped early by its time limit never logged is named on the plot (an
        unknown name otherwise raises ``KeyError``)."""
        if ax is None:
            _, ax = plt.subplots(figsize=(6, 3.5))
        stopped = (self.run_summary or {}).get("stopped_early")
        missing = [n for n in names if n not in self._data]
        if missing and not stopped:
            self[missing[0]]  # raises KeyError naming what was logged
        for name in [n for n in names or self.names() if n not in missing]:
            values = np.asarray(self[name])
            steps = np.asarray(self.steps(name))
            if smooth > 1 and len(values) >= smooth:
                kernel = np.ones(smooth) / smooth
                values = np.convolve(values, kernel, mode="valid")
                steps = steps[smooth - 1:]
            ax.plot(steps, values, label=name)
        if missing:  # e.g. a validation loss that the early-stopped run never reached
            ax.text(0.5, 0.5, f"not logged yet: {', '.join(missing)}\n(stopped after "
                    f"{self.run_summary['steps_done']} of {self.run_summary['steps_planned']} steps)",
                    transform=ax.transAxes, ha="center", va="center", color="gray")
        ax.set_xlabel("step")
        if logy:
            ax.set_yscale("log")
        if title:
            ax.set_title(title)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
        ax.grid(alpha=0.3)
        return ax


def report_run(history: History, cfg=None, *, where: str = "this cell") -> dict[str, Any]:
    """Say plainly how a training run ended (week 0): all steps done, or stopped early by the
    time limit with the steps done of planned and how to continue. Returns the record for
    metrics.json (``steps_done``, ``steps_planned``, ``stopped_early``)."""
    summary = history.run_summary
    if summary is None:
        raise ValueError("this History has no run summary: pass the one a training loop returned "
                         "(train_translation, train_dcgan)")
    done, planned, why = summary["steps_done"], summary["steps_planned"], summary["stopped_early"]
    if why is None:
        start = summary.get("resumed_from", 0)
        print(f"Training complete: {done} of {planned} steps" + (
            "." if not start else f" (this run continued from step {start})." if start < planned
            else " (loaded from the checkpoint, nothing left to train)."))
    else:
        family = getattr(cfg, "family", None)
        limit = summary.get("time_limit_s")
        lift = ""
        if why == "time limit":
            lift = (f", or lift the limit: cfg = profile_config({family!r}, time_limit_s=None)"
                    if family else ", or raise time_limit_s")
        how = (f"The checkpoint keeps the run: run {where} again to continue from step {done}{lift}."
               if summary.get("checkpoint", True) else
               f"No checkpoint was written (checkpoint_path=None): pass one to continue later{lift}.")
        print(f"STOPPED EARLY ({why}{f', {limit:.0f} s' if limit and why == 'time limit' else ''}): "
              f"{done} of {planned} steps done. {how} Until then the results below are for a "
              f"partly trained model.")
    return {"steps_done": done, "steps_planned": planned, "stopped_early": why}


# --------------------------------------------------------------------------- checkpoints
def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` that is all-or-nothing (week 4, "checkpointing"; see
    :func:`helpers.course.files.atomic_write`)."""
    try:
        return atomic_write(path, lambda f: torch.save(obj, f), seal=True)
    except (DiskFullError, ReadOnlyError) as exc:
        raise CheckpointError(exc.strerror) from exc


def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch RNG states, in types that ``weights_only=True`` can load."""
    py = random.getstate()
    np_state = np.random.get_state()
    state = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": {"key": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "gauss": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def non_finite_tensors(state: Mapping[str, Any]) -> list[str]:
    """Names of floating-point tensors in a state dict that hold NaN or inf (week 4)."""
    return [name for name, t in state.items() if isinstance(t, torch.Tensor)
            and t.is_floating_point() and not bool(torch.isfinite(t).all())]


def save_checkpoint(path: str | os.PathLike, *, model: torch.nn.Module, step: int,
                    config: Mapping[str, Any] | None = None, optimizer=None, scheduler=None,
                    scaler=None, extra: Mapping[str, Any] | None = None) -> Path:
    """Save everything needed to resume exactly: weights, optimizer, scheduler, GradScaler,
    RNG states, step, config and versions (week 4, "checkpointing")."""
    weights = model.state_dict()
    bad = non_finite_tensors(weights)
    if bad:  # never replace a good checkpoint with a diverged state
        raise non_finite_loss_error(step, f"finite but the weights are not ({', '.join(bad[:3])})",
                                    path)
    state: dict[str, Any] = {
        "format": 1,
        "step": int(step),
        "model": weights,
        "config": to_plain(dict(config or {})),
        "rng": rng_state(),
        "versions": {"torch": str(torch.__version__), "python": platform.python_version()},
        "extra": dict(extra or {}),
    }
    for key, obj in (("optimizer", optimizer), ("scheduler", scheduler), ("scaler", scaler)):
        if obj is not None:
            state[key] = obj.state_dict()
    return atomic_save(state, path)


def checkpoint_step(path: str | os.PathLike) -> int:
    """The step a checkpoint was saved at; 0 when there is no file yet (week 4)."""
    path = Path(path)
    if not path.is_file():
        return 0
    return int(load_checkpoint(path, restore_rng=False)["step"])


def checkpoint_matches(path: str | os.PathLike, config: Mapping[str, Any],
                       keys: Iterable[str] | None = None) -> bool:
    """True when ``path`` holds no checkpoint yet or one saved with these settings (``keys``
    only, when given): a run with ``config`` can resume from it (week 4, final project)."""
    path = Path(path)
    if not path.is_file():
        return True
    saved = load_checkpoint(path, restore_rng=False).get("config", {})
    return not config_differences(saved, config, keys)


def config_differences(saved: Mapping[str, Any], current: Mapping[str, Any],
                       keys: Iterable[str] | None = None) -> list[str]:
    """Fields whose values differ, as ``"d_model: checkpoint 512, config 256"`` lines."""
    current = to_plain(dict(current))
    names = list(keys) if keys is not None else sorted(set(saved) | set(current))
    out = []
    for k in names:
        a, b = saved.get(k, "<missing>"), current.get(k, "<missing>")
        if a != b:
            out.append(f"{k}: checkpoint {a!r}, config {b!r}")
    return out


def load_checkpoint(path: str | os.PathLike, *, model: torch.nn.Module | None = None,
                    optimizer=None, scheduler=None, scaler=None,
                    config: Mapping[str, Any] | None = None, config_keys: Iterable[str] | None = None,
                    restore_rng: bool = True, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint with ``weights_only=True`` (no pickle code runs) and restore what is
    passed in. With ``config``, refuse a checkpoint whose settings differ, naming each field
    (only ``config_keys`` are compared when given, e.g. the architecture fields)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}. Fix: train first (it is written every "
                              f"few steps) or point to the right file.")
    try:
        checksum_status(path)  # SHA-256 (or, for older files, the zip CRCs) before loading
        state = torch.load(path, map_location=map_location, weights_only=True)
    except CorruptFileError as exc:
        raise CheckpointError(str(exc)) from exc
    except Exception as exc:  # truncated or foreign file
        raise CheckpointError(corrupt_file_message(path, f"not a readable checkpoint ({type(exc).__name__}: {exc})")) from exc
    if config is not None:
        diffs = config_differences(state.get("config", {}), config, config_keys)
        if diffs:
            raise CheckpointError(
                f"{path} was saved with different settings: " + "; ".join(diffs)
                + ". Fix: use the settings it was trained with, or start a fresh run in another "
                  "folder (nothing was overwritten)."
            )
    if model is not None:
        try:
            model.load_state_dict(state["model"])
        except RuntimeError as exc:  # missing keys or other shapes: another architecture
            saved = state.get("config", {})
            shown = ", ".join(f"{k}={v!r}" for k, v in saved.items()
                              if k in (config_keys or saved)) or "not recorded"
            raise CheckpointError(
                f"{path} holds weights of another architecture than this model "
                f"({(str(exc).splitlines()[1:] or [str(exc)])[0].strip()[:300]}). It was saved with: {shown}. Fix: "
                f"build the model with those settings, or start a fresh run in another folder "
                f"(nothing was overwritten).") from exc
    for key, obj in (("optimizer", optimizer), ("scheduler", scheduler), ("scaler", scaler)):
        if obj is not None:
            if key not in state:
                raise CheckpointError(f"{path} holds no {key} state; it cannot resume that {key}. "
                                      f"Fix: load only the weights (leave out {key}=), or resume "
                                      f"from a checkpoint the training loop wrote.")
            obj.load_state_dict(state[key])
    if restore_rng and "rng" in state:
        set_rng_state(state["rng"])
    return state


# --------------------------------------------------------------------------- metrics.json
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
