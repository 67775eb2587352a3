"""Meta-GMVAE meta-training: the step (a batch of unlabeled episodes, the loss) and the validation
that selects a checkpoint per shot, run by the one training loop (:func:`metagmvae.training.loop.fit`:
optimisation, logging, resume); at the end the outputs, assembled in a temporary folder and renamed
into place only when training has finished.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from metagmvae.data.episodes import EpisodeSet, sample_training_batch
from metagmvae.evaluation.accuracy import episode_accuracies, meta_gmvae_predictor, summarize
from metagmvae.models import MetaGMVAE, build_model
from metagmvae.models.gmvae import Losses
from metagmvae.models.trained import best_checkpoint_name
from metagmvae.runtime.device import Runtime
from metagmvae.runtime.io import atomic_dir, write_json
from metagmvae.runtime.tracking import Run
from metagmvae.schema.metatrain import TrainConfig
from metagmvae.training.loop import BestOnValidation, Fit, Step, fit, update
from metagmvae.training.resume import ResumeFolder
from metagmvae.training.schedule import learning_rate


def episode_losses(
    model: MetaGMVAE,
    x: torch.Tensor,
    *,
    way: int,
    samples: int,
    samples_decoder: int,
    em_iters: int,
    fix_pi: bool,
    rt: Runtime,
    generator: torch.Generator,
) -> Losses:
    """The loss on unlabeled episodes ``x`` ``[B, M, *item]`` (:meth:`MetaGMVAE.loss` with
    ``way`` components, S = ``samples``, S_rec = ``samples_decoder``, T_u = ``em_iters``) under
    the runtime's autocast."""
    with rt.autocast():
        return model.loss(
            x,
            components=way,
            samples=samples,
            samples_decoder=samples_decoder,
            em_iters=em_iters,
            fix_pi=fix_pi,
            generator=generator,
        )


def loop_step(losses: Losses) -> Step:
    """What the training loop needs of a step's losses: the loss, the logged terms, the fewest
    Monte-Carlo samples in an EM component."""
    return Step(
        losses.loss, {"loss": losses.loss, "rec": losses.rec, "kl": losses.kl}, {"min_component": losses.min_component}
    )


def train_step(model: MetaGMVAE, optimizer: torch.optim.Optimizer, x: torch.Tensor, *, step: int, **setting) -> Losses:
    """One optimisation step as the training loop takes it (:func:`episode_losses` with
    ``setting``, then :func:`metagmvae.training.loop.update`), alone: for timings and tests. Stops
    with :class:`metagmvae.training.loop.NonFiniteLossError` (naming ``step`` and the term) before
    a NaN or Inf reaches the weights."""
    losses = episode_losses(model, x, **setting)
    done = loop_step(losses)
    update(step, done.loss, done.terms, optimizer, model.parameters())
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


def step_function(
    cfg: TrainConfig, rt: Runtime, model: MetaGMVAE, pool: torch.Tensor, gen: torch.Generator
) -> Callable[[int], Step]:
    """The training loop's step for ``cfg``: a batch of ``cfg.batch`` episodes of ``cfg.points``
    inputs drawn from ``pool`` ``[P, *item]`` with ``gen``, and their losses."""
    setting = {"way": cfg.way, "samples": cfg.samples, "samples_decoder": cfg.samples_decoder}
    setting |= {"em_iters": cfg.train_em_iters, "fix_pi": cfg.fix_pi, "rt": rt, "generator": gen}

    def step_fn(step: int) -> Step:
        x = sample_training_batch(pool, cfg.batch, cfg.points, gen)
        return loop_step(episode_losses(model, x, **setting))

    return step_fn


def rate_function(cfg: TrainConfig) -> Callable[[int], float]:
    """The learning rate of each 1-based step (``cfg.lr_schedule`` over ``cfg.steps``)."""
    return lambda step: learning_rate(step - 1, cfg.steps, 0, cfg.lr, cfg.lr_schedule)


def fit_model(
    cfg: TrainConfig,
    rt: Runtime,
    pool: torch.Tensor,
    model: MetaGMVAE,
    optimizer: torch.optim.Optimizer,
    gen: torch.Generator,
    **options: Any,
) -> Fit | None:
    """Meta-train ``model`` (with ``optimizer`` and ``gen`` from :func:`start_training`) on ``pool``
    ``[P, *item]`` in :func:`~metagmvae.training.loop.fit`: ``cfg.steps`` steps at ``cfg``'s
    learning rate, a log line every ``cfg.log_every`` steps, ``gen`` in the resume state.
    ``options``: the rest of ``fit``'s arguments (a ``log_every`` there wins)."""
    return fit(
        model=model,
        optimizer=optimizer,
        step_fn=step_function(cfg, rt, model, pool, gen),
        steps=cfg.steps,
        learning_rate=rate_function(cfg),
        stateful={"generator": gen},
        **({"log_every": cfg.log_every} | options),
    )


def shot_metric(shot: int) -> str:
    """The name a validation shot has in the history and the logs: ``1`` -> ``"1shot"``."""
    return f"{shot}shot"


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
    on_step=None,
) -> dict[str, Any] | None:
    """Meta-train one model and write ``out_dir`` (``best_<s>shot.pt`` per validation shot,
    ``history.json``, ``summary.json``; byte-identical for identical runs on CPU).

    Returns the summary plus the wall-clock ``train_seconds`` and ``seconds_per_step``; or
    ``None`` when ``budget_seconds`` of wall time ran out first (or ``on_step``, as in
    :func:`~metagmvae.training.loop.fit`, stopped it): the state is then saved in the resume folder
    and the next call continues from it (see :func:`resume_folder`).

    pool: unlabeled training inputs ``[P, *item]`` on ``rt.device``.
    val_data: class-structured validation inputs ``[C, n, *item]`` on ``rt.device``.
    """
    resume = resume_folder(cfg, out_dir, resume_root)
    model, optimizer, gen = start_training(cfg, rt)

    def validate(step: int) -> dict[str, float]:
        accs = validation_accuracy(model, cfg, rt, val_data, val_episodes, cfg.seed + step)
        return {shot_metric(shot): acc for shot, acc in accs.items()}

    best = BestOnValidation(resume.path, [shot_metric(s) for s in cfg.val_shots], {"config": cfg.model_dump()})
    done = fit_model(
        cfg,
        rt,
        pool,
        model,
        optimizer,
        gen,
        name=out_dir.name,
        desc=f"metatrain {out_dir.name}",
        validate=validate,
        val_every=cfg.val_every,
        best=best,
        resume=resume,
        checkpoint_every=cfg.checkpoint_every,
        run=run,
        progress=progress,
        budget_seconds=budget_seconds,
        on_step=on_step,
    )
    if done is None:
        return None
    summary = _write_outputs(cfg, done, resume, out_dir)
    elapsed = done.elapsed
    return summary | {"train_seconds": round(elapsed, 1), "seconds_per_step": round(elapsed / cfg.steps, 4)}


def _write_outputs(cfg: TrainConfig, done: Fit, resume: ResumeFolder, out_dir: Path) -> dict[str, Any]:
    """Move the finished run into ``out_dir`` and forget its resume state; returns the summary."""
    summary = {  # no wall-clock times: identical runs give identical bytes
        "steps": cfg.steps,
        "best_val_accuracy": {m: round(a, 2) for m, a in done.best.accuracy.items()},
        "val_shots": cfg.val_shots,
        "fingerprint": cfg.fingerprint(),
    }
    with atomic_dir(out_dir) as tmp:
        for shot in cfg.val_shots:
            done.best.copy_to(shot_metric(shot), tmp / best_checkpoint_name(shot))
        write_json(tmp / "history.json", done.history.as_dict())
        write_json(tmp / "summary.json", summary)
    resume.remove()
    return summary


def resume_folder(cfg: TrainConfig, out_dir: Path, resume_root: Path) -> ResumeFolder:
    """Where :func:`train` keeps the state of ``cfg``'s run (and its best checkpoints so far)."""
    return ResumeFolder(resume_root, f"{out_dir.name}-{cfg.fingerprint()}")
