"""Stage wall-time records: named after the stage and its item, written only when the stage succeeds."""

import json

import pytest

from metagmvae import walltime


@pytest.mark.parametrize(
    ("argv", "name"),
    [
        ([], "metatrain"),
        (["omniglot_5way"], "metatrain-omniglot_5way"),
        (["--params", "p.yaml", "omniglot_5way"], "metatrain-omniglot_5way"),
        (["--params=p.yaml", "omniglot_5way"], "metatrain-omniglot_5way"),
        (["omniglot_5way", "--params", "p.yaml"], "metatrain-omniglot_5way"),
        (["--params", "p.yaml"], "metatrain"),
    ],
)
def test_stage_name_is_the_script_and_its_first_positional_argument(argv, name):
    assert walltime.stage_name("stages/metatrain.py", argv) == name


def test_stage_clock_records_a_successful_stage_only(tmp_path, monkeypatch):
    monkeypatch.setattr("sys.argv", ["stages/evaluate.py", "--params", "x.yaml", "omniglot"])
    with walltime.stage_clock("stages/evaluate.py", tmp_path):
        pass
    record = json.loads((tmp_path / "evaluate-omniglot.json").read_text())
    assert record["stage"] == "evaluate-omniglot" and record["seconds"] >= 0 and record["device"]

    monkeypatch.setattr("sys.argv", ["stages/evaluate.py", "mini_imagenet"])
    with pytest.raises(RuntimeError), walltime.stage_clock("stages/evaluate.py", tmp_path):
        raise RuntimeError("stage failed")
    assert not (tmp_path / "evaluate-mini_imagenet.json").exists()
