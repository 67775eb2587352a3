"""SimCLR pre-training in the training loop: epochs over a shuffled, rank-sharded dataset, a
warm-up + cosine learning rate, resume state every ``checkpoint_every`` steps and at each epoch's
end, and a bit-identical continuation after an interruption (mid-epoch included).

Learning rate (a deliberate deviation): linear warm-up from 0 over ``warmup_epochs``, then one
half-cosine from ``lr`` to 0 at the last step, stepped every iteration. The official code keeps
the rate constant for 10 epochs and then steps a cosine with a 75-epoch period once per epoch,
which makes it oscillate (zero at epochs 85, 235 and 385; docs/official-code.md §1.3).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel

from metagmvae.methods import simclr
from metagmvae.runtime import checkpoint
from metagmvae.runtime.device import Runtime
from metagmvae.runtime.distributed import (
    SINGLE_PROCESS,
    Context,
    all_reduce_sum,
    barrier,
    convert_sync_batchnorm,
    gather_objects,
)
from metagmvae.runtime.io import atomic_dir, write_json
from metagmvae.runtime.tracking import Run
from metagmvae.schema.pretrain import PretrainConfig
from metagmvae.training.loop import Step, fit
from metagmvae.training.resume import ResumeFolder
from metagmvae.training.schedule import learning_rate


class EpochOrder:
    """Each epoch's shuffled order of ``n`` items from one generator, as a stateful object: its state
    is the generator's state at the start of the epoch the next step falls in, so a run resumed
    mid-epoch (or at an epoch's end) draws the same orders as an uninterrupted one."""

    def __init__(self, generator: torch.Generator, n: int, steps_per_epoch: int):
        self.gen, self.n, self.steps_per_epoch = generator, n, steps_per_epoch
        self.start, self.epoch, self.order, self.done = generator.get_state(), None, None, 0

    def position(self, step: int) -> tuple[torch.Tensor, int]:
        """The order of 1-based ``step``'s epoch and the step's index in it."""
        epoch, index = divmod(step - 1, self.steps_per_epoch)
        if epoch != self.epoch:
            if self.epoch is None:
                self.gen.set_state(self.start)
            else:
                self.start = self.gen.get_state()
            self.order = torch.randperm(self.n, generator=self.gen, device=self.gen.device)
            self.epoch = epoch
        self.done = step
        return self.order, index

    def state_dict(self) -> torch.Tensor:
        finished_epoch = self.epoch is not None and self.done % self.steps_per_epoch == 0
        return self.gen.get_state() if finished_epoch else self.start

    def load_state_dict(self, state: torch.Tensor) -> None:
        self.start, self.epoch = state.cpu(), None


class RankGenerators:
    """One generator per process (the views), as a stateful object: every process's state is
    gathered by :meth:`gather` (a collective call) and each process takes its own back."""

    def __init__(self, generator: torch.Generator, ctx: Context):
        self.gen, self.ctx, self.gathered = generator, ctx, None

    def gather(self) -> None:
        self.gathered = gather_objects(self.gen.get_state())

    def state_dict(self) -> list[torch.Tensor]:
        return self.gathered

    def load_state_dict(self, state: list[torch.Tensor]) -> None:
        self.gen.set_state(state[self.ctx.rank].cpu())


def pretrain(
    cfg: PretrainConfig,
    rt: Runtime,
    images: torch.Tensor,
    out_dir: Path,
    resume_root: Path,
    run: Run,
    ctx: Context = SINGLE_PROCESS,
    progress: bool = True,
    on_step: Callable[[int, float, torch.nn.Module], None] | None = None,
) -> dict[str, Any]:
    """Train SimCLR on ``images`` (uint8 ``[N, 3, S, S]`` on ``rt.device``, S = ``cfg.image_size``)
    in the training loop; the main process writes ``out_dir`` (``simclr.pt``: encoder and
    projector weights with the configuration; ``history.json``: per epoch the mean loss and the
    learning rate at its end). Returns a summary with the wall-clock training time.

    on_step: called after every step with ``(steps done, training seconds so far, the model)``
    (``benchmarks.simclr_budget`` copies the weights at fixed training minutes).
    """
    if cfg.batch % ctx.world:
        raise ValueError(f"pretrain batch {cfg.batch} is not divisible by the {ctx.world} processes")
    steps_per_epoch = images.shape[0] // cfg.batch
    if steps_per_epoch == 0:
        raise ValueError(f"pretrain batch {cfg.batch} is larger than the {images.shape[0]} training images")
    total_steps, warmup = steps_per_epoch * cfg.epochs, steps_per_epoch * cfg.warmup_epochs
    local = cfg.batch // ctx.world

    torch.manual_seed(cfg.seed)
    model = rt.prepare(simclr.SimCLR(cfg.hidden, blocks=cfg.blocks, image_size=cfg.image_size))
    if ctx.world > 1:
        model = convert_sync_batchnorm(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    order = EpochOrder(rt.generator(cfg.seed), images.shape[0], steps_per_epoch)  # same order on every process
    view_gen = rt.generator(cfg.seed * 1000 + 1 + ctx.rank)  # different views on every process
    views = RankGenerators(view_gen, ctx)
    net = DistributedDataParallel(model) if ctx.world > 1 else model

    def step_fn(step: int) -> Step:
        perm, i = order.position(step)
        batch = images[perm[i * cfg.batch + ctx.rank * local : i * cfg.batch + (ctx.rank + 1) * local]]
        view1, view2 = (simclr.augment(batch, view_gen, scale=cfg.crop_scale) for _ in range(2))
        view1, view2 = rt.images(view1), rt.images(view2)
        with rt.autocast():
            p1, p2 = net(view1, view2)
        loss = simclr.nt_xent(p1, p2, cfg.temperature, ctx.rank)
        # DDP averages gradients and the global loss is the sum: each process backpropagates world x its own
        return Step(loss * ctx.world, {"loss": all_reduce_sum(loss.detach())})

    def save_resume(write: Callable[[], None]) -> None:
        views.gather()
        if ctx.main:
            write()
        barrier()

    def rate(step: int) -> float:
        return learning_rate(step - 1, total_steps, warmup, cfg.lr, cfg.lr_schedule)

    resume = ResumeFolder(resume_root, f"{out_dir.name}-{cfg.fingerprint()}-w{ctx.world}")
    done = fit(
        name=out_dir.name,
        desc="pretrain simclr",
        model=model,
        optimizer=optimizer,
        step_fn=step_fn,
        steps=total_steps,
        learning_rate=rate,
        log_every=steps_per_epoch,
        log_prefix="pretrain",
        resume=resume,
        stateful={"order_rng": order, "view_rng": views},
        checkpoint_every=cfg.checkpoint_every,
        checkpoint_at_log=True,
        save_resume=save_resume,
        is_main=ctx.main,
        run=run,
        progress=progress,
        on_step=on_step,
    )
    steps = done.history.step
    history = {"epoch": [s // steps_per_epoch for s in steps], "loss": done.history.terms["loss"]}
    history["lr"] = [rate(s) for s in steps]
    epoch = cfg.epochs
    summary = {"epochs": epoch, "final_loss": round(history["loss"][-1], 4), "fingerprint": cfg.fingerprint()}
    if ctx.main:
        with atomic_dir(out_dir) as tmp:
            checkpoint.save(
                tmp / "simclr.pt", {"model": model.state_dict(), "config": cfg.model_dump(), "epochs": epoch}
            )
            write_json(tmp / "history.json", history)
        resume.remove()
    barrier()
    elapsed = done.elapsed
    return summary | {"train_seconds": round(elapsed, 1), "seconds_per_epoch": round(elapsed / max(epoch, 1), 2)}
