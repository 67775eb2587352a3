"""Resume state shared by every training loop: a run killed for any reason and started again with
the same configuration continues bit-identically from its last saved step.

The state lives in a folder named after the run and a hash of its configuration, outside DVC's
outputs (DVC deletes declared outputs before rerunning a stage), so a changed configuration
starts afresh. A loop hands :meth:`ResumeFolder.save` its stateful objects (modules, optimizers,
generators, anything with ``state_dict``/``load_state_dict``) and plain values (step, history,
partial sums); :meth:`ResumeFolder.restore` puts the objects back in place and returns the values,
in the spirit of DINO's ``restart_from_checkpoint``.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch

from metagmvae.runtime import checkpoint


class GlobalTorchRNG:
    """The process-wide torch RNG as a stateful object (dropout, ``torch.rand`` without a generator)."""

    def state_dict(self) -> torch.Tensor:
        return torch.get_rng_state()

    def load_state_dict(self, state: torch.Tensor) -> None:
        torch.set_rng_state(state.cpu())


class NumpyGenerator:
    """A NumPy ``Generator`` (``.rng``) as a stateful object: its bit generator's state, kept as
    JSON text (PCG64's 128-bit integers do not load with ``weights_only``)."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng

    def state_dict(self) -> dict[str, str]:
        return {"json": json.dumps(self.rng.bit_generator.state)}

    def load_state_dict(self, state: dict[str, str]) -> None:
        self.rng.bit_generator.state = json.loads(state["json"])


def _state_of(obj: Any) -> Any:
    return obj.get_state() if isinstance(obj, torch.Generator) else obj.state_dict()


def _load_into(obj: Any, state: Any) -> None:
    if isinstance(obj, torch.Generator):
        obj.set_state(state.cpu())
    else:
        obj.load_state_dict(state)


class ResumeFolder:
    """``root/<name>``: ``state.pt`` and whatever else a loop keeps there between runs (e.g. the
    best checkpoints so far)."""

    def __init__(self, root: Path, name: str):
        self.path = Path(root) / name
        self.state_file = self.path / "state.pt"

    def peek(self, map_location: str | torch.device = "cpu") -> dict[str, Any] | None:
        """The saved state as it is on disk, or ``None`` when nothing was saved."""
        return checkpoint.load(self.state_file, map_location) if self.state_file.exists() else None

    def restore(self, map_location: str | torch.device, stateful: Mapping[str, Any]) -> dict[str, Any] | None:
        """Put every object of ``stateful`` back as saved and return the saved plain values, or
        return ``None`` (objects untouched) when there is no saved state."""
        state = self.peek(map_location)
        if state is None:
            return None
        for name, obj in stateful.items():
            _load_into(obj, state[name])
        return {key: value for key, value in state.items() if key not in stateful}

    def save(self, stateful: Mapping[str, Any], **values: Any) -> None:
        """Write the state of every object of ``stateful`` and the plain ``values``, atomically."""
        checkpoint.save(self.state_file, {name: _state_of(obj) for name, obj in stateful.items()} | values)

    def remove(self) -> None:
        """Forget the run (it finished and its outputs are in place)."""
        if self.path.exists():
            shutil.rmtree(self.path)


@contextmanager
def resume_folders(
    root: Path | None, out_path: Path, config: Any, phases: tuple[str, ...], runtime: Any = None
) -> Iterator[tuple[ResumeFolder, ...]]:
    """One resume folder per training phase of the run that writes ``out_path``, named after its
    folder, the ``config``'s fingerprint and the ``runtime``'s precision (a changed configuration
    starts afresh), under ``root`` (``None``: a temporary folder, no resume across calls). The
    folders are removed when the block ends without an error."""
    with tempfile.TemporaryDirectory() if root is None else nullcontext(root) as base:
        name = f"{Path(out_path).parent.name}-{config.fingerprint()}"
        if runtime is not None:
            name += f"-{runtime.precision}{'-cl' if runtime.channels_last else ''}"
        folders = tuple(ResumeFolder(Path(base), f"{name}-{phase}") for phase in phases)
        yield folders
        for folder in folders:
            folder.remove()
