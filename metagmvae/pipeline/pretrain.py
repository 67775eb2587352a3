"""The `pretrain` stage: SimCLR on a dataset's training images (one process or a ``torchrun`` job)."""

from __future__ import annotations

import contextlib
from dataclasses import asdict, replace
from pathlib import Path

import torch

from metagmvae import simclr
from metagmvae.config import Checker, ConfigError, non_negative, one_of, positive, section
from metagmvae.data import mini_imagenet
from metagmvae.distributed import init_from_env
from metagmvae.io import write_json
from metagmvae.pretrain import PretrainConfig, pretrain
from metagmvae.runtime import make_runtime, runtime_params
from metagmvae.schedule import SCHEDULES
from metagmvae.tracking import Run, start_run


def crop_scale_problem(value: list) -> str | None:
    """Why ``value`` is not an area range ``[low, high]`` with 0 < low <= high <= 1, or ``None``."""
    ok = len(value) == 2 and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    return None if ok and 0 < value[0] <= value[1] <= 1 else "must be [low, high] with 0 < low <= high <= 1"


def pretrain_config(params: dict, dataset: str) -> PretrainConfig:
    """Parse and validate ``pretrain.<dataset>``; errors name the key and the allowed range."""
    where = f"pretrain.{dataset}"
    check = Checker(section(params, "pretrain", dataset), where)
    cfg = PretrainConfig(
        train_per_class=check.get("train_per_class", int, positive),
        epochs=check.get("epochs", int, positive),
        batch=check.get("batch", int, lambda v: None if v >= 2 else "must be >= 2 (negatives come from the batch)"),
        lr=check.get("lr", float, positive),
        warmup_epochs=check.get("warmup_epochs", int, non_negative),
        weight_decay=check.get("weight_decay", float, non_negative),
        temperature=check.get("temperature", float, positive),
        hidden=check.get("hidden", int, positive),
        blocks=check.get("blocks", int, positive),
        image_size=check.get(
            "image_size", int, lambda v: None if 8 <= v <= mini_imagenet.IMAGE_SIZE else "must be in [8, 84]"
        ),
        crop_scale=tuple(check.get("crop_scale", list, crop_scale_problem)),
        lr_schedule=check.get("lr_schedule", str, one_of(*SCHEDULES)),
        seed=check.get("seed", int, non_negative),
        checkpoint_every=check.get("checkpoint_every", int, positive),
        **runtime_params(check),
    )
    check.done()
    if simclr.feature_size(image_size=cfg.image_size, blocks=cfg.blocks, hidden=cfg.hidden) == 0:
        raise ConfigError(f"{where}: image_size = {cfg.image_size} does not survive blocks = {cfg.blocks} 2x2 poolings")
    if cfg.warmup_epochs >= cfg.epochs:
        raise ConfigError(f"{where}.warmup_epochs = {cfg.warmup_epochs}: must be < epochs = {cfg.epochs}")
    return cfg


def run(dataset: str, params: dict, images_path: Path, out_dir: Path, metrics_path: Path, resume_root: Path) -> dict:
    """Pre-train on the first ``train_per_class`` training images of every class of
    ``images_path``; write ``out_dir/simclr.pt`` and ``history.json``, and the final loss and
    wall-clock time to ``metrics_path``. Under ``torchrun`` every
    process runs this; only rank 0 writes and logs."""
    cfg = pretrain_config(params, dataset)
    rt = make_runtime(cfg.device, cfg.precision, cfg.channels_last, convolutional=True)
    cfg = replace(cfg, precision=rt.precision, channels_last=rt.channels_last)  # as trained, not "auto"
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
            {**asdict(cfg), "world": ctx.world, "images": images.shape[0]},
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
