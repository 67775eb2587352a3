"""Meta-training loop: sampling, optimisation, validation, checkpoint selection, resume.

:func:`train` reads as its steps: restore or start (:mod:`metagmvae.training.resume`), then per step the
optimisation (:func:`training_steps`), the logged means, the validation that keeps the best
checkpoint per shot (:class:`BestCheckpoints`) and the resume state; at the end the outputs,
assembled in a temporary folder and renamed into place only when training has finished.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from metagmvae.data.episodes import EpisodeSet, sample_training_batch
from metagmvae.evaluation.accuracy import episode_accuracies, meta_gmvae_predictor, summarize
from metagmvae.models import MetaGMVAE, build_model
from metagmvae.models.gmvae import Losses
from metagmvae.models.trained import best_checkpoint_name
from metagmvae.runtime import checkpoint
from metagmvae.runtime.device import Runtime
from metagmvae.runtime.io import atomic_dir, write_json
from metagmvae.runtime.progress import progress as progress_bar
from metagmvae.runtime.tracking import Run
from metagmvae.schema.metatrain import TrainConfig
from metagmvae.training.loop import RunningMeans, check_finite, check_gradients, due
from metagmvae.training.resume import GlobalTorchRNG, ResumeFolder
from metagmvae.training.schedule import learning_rate, set_learning_rate


@dataclass
class History:
    """Training curves: per-log-interval means of the loss terms and per-validation accuracies."""

    step: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    rec: list[float] = field(default_factory=list)
    kl: list[float] = field(default_factory=list)
    min_component: list[float] = field(default_factory=list)  # fewest MC samples in an EM component
    val_step: list[int] = field(default_factory=list)
    val: dict[str, list[float]] = field(default_factory=dict)  # "1shot" -> accuracies (%)


def train_step(
    model: MetaGMVAE,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    *,
    way: int,
    samples: int,
    samples_decoder: int,
    em_iters: int,
    fix_pi: bool,
    rt: Runtime,
    generator: torch.Generator,
    step: int,
) -> Losses:
    """One optimisation step on unlabeled episodes ``x`` ``[B, M, *item]``: the loss
    (:meth:`MetaGMVAE.loss` with ``way`` components, S = ``samples``, S_rec =
    ``samples_decoder``, T_u = ``em_iters``) under the runtime's autocast, backward, Adam. Stops
    with :class:`metagmvae.training.loop.NonFiniteLossError` (naming ``step`` and the term) before a NaN
    or Inf reaches the weights."""
    with rt.autocast():
        losses = model.loss(
            x,
            components=way,
            samples=samples,
            samples_decoder=samples_decoder,
            em_iters=em_iters,
            fix_pi=fix_pi,
            generator=generator,
        )
    check_finite(step, {"loss": losses.loss, "rec": losses.rec, "kl": losses.kl})
    optimizer.zero_grad(set_to_none=True)
    losses.loss.backward()
    check_gradients(step, model.parameters())
    optimizer.step()
    return losses


def validation_accuracy(
    model: MetaGMVAE,
    cfg: TrainConfig,
    rt: Runtime,
    val_data: torch.Tensor,
    val_episodes: dict[int, EpisodeSet],
    seed: int,
) -> dict[int, float]:
    """Mean validation accuracy (%) per shot, on the fixed validation episodes (one sampling
    generator, seeded by ``seed``, across the shots)."""
    model.eval()
    with rt.autocast():
        tokens = model.encode(val_data)
    predict = meta_gmvae_predictor(
        model, rt, samples=cfg.val_samples, em_iters=cfg.val_em_iters, generator=rt.generator(seed)
    )
    out = {
        shot: summarize(episode_accuracies(predict, tokens, eps, cfg.episodes_per_call))["accuracy"]
        for shot, eps in val_episodes.items()
    }
    model.train()
    return out


def start_training(cfg: TrainConfig, rt: Runtime) -> tuple[MetaGMVAE, torch.optim.Optimizer, torch.Generator]:
    """The model, its Adam optimizer and the batch-sampling generator at step 0, seeded by
    ``cfg.seed``."""
    torch.manual_seed(cfg.seed)
    model = rt.prepare(build_model(cfg.model))
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    return model, optimizer, rt.generator(cfg.seed)


def training_steps(
    cfg: TrainConfig,
    rt: Runtime,
    model: MetaGMVAE,
    optimizer: torch.optim.Optimizer,
    pool: torch.Tensor,
    gen: torch.Generator,
    done: int = 0,
) -> Iterator[tuple[int, Losses, float]]:
    """Run steps ``done + 1`` to ``cfg.steps`` (1-based): the step's learning rate, a batch of
    ``cfg.batch`` episodes of ``cfg.points`` inputs drawn from ``pool`` ``[P, *item]``, then
    :func:`train_step`. Yields ``(step, losses, seconds the step took)`` after each one; the
    caller may validate or save between steps (and must leave the model in train mode)."""
    model.train()
    for step in range(done + 1, cfg.steps + 1):
        tick = time.perf_counter()
        set_learning_rate(optimizer, learning_rate(step - 1, cfg.steps, 0, cfg.lr, cfg.lr_schedule))
        x = sample_training_batch(pool, cfg.batch, cfg.points, gen)
        losses = train_step(
            model,
            optimizer,
            x,
            way=cfg.way,
            samples=cfg.samples,
            samples_decoder=cfg.samples_decoder,
            em_iters=cfg.train_em_iters,
            fix_pi=cfg.fix_pi,
            rt=rt,
            generator=gen,
            step=step,
        )
        yield step, losses, time.perf_counter() - tick


class RunningMinimum:
    """The smallest value since the last log line; its state goes through a resume like
    :class:`metagmvae.training.loop.RunningMeans`' (checkpoints need not fall on log steps)."""

    def __init__(self):
        self.value = math.inf

    def add(self, value) -> None:
        self.value = min(self.value, float(value))

    def pop(self) -> float:
        """The minimum since the last pop, and start over."""
        value, self.value = self.value, math.inf
        return value

    def state_dict(self) -> dict[str, float]:
        return {"value": self.value}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.value = state["value"]


class BestCheckpoints:
    """The best validation accuracy per shot so far and its checkpoint, kept in the resume folder
    (so a resumed run keeps its selection); a later step replaces it only when strictly better."""

    def __init__(self, cfg: TrainConfig, folder: Path):
        self.cfg, self.folder = cfg, folder
        self.accuracy = {shot: -math.inf for shot in cfg.val_shots}

    def offer(self, step: int, shot: int, accuracy: float, model: MetaGMVAE) -> None:
        if accuracy > self.accuracy[shot]:
            self.accuracy[shot] = accuracy
            state = {
                "model": model.state_dict(),
                "config": self.cfg.model_dump(),
                "step": step,
                "val_accuracy": accuracy,
            }
            checkpoint.save(self.folder / best_checkpoint_name(shot), state)

    def state_dict(self) -> dict[str, float]:
        return {str(shot): acc for shot, acc in self.accuracy.items()}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.accuracy = {int(shot): acc for shot, acc in state.items()}


def train(
    cfg: TrainConfig,
    rt: Runtime,
    pool: torch.Tensor,
    val_data: torch.Tensor,
    val_episodes: dict[int, EpisodeSet],
    out_dir: Path,
    resume_root: Path,
    run: Run,
    progress: bool = True,
    budget_seconds: float | None = None,
) -> dict[str, Any] | None:
    """Meta-train one model and write ``out_dir`` (``best_<s>shot.pt`` per validation shot,
    ``history.json``, ``summary.json``; byte-identical for identical runs on CPU).

    Returns the summary plus the wall-clock ``train_seconds`` and ``seconds_per_step``; or
    ``None`` when ``budget_seconds`` of wall time ran out first: the state is then saved in the
    resume folder and the next call continues from it (see :func:`resume_folder`).

    pool: unlabeled training inputs ``[P, *item]`` on ``rt.device``.
    val_data: class-structured validation inputs ``[C, n, *item]`` on ``rt.device``.
    """
    call_start = time.perf_counter()
    resume = resume_folder(cfg, out_dir, resume_root)
    model, optimizer, gen = start_training(cfg, rt)
    best, unlogged = BestCheckpoints(cfg, resume.path), RunningMeans()  # loss terms since the last log line
    smallest = RunningMinimum()  # the smallest EM component since the last log line
    stateful = {"model": model, "optimizer": optimizer, "generator": gen, "torch_rng": GlobalTorchRNG()}
    stateful |= {"best": best, "unlogged": unlogged, "smallest": smallest}  # checkpoints need not fall on log steps
    history, done, elapsed = History(), 0, 0.0
    if (saved := resume.restore(rt.device, stateful)) is not None:
        history, done, elapsed = History(**saved["history"]), saved["step"], saved["elapsed"]
        print(f"resuming {out_dir.name} from step {done} ({resume.state_file})", flush=True)

    def save_state(step: int) -> None:
        resume.save(stateful, history=asdict(history), step=step, elapsed=elapsed, config=cfg.model_dump())

    bar = progress_bar(
        total=cfg.steps, initial=done, desc=f"metatrain {out_dir.name}", disable=not progress, unit="step"
    )
    for step, losses, seconds in training_steps(cfg, rt, model, optimizer, pool, gen, done):
        elapsed += seconds
        unlogged.add(loss=losses.loss, rec=losses.rec, kl=losses.kl)
        smallest.add(losses.min_component)
        bar.update(1)
        if due(step, cfg.log_every, cfg.steps):
            means = unlogged.pop("train") | {"train/min_component": smallest.pop()}
            _log_losses(step, means, elapsed, history, run, bar)
        if due(step, cfg.val_every, cfg.steps):
            accs = validation_accuracy(model, cfg, rt, val_data, val_episodes, cfg.seed + step)
            _record_validation(step, accs, model, history, best, run, bar)
            save_state(step)
        elif step % cfg.checkpoint_every == 0:
            save_state(step)
        if budget_seconds is not None and time.perf_counter() - call_start > budget_seconds and step < cfg.steps:
            save_state(step)
            bar.close()
            print(f"{out_dir.name}: wall-clock budget of {budget_seconds:.0f} s spent at step {step}", flush=True)
            return None
    bar.close()
    summary = _write_outputs(cfg, history, best, resume, out_dir)
    return summary | {"train_seconds": round(elapsed, 1), "seconds_per_step": round(elapsed / cfg.steps, 4)}


def _log_losses(step: int, means: dict[str, float], elapsed: float, history: History, run: Run, bar) -> None:
    """The mean loss terms since the last log line: into the history, MLflow and the bar."""
    history.step.append(step)
    for term in ("loss", "rec", "kl", "min_component"):
        getattr(history, term).append(means[f"train/{term}"])
    run.log_metrics(means | {"train/seconds": elapsed}, step=step)
    bar.set_postfix({term: f"{means[f'train/{term}']:.2f}" for term in ("loss", "rec", "kl")}, refresh=False)


def _record_validation(
    step: int, accs: dict[int, float], model: MetaGMVAE, history: History, best: BestCheckpoints, run: Run, bar
) -> None:
    """One validation's accuracies: into the history, the best checkpoints, MLflow and the log."""
    history.val_step.append(step)
    for shot, acc in accs.items():
        history.val.setdefault(f"{shot}shot", []).append(acc)
        best.offer(step, shot, acc, model)
    run.log_metrics({f"val/{s}shot_accuracy": a for s, a in accs.items()}, step=step)
    bar.write(f"step {step}: validation " + ", ".join(f"{s}-shot {a:.2f}%" for s, a in accs.items()))


def _write_outputs(
    cfg: TrainConfig, history: History, best: BestCheckpoints, resume: ResumeFolder, out_dir: Path
) -> dict[str, Any]:
    """Move the finished run into ``out_dir`` and forget its resume state; returns the summary."""
    summary = {  # no wall-clock times: identical runs give identical bytes
        "steps": cfg.steps,
        "best_val_accuracy": {f"{s}shot": round(a, 2) for s, a in best.accuracy.items()},
        "val_shots": cfg.val_shots,
        "fingerprint": cfg.fingerprint(),
    }
    with atomic_dir(out_dir) as tmp:
        for shot in cfg.val_shots:
            name = best_checkpoint_name(shot)
            shutil.copy2(resume.path / name, tmp / name)
        write_json(tmp / "history.json", asdict(history))
        write_json(tmp / "summary.json", summary)
    resume.remove()
    return summary


def resume_folder(cfg: TrainConfig, out_dir: Path, resume_root: Path) -> ResumeFolder:
    """Where :func:`train` keeps the state of ``cfg``'s run (and its best checkpoints so far)."""
    return ResumeFolder(resume_root, f"{out_dir.name}-{cfg.fingerprint()}")
