"""The `pretrain` stage: SimCLR on a dataset's training images (one process or a ``torchrun`` job)."""

from __future__ import annotations

import contextlib
from dataclasses import replace
from pathlib import Path

import torch

from metagmvae.data import mini_imagenet
from metagmvae.methods import simclr
from metagmvae.methods.simclr_pretrain import pretrain
from metagmvae.runtime.distributed import init_from_env
from metagmvae.runtime.io import write_json
from metagmvae.runtime.tracking import Run, start_run
from metagmvae.schema.pretrain import PretrainConfig


def run(
    dataset: str, cfg: PretrainConfig, images_path: Path, out_dir: Path, metrics_path: Path, resume_root: Path
) -> dict:
    """Pre-train on the first ``train_per_class`` training images of every class of
    ``images_path``; write ``out_dir/simclr.pt`` and ``history.json``, and the final loss and
    wall-clock time to ``metrics_path``. Under ``torchrun`` every
    process runs this; only rank 0 writes and logs."""
    rt = cfg.runtime(convolutional=True)
    cfg = cfg.as_run_with(rt)
    ctx = init_from_env(rt.device.type)
    if rt.device.type == "cuda":
        rt = replace(rt, device=torch.device("cuda", ctx.local_rank))
    images = mini_imagenet.load_images(images_path, "train", cfg.train_per_class).images
    images = simclr.resize(images.flatten(0, 1), cfg.image_size).to(rt.device)  # [N, 3, S, S] uint8
    if ctx.main:
        print(f"pretrain: {images.shape[0]} images, {ctx.world} process(es) on {rt.device}")
    tracked = (
        start_run(
            "pretrain",
            f"simclr-{dataset}",
            {**cfg.model_dump(), "world": ctx.world, "images": images.shape[0]},
            runtime=rt,
        )
        if ctx.main
        else contextlib.nullcontext(Run(None))
    )
    with tracked as tracker:
        summary = pretrain(cfg, rt, images, out_dir, resume_root, tracker, ctx)
        if ctx.main:
            tracker.log_metrics({"final_loss": summary["final_loss"], "train_seconds": summary["train_seconds"]})
            tracker.log_artifact(out_dir / "history.json")
            write_json(metrics_path, summary)
    return summary
