"""The front door's mistakes as a user makes them: `scripts/repro.sh` with an unknown profile or
invalid parameters stops before DVC starts (a stage run out of order:
reliability/test_bad_input.py)."""

import os
import subprocess
import uuid

import pytest
import yaml
from conftest import REPO

pytestmark = pytest.mark.integration


@pytest.fixture
def fake_dvc(tmp_path):
    """A stand-in for `dvc` (repro.sh's ``METAGMVAE_DVC``) that records its arguments and fails,
    so that nothing after it runs."""
    calls = tmp_path / "dvc_calls"
    script = tmp_path / "dvc"
    script.write_text(f'#!/usr/bin/env bash\necho "$*" >> {calls}\nexit 3\n')
    script.chmod(0o755)
    return script, calls


def repro(*args, dvc):
    env = dict(os.environ, METAGMVAE_DVC=str(dvc))
    return subprocess.run(["bash", "scripts/repro.sh", *args], cwd=REPO, env=env, capture_output=True, text=True)


def test_an_unknown_profile_stops_repro_before_dvc_with_one_line(fake_dvc):
    dvc, calls = fake_dvc
    proc = repro("--profile", "papr", dvc=dvc)
    assert proc.returncode != 0 and not calls.exists()
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "unknown profile 'papr' (did you mean 'paper'?); known profiles: cpu, paper, quick" in proc.stderr


@pytest.fixture
def bad_profile():
    """A profile in profiles/ with an out-of-range value (removed afterwards)."""
    name = f"test-bad-{uuid.uuid4().hex[:8]}"
    path = REPO / "profiles" / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"metatrain": {"omniglot_5way": {"lr": -1.0}}}))
    yield name
    path.unlink()


def test_an_invalid_profile_value_stops_repro_before_dvc(fake_dvc, bad_profile):
    dvc, calls = fake_dvc
    proc = repro("--profile", bad_profile, dvc=dvc)
    assert proc.returncode == 2 and not calls.exists(), proc.stderr
    assert "metatrain.omniglot_5way.lr = -1.0: must be > 0" in proc.stderr and "Traceback" not in proc.stderr


def test_a_valid_profile_reaches_dvc_exp_run(fake_dvc):
    dvc, calls = fake_dvc
    proc = repro("--profile", "paper", "--temp", dvc=dvc)
    assert proc.returncode == 3  # the stand-in's status: repro.sh stops there
    (call,) = calls.read_text().splitlines()
    assert call.startswith("exp run --name paper-") and "--set-param=metatrain.omniglot_5way.steps=60000" in call
    assert call.endswith(" --temp")
