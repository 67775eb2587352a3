"""Wall time of each stage run, for the report: ``metrics/time/<stage>-<item>.json``.

Each stage script runs inside :func:`stage_clock`, which writes the record to the path dvc.yaml
gives it (``--clock``) only when the stage succeeds; it is a DVC output that is not cached (like
the training-time metrics, its bytes differ between identical runs, so nothing downstream
except the report depends on it).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import torch

from metagmvae.runtime.device import cpu_info, resolved_runtimes
from metagmvae.runtime.io import write_json


def device_description() -> str:
    """``"cuda: <GPU name>"`` when a GPU is visible, else the CPU model and thread count."""
    if torch.cuda.is_available():
        return f"cuda: {torch.cuda.get_device_name()}"
    return f"cpu: {cpu_info()[0]}, {torch.get_num_threads()} threads"


@contextlib.contextmanager
def stage_clock(record_path: Path | None) -> Iterator[None]:
    """Time the body and, if it succeeds, write ``{stage, seconds, device, runtimes}`` to
    ``record_path`` (``stage``: its name without ``.json``, e.g. ``metatrain-omniglot_5way``;
    seconds of wall time, rounded to 0.1; ``runtimes``: every runtime the stage resolved,
    :func:`metagmvae.runtime.device.resolved_runtimes`). ``None`` records nothing."""
    start = time.perf_counter()
    yield
    if record_path is None:
        return
    seconds = round(time.perf_counter() - start, 1)
    record = {"stage": record_path.stem, "seconds": seconds, "device": device_description()}
    write_json(record_path, record | {"runtimes": resolved_runtimes()})
