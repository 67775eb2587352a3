"""Learning-rate schedules, as pure functions of the step (nothing to save for a resume)."""

from __future__ import annotations

import math

from metagmvae.schema.metatrain import SCHEDULES


def learning_rate(step: int, total: int, warmup: int, base: float, schedule: str = "cosine") -> float:
    """The rate for 0-based ``step`` of ``total``: linear warm-up from ``base / warmup`` to
    ``base`` over ``warmup`` steps, then ``base`` (``constant``) or one half-cosine from ``base``
    to 0 at step ``total`` (``cosine``)."""
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule = {schedule!r}: must be one of {list(SCHEDULES)}")
    if step < warmup:
        return base * (step + 1) / warmup
    if schedule == "constant":
        return base
    progress = (step - warmup) / max(total - warmup, 1)
    return base * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def set_learning_rate(optimizer, lr: float) -> None:
    """Set every parameter group of ``optimizer`` to ``lr``."""
    for group in optimizer.param_groups:
        group["lr"] = lr
