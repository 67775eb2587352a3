"""The `metatrain` stage: one model's data, training, tracking, then its figures and plot data."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from metagmvae.analysis import plots
from metagmvae.data.episodes import EpisodeSet, read_episodes
from metagmvae.data.stores import STORES, load_split
from metagmvae.methods.meta_gmvae import train
from metagmvae.models.trained import best_checkpoint_name, load_model
from metagmvae.runtime.io import read_json, write_csv, write_json
from metagmvae.runtime.tracking import start_run
from metagmvae.schema.data import check_episode_shape
from metagmvae.schema.metatrain import TrainConfig

TRAIN_METRICS = ("steps", "best_val_accuracy", "train_seconds", "seconds_per_step")


@dataclass(frozen=True)
class Outputs:
    """Where the stage writes (dvc.yaml's outs)."""

    model_dir: Path  # best_<s>shot.pt per validation shot, history.json, summary.json
    plots_dir: Path  # training.png, and reconstructions.png for a pixel model
    train_curve: Path  # DVC plot data: step, loss, rec, kl (nats per point)
    val_curve: Path  # DVC plot data: step, validation accuracy % per shot
    metrics: Path  # best validation accuracies and wall-clock training time (a DVC metric)


def run(name: str, cfg: TrainConfig, store: Path, episodes_path: Path, out: Outputs, resume_root: Path) -> dict:
    """Train model ``name`` on ``store`` (validated on the fixed episodes of ``episodes_path``),
    write ``out``, track the run; an interrupted run resumes from ``resume_root``."""
    rt = cfg.runtime(convolutional=STORES[cfg.dataset].images)
    cfg = cfg.as_run_with(rt)
    pool = torch.from_numpy(load_split(cfg.dataset, "train", store)).flatten(0, 1).to(rt.device)
    val = torch.from_numpy(load_split(cfg.dataset, "val", store)).to(rt.device)
    val_episodes = {}
    for shot in cfg.val_shots:
        eps = read_episodes(episodes_path, "val", cfg.way, shot)
        check_episode_shape(val.shape[0], val.shape[1], eps.way, eps.shot, eps.query)
        val_episodes[shot] = eps
    with start_run(
        "metatrain",
        name,
        {"model_name": name, **cfg.model_dump(), "fingerprint": cfg.fingerprint()},
        runtime=rt,
    ) as run:
        summary = train(cfg, rt, pool, val, val_episodes, out.model_dir, resume_root, run)
        figures_and_curves(name, cfg, rt, val, val_episodes, out)
        run.log_metrics(
            {f"best_val/{k}": v for k, v in summary["best_val_accuracy"].items()}
            | {"train_seconds": summary["train_seconds"]}
        )
        for png in sorted(out.plots_dir.glob("*.png")):
            run.log_artifact(png, "plots")
        for item in ("history.json", "summary.json"):
            run.log_artifact(out.model_dir / item)
        write_json(out.metrics, {key: summary[key] for key in TRAIN_METRICS})
        run.log_artifact(out.metrics)
    return summary


def figures_and_curves(
    name: str, cfg: TrainConfig, rt, val: torch.Tensor, val_episodes: dict[int, EpisodeSet], out: Outputs
) -> None:
    """The trained model's plot data and figures: the training and validation curves (from its
    ``history.json``) and, for a pixel model, the reconstructions and samples of the first
    validation episode by the checkpoint selected at the first validation shot."""
    history = read_json(out.model_dir / "history.json")
    history["val"] = {f"{s}shot": history["val"][f"{s}shot"] for s in cfg.val_shots}  # the file sorts its keys
    write_csv(
        out.train_curve,
        ["step", "loss", "rec", "kl"],
        [list(row) for row in zip(history["step"], history["loss"], history["rec"], history["kl"])],
    )
    shots = list(history["val"])
    write_csv(
        out.val_curve,
        ["step", *shots],
        [[step, *(history["val"][s][i] for s in shots)] for i, step in enumerate(history["val_step"])],
    )
    out.plots_dir.mkdir(parents=True, exist_ok=True)
    plots.training_curves(history, f"{name} ({cfg.dataset}, K = {cfg.way})", out.plots_dir / "training.png")
    if cfg.model.kind == "pixels":
        model, _ = load_model(out.model_dir / best_checkpoint_name(cfg.val_shots[0]), rt)
        first = val_episodes[cfg.val_shots[0]].slice(0, 1)
        images = val[torch.as_tensor(first.classes[0]).unsqueeze(-1), torch.as_tensor(first.instances[0])]
        plots.reconstructions_and_samples(
            model,
            images.to(rt.device),
            cfg.way,
            cfg.train_em_iters,
            rt.autocast,
            out.plots_dir / "reconstructions.png",
            seed=cfg.seed,
        )
