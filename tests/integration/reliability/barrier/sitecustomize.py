"""A start barrier for the concurrency test, loaded at interpreter start-up (this folder goes
first on ``PYTHONPATH``): ``metagmvae.runtime.tracking.start_run`` waits until
``METAGMVAE_BARRIER_PARTIES`` processes have reached it, then opens the run, and each process
writes when its run was open (from opened to closed) to ``$METAGMVAE_BARRIER/<pid>.json``, so the
test can check that the runs were open at the same time."""

import contextlib
import json
import os
import time
from pathlib import Path

from metagmvae.runtime import tracking

BARRIER = Path(os.environ["METAGMVAE_BARRIER"])
PARTIES = int(os.environ["METAGMVAE_BARRIER_PARTIES"])
TIMEOUT_SECONDS = 300
_start_run = tracking.start_run


@contextlib.contextmanager
def start_run_together(*args, **kwargs):
    (BARRIER / f"{os.getpid()}.ready").touch()
    deadline = time.monotonic() + TIMEOUT_SECONDS
    while len(list(BARRIER.glob("*.ready"))) < PARTIES:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(list(BARRIER.glob('*.ready')))} of {PARTIES} processes reached the barrier")
        time.sleep(0.005)
    with _start_run(*args, **kwargs) as run:
        entered = time.time()  # the run is open
        yield run
    (BARRIER / f"{os.getpid()}.json").write_text(json.dumps({"entered": entered, "left": time.time()}))


tracking.start_run = start_run_together
