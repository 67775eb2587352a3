"""Checkpoints: atomic writes, safe loads (``weights_only=True``), clear errors."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import torch

from metagmvae.runtime.io import atomic_path

FORMAT = "metagmvae.checkpoint.v1"


class CheckpointError(ValueError):
    """A checkpoint is missing, truncated, or not one of ours."""


def save(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Write ``state`` (tensors and plain Python containers only) atomically.

    Serialised through memory: ``torch.save`` to a path names the zip's root folder after the
    file, and the temporary name is random, so the bytes would differ between identical runs.
    """
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, **state}, buffer)
    with atomic_path(path, suffix=".pt") as tmp:
        tmp.write_bytes(buffer.getvalue())


def load(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save`, never executing pickled code."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for truncated or foreign files
        raise CheckpointError(f"{path}: unreadable checkpoint, truncated or not a torch file ({exc})") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a Meta-GMVAE checkpoint (missing format {FORMAT!r})")
    return state
