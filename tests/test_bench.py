"""The benchmark command: a JSON report with the machine, the timings and the official ratios."""

from __future__ import annotations

import json

from metagmvae import bench


def test_benchmark_writes_machine_timings_and_memory(tmp_path):
    out = tmp_path / "cpu.json"
    bench.main(["--cases", "mini_imagenet", "--variants", "fp32", "--steps", "2", "--warmup", "0", "--out", str(out)])
    report = json.loads(out.read_text())
    assert report["machine"]["device"] == "cpu" and report["machine"]["torch"].startswith("2.")
    assert report["settings"] == {"warmup": 0, "steps": 2, "episodes_per_call": 50}
    (result,) = report["results"]
    assert result["case"] == "mini_imagenet" and result["variant"] == "fp32"
    assert len(result["all_seconds"]) == 2 and 0 < result["seconds"] < 30
    assert 0.1 < result["peak_gib"] < 16  # the child's own peak resident set, in GiB


def test_table_states_the_ratio_to_the_official_figures():
    rows = [
        {"case": "omniglot_5way", "variant": "fast", "seconds": 3.02, "peak_gib": 2.45},
        {"case": "simclr_512", "variant": "fast", "seconds": 4.0, "peak_gib": 3.0},
    ]
    lines = bench.table(rows, "cpu").splitlines()
    assert lines[1].split()[-2:] == ["0.200", "0.250"]  # 3.02 / 15.1 s and 2.45 / 9.8 GiB
    assert lines[2].split()[-2:] == ["-", "-"]  # no official figure for this case
