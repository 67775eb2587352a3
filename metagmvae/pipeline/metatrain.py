"""The `metatrain` stage: validate one model's section, load its data, train, track, plot."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from metagmvae import plots
from metagmvae.config import Checker, ConfigError, at_least, non_negative, one_of, positive, positive_ints, section
from metagmvae.data.episodes import check_episode_shape, read_episodes
from metagmvae.data.stores import STORES, load_split
from metagmvae.io import write_csv, write_json
from metagmvae.models.build import model_config
from metagmvae.runtime import make_runtime, runtime_params
from metagmvae.schedule import SCHEDULES
from metagmvae.tracking import start_run
from metagmvae.train import TrainConfig, train

TRAIN_METRICS = ("steps", "best_val_accuracy", "train_seconds", "seconds_per_step")
RENAMED = {"em_iters": "train_em_iters"}  # former key -> current key (T_u, not T_s of `evaluate`)


def train_config(params: dict, name: str) -> TrainConfig:
    """Parse and validate ``metatrain.<name>``; every error names the key and the allowed range."""
    where = f"metatrain.{name}"
    check = Checker(section(params, "metatrain", name), where, renamed=RENAMED)
    cfg = TrainConfig(
        dataset=check.get("dataset", str, one_of(*STORES)),
        model=model_config(check.get("model", dict), f"{where}.model"),
        way=check.get("way", int, at_least(2)),
        batch=check.get("batch", int, positive),
        points=check.get("points", int, positive),
        samples=check.get("samples", int, positive),
        samples_decoder=check.get("samples_decoder", int, positive),
        train_em_iters=check.get("train_em_iters", int, positive),
        fix_pi=check.get("fix_pi", bool),
        lr=check.get("lr", float, positive),
        lr_schedule=check.get("lr_schedule", str, one_of(*SCHEDULES)),
        weight_decay=check.get("weight_decay", float, non_negative),
        steps=check.get("steps", int, positive),
        val_every=check.get("val_every", int, positive),
        val_shots=check.get("val_shots", list, positive_ints),
        val_samples=check.get("val_samples", int, positive),
        val_em_iters=check.get("val_em_iters", int, positive),
        episodes_per_call=check.get("episodes_per_call", int, positive),
        checkpoint_every=check.get("checkpoint_every", int, positive),
        log_every=check.get("log_every", int, positive),
        seed=check.get("seed", int, non_negative),
        **runtime_params(check),
    )
    check.done()
    if cfg.samples_decoder > cfg.samples:
        raise ConfigError(
            f"{where}.samples_decoder = {cfg.samples_decoder}: must be <= samples = {cfg.samples} "
            "(the decoder sees a subset of each point's samples)"
        )
    if cfg.way > cfg.points * cfg.samples:
        raise ConfigError(
            f"{where}: way = {cfg.way} components need at least as many points, but "
            f"points * samples = {cfg.points * cfg.samples}"
        )
    return cfg


def run(
    name: str,
    params: dict,
    store: Path,
    episodes_path: Path,
    out_dir: Path,
    plots_dir: Path,
    curves_dir: Path,
    metrics_path: Path,
    resume_root: Path,
) -> dict:
    """Train model ``name``: checkpoints in ``out_dir``, figures in ``plots_dir``, the training
    curves as DVC plot data in ``curves_dir`` (``<name>-train.csv``: step, loss, rec, kl in nats
    per point; ``<name>-val.csv``: step, validation accuracy % per shot), and the best validation
    accuracies and wall-clock training time in ``metrics_path`` (a DVC metric)."""
    cfg = train_config(params, name)
    rt = make_runtime(cfg.device, cfg.precision, cfg.channels_last, convolutional=STORES[cfg.dataset].images)
    # checkpoints and the resume fingerprint record how the model was trained, not "auto"
    cfg = replace(cfg, precision=rt.precision, channels_last=rt.channels_last)
    pool = torch.from_numpy(load_split(cfg.dataset, "train", store)).flatten(0, 1).to(rt.device)
    val = torch.from_numpy(load_split(cfg.dataset, "val", store)).to(rt.device)
    val_episodes = {}
    for shot in cfg.val_shots:
        eps = read_episodes(episodes_path, "val", cfg.way, shot)
        check_episode_shape(val.shape[0], val.shape[1], eps.way, eps.shot, eps.query)
        val_episodes[shot] = eps

    def figures_and_curves(model, history: dict) -> None:
        write_csv(
            curves_dir / f"{name}-train.csv",
            ["step", "loss", "rec", "kl"],
            [list(row) for row in zip(history["step"], history["loss"], history["rec"], history["kl"])],
        )
        shots = list(history["val"])
        write_csv(
            curves_dir / f"{name}-val.csv",
            ["step", *shots],
            [[step, *(history["val"][s][i] for s in shots)] for i, step in enumerate(history["val_step"])],
        )
        plots_dir.mkdir(parents=True, exist_ok=True)
        plots.training_curves(history, f"{name} ({cfg.dataset}, K = {cfg.way})", plots_dir / "training.png")
        if cfg.model["kind"] == "pixels":
            first = val_episodes[cfg.val_shots[0]].slice(0, 1)
            images = val[torch.as_tensor(first.classes[0]).unsqueeze(-1), torch.as_tensor(first.instances[0])]
            plots.reconstructions_and_samples(
                model,
                images.to(rt.device),
                cfg.way,
                cfg.train_em_iters,
                rt.autocast,
                plots_dir / "reconstructions.png",
                seed=cfg.seed,
            )

    with start_run(
        "metatrain",
        name,
        {"model_name": name, **vars(cfg), "fingerprint": cfg.fingerprint()},
        runtime=rt,
    ) as run:
        summary = train(cfg, rt, pool, val, val_episodes, out_dir, resume_root, run, on_finish=figures_and_curves)
        run.log_metrics(
            {f"best_val/{k}": v for k, v in summary["best_val_accuracy"].items()}
            | {"train_seconds": summary["train_seconds"]}
        )
        for png in sorted(plots_dir.glob("*.png")):
            run.log_artifact(png, "plots")
        for item in ("history.json", "summary.json"):
            run.log_artifact(out_dir / item)
        write_json(metrics_path, {key: summary[key] for key in TRAIN_METRICS})
        run.log_artifact(metrics_path)
    return summary
