"""Data-parallel SimCLR: two Gloo processes on halves of a batch give the loss, the gradients and
the BatchNorm statistics of one process on the whole batch."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from metagmvae.methods import simclr
from metagmvae.runtime.distributed import all_reduce_sum, convert_sync_batchnorm

WORLD = 2
BATCH = 8
TAU = 0.5


def make_inputs():
    torch.manual_seed(0)
    model = simclr.SimCLR(hidden=8)
    gen = torch.Generator().manual_seed(1)
    views = torch.randn(2, BATCH, 3, 84, 84, generator=gen)
    return model.state_dict(), views


def _worker(rank: int, init_file: str, state: dict, views: torch.Tensor, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    torch.set_num_threads(1)
    model = simclr.SimCLR(hidden=8)
    model.load_state_dict(state)
    net = DistributedDataParallel(convert_sync_batchnorm(model))
    n = BATCH // WORLD
    mine = views[:, rank * n : (rank + 1) * n]
    p1, p2 = net(mine[0], mine[1])
    loss = simclr.nt_xent(p1, p2, TAU, rank)
    (loss * WORLD).backward()  # as in pretrain(): DDP averages, the global loss is the sum
    total = all_reduce_sum(loss.detach())
    grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    buffers = {name: b.clone() for name, b in model.named_buffers()}
    torch.save({"loss": total, "grads": grads, "buffers": buffers}, f"{out_dir}/rank{rank}.pt")
    dist.destroy_process_group()


def test_two_process_loss_gradients_and_batchnorm_equal_one_process(tmp_path):
    state, views = make_inputs()
    mp.spawn(_worker, args=(str(tmp_path / "init"), state, views, str(tmp_path)), nprocs=WORLD, join=True)

    model = simclr.SimCLR(hidden=8)
    model.load_state_dict(state)
    p1, p2 = model(views[0], views[1])
    loss = simclr.nt_xent(p1, p2, TAU)
    loss.backward()

    # float32 sums in another order differ by about 1e-7 of the largest gradient (0.64 here); the
    # conv biases before BatchNorm have an exact gradient of 0, so theirs are only that noise
    # (measured up to 1.5e-6 on an AMX Xeon), and the absolute tolerance follows the largest gradient
    atol = 1e-5 * max(p.grad.abs().max().item() for p in model.parameters())
    for rank in range(WORLD):
        out = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        assert torch.allclose(out["loss"], loss.detach(), rtol=1e-5), (out["loss"], loss)
        for name, p in model.named_parameters():
            assert torch.allclose(out["grads"][name], p.grad, rtol=1e-3, atol=atol), name
        for name, b in model.named_buffers():
            assert torch.allclose(out["buffers"][name].float(), b.float(), rtol=1e-4, atol=1e-6), name
    # the test has teeth: a loss that ignored the other process's negatives would differ
    local = simclr.nt_xent(p1[: BATCH // 2], p2[: BATCH // 2], TAU) * 2
    assert not torch.allclose(local, loss, rtol=1e-3)
