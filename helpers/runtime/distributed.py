"""More than one GPU: a training loop under ``torchrun`` with DistributedDataParallel
(Transformer week 4b, "scaling out"; the paper trained on 8 GPUs, §5.2).

A :class:`Context` says which process this is and does what every rank must agree on: wrap the
model, scale a rank's loss by its share of the global batch (:meth:`Context.scale_loss`), stop
together (:meth:`Context.any`), average logged values. It knows nothing about any batch: how a
batch is split over the ranks belongs to the loop that builds it
(:func:`helpers.translation.shard_batch`). Only rank 0 prints and writes. Without torchrun
every method here is a no-op, so one GPU (or Colab) needs nothing.

    torchrun --nproc_per_node=4 -m helpers.ops.launch --profile full
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel


@dataclass(frozen=True)
class Context:
    """Where this process stands: ``rank`` of ``world_size`` processes, on ``device``."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        """True under torchrun with more than one process."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that prints and writes files."""
        return self.rank == 0

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """``DistributedDataParallel(model)`` when distributed, else ``model`` itself. The
        module's own buffers are constants (positional encodings), so they are not re-sent."""
        if not self.enabled:
            return model
        ids = [self.device.index] if self.device.type == "cuda" else None
        newer = "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
        no_resync = {"forward_sync_buffers": False} if newer else {"broadcast_buffers": False}
        return DistributedDataParallel(model, device_ids=ids, **no_resync)

    def scale_loss(self, loss: torch.Tensor, share: float) -> torch.Tensor:
        """The rank's mean token loss times ``share``: the mean over ranks of these gradients
        is the gradient of the global batch's mean token loss."""
        return loss * share if self.enabled else loss

    def any(self, flag: bool) -> bool:
        """True on every rank if ``flag`` is True on any rank (e.g. a time limit one rank hit
        first), so all ranks stop at the same step instead of waiting for each other."""
        if not self.enabled:
            return bool(flag)
        value = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    def all_finite(self, loss: torch.Tensor) -> bool:
        """``torch.isfinite(loss)`` agreed by all ranks (one rank stopping alone would hang the
        others)."""
        return not self.any(not bool(torch.isfinite(loss)))

    def global_mean(self, loss: torch.Tensor) -> float:
        """The global batch's mean loss as a float, the same on every rank (for logs)."""
        if not self.enabled:
            return loss.item()
        value = loss.detach().float().clone()
        dist.all_reduce(value)
        return value.item() / self.world_size


def world_from_env() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` from the variables torchrun sets (0, 1, 0 without)."""
    return (int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
            int(os.environ.get("LOCAL_RANK", 0)))


def setup(device: torch.device | str | None = None) -> Context:
    """Join the process group when started by torchrun (week 4b, multi-GPU).

    NCCL on CUDA, gloo on the CPU; on CUDA each process takes ``cuda:LOCAL_RANK``. Without
    torchrun it returns a single-process context for ``device`` and initializes nothing.
    Calling it again (e.g. from the loop after the script called it) reuses the group.
    """
    device = torch.device(device) if device is not None else torch.device("cpu")
    rank, world, local = world_from_env()
    if world <= 1:
        return Context(device=device)
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Context(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local,
                   device=device)


def cleanup() -> None:
    """Leave the process group (end of a torchrun script)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
