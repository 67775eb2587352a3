"""Wall time of each stage run, for the report: ``metrics/time/<stage>-<item>.json``.

Each stage script runs its ``main`` inside :func:`stage_clock`; the record is written only when
the stage succeeds, as a DVC output that is not cached (like the training-time metrics, its bytes
differ between identical runs, so nothing downstream except the report depends on it).
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import torch

from metagmvae.io import write_json
from metagmvae.runtime import cpu_info, resolved_runtimes

TIME_DIR = Path("metrics") / "time"


def device_description() -> str:
    """``"cuda: <GPU name>"`` when a GPU is visible, else the CPU model and thread count."""
    if torch.cuda.is_available():
        return f"cuda: {torch.cuda.get_device_name()}"
    return f"cpu: {cpu_info()[0]}, {torch.get_num_threads()} threads"


def stage_name(script: str, argv: list[str]) -> str:
    """``stages/metatrain.py omniglot_5way`` -> ``metatrain-omniglot_5way``; no item -> ``augment``.

    The item is the first positional argument; every option of the stage scripts takes a value
    (``--params FILE`` or ``--params=FILE``), so an option's next argument is skipped.
    """
    positional, args = [], iter(argv)
    for arg in args:
        if not arg.startswith("-"):
            positional.append(arg)
        elif "=" not in arg:
            next(args, None)
    return "-".join([Path(script).stem, *positional[:1]])


@contextlib.contextmanager
def stage_clock(script: str, folder: Path = TIME_DIR) -> Iterator[None]:
    """Time the body and, if it succeeds, write ``{stage, seconds, device, runtimes}`` to
    ``folder/<stage>.json`` (seconds of wall time, rounded to 0.1; ``runtimes``: every runtime
    the stage resolved, :func:`metagmvae.runtime.resolved_runtimes`)."""
    name = stage_name(script, sys.argv[1:])
    start = time.perf_counter()
    yield
    seconds = round(time.perf_counter() - start, 1)
    record = {"stage": name, "seconds": seconds, "device": device_description(), "runtimes": resolved_runtimes()}
    write_json(folder / f"{name}.json", record)
