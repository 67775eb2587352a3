"""Data-parallel training across processes (``torchrun``): set-up, synchronised BatchNorm, and a
gradient-correct all-gather.

Works with NCCL on GPUs and Gloo on CPUs; PyTorch's own ``nn.SyncBatchNorm`` is GPU-only, so
:class:`SyncBatchNorm2d` implements the same statistics with differentiable collectives on any
device (and one code path is what the CPU tests exercise).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.nn import functional as dist_fn


@dataclass(frozen=True)
class Context:
    """This process's place in the job: ``rank`` of ``world`` processes."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Whether this process writes outputs and logs."""
        return self.rank == 0


SINGLE_PROCESS = Context()


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def init_from_env(device_type: str) -> Context:
    """Join the process group ``torchrun`` describes in the environment (a no-op without it).

    Uses NCCL for CUDA and Gloo otherwise; on CUDA each process takes GPU ``LOCAL_RANK``.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return SINGLE_PROCESS
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device_type == "cuda":
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
    return Context(rank, world, local_rank)


def all_gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` ``[n, ...]`` from every process along dim 0, in rank order, keeping the
    gradient path to every process's input (the backward is a reduce-scatter)."""
    if not active():
        return x
    return torch.cat(dist_fn.all_gather(x), dim=0)


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum of ``x`` over all processes (no gradient); ``x`` itself outside a job."""
    if not active():
        return x
    x = x.clone()
    dist.all_reduce(x)
    return x


def gather_objects(obj) -> list:
    """``obj`` from every process, in rank order (``[obj]`` outside a job)."""
    if not active():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    """Wait for every process (a no-op outside a job)."""
    if active():
        dist.barrier()


class SyncBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm whose training statistics are those of the batch over all processes.

    Outside a multi-process job it is exactly ``nn.BatchNorm2d``. Statistics are computed in
    float32 and summed with a differentiable all-reduce, so gradients equal those of one process
    holding the whole batch.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and active()):
            return super().forward(x)
        xf = x.float()
        local = torch.cat([xf.sum((0, 2, 3)), xf.pow(2).sum((0, 2, 3)), xf.new_tensor([xf.numel() / x.shape[1]])])
        total = dist_fn.all_reduce(local)
        c = x.shape[1]
        count = total[-1]
        mean = total[:c] / count
        var = (total[c : 2 * c] / count - mean.pow(2)).clamp_min(0.0)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum
                self.running_mean.mul_(1 - m).add_(m * mean)
                self.running_var.mul_(1 - m).add_(m * var * count / (count - 1))
        scale = torch.rsqrt(var + self.eps)
        if self.affine:
            shift = self.bias - mean * scale * self.weight
            scale = scale * self.weight
        else:
            shift = -mean * scale
        return (xf * scale.view(1, c, 1, 1) + shift.view(1, c, 1, 1)).to(x.dtype)


def convert_sync_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every ``nn.BatchNorm2d`` in ``module`` by :class:`SyncBatchNorm2d`, keeping its state."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d) and not isinstance(child, SyncBatchNorm2d):
            sync = SyncBatchNorm2d(
                child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats
            )
            sync.load_state_dict(child.state_dict())
            sync.to(next(child.buffers()).device)
            setattr(module, name, sync)
        else:
            convert_sync_batchnorm(child)
    return module
