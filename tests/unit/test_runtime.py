"""Runtime settings: the CPU allocator keeps freed memory, so big tensors stop re-faulting pages."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys

import pytest
from conftest import REPO

from metagmvae.runtime import device as runtime
from metagmvae.runtime import tracking
from metagmvae.runtime.config import ConfigError
from metagmvae.runtime.walltime import stage_clock

SCRIPT = """
import resource, torch
from metagmvae.runtime.device import retain_freed_memory
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


# ---------------------------------------------------------------- precision and layout: auto


@pytest.fixture
def cpu_flags(monkeypatch):
    """Pretend the CPU reports the given /proc/cpuinfo flags."""

    def pretend(flags):
        monkeypatch.setattr(runtime, "cpu_info", lambda: ("Test CPU", sorted(flags)))

    return pretend


def test_auto_is_fp32_without_native_bf16_and_bf16_with_it(cpu_flags, capsys):
    cpu_flags(["avx", "avx2", "fma"])  # the AVX2-only EPYC: oneDNN would emulate bf16, 8-25x slower
    rt = runtime.make_runtime("cpu", "auto", "auto", convolutional=True)
    assert (rt.precision, rt.channels_last) == ("fp32", True)
    assert "runtime: cpu, fp32, channels-last (requested precision auto" in capsys.readouterr().out
    assert rt.describe()["bf16_evidence"] == "Test CPU: no avx512_bf16 / amx_bf16"
    for flags in (["avx2", "avx512_bf16", "avx512f"], ["amx_bf16", "amx_tile", "avx2"]):
        cpu_flags(flags)
        rt = runtime.make_runtime("cpu", "auto", "auto", convolutional=False)
        assert (rt.precision, rt.channels_last) == ("bf16", False)  # no convolutions: layout untouched


def test_an_explicit_setting_always_wins(cpu_flags):
    cpu_flags(["avx2"])
    assert runtime.make_runtime("cpu", "bf16", False, convolutional=True).precision == "bf16"
    cpu_flags(["avx512_bf16"])
    rt = runtime.make_runtime("cpu", "fp32", True, convolutional=False)
    assert (rt.precision, rt.channels_last) == ("fp32", True)
    assert rt.requested == ("cpu", "fp32", "true")


def test_bad_settings_are_refused():
    with pytest.raises(ConfigError, match="precision = 'fp16': must be one of"):
        runtime.make_runtime("cpu", "fp16", "auto", convolutional=True)
    with pytest.raises(ConfigError, match="channels_last = 'yes': must be auto, true or false"):
        runtime.make_runtime("cpu", "fp32", "yes", convolutional=True)


def test_resolved_runtimes_reach_mlflow_and_the_stage_time_record(cpu_flags, tmp_path, monkeypatch):
    cpu_flags(["avx2"])
    monkeypatch.setattr(runtime, "_RESOLVED", [])
    rt = runtime.make_runtime("cpu", "auto", "auto", convolutional=True)
    with stage_clock(tmp_path / "metatrain-omniglot_5way.json"):
        pass
    record = json.loads((tmp_path / "metatrain-omniglot_5way.json").read_text())
    assert record["runtimes"] == [rt.describe()] and record["runtimes"][0]["precision"] == "fp32"
    assert record["runtimes"][0]["requested_precision"] == "auto"

    logged = {}

    class FakeMlflow:  # the calls start_run makes, recorded
        def set_tracking_uri(self, uri): ...
        def get_experiment_by_name(self, name):
            return object()

        def set_experiment(self, name): ...
        @contextlib.contextmanager
        def start_run(self, run_name, tags):
            logged["tags"] = tags
            yield

        def log_params(self, params):
            logged["params"] = params

    monkeypatch.setattr(tracking, "_load_mlflow", FakeMlflow)
    monkeypatch.setattr(tracking, "project_root", lambda: tmp_path)
    with tracking.start_run("metatrain", "omniglot_5way", {"lr": 0.001}, runtime=rt):
        pass
    for where in (logged["tags"], logged["params"]):
        assert where["runtime.precision"] == "fp32" and where["runtime.channels_last"] == "True"
        assert where["runtime.requested_precision"] == "auto"
    assert logged["params"]["lr"] == "0.001"
