"""Device, precision and memory format, decided in one place.

``precision: auto`` and ``channels_last: auto`` (the defaults) are resolved here from what the
device can do; an explicit ``fp32`` / ``bf16`` / ``true`` / ``false`` always wins:

* precision ``auto``: bf16 autocast where the hardware computes bf16 natively (a CUDA GPU that
  supports it; a CPU with AVX-512-BF16 or AMX-BF16), else fp32. On CPUs without those
  instructions oneDNN emulates bf16 and it runs 8-25x slower than fp32, so it is never chosen.
* channels-last ``auto``: on for models with convolutions (measured faster on both CPU kinds
  and on GPUs, in fp32 and bf16; README "Speed"), off for models without any, where it does
  nothing.

Every stage prints the resolved runtime when it starts, logs it to MLflow (params and tags) and
records it in ``metrics/time/<stage>.json``.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from metagmvae.runtime.config import ConfigError
from metagmvae.schema.runtime import (
    PRECISIONS,
    channels_last_problem,
    device_problem,
)

NATIVE_BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_info() -> tuple[str, list[str]]:
    """``(CPU model name, its avx*/amx*/fma* flags)`` from ``/proc/cpuinfo`` (Linux), else the
    platform's processor name and no flags."""
    model, flags = platform.processor() or platform.machine(), []
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = sorted(f for f in line.split(":", 1)[1].split() if f.startswith(("avx", "amx", "fma")))
                break
    return model, flags


def native_bf16(device: torch.device) -> tuple[bool, str]:
    """Whether ``device`` computes bf16 natively, and the evidence (for logs)."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        ok = torch.cuda.is_bf16_supported(including_emulation=False)
        return ok, f"{name} {'supports' if ok else 'does not support'} bf16"
    model, flags = cpu_info()
    if flags:  # x86 Linux: the instruction sets themselves
        native = [f for f in NATIVE_BF16_CPU_FLAGS if f in flags]
        return bool(native), f"{model}: " + (", ".join(native) if native else "no avx512_bf16 / amx_bf16")
    ok = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())  # e.g. ARM with BF16 instructions
    return ok, f"{model}: oneDNN reports bf16 {'supported' if ok else 'unsupported'}"


@dataclass(frozen=True)
class Runtime:
    """Where and how tensors are computed (resolved values; see :func:`make_runtime`).

    precision ``bf16`` autocasts convolutions and linear layers; EM, log-densities and
    log-sum-exps stay float32 regardless (see :mod:`metagmvae.models.em`). ``requested`` holds the
    ``(device, precision, channels_last)`` settings as written in params.yaml and ``evidence``
    what the bf16 decision was based on.
    """

    device: torch.device
    precision: str = "fp32"
    channels_last: bool = True
    requested: tuple[str, str, str] = ("", "", "")
    evidence: str = ""

    def describe(self) -> dict[str, str | bool]:
        """The resolved settings and what they were resolved from (MLflow, metrics/time)."""
        device, precision, channels_last = self.requested
        return {
            "device": str(self.device),
            "precision": self.precision,
            "channels_last": self.channels_last,
            "requested_device": device,
            "requested_precision": precision,
            "requested_channels_last": channels_last,
            "bf16_evidence": self.evidence,
        }

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

    def images(self, x: torch.Tensor) -> torch.Tensor:
        """An image batch ``[N, C, H, W]`` on the device, in the runtime's memory format."""
        x = x.to(self.device)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

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


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; an explicit ``cuda`` without a GPU is an error."""
    if problem := device_problem(name):
        raise ConfigError(f"device = {name!r}: {problem}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


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


_RESOLVED: list[dict] = []  # every runtime this process resolved, in order (metrics/time records them)


def resolved_runtimes() -> list[dict]:
    """The :meth:`Runtime.describe` of every runtime :func:`make_runtime` built in this process."""
    return list(_RESOLVED)


def make_runtime(device: str, precision: str, channels_last: bool | str, *, convolutional: bool) -> Runtime:
    """Resolve the settings of one compute section (``auto`` as in the module docstring).

    convolutional: whether the model has convolutions (images in; channels-last matters only
    there). Prints the result, e.g. ``runtime: cpu, bf16, channels-last (requested auto / auto;
    AMD EPYC: avx512_bf16)``.
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"precision = {precision!r}: must be one of {list(PRECISIONS)}")
    if problem := channels_last_problem(channels_last):
        raise ConfigError(f"channels_last = {channels_last!r}: {problem}")
    dev = resolve_device(device)
    native, evidence = native_bf16(dev)
    rt = Runtime(
        dev,
        precision=("bf16" if native else "fp32") if precision == "auto" else precision,
        channels_last=convolutional if channels_last == "auto" else channels_last,
        requested=(device, precision, str(channels_last).lower()),
        evidence=evidence,
    )
    if rt.device.type == "cpu":
        retain_freed_memory()
    _RESOLVED.append(rt.describe())
    layout = ", channels-last" if rt.channels_last else ""
    print(
        f"runtime: {rt.device}, {rt.precision}{layout} (requested precision {precision}, channels_last "
        f"{rt.requested[2]}; {evidence})",
        flush=True,
    )
    return rt
