"""Checkpoints (week 4, "checkpointing"; used by both tracks): all-or-nothing writes that
survive a Colab disconnect mid-write (temp file, fsync, rename), the RNG states for an exact
resume, and loading with ``weights_only=True`` that refuses a checkpoint of other settings and
names the field.

- :func:`atomic_save` / :func:`save_checkpoint` / :func:`load_checkpoint`
- :func:`checkpoint_step`, :func:`checkpoint_matches`, :func:`config_differences`
- :func:`rng_state` / :func:`set_rng_state`, :func:`non_finite_tensors`
"""

from __future__ import annotations

import os
import platform
import random
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from helpers.runtime.failures import non_finite_loss_error
from helpers.runtime.files import (
    CorruptFileError,
    DiskFullError,
    ReadOnlyError,
    atomic_write,
    checksum_status,
    corrupt_file_message,
    to_plain,
)


class CheckpointError(RuntimeError):
    """A checkpoint cannot be used as asked; the message says which field or file and why."""



def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` that is all-or-nothing (week 4, "checkpointing"; see
    :func:`helpers.runtime.files.atomic_write`)."""
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
