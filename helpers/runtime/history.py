"""What a training run records and shows while it runs (week 0; used by both tracks).

- :func:`progress`: a ``tqdm.auto`` bar that works in Jupyter, Colab and CI logs.
- :class:`History`: loss/metric curves, plotted with one call.
- :class:`LiveCurve`: the loss curve redrawn under the progress bar while a notebook trains.
- :func:`report_run`: how the run ended (all steps, or stopped early by the time limit).
"""

from __future__ import annotations

import os
import re
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from tqdm.auto import tqdm

from helpers.runtime.config import profile_setting


def progress(iterable: Iterable | None = None, *, total: int | None = None, desc: str = "",
             **kwargs):
    """``tqdm.auto.tqdm`` with settings that keep CI logs short (a bar update at most every 5 s
    when not attached to a terminal or notebook)."""
    if os.environ.get("CI"):
        kwargs.setdefault("mininterval", 5.0)
    return tqdm(iterable, total=total, desc=desc, **kwargs)


class History:
    """Named series of (step, value) pairs: ``hist.log(step, loss=0.3, lr=1e-4)``.

    A training loop's History also carries ``run_summary`` (steps done of planned, whether the
    time limit stopped it: see :func:`report_run`) and ``optimizers`` (by name, e.g.
    ``history.optimizers["generator"]``), so both loops return one thing."""

    def __init__(self) -> None:
        self._data: dict[str, list[tuple[int, float]]] = defaultdict(list)
        self.run_summary: dict[str, Any] | None = None
        self.optimizers: dict[str, torch.optim.Optimizer] = {}

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


class LiveCurve:
    """The loss curves of a :class:`History`, redrawn in place under the progress bar while a
    notebook trains: at most every ``every_s`` seconds, so the cost stays far below the training's
    (issue #23). :meth:`maybe` returns None outside a Jupyter kernel, in CI, or when ``every_s`` is
    0 (the smoke profile: ``profile_setting("live_plot_every_s")``)."""

    SHOWN = re.compile(r"loss", re.I)

    def __init__(self, history: History, every_s: float, title: str = "") -> None:
        self.history, self.every_s, self.title = history, float(every_s), title
        self._last = time.monotonic()
        self._handle = None

    @classmethod
    def maybe(cls, history: History, every_s: float | None = None, title: str = "") -> LiveCurve | None:
        """A LiveCurve in a notebook kernel outside CI; ``every_s`` defaults to the profile's."""
        if os.environ.get("CI"):
            return None
        try:
            from IPython import get_ipython  # noqa: PLC0415 - only inside a notebook
        except ImportError:
            return None
        shell = get_ipython()
        if shell is None or not hasattr(shell, "kernel"):
            return None
        if every_s is None:
            every_s = profile_setting("live_plot_every_s")
        return cls(history, every_s, title) if every_s else None

    def tick(self) -> None:
        """Call once a step: redraws when ``every_s`` has passed since the last drawing."""
        if time.monotonic() - self._last >= self.every_s:
            self.draw()

    def draw(self) -> None:
        from IPython.display import display  # noqa: PLC0415 - only inside a notebook

        names = [n for n in self.history.names() if self.SHOWN.search(n)]
        if not names:
            return
        fig, ax = plt.subplots(figsize=(6, 2.5))
        self.history.plot(*names, ax=ax, title=self.title or "live: " + ", ".join(names))
        if self._handle is None:
            self._handle = display(fig, display_id=True)
        else:
            self._handle.update(fig)
        plt.close(fig)
        self._last = time.monotonic()


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
