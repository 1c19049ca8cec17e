"""Training that fails says what to do (week 4, "debugging a run"): a NaN/inf loss and a GPU
out of memory each end in one exception whose message names the likely causes, the setting to
change and the last good checkpoint (which is kept)."""

from __future__ import annotations

import functools
import inspect
from pathlib import Path

import torch


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
