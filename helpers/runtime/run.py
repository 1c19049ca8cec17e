"""One resumable training run: checkpoints, exact resume, time limit, NaN stop, progress.

Both training loops (Transformer week 3, DCGAN week 4) hand their bookkeeping to a
:class:`ResumableRun`, so the loop body is only the paper's training procedure::

    run = ResumableRun(path, steps=cfg.train_steps, config=architecture(cfg), model=G, optimizer=opt_g,
                       others={"D": D, "opt_d": opt_d}, every=100)
    batches = run.batches(loader)
    for step in run:            # resumes after the saved step; saves every 100 steps and at the end
        stats = train_step(G, D, opt_g, opt_d, next(batches), nz=cfg.nz)
        run.check_finite(stats)  # a NaN/inf stops the run before anything bad is saved
        run.log(step, **stats)
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from helpers.runtime import distributed
from helpers.runtime.checkpoints import (
    CheckpointError,
    atomic_save,
    load_checkpoint,
    non_finite_tensors,
    save_checkpoint,
    set_rng_state,
)
from helpers.runtime.failures import non_finite_loss_error
from helpers.runtime.files import set_aside
from helpers.runtime.history import History, LiveCurve, progress

# What the progress bar shows beside the step count, as soon as a value is logged: losses and
# the validation figures (BLEU, FID, accuracy, perplexity), not the learning rate or norms.
_SHOWN = re.compile(r"loss|bleu|fid|acc|ppl|perplexity", re.I)


def _generators(loader) -> list[torch.Generator]:
    """The torch.Generators that decide a DataLoader's order (its own, its sampler's)."""
    found: list[torch.Generator] = []
    for obj in (loader, getattr(loader, "sampler", None),
                getattr(getattr(loader, "batch_sampler", None), "sampler", None)):
        g = getattr(obj, "generator", None)
        if isinstance(g, torch.Generator) and all(g is not f for f in found):
            found.append(g)
    return found


def _order_state(loader) -> dict:
    """What fixes the order of the next pass over ``loader``: torch's global RNG (a loader
    without a generator draws its shuffle seed there) and the loader's generators."""
    return {"torch": torch.get_rng_state(), "loader": [g.get_state() for g in _generators(loader)]}


def _set_order_state(loader, state: dict) -> None:
    torch.set_rng_state(state["torch"])
    gens = _generators(loader)
    if len(gens) != len(state["loader"]):
        raise CheckpointError("the checkpoint was written with a DataLoader built differently "
                              "(another generator setup). Fix: build the loader as before "
                              "(same shuffle and generator), or start a fresh run.")
    for g, s in zip(gens, state["loader"]):
        g.set_state(s)


def _state_of(obj) -> Any:
    return obj.get_state() if isinstance(obj, torch.Generator) else obj.state_dict()


def _load_state(obj, state) -> None:
    if isinstance(obj, torch.Generator):
        obj.set_state(state)
    else:
        obj.load_state_dict(state)


def snapshot_paths(checkpoint_path) -> list[Path]:
    """The weight snapshots a run with ``keep`` > 0 keeps beside ``checkpoint_path``
    (``<stem>.step<N>.pt``), oldest first (Transformer §6.1, checkpoint averaging)."""
    path = Path(checkpoint_path)
    return sorted(path.parent.glob(f"{path.stem}.step*.pt"))


def run_settings(cfg, checkpoint_path) -> dict[str, Any]:
    """The :class:`ResumableRun` options a training loop reads from its config, built in one
    place for both loops: with a ``checkpoint_path``, save every ``cfg.checkpoint_every`` steps,
    keep the last ``cfg.average_last`` snapshots, and stop (saved) at ``cfg.time_limit_s`` so that
    the next run continues. Without one there is nothing to continue: the run takes all its steps."""
    if checkpoint_path is None:
        return {"every": 0, "keep": 0, "time_limit_s": None}
    return {"every": cfg.get("checkpoint_every", 0), "keep": cfg.get("average_last", 0),
            "time_limit_s": cfg.get("time_limit_s")}


def architecture(cfg, **actual: Any) -> dict[str, Any]:
    """What a checkpoint stores of its config: the model part (``cfg.section("model")``: how the
    network is built, without which its weights mean nothing), with ``actual`` values the data
    decided or the weights depend on (the tokenizer's real vocabulary size, the data set a GAN
    models). Run settings and thresholds stay out: they are the notebook's, not the weights'."""
    return {**dataclasses.asdict(cfg.section("model")), **actual}


def _format_seconds(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class ResumableRun:
    """The bookkeeping of a training loop (week 4, "checkpointing"), so the loop reads like
    the paper.

    - ``for step in run`` counts from the saved step + 1 to ``steps``; it stops early at
      ``time_limit_s`` or after step ``stop_after`` (a simulated disconnect), saving then, every
      ``every`` steps and at the end, when ``path`` is given. With ``keep`` > 0 each scheduled
      save (not one forced by a stop) also keeps the weights alone as ``<path stem>.step<N>.pt``,
      the newest ``keep`` of them (for checkpoint averaging, Transformer §6.1): :meth:`snapshots`
      lists them. A fresh
      run (no checkpoint at ``path``) first moves snapshots left from an earlier run there into a
      folder beside it (``<stem>.earlier-<time>/``; never deleted).
    - When ``path`` exists the run *resumes* from it: weights, optimizer, scheduler, GradScaler,
      ``others`` (more modules, optimizers, torch.Generators), RNG states, history and the
      position in the data (see :meth:`batches`), so an interrupted run ends bit-identical to
      an uninterrupted one. A checkpoint of other settings (``architecture`` keys) is refused.
    - :meth:`check_finite` stops with :class:`~helpers.runtime.failures.NonFiniteLossError` before a
      NaN/inf can reach a checkpoint; :meth:`log` fills ``history``, which also gets the
      epochs and seconds of the run at its end.
    - After a few dozen steps it prints how long the rest should take on this machine;
      :meth:`summary` (also left on ``history.run_summary``) says whether the run finished or
      was stopped early (for metrics.json).

    Under ``torchrun`` (``dist``, a :class:`helpers.runtime.distributed.Context`) only rank 0 saves and
    shows progress, and every rank stops at the same step.
    """

    def __init__(self, path=None, *, steps: int, config: Mapping[str, Any] | None = None,
                 architecture: Iterable[str] | None = None, model: torch.nn.Module,
                 optimizer=None, scheduler=None, scaler=None,
                 others: Mapping[str, Any] | None = None, history: History | None = None,
                 every: int = 0, time_limit_s: float | None = None,
                 stop_after: int | None = None, dist: distributed.Context | None = None,
                 desc: str = "training", lr_hint: str = "the learning rate", amp=None,
                 eta_after: int | None = None, keep: int = 0):
        self.path = Path(path) if path is not None else None
        self.steps, self.every, self.keep = int(steps), int(every or 0), int(keep or 0)
        self.config = dict(config or {})
        self.model, self.optimizer, self.scheduler, self.scaler = model, optimizer, scheduler, scaler
        self.others = dict(others or {})
        self.history = history if history is not None else History()  # an empty History is falsy
        self.time_limit_s, self.stop_after = time_limit_s, stop_after
        self.dist = dist or distributed.Context()
        self.desc, self.lr_hint, self.amp = desc, lr_hint, amp
        self.eta_after = eta_after if eta_after is not None else min(50, max(10, self.steps // 20))
        self.step = self.epoch = self.batch_in_epoch = 0
        self.stopped_by: str | None = None
        self.seconds = 0.0
        self._order: dict | None = None
        self._pending_rng = None
        self._bar, self._postfix = None, {}
        if self.path is not None and self.path.exists():
            self._resume(architecture)
        elif self.keep and self.dist.is_main:  # a fresh run: older snapshots are not its own
            set_aside(self.snapshots(), self.path)  # moved into a folder beside it, never deleted

    # ------------------------------------------------------------------ checkpoint
    def _resume(self, architecture) -> None:
        state = load_checkpoint(self.path, config=self.config, config_keys=architecture,
                                restore_rng=False)
        extra = state.get("extra", {})
        primary = [k for k, obj in (("optimizer", self.optimizer), ("scheduler", self.scheduler),
                                    ("scaler", self.scaler)) if obj is not None and k not in state]
        missing = primary + [k for k in (*self.others, "epoch", "batch_in_epoch", "history")
                             if k not in extra]
        if missing:
            raise CheckpointError(
                f"{self.path} holds trained nets but not the state to resume training "
                f"(no {', '.join(missing)}): it was not written by a training loop's "
                f"checkpoint_path=. Fix: pass another checkpoint_path for this run (that file stays "
                f"as it is), or load it with helpers.runtime.checkpoints.load_checkpoint to use the nets.")
        load_checkpoint(self.path, model=self.model, optimizer=self.optimizer,
                        scheduler=self.scheduler, scaler=self.scaler, restore_rng=False)
        for name, obj in self.others.items():
            _load_state(obj, extra[name])
        self.history.load_state_dict(extra["history"])
        self.step, self.epoch, self.batch_in_epoch = state["step"], extra["epoch"], extra["batch_in_epoch"]
        self._order = extra.get("order")
        self._pending_rng = state["rng"]

    def save(self) -> None:
        """Write the checkpoint now (atomically; refused if any weights are NaN/inf)."""
        for name, obj in self.others.items():
            bad = non_finite_tensors(obj.state_dict()) if isinstance(obj, torch.nn.Module) else []
            if bad:
                raise non_finite_loss_error(self.step, f"finite but {name}'s weights are not "
                                            f"({', '.join(bad[:3])})", self.path, lr_hint=self.lr_hint)
        extra = {name: _state_of(obj) for name, obj in self.others.items()}
        extra.update(epoch=self.epoch, batch_in_epoch=self.batch_in_epoch,
                     history=self.history.state_dict())
        if self._order is not None:
            extra["order"] = self._order
        save_checkpoint(self.path, model=self.model, optimizer=self.optimizer,
                        scheduler=self.scheduler, scaler=self.scaler, step=self.step,
                        config=self.config, extra=extra)
        if self.keep and (self.step == self.steps or (self.every and self.step % self.every == 0)):
            # only the scheduled saves: a stop mid-interval (time limit) must not add a snapshot,
            # or a resumed run would average other weights than an uninterrupted one
            atomic_save(self.model.state_dict(),
                        self.path.with_name(f"{self.path.stem}.step{self.step:07d}.pt"))
            for old in self.snapshots()[:-self.keep]:
                old.unlink()

    def snapshots(self) -> list[Path]:
        """The kept weight snapshots (``keep``), oldest first."""
        return [] if self.path is None else snapshot_paths(self.path)

    def _restore_rng(self) -> None:
        if self._pending_rng is not None:
            set_rng_state(self._pending_rng)
            self._pending_rng = None

    # ------------------------------------------------------------------ data
    def batches(self, source, what: str = "examples") -> Iterator:
        """Batches forever, epoch after epoch, from a DataLoader (its shuffled order is
        recorded and restored exactly) or from ``source(epoch)`` (an iterable whose order
        depends only on the epoch). On resume the batches this epoch used are skipped.
        ``what`` names the items in error messages ("images")."""
        return _Batches(self, source, what)

    # ------------------------------------------------------------------ steps
    def __iter__(self) -> Iterator[int]:
        self._restore_rng()
        start = time.perf_counter()
        bar = self._bar = progress(total=self.steps, initial=self.step, desc=self.desc,
                                   disable=not self.dist.is_main)
        first = self.step
        live = LiveCurve.maybe(self.history, title=self.desc) if self.dist.is_main else None
        if first and self.dist.is_main:
            print(f"Resuming from step {first} of {self.steps} ({self.path})." if first < self.steps else
                  f"Already trained ({self.steps} steps, {self.path}): loaded, nothing to train.",
                  flush=True)
        try:
            while self.step < self.steps:
                self.step += 1
                yield self.step
                bar.update(1)
                if live is not None:
                    live.tick()
                self.seconds = time.perf_counter() - start
                done = self.step - first
                left = self.seconds / done * (self.steps - self.step)
                if done == self.eta_after and left >= 30 and self.dist.is_main:  # worth knowing
                    bar.write(f"{done} steps in {_format_seconds(self.seconds)}: the remaining "
                              f"{self.steps - self.step} should take about {_format_seconds(left)} "
                              f"on this machine.")
                out_of_time = self.dist.any(self.time_limit_s is not None
                                            and self.seconds > self.time_limit_s)
                if out_of_time and self.step < self.steps:
                    self.stopped_by = "time limit"
                elif self.step == self.stop_after and self.step < self.steps:
                    self.stopped_by = "stop_after"
                stopping = self.step >= self.steps or self.stopped_by is not None
                if self.path is not None and self.dist.is_main and (
                        stopping or (self.every and self.step % self.every == 0)):
                    self.save()
                if stopping:
                    break
        finally:
            bar.close()
            self._bar = None
        if self.step > first:  # a finished run that was only loaded adds nothing to its history
            self.history.log(self.step, epochs=self.epoch, seconds=self.seconds)
        self.history.run_summary = {**self.summary(), "resumed_from": first,
                                    "checkpoint": None if self.path is None else str(self.path)}
        if self.stopped_by == "time limit" and self.dist.is_main:
            print(f"Stopped by the time limit ({self.time_limit_s:.0f} s) after step {self.step} of "
                  f"{self.steps}." + (" Run again to continue from the checkpoint."
                                      if self.path is not None else ""), flush=True)

    def check_finite(self, value) -> None:
        """Stop the run (on every rank) if ``value`` (a loss tensor or float, or a dict of
        them) is NaN or inf, before it can reach the weights or a checkpoint."""
        values = value.values() if isinstance(value, Mapping) else [value]
        ok = all(bool(torch.isfinite(v).all()) if isinstance(v, torch.Tensor) else math.isfinite(v)
                 for v in values)
        if self.dist.any(not ok):
            plain = {k: float(v.detach()) if isinstance(v, torch.Tensor) else float(v)
                     for k, v in (value.items() if isinstance(value, Mapping) else [("", value)])}
            shown = ", ".join(f"{k}={v}" if k else str(v) for k, v in plain.items()
                              if not math.isfinite(v))
            raise non_finite_loss_error(self.step, shown, self.path, lr_hint=self.lr_hint,
                                        amp=self.amp)

    def log(self, step: int, **values) -> None:
        """Add values to the history (tensors averaged over all ranks)."""
        plain = {k: self.dist.global_mean(v) if isinstance(v, torch.Tensor) else float(v)
                 for k, v in values.items()}
        self.history.log(step, **plain)
        shown = {k: v for k, v in plain.items() if _SHOWN.search(k)}
        if shown and getattr(self, "_bar", None) is not None:  # live feedback: the latest loss on the bar
            self._postfix.update({k: f"{v:.4g}" for k, v in shown.items()})
            self._bar.set_postfix(self._postfix, refresh=False)

    def summary(self) -> dict[str, Any]:
        """Steps done of planned, why the run ended early (None: it finished) and the time
        limit; after ``for step in run`` also on ``history.run_summary``, with ``resumed_from``
        (the step it started from) and ``checkpoint``, for :func:`helpers.runtime.history.report_run`."""
        return {"steps_done": self.step, "steps_planned": self.steps,
                "stopped_early": self.stopped_by, "time_limit_s": self.time_limit_s}


class _Batches:
    """The iterator behind :meth:`ResumableRun.batches`; updates the run's data position."""

    def __init__(self, run: ResumableRun, source, what: str):
        self.run, self.source = run, source
        self.is_loader = not callable(source)
        if self.is_loader:
            try:
                empty = len(source) == 0
            except TypeError:  # an iterable-style loader: its length is unknown
                empty = False
            if empty:
                raise ValueError(
                    f"the data loader yields no batches ({len(source.dataset)} {what}, batch_size="
                    f"{getattr(source, 'batch_size', '?')}, drop_last="
                    f"{getattr(source, 'drop_last', '?')}). Fix: add {what}, or lower batch_size "
                    f"below the number of {what}.")
        skip = run.batch_in_epoch
        self._it = self._start_epoch(resume=run._order is not None)
        for _ in range(skip):  # resuming: the batches this epoch used before the interruption
            next(self._it)
        run.batch_in_epoch = skip
        run._restore_rng()

    def _start_epoch(self, resume: bool = False) -> Iterator:
        if not self.is_loader:
            return iter(self.source(self.run.epoch))
        if resume:
            _set_order_state(self.source, self.run._order)
        else:
            self.run._order = _order_state(self.source)
        return iter(self.source)

    def __iter__(self):
        return self

    def __next__(self):
        for _ in range(2):
            try:
                batch = next(self._it)
            except StopIteration:  # next epoch
                self.run.epoch += 1
                self.run.batch_in_epoch = 0
                self._it = self._start_epoch()
                continue
            self.run.batch_in_epoch += 1
            return batch
        raise ValueError("the data source yields no batches in a whole epoch. Fix: check the data "
                         "and the batch size.")
