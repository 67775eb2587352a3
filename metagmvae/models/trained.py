"""A trained Meta-GMVAE on disk: the folder the `metatrain` stage writes (``best_<s>shot.pt`` per
validation shot, ``summary.json``) and how evaluation loads it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from metagmvae.models.build import build_model
from metagmvae.models.gmvae import MetaGMVAE
from metagmvae.runtime import checkpoint
from metagmvae.runtime.device import Runtime


def best_checkpoint_name(shot: int) -> str:
    """The file of the checkpoint selected on validation at ``shot``."""
    return f"best_{shot}shot.pt"


def load_model(path: Path, rt: Runtime) -> tuple[MetaGMVAE, dict[str, Any]]:
    """Rebuild a model from a ``best_*.pt`` checkpoint, in eval mode on ``rt.device``.

    Returns ``(model, its training configuration as a dict)``.
    """
    state = checkpoint.load(path, rt.device)
    model = rt.prepare(build_model(state["config"]["model"]))
    model.load_state_dict(state["model"])
    return model.eval(), state["config"]


def checkpoint_for(model_dir: Path, shot: int) -> Path:
    """The checkpoint selected for testing at ``shot``: the one selected on validation at that
    shot if there is one, else the one selected at the first validation shot (Mini-ImageNet
    tests every shot with its 1-shot selection)."""
    val_shots = json.loads((model_dir / "summary.json").read_text())["val_shots"]
    return model_dir / best_checkpoint_name(shot if shot in val_shots else val_shots[0])
