"""SimCLR pre-training loop: epochs over a shuffled, rank-sharded dataset, a warm-up + cosine
learning rate, resume state every ``checkpoint_every`` steps and at each epoch's end, and a
bit-identical continuation after an interruption (mid-epoch included).

Learning rate (a deliberate deviation): linear warm-up from 0 over ``warmup_epochs``, then one
half-cosine from ``lr`` to 0 at the last step, stepped every iteration. The official code keeps
the rate constant for 10 epochs and then steps a cosine with a 75-epoch period once per epoch,
which makes it oscillate (zero at epochs 85, 235 and 385; docs/official-code.md §1.3).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
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
from metagmvae.runtime.progress import progress as progress_bar
from metagmvae.runtime.tracking import Run
from metagmvae.schema.pretrain import PretrainConfig
from metagmvae.training.loop import check_finite, check_gradients
from metagmvae.training.resume import ResumeFolder
from metagmvae.training.schedule import learning_rate, set_learning_rate


@dataclass
class PretrainHistory:
    """Per-epoch mean loss and the learning rate at the epoch's end."""

    epoch: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)


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
    """Train SimCLR on ``images`` (uint8 ``[N, 3, S, S]`` on ``rt.device``, S = ``cfg.image_size``); the main process
    writes ``out_dir`` (``simclr.pt``: encoder and projector weights with the configuration;
    ``history.json``). Returns a summary with the wall-clock training time.

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
    order_gen = rt.generator(cfg.seed)  # same permutation on every process
    view_gen = rt.generator(cfg.seed * 1000 + 1 + ctx.rank)  # different views on every process
    history, step, loss_sum, elapsed = PretrainHistory(), 0, 0.0, 0.0
    epoch_start_rng = order_gen.get_state()  # the order generator before this epoch's permutation

    resume = ResumeFolder(resume_root, f"{out_dir.name}-{cfg.fingerprint()}-w{ctx.world}")
    stateful = {"model": model, "optimizer": optimizer}
    if (saved := resume.restore(rt.device, stateful)) is not None:
        epoch_start_rng = saved["order_rng"].cpu()
        view_gen.set_state(saved["view_rng"][ctx.rank].cpu())  # one view generator per process
        history, step = PretrainHistory(**saved["history"]), saved["step"]
        loss_sum, elapsed = saved["loss_sum"], saved["elapsed"]
        if ctx.main:
            print(f"resuming {out_dir.name} from step {step} ({resume.state_file})", flush=True)

    def save_state() -> None:
        """Everything needed to continue bit-identically from ``step`` (a collective call)."""
        views = gather_objects(view_gen.get_state())
        if ctx.main:
            values = {"order_rng": epoch_start_rng, "view_rng": views, "history": asdict(history), "step": step}
            resume.save(stateful, **values, loss_sum=loss_sum, elapsed=elapsed, config=cfg.model_dump())
        barrier()

    net = DistributedDataParallel(model) if ctx.world > 1 else model
    bar = progress_bar(
        total=total_steps,
        initial=step,
        desc="pretrain simclr",
        unit="step",
        disable=not (progress and ctx.main),
    )
    model.train()
    while step < total_steps:
        epoch, first = divmod(step, steps_per_epoch)  # first > 0 only when resuming mid-epoch
        order_gen.set_state(epoch_start_rng)
        order = torch.randperm(images.shape[0], generator=order_gen, device=rt.device)
        for i in range(first, steps_per_epoch):
            tick = time.perf_counter()
            lr = learning_rate(step, total_steps, warmup, cfg.lr, cfg.lr_schedule)
            set_learning_rate(optimizer, lr)
            batch = images[order[i * cfg.batch + ctx.rank * local : i * cfg.batch + (ctx.rank + 1) * local]]
            view1, view2 = (simclr.augment(batch, view_gen, scale=cfg.crop_scale) for _ in range(2))
            view1, view2 = rt.images(view1), rt.images(view2)
            with rt.autocast():
                p1, p2 = net(view1, view2)
            loss = simclr.nt_xent(p1, p2, cfg.temperature, ctx.rank)
            check_finite(step + 1, {"NT-Xent loss": loss})
            optimizer.zero_grad(set_to_none=True)
            (loss * ctx.world).backward()  # DDP averages gradients; the global loss is the sum
            check_gradients(step + 1, model.parameters())
            optimizer.step()
            loss_sum += float(all_reduce_sum(loss.detach()))
            step += 1
            elapsed += time.perf_counter() - tick
            if on_step is not None:
                on_step(step, elapsed, model)
            bar.update(1)
            bar.set_postfix(loss=f"{loss_sum / (i + 1):.3f}", lr=f"{lr:.2e}", refresh=False)
            if i + 1 < steps_per_epoch and step % cfg.checkpoint_every == 0:
                save_state()
        epoch += 1
        history.epoch.append(epoch)
        history.loss.append(loss_sum / steps_per_epoch)
        history.lr.append(lr)
        run.log_metrics({"pretrain/loss": history.loss[-1], "pretrain/lr": lr, "pretrain/seconds": elapsed}, step=epoch)
        epoch_start_rng, loss_sum = order_gen.get_state(), 0.0
        save_state()
    bar.close()

    epoch = cfg.epochs
    summary = {"epochs": epoch, "final_loss": round(history.loss[-1], 4), "fingerprint": cfg.fingerprint()}
    if ctx.main:
        with atomic_dir(out_dir) as tmp:
            checkpoint.save(
                tmp / "simclr.pt", {"model": model.state_dict(), "config": cfg.model_dump(), "epochs": epoch}
            )
            write_json(tmp / "history.json", asdict(history))
        resume.remove()
    barrier()
    return summary | {"train_seconds": round(elapsed, 1), "seconds_per_epoch": round(elapsed / max(epoch, 1), 2)}
