"""Item 2: a writer killed mid-write leaves the previous complete file or none, never a
truncated one; the next write clears its leftovers; readers name a truncated or foreign file."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest
import torch
from stage_runs import stage_env

from metagmvae.data import hdf5
from metagmvae.runtime import checkpoint
from metagmvae.runtime.io import write_json

# Each child writes version 2 of the target and stops half-way: after one of two HDF5
# datasets, or after half of the checkpoint's or JSON's bytes, then waits to be killed.
WRITERS = {
    "hdf5": """
        from metagmvae.data import hdf5
        with hdf5.create(target, "test.v1") as f:
            hdf5.write_array(f, "a", np.full((512, 1024), 2.0))
            f.flush()
            stalled()
            hdf5.write_array(f, "b", np.full((512, 1024), 2.0))
    """,
    "checkpoint": """
        from metagmvae.runtime import checkpoint
        Path.write_bytes = half_then_stall("wb")
        checkpoint.save(target, {"w": torch.full((512, 1024), 2.0)})
    """,
    "json": """
        from metagmvae.runtime.io import write_json
        Path.write_text = half_then_stall("w")
        write_json(target, {"version": 2, "values": list(range(5000))})
    """,
}
PRELUDE = """
import sys, time
from pathlib import Path
import numpy as np, torch
target = Path(sys.argv[1])
def stalled():
    print("half-written", flush=True)
    time.sleep(120)
def half_then_stall(mode):
    # a Path.write_bytes / write_text that writes half of its data, then stalls
    def write(self, data):
        with open(self, mode) as fh:
            fh.write(data[: len(data) // 2])
        stalled()
    return write
"""


def write_version(kind: str, target, version: int) -> None:
    if kind == "hdf5":
        with hdf5.create(target, "test.v1") as f:
            hdf5.write_array(f, "a", np.full((4, 4), float(version)))
    elif kind == "checkpoint":
        checkpoint.save(target, {"w": torch.full((4, 4), float(version))})
    else:
        write_json(target, {"version": version})


def read_version(kind: str, target) -> int:
    if kind == "hdf5":
        with hdf5.open_store(target, "test.v1") as f:
            return int(f["a"][0, 0])
    if kind == "checkpoint":
        return int(checkpoint.load(target)["w"][0, 0])
    return json.loads(target.read_text())["version"]


def kill_mid_write(kind: str, target) -> None:
    code = PRELUDE + textwrap.dedent(WRITERS[kind])
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(target)], env=stage_env(), stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "half-written"
    proc.send_signal(signal.SIGKILL)
    proc.wait()


@pytest.mark.parametrize("kind", sorted(WRITERS))
@pytest.mark.parametrize("previous", [True, False], ids=["over-a-file", "no-file"])
def test_killed_writer_leaves_the_previous_file_or_none(kind, previous, tmp_path):
    target = tmp_path / f"out.{kind}"
    if previous:
        write_version(kind, target, 1)
    kill_mid_write(kind, target)

    if previous:
        assert read_version(kind, target) == 1  # the previous complete file, untouched
    else:
        assert not target.exists()
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert len(leftovers) == 1 and leftovers[0].startswith(f".{target.name}.")  # SIGKILL allows no cleanup

    write_version(kind, target, 3)  # the next write of the target clears the dead writer's file
    assert read_version(kind, target) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]


def test_a_live_writers_temporary_file_is_left_alone(tmp_path):
    target = tmp_path / "out.json"
    code = PRELUDE + textwrap.dedent(WRITERS["json"])
    proc = subprocess.Popen([sys.executable, "-c", code, str(target)], env=stage_env(), stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline().strip() == b"half-written"
        write_json(target, {"version": 3})  # a concurrent writer of the same target
        assert len([p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]) == 1
    finally:
        proc.kill()
        proc.wait()


def test_readers_name_a_truncated_or_foreign_hdf5_file(tmp_path):
    good = tmp_path / "good.h5"
    with hdf5.create(good, "metagmvae.omniglot.v1") as f:
        hdf5.write_array(f, "a", np.zeros((256, 256)))
    cut = tmp_path / "cut.h5"
    cut.write_bytes(good.read_bytes()[:3000])
    with pytest.raises(hdf5.StoreError, match=r"cut.h5: not a readable HDF5 file, truncated or corrupt"):
        hdf5.open_store(cut, "metagmvae.omniglot.v1")
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(hdf5.StoreError, match=r"foreign.h5: expected an HDF5 file of format .*omniglot.v1.*None"):
        hdf5.open_store(foreign, "metagmvae.omniglot.v1")
    with pytest.raises(hdf5.StoreError, match=r"good.h5: expected .*features.v1', found 'metagmvae.omniglot"):
        hdf5.open_store(good, "metagmvae.features.v1")


def test_readers_name_a_truncated_or_foreign_checkpoint(tmp_path):
    checkpoint.save(tmp_path / "good.pt", {"w": torch.ones(64, 64)})
    data = (tmp_path / "good.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(checkpoint.CheckpointError, match=r"cut.pt: unreadable checkpoint, truncated"):
        checkpoint.load(tmp_path / "cut.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "theirs.pt")
    with pytest.raises(checkpoint.CheckpointError, match=r"theirs.pt: not a Meta-GMVAE checkpoint"):
        checkpoint.load(tmp_path / "theirs.pt")
    with pytest.raises(checkpoint.CheckpointError, match=r"missing.pt: checkpoint not found"):
        checkpoint.load(tmp_path / "missing.pt")
