"""How long will this run take on that GPU? A prediction from counted FLOPs (week 0; printed
by every training notebook before it trains).

Every `full` time in the notebooks is an **estimate** until a run on that GPU measures it. The
estimate is:

    seconds = steps * FLOPs of one training step / (peak * ASSUMED_UTILIZATION)

- **FLOPs of one step** (forward + backward) are counted by PyTorch's
  ``torch.utils.flop_counter.FlopCounterMode`` on the ``meta`` device: the model's weights are
  swapped for shape-only tensors (``torch.func.functional_call``), so a full-size step costs no
  arithmetic and no memory on a CPU. The counter counts matrix multiplies, convolutions and
  attention (the bulk of the work), not elementwise ops or the optimizer. If a model cannot run
  on ``meta`` (some library code reads tensor values), the step is run for real on the CPU with
  the batch cut to its first :data:`FALLBACK_ROWS` rows and the count scaled linearly by the
  batch size (exact for every counted op, which are all linear in the batch); the prediction says
  which way was used.
- **Peak** (:data:`PEAK_TFLOPS`): the vendor data sheet's dense tensor-core peak for 16-bit
  training math, without sparsity: bf16 where the GPU has it, fp16 on the T4 (Turing has no bf16;
  the notebooks use fp16 + GradScaler there, ``env.amp_settings``).
- **ASSUMED_UTILIZATION** = 0.25: an *assumption*, not a measurement: the share of the peak a
  small model with modest batches reaches in eager PyTorch (large tuned LLM runs report 0.4-0.6;
  small models, data loading, evaluation and checkpoints pull it down). Nothing in this course
  has measured it on a GPU yet (docs/DEVELOPING.md, "Benchmarks": GPU rows not measured); replace
  it with the MFU ``make bench`` prints on your GPU.

So a prediction is good to a factor of about two, and it says so. A run longer than its time
limit stops, saves a checkpoint and continues on the next run of the notebook
(``ResumableRun``); :class:`Prediction` says how many runs that takes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

# Dense tensor-core peaks in TFLOPS (bf16; fp16 where the GPU has no bf16), from the vendors'
# data sheets, without sparsity (the sheets print the sparse figure, twice these, first).
# Matched in order against torch.cuda.get_device_name(): the first row whose keys all occur wins.
PEAK_TFLOPS: list[tuple[tuple[str, ...], float, str]] = [
    (("H100", "PCIE"), 756.0, "bf16"),
    (("H100", "NVL"), 835.0, "bf16"),
    (("GH200",), 989.0, "bf16"),
    (("H200",), 989.0, "bf16"),
    (("H100",), 989.0, "bf16"),   # SXM
    (("H800",), 989.0, "bf16"),
    (("A100",), 312.0, "bf16"),
    (("A800",), 312.0, "bf16"),
    (("L40S",), 362.0, "bf16"),
    (("L4",), 121.0, "bf16"),
    (("RTX 4090",), 165.0, "bf16"),  # fp16-accumulate rate; PyTorch accumulates in fp32
    (("T4",), 65.0, "fp16"),      # Turing: no bf16
    (("V100",), 125.0, "fp16"),
]

# The kinds a learner is likely to get (Colab: T4, L4, A100; clouds: H100), for
# :func:`predict` by name and for the table a notebook prints on a CPU.
GPU_KINDS = ("T4", "L4", "A100", "H100")

ASSUMED_UTILIZATION = 0.25  # an assumption (see the module docstring), not a measurement
T4_MEMORY_GB = 15.0  # Colab's T4: 15 GB usable of its 16 GB
FALLBACK_ROWS = 2
TIGHT = 0.8  # a prediction above this share of the time limit says it has little to spare


def peak_tflops(device_name: str) -> tuple[float, str] | None:
    """The dense 16-bit peak ``(TFLOPS, dtype)`` for a GPU name (``"Tesla T4"``, ``"NVIDIA
    A100-SXM4-40GB"``, or a kind such as ``"L4"``), or None if unknown (week 4b, ``make bench``)."""
    name = device_name.upper()
    for keys, tflops, dtype in PEAK_TFLOPS:
        if all(k in name for k in keys):
            return tflops, dtype
    return None


def detect_gpu() -> str | None:
    """The name of CUDA device 0, or None without a GPU."""
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


# --------------------------------------------------------------------------- counting
@dataclass(frozen=True)
class StepCount:
    """One training step counted: FLOPs (forward + backward), how they were counted, and the
    bytes of the tensors autograd saved for the backward pass (the activations, in the dtype the
    count ran in: fp32, so an upper bound for a mixed-precision run)."""

    flops: float
    activation_bytes: float
    method: str  # "meta" or "cpu, first 2 of 128 rows, scaled x64"


def _to_meta(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return torch.empty_like(value, device="meta").requires_grad_(value.requires_grad)
    if isinstance(value, Mapping):
        return {k: _to_meta(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return type(value)(_to_meta(v) for v in value)
    return value


def _first_rows(value: Any, rows: int) -> Any:
    if isinstance(value, torch.Tensor) and value.dim() > 0:
        return value[:rows].cpu()
    if isinstance(value, Mapping):
        return {k: _first_rows(v, rows) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return type(value)(_first_rows(v, rows) for v in value)
    return value


def _batch_size(inputs: Any) -> int | None:
    if isinstance(inputs, torch.Tensor) and inputs.dim() > 0:
        return inputs.shape[0]
    values = inputs.values() if isinstance(inputs, Mapping) else inputs if isinstance(inputs, (tuple, list)) else ()
    for v in values:
        found = _batch_size(v)
        if found is not None:
            return found
    return None


def default_loss(output: Any) -> torch.Tensor:
    """A scalar to call ``backward()`` on: the output's ``.loss`` (Hugging Face models given
    labels), else the sum of the (first) output tensor; the sum costs nothing the counter counts."""
    loss = getattr(output, "loss", None)
    if isinstance(loss, torch.Tensor):
        return loss
    if isinstance(output, Mapping):
        output = next(iter(output.values()))
    if isinstance(output, (tuple, list)):
        output = output[0]
    return output.float().sum()


def _count(step: Callable[[], torch.Tensor]) -> tuple[float, float]:
    saved = 0

    def pack(t: torch.Tensor):
        nonlocal saved
        saved += t.numel() * t.element_size()
        return t

    # fork_rng: dropout in a counted step must not move the run's random numbers
    with torch.random.fork_rng(devices=[]), FlopCounterMode(display=False) as counter, \
            torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = step()
        loss.backward()
    return float(counter.get_total_flops()), float(saved)


def _params_on(module: nn.Module, device: str) -> dict[str, torch.Tensor]:
    state = {}
    for name, p in module.named_parameters():
        state[name] = torch.empty_like(p, device=device).requires_grad_(p.requires_grad)
    for name, b in module.named_buffers():
        state[name] = torch.empty_like(b, device=device) if device == "meta" else b.detach().to(device)
    return state


def count_step(model: nn.Module, inputs: Any, *, loss_fn: Callable[[Any], torch.Tensor] = default_loss,
               meta: bool = True) -> StepCount:
    """FLOPs of one training step of ``model`` on ``inputs`` (a tensor, a tuple of positional
    arguments, or a dict of keyword arguments, e.g. a Hugging Face batch with labels): forward,
    ``loss_fn(output)``, backward. The model itself is not touched (its weights are swapped for
    stand-ins per call) and the CPU's random numbers are restored afterwards (dropout). On ``meta`` first; if the model cannot run there, on the CPU with
    :data:`FALLBACK_ROWS` rows, scaled to the batch."""
    def call(params, args):
        if isinstance(args, Mapping):
            return torch.func.functional_call(model, params, (), dict(args))
        args = args if isinstance(args, tuple) else (args,)
        return torch.func.functional_call(model, params, args)

    was_training = model.training
    model.train()
    try:
        if meta:
            try:
                params, args = _params_on(model, "meta"), _to_meta(inputs)
                flops, saved = _count(lambda: loss_fn(call(params, args)))
                return StepCount(flops, saved, "meta")
            except Exception:  # noqa: BLE001 - any op without a meta kernel: count for real below
                pass
        rows = _batch_size(inputs) or 1
        small = min(rows, FALLBACK_ROWS)
        params = {k: v.detach().cpu().requires_grad_(v.requires_grad)
                  for k, v in [*model.named_parameters(), *model.named_buffers()]}
        args = _first_rows(inputs, small)
        flops, saved = _count(lambda: loss_fn(call(params, args)))
        scale = rows / small
        return StepCount(flops * scale, saved * scale,
                         f"cpu, first {small} of {rows} rows, scaled x{scale:g}")
    finally:
        model.train(was_training)


def count_gan_step(generator: nn.Module, discriminator: nn.Module, batch_size: int, nz: int,
                   image_shape: tuple[int, int, int]) -> StepCount:
    """FLOPs of one DCGAN step (§4; ``helpers.dcgan.train_step``): D on a real and a generated
    batch, backward; then D on the generated batch again and backward through D and G. On
    ``meta``, so the paper's sizes cost nothing. Activation bytes: the larger of the two phases."""
    g_params, d_params = _params_on(generator, "meta"), _params_on(discriminator, "meta")
    G = lambda z: torch.func.functional_call(generator, g_params, (z,))  # noqa: E731
    D = lambda x: torch.func.functional_call(discriminator, d_params, (x,))  # noqa: E731
    z = torch.empty(batch_size, nz, 1, 1, device="meta")
    real = torch.empty(batch_size, *image_shape, device="meta")
    was = generator.training, discriminator.training
    generator.train()
    discriminator.train()
    try:
        fake = None

        def d_phase():
            nonlocal fake
            fake = G(z)
            return D(real).float().sum() + D(fake.detach()).float().sum()

        d_flops, d_saved = _count(d_phase)
        g_flops, g_saved = _count(lambda: D(G(z)).float().sum())
        # d_phase's G forward is counted in d_flops and repeated in the G phase's count; the
        # real step reuses `fake`, so take the G forward out once.
        with FlopCounterMode(display=False) as counter:
            with torch.no_grad():
                G(z)
        g_forward = float(counter.get_total_flops())
    finally:
        generator.train(was[0])
        discriminator.train(was[1])
    return StepCount(d_flops + g_flops - g_forward, max(d_saved, g_saved), "meta")


def training_memory_gb(model_or_params: nn.Module | int, count: StepCount, *,
                       optimizer_states: int = 2) -> float:
    """Estimated peak GPU memory of training: fp32 weights, their gradients and ``optimizer_states``
    copies (Adam: 2), plus the saved activations of one step (``count.activation_bytes``, fp32:
    an upper bound under mixed precision), in GB. Leaves out the CUDA context (~0.3-0.5 GB) and
    allocator fragmentation."""
    n = model_or_params if isinstance(model_or_params, int) else \
        sum(p.numel() for p in model_or_params.parameters())
    return ((2 + optimizer_states) * 4 * n + count.activation_bytes) / 1e9


# --------------------------------------------------------------------------- predicting
@dataclass(frozen=True)
class Prediction:
    """A predicted training time for one GPU; ``str()`` is what a notebook prints."""

    gpu: str                 # the name it was predicted for ("Tesla T4", "T4")
    detected: bool           # True: the GPU this notebook runs on
    flops_per_step: float
    steps: int
    seconds: float | None    # None: no peak figure for this GPU
    time_limit_s: float | None
    peak: tuple[float, str] | None
    method: str
    stand_in: bool = False   # True: no GPU here, so the prediction is for a T4, not this machine

    @property
    def fits(self) -> bool | None:
        """Whether the steps finish within the time limit (None: unknown GPU); no limit fits."""
        if self.seconds is None:
            return None
        return self.time_limit_s is None or self.seconds <= self.time_limit_s

    @property
    def runs_needed(self) -> int | None:
        """How many runs of the notebook (each resuming from the last checkpoint) train all steps."""
        if self.seconds is None:
            return None
        if not self.time_limit_s:
            return 1
        return max(1, math.ceil(self.seconds / self.time_limit_s))

    def basis(self) -> str:
        peak = "no peak figure for this GPU" if self.peak is None else (
            f"{self.peak[0]:g} TFLOPS dense {self.peak[1]} (data sheet) x {ASSUMED_UTILIZATION:.0%} "
            f"assumed utilization")
        return (f"{self.steps:,} steps x {self.flops_per_step / 1e12:.3g} TFLOP per step "
                f"(counted: FlopCounterMode, {self.method}) / ({peak})")

    def __str__(self) -> str:
        where = f"this GPU ({self.gpu})" if self.detected else \
            f"a {self.gpu} (no GPU here: the prediction for Colab's free GPU, NOT for this machine)" \
            if self.stand_in else f"a {self.gpu}"
        if self.seconds is None:
            return (f"Predicted training time on {where}: unknown (no peak figure; add it to "
                    f"helpers/runtime/estimate.py PEAK_TFLOPS). Basis: {self.basis()}.")
        text = (f"Predicted training time on {where}: about {_minutes(self.seconds)} "
                f"(estimate, good to a factor of about 2; basis: {self.basis()}).")
        if self.time_limit_s is None:
            return text + " This profile has no time limit."
        if self.fits and self.seconds > TIGHT * self.time_limit_s:
            return (text + f" Fits the time limit of {_minutes(self.time_limit_s)} with little to "
                    f"spare ({self.seconds / self.time_limit_s:.0%} of it, before evaluation and "
                    f"checkpoints): if this GPU is slower than assumed, the run stops at the limit, "
                    f"saves, and your next run of the notebook finishes it.")
        if self.fits:
            return text + f" Fits the time limit of {_minutes(self.time_limit_s)}."
        return (text + f" Longer than the time limit of {_minutes(self.time_limit_s)}: the run "
                f"stops there, saves a checkpoint, and continues when you run the notebook again; "
                f"about {self.runs_needed} runs in all.")


def _minutes(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds >= 600 else f"{seconds / 60:.1f} min"


def predict(flops_per_step: float, steps: int, *, gpu: str | None = None,
            time_limit_s: float | None = None, method: str = "given") -> Prediction:
    """Seconds for ``steps`` steps on ``gpu`` (a device name or kind; default: the detected GPU,
    else a T4, labelled as such)."""
    detected = stand_in = False
    if gpu is None:
        gpu = detect_gpu()
        detected, stand_in = gpu is not None, gpu is None
        gpu = gpu or "T4"
    peak = peak_tflops(gpu)
    seconds = None if peak is None else steps * flops_per_step / (peak[0] * 1e12 * ASSUMED_UTILIZATION)
    return Prediction(gpu, detected, flops_per_step, steps, seconds, time_limit_s, peak, method, stand_in)


def predict_training(model: nn.Module | None = None, inputs: Any = None, *, steps: int,
                     time_limit_s: float | None = None, done: int = 0,
                     loss_fn: Callable[[Any], torch.Tensor] = default_loss,
                     gan: Mapping[str, Any] | None = None, gpu: str | None = None,
                     show: bool = True) -> Prediction:
    """The one call a training notebook makes before it trains: count one step of ``model`` on
    ``inputs`` (one batch of this run; or ``gan=dict(generator=G, discriminator=D,
    batch_size=..., nz=..., image_shape=(C, H, W))`` for a DCGAN step), predict the time of the
    ``steps - done`` steps still to train on the detected GPU (on a CPU: a T4, labelled), print
    it with its basis and whether it fits ``time_limit_s``, and return the :class:`Prediction`."""
    if gan is not None:
        count = count_gan_step(**gan)
    elif model is not None:
        count = count_step(model, inputs, loss_fn=loss_fn)
    else:
        raise ValueError("predict_training needs a model and one batch of inputs, or gan=dict(...)")
    prediction = predict(count.flops, max(0, steps - done), gpu=gpu, time_limit_s=time_limit_s,
                         method=count.method)
    if show:
        print(("" if not done else f"{done:,} of {steps:,} steps already done (checkpoint). ") + str(prediction))
    return prediction
