"""Checkpoint selection for the related methods: score on the fixed validation episodes, log,
keep a copy of the best weights, write them once training ends."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from metagmvae.data.episodes import EpisodeSet
from metagmvae.evaluation.accuracy import Predictor, episode_accuracies, summarize
from metagmvae.runtime import checkpoint
from metagmvae.runtime.tracking import Run


class BestOnValidation:
    """The weights with the highest mean accuracy (%) on ``episodes`` of ``data`` (``[C, n, *item]``)
    seen so far; ties keep the earlier step."""

    def __init__(self, data: torch.Tensor, episodes: EpisodeSet, episodes_per_call: int, run: Run, bar):
        self.data, self.episodes, self.episodes_per_call = data, episodes, episodes_per_call
        self.run, self.bar = run, bar
        self.accuracy, self.step, self.state = -math.inf, 0, None

    def __call__(self, step: int, model: torch.nn.Module, predict: Predictor, name: str) -> float:
        """Validate ``model`` through ``predict`` at ``step``; returns the accuracy (%)."""
        acc = summarize(episode_accuracies(predict, self.data, self.episodes, self.episodes_per_call))["accuracy"]
        self.run.log_metrics({"val/accuracy": acc}, step=step)
        self.bar.write(f"{name} step {step}: validation {acc:.2f}%")
        if acc > self.accuracy:
            self.accuracy, self.step = acc, step
            self.state = {key: t.detach().clone() for key, t in model.state_dict().items()}
        return acc

    def save(self, out_path: Path, **extra: Any) -> None:
        """Write the best weights with ``extra`` entries (e.g. the configuration), atomically."""
        checkpoint.save(out_path, {"model": self.state, "step": self.step, "val_accuracy": self.accuracy, **extra})
