"""The `metagmvae` command: every subcommand reachable, full descriptions in --help, and every
expected mistake one line on stderr with exit status 2, no traceback, nothing written."""

import importlib
import re

import pytest
import yaml
from conftest import REPO

from metagmvae.cli import main as cli
from metagmvae.runtime import command
from metagmvae.runtime.progress import progress


def run(argv, capsys, monkeypatch, cwd):
    """``metagmvae argv`` in ``cwd``: (exit status, stdout, stderr)."""
    monkeypatch.chdir(cwd)
    try:
        status = cli.main(argv)
    except SystemExit as exc:
        status = exc.code
    out, err = capsys.readouterr()
    return status, out, err


def test_help_lists_every_subcommand(capsys, monkeypatch, tmp_path):
    status, out, _ = run(["--help"], capsys, monkeypatch, tmp_path)
    assert status == 0
    for name in cli.COMMANDS:
        assert f"metagmvae {name}" in out


@pytest.mark.parametrize("name", sorted(cli.COMMANDS))
def test_each_command_help_shows_its_whole_description_and_every_option(name, capsys, monkeypatch):
    parsers = []
    real = command.parser
    monkeypatch.setattr(command, "parser", lambda doc, prog=None: parsers.append(real(doc, prog)) or parsers[-1])
    status, out, _ = run([name, "--help"], capsys, monkeypatch, REPO)
    assert status == 0 and out.startswith(f"usage: metagmvae {name}")
    doc = importlib.import_module(cli.COMMANDS[name]).__doc__
    last = [line for line in doc.strip().splitlines() if line.strip()][-1].strip()
    assert last in out  # the whole docstring, not its first line
    (parser,) = parsers
    for action in parser._actions:
        assert action.help, f"metagmvae {name} {action.option_strings or action.dest}: no help"


def one_line_mistake(status, out, err, *parts):
    assert status == 2, err
    assert out == "" and err.count("\n") == 1 and "Traceback" not in err, err
    for part in parts:
        assert part in err, err


def test_an_unknown_profile_names_the_known_ones(capsys, monkeypatch, tmp_path):
    status, out, err = run(["profile", "papr", "--params", str(REPO / "params.yaml")], capsys, monkeypatch, tmp_path)
    one_line_mistake(status, out, err, "unknown profile 'papr' (did you mean 'paper'?)", "cpu, paper, quick")
    assert list(tmp_path.iterdir()) == []


def test_a_misspelled_key_gets_did_you_mean(capsys, monkeypatch, tmp_path):
    params = str(REPO / "params.yaml")
    status, out, err = run(
        ["validate", params, "-S", "metatrain.omniglot_5way.stpes=10"], capsys, monkeypatch, tmp_path
    )
    one_line_mistake(status, out, err, "'metatrain.omniglot_5way.stpes' (did you mean 'steps'?)")

    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["metatrain"]["omniglot_5way"]["stpes"] = raw["metatrain"]["omniglot_5way"].pop("steps")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))  # the same typo in the file
    status, out, err = run(["validate"], capsys, monkeypatch, tmp_path)
    one_line_mistake(status, out, err, "metatrain.omniglot_5way: unknown key(s) ['stpes'] (did you mean 'steps'?)")
    profile = ["profile", "paper", "--params", str(tmp_path / "params.yaml")]
    status, out, err = run(profile, capsys, monkeypatch, tmp_path)
    one_line_mistake(status, out, err, "unknown key 'metatrain.omniglot_5way.steps'")  # the profile sets it


def test_an_unknown_command_or_option(capsys, monkeypatch, tmp_path):
    one_line_mistake(*run(["valdate"], capsys, monkeypatch, tmp_path), "unknown command 'valdate'", "'validate'")
    one_line_mistake(*run(["validate", "--strict"], capsys, monkeypatch, tmp_path), "unrecognized arguments: --strict")


def test_an_unknown_experiment_in_compare(capsys, monkeypatch):
    status, out, err = run(["compare", "HEAD", "no-such-experiment"], capsys, monkeypatch, REPO)
    one_line_mistake(status, out, err, "'no-such-experiment': neither a git revision nor a DVC experiment name")


def test_missing_data(capsys, monkeypatch, tmp_path):
    one_line_mistake(*run(["validate", "nowhere.yaml"], capsys, monkeypatch, tmp_path), "parameter file not found")
    one_line_mistake(*run(["report"], capsys, monkeypatch, tmp_path), "metrics: no metrics folder")
    one_line_mistake(*run(["docs"], capsys, monkeypatch, tmp_path), "no params.yaml")
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_a_bar_iterated_in_a_log_redraws_at_the_current_step_below_a_written_line(capsys):
    """LEO iterates its bar and writes a validation line mid-loop: the redraw below that line
    shows the step being run, not the step of the last timed redraw (it read 0/1200 at step 800)."""
    bar = progress(range(1, 1201), desc="leo")
    for step in bar:
        if step == 800:
            bar.write("leo step 800: validation 50.00%")
    bar.close()
    out, err = capsys.readouterr()
    assert out == "leo step 800: validation 50.00%\n"
    frames = [f for f in err.split("\r") if f.strip()]  # start, the redraw below the line, the end
    assert [re.search(r"(\d+)/1200", f)[1] for f in frames] == ["0", "800", "1200"], frames
