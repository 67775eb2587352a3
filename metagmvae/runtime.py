"""Device, precision and memory format, decided in one place."""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
from dataclasses import dataclass

import torch

from metagmvae.config import ConfigError

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True)
class Runtime:
    """Where and how tensors are computed.

    precision ``bf16`` autocasts convolutions and linear layers; EM, log-densities and
    log-sum-exps stay float32 regardless (see :mod:`metagmvae.em`).
    """

    device: torch.device
    precision: str = "fp32"
    channels_last: bool = True

    def autocast(self):
        """Context for forward passes."""
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def prepare(self, module: torch.nn.Module) -> torch.nn.Module:
        """Move a model to the device (channels-last weights when enabled)."""
        module = module.to(self.device)
        if self.channels_last:
            module = module.to(memory_format=torch.channels_last)
        return module

    @contextlib.contextmanager
    def one_cpu_thread(self):
        """Run a block with one intra-op thread when computing on the CPU (restored after).

        For models of a few thousand parameters on tensors like ``[8, 80, 256]`` (LEO, SIB) a
        step is ~100 tiny ops, and two OpenMP threads spend more time synchronising than
        computing: measured on the 2-core machine with other jobs running, SIB's step took 20 ms
        with one thread and 90 ms with two, LEO's quick run 15.5 s against 257 s.
        """
        if self.device.type != "cpu":
            yield
            return
        previous = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(previous)

    def generator(self, seed: int) -> torch.Generator:
        """A seeded RNG on the compute device."""
        return torch.Generator(device=self.device).manual_seed(seed)


def device_problem(name: str) -> str | None:
    """Why ``name`` cannot be used as the ``device`` setting on this machine, or ``None``."""
    if name not in DEVICES:
        return f"must be one of {list(DEVICES)}"
    if name == "cuda" and not torch.cuda.is_available():
        return "no CUDA GPU is available on this machine (use 'auto' or 'cpu')"
    return None


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; an explicit ``cuda`` without a GPU is an error."""
    if problem := device_problem(name):
        raise ConfigError(f"device = {name!r}: {problem}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def runtime_params(check) -> dict:
    """Read and validate the ``device``, ``precision`` and ``channels_last`` keys every compute
    section has, from a :class:`metagmvae.config.Checker`."""
    from metagmvae.config import one_of

    return {
        "device": check.get("device", str, device_problem),
        "precision": check.get("precision", str, one_of(*PRECISIONS)),
        "channels_last": check.get("channels_last", bool),
    }


def retain_freed_memory() -> bool:
    """Keep freed CPU memory in the process instead of handing it back to the OS (glibc only).

    glibc serves every tensor larger than 32 MB with a fresh ``mmap`` and unmaps it when freed,
    so each training step has the kernel zero gigabytes of new pages again: on the 2-core CPU
    that was 15-25% of the CPU time of a paper-size step. Serving large blocks from the heap and
    never trimming it (``M_MMAP_MAX = 0``, ``M_TRIM_THRESHOLD = -1``, i.e. ``SIZE_MAX``) removes
    it (5-way paper step about 8.2 -> 6.5 s) at the cost of a higher peak resident set (about
    4.2 -> 6.4 GiB). Numerics are untouched. ``METAGMVAE_CPU_ALLOCATOR=system`` keeps glibc's
    default behaviour. Returns whether the setting was applied.
    """
    if os.environ.get("METAGMVAE_CPU_ALLOCATOR", "retain") != "retain" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl)
        return False
    m_trim_threshold, m_top_pad, m_mmap_max = -1, -2, -4
    return bool(mallopt(m_mmap_max, 0) and mallopt(m_trim_threshold, -1) and mallopt(m_top_pad, 1 << 30))


def make_runtime(device: str, precision: str, channels_last: bool) -> Runtime:
    if precision not in PRECISIONS:
        raise ConfigError(f"precision = {precision!r}: must be one of {list(PRECISIONS)}")
    rt = Runtime(resolve_device(device), precision, channels_last)
    if rt.device.type == "cpu":
        retain_freed_memory()
    return rt
