"""What every stage script shares: the parameter file parsed before any work, the wall-time
record of a successful stage, and one message (no traceback) for the errors a user can fix."""

import json

import pytest
import yaml
from conftest import REPO

from metagmvae.data.sources import SourceError
from metagmvae.pipeline import shared as stage

PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())


def stage_args(tmp_path, params=PARAMS) -> list[str]:
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return ["--params", str(tmp_path / "params.yaml"), "--clock", str(tmp_path / "x-item.json")]


def test_the_work_gets_the_parsed_section_and_the_clock_records_it(tmp_path):
    got = []
    stage.run(
        stage.parser("Stage `x`."),
        lambda params, args: got.append(params.section("episodes", "omniglot")),
        stage_args(tmp_path),
    )
    assert got[0].query == 15 and got[0].test.episodes == 1000
    record = json.loads((tmp_path / "x-item.json").read_text())
    assert record["stage"] == "x-item" and record["seconds"] >= 0


def test_an_expected_error_is_one_message_and_exit_status_2(tmp_path, capsys):
    message = "images_background.zip: no source gave a valid copy:\n  /mirror/images_background.zip: not found"

    def work(params, args):
        raise SourceError(message)

    parser = stage.parser("Stage `x`.")
    with pytest.raises(SystemExit) as exit_:
        stage.run(parser, work, stage_args(tmp_path))
    assert exit_.value.code == 2
    assert capsys.readouterr().err == f"{parser.prog}: error: {message}\n"
    assert not (tmp_path / "x-item.json").exists()  # a failed stage records no time


def test_a_bad_parameter_file_stops_the_stage_before_its_work(tmp_path, capsys):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["metatrain"]["omniglot_5way"]["lr"] = 0
    with pytest.raises(SystemExit):
        stage.run(stage.parser("Stage `x`."), lambda p, a: pytest.fail("the stage ran"), stage_args(tmp_path, params))
    assert capsys.readouterr().err.endswith(": metatrain.omniglot_5way.lr = 0: must be > 0\n")  # one problem, one line


def test_an_unexpected_error_keeps_its_traceback(tmp_path):
    def work(params, args):
        raise KeyError("a bug")

    with pytest.raises(KeyError, match="a bug"):
        stage.run(stage.parser("Stage `x`."), work, stage_args(tmp_path))
