"""The training run the related methods share: :func:`~metagmvae.training.loop.fit` keeping the
weights with the best validation accuracy, written to the method's output path."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel

from metagmvae.runtime.tracking import Run
from metagmvae.training.loop import BestOnValidation, Step, fit
from metagmvae.training.resume import ResumeFolder


def fit_best_accuracy(
    cfg: BaseModel,
    *,
    name: str,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    step_fn: Callable[[int], Step],
    validate: Callable[[int], dict[str, float]],
    resume: ResumeFolder,
    stateful: Mapping[str, Any],
    out_path: Path,
    run: Run,
    progress: bool,
    extra: Mapping[str, Any] | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Train ``cfg.steps`` steps (log lines every ``cfg.log_every``, each with the resume state;
    ``validate(step)`` -> ``{"accuracy": %}`` every ``cfg.val_every``), then write the weights with
    the best validation accuracy to ``out_path``, with ``cfg`` and ``extra`` beside them.
    ``options``: the rest of :func:`~metagmvae.training.loop.fit` (``clip``, ``scheduler``).

    Returns ``{"steps", "best_val_accuracy" (%, 2 decimals), "train_seconds"}``.
    """
    best = BestOnValidation(resume.path, ["accuracy"], {"config": cfg.model_dump()} | dict(extra or {}))
    done = fit(
        name=name,
        model=model,
        optimizer=optimizer,
        step_fn=step_fn,
        steps=cfg.steps,
        log_every=cfg.log_every,
        checkpoint_at_log=True,  # the resume state at every log line
        validate=validate,
        val_every=cfg.val_every,
        val_name="val/{}",
        best=best,
        resume=resume,
        stateful=stateful,
        run=run,
        progress=progress,
        **options,
    )
    best.copy_to("accuracy", out_path)
    accuracy = round(best.accuracy["accuracy"], 2)
    return {"steps": cfg.steps, "best_val_accuracy": accuracy, "train_seconds": round(done.elapsed, 1)}
