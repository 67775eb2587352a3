"""Stage wall-time records: named after the record's file, written only when the stage succeeds."""

import json

import pytest

from metagmvae.runtime import walltime


def test_stage_clock_records_a_successful_stage_only(tmp_path):
    with walltime.stage_clock(tmp_path / "evaluate-omniglot.json"):
        pass
    record = json.loads((tmp_path / "evaluate-omniglot.json").read_text())
    assert record["stage"] == "evaluate-omniglot" and record["seconds"] >= 0 and record["device"]

    with pytest.raises(RuntimeError), walltime.stage_clock(tmp_path / "evaluate-mini_imagenet.json"):
        raise RuntimeError("stage failed")
    assert not (tmp_path / "evaluate-mini_imagenet.json").exists()

    with walltime.stage_clock(None):  # no --clock: no record
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evaluate-omniglot.json"]
