"""Runtime settings: the CPU allocator keeps freed memory, so big tensors stop re-faulting pages."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import REPO

SCRIPT = """
import resource, torch
from metagmvae.runtime import retain_freed_memory
applied = retain_freed_memory()
def cycle():  # a step-like pattern: 128 MB tensors (above glibc's mmap threshold), freed out of order
    a = torch.ones(32 * 2**20)
    b = a * 2
    c = b + a
    del a
    d = c * b
    del b, c, d
cycle()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    cycle()
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def page_faults(allocator: str) -> tuple[bool, int]:
    env = dict(os.environ, METAGMVAE_CPU_ALLOCATOR=allocator, PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, check=True)
    applied, faults = out.stdout.split()
    return applied == "True", int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc allocator setting")
def test_retained_memory_is_reused_without_page_faults():
    applied, retained = page_faults("retain")
    not_applied, system = page_faults("system")
    assert applied and not not_applied
    assert system > 5 * 4 * 32_768 * 0.9  # every cycle maps and zeroes its 4 x 128 MB again
    assert retained < 0.5 * system, (retained, system)  # measured: 196,609 against 655,380
