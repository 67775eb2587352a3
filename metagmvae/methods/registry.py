"""The related methods the `related` stage can run, and the contract each module fulfils.

A method is a module with

* ``Config``: its own keys of a ``related.<name>`` section (a :class:`metagmvae.runtime.config.Section`);
* ``train(cfg, rt, data, val_episodes, out_path, run, progress=True, resume_root=None) -> summary``:
  meta-train on ``data["train"]`` ``[C, n, *item]`` in the training loop
  (:func:`metagmvae.training.loop.fit`, resuming from ``resume_root`` after a kill), select the
  checkpoint on ``val_episodes`` of ``data["val"]``, write it to ``out_path`` (byte-identical for
  identical calls on CPU) and return a summary with ``best_val_accuracy`` (percent) and
  ``train_seconds``;
* ``predictor(path, rt) -> Predictor``: the predictor of a checkpoint ``train`` wrote, in eval mode.

:data:`METHODS` names them. A method that generates its training tasks may also offer a sampler
of a few of them, which the stage draws as a figure (:data:`TASK_SAMPLERS`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import torch

from metagmvae.evaluation.accuracy import Predictor
from metagmvae.methods import lasium, leo, sib
from metagmvae.runtime.config import Section
from metagmvae.runtime.device import Runtime

Train = Callable[..., dict[str, Any]]  # (cfg, rt, data, val_episodes, out_path, run, progress, resume_root)
TaskSampler = Callable[[Path, Any, Runtime], tuple[torch.Tensor, bool, str]]
"""``(checkpoint, cfg, rt) -> (a few generated tasks [T, W, M, *item] on the CPU, whether they
are images, a title)``."""


class RelatedMethod(Protocol):
    """What the `related` stage calls (see the module docstring)."""

    Config: type[Section]
    train: Train
    predictor: Callable[[Path, Runtime], Predictor]


METHODS: dict[str, RelatedMethod] = {"lasium": lasium, "leo": leo, "sib": sib}
TASK_SAMPLERS: dict[str, TaskSampler] = {"lasium": lasium.sample_tasks}
