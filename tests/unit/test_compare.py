"""Per-episode results files and `python -m metagmvae.analysis.compare` / `metagmvae.analysis.seeds` between git
revisions, DVC experiment refs and the workspace, on results with known numbers."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

from metagmvae.analysis import compare, seeds
from metagmvae.analysis.stats import paired_difference
from metagmvae.data.episodes import sample_episodes
from metagmvae.evaluation.episode_results import EpisodeResults, episodes_digest, parse, results_path

WAY, QUERY, N = 5, 15, 1000


def episodes(seed: int = 0):
    return sample_episodes(np.random.default_rng(seed), N, 16, 20, WAY, 1, QUERY)


def accuracies(seed: int, shift: int = 0) -> np.ndarray:
    """Per-episode accuracies over 75 queries, correlated across seeds by a shared difficulty."""
    difficulty = np.random.default_rng(123).integers(30, 70, N)
    noise = np.random.default_rng(seed).integers(-3, 4, N)
    return np.clip(difficulty + noise + shift, 0, WAY * QUERY) / (WAY * QUERY)


def write_results(repo: Path, accs: dict[str, np.ndarray], episode_seed: int = 0) -> Path:
    """``metrics/episodes/omniglot.json`` with ``{method: accuracies}`` on the 5-way 1-shot episodes."""
    (repo / "episodes.h5").write_bytes(b"stand-in for the episode file")
    results = EpisodeResults("omniglot", repo / "episodes.h5")
    for method, acc in accs.items():
        results.add(method, episodes(episode_seed), acc)
    return results.write_beside(repo / "metrics" / "omniglot.json")


def git(repo: Path, *args: str) -> str:
    cmd = ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args]
    return subprocess.run(cmd, cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path, monkeypatch) -> Path:
    git(tmp_path, "init", "-q")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def commit(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", message)
    return git(repo, "rev-parse", "HEAD")


def test_results_file_holds_exact_counts_keyed_by_the_episodes_digest(tmp_path):
    acc = accuracies(0)
    path = write_results(tmp_path, {"meta_gmvae": acc})
    assert path == tmp_path / "metrics" / "episodes" / "omniglot.json"
    assert results_path(Path("metrics/related/sib.json")) == Path("metrics/related/episodes/sib.json")
    table = parse(path.read_text(), "test")
    entry = table[("omniglot", "meta_gmvae", "5way_1shot")]
    assert np.array_equal(entry.accuracies, acc)  # exact: counts over 75 queries
    assert entry.episodes_sha256 == episodes_digest(episodes(0)) != episodes_digest(episodes(1))
    assert path.stat().st_size < 4500  # 1000 episodes on one line: about 4 KB per setting
    doc = json.loads(path.read_text())
    assert doc["results"]["meta_gmvae"]["5way_1shot"]["queries"] == 75
    with pytest.raises(ValueError, match="not multiples of 1/75"):
        EpisodeResults("omniglot", path).add("x", episodes(0), np.full(N, 0.5))


def test_digest_sees_a_single_changed_index():
    eps = episodes(0)
    changed = eps.instances.copy()
    changed[999, 4, 15] = (changed[999, 4, 15] + 1) % 20
    other = type(eps)(eps.classes, changed, eps.shot, eps.query)
    assert episodes_digest(other) != episodes_digest(eps) == episodes_digest(episodes(0))


def test_two_commits_print_the_paired_difference(repo, capsys):
    a, b = accuracies(0), accuracies(1, shift=2)
    write_results(repo, {"meta_gmvae": a, "pixel_1nn": accuracies(5)})
    first = commit(repo, "a")
    write_results(repo, {"meta_gmvae": b, "pixel_1nn": accuracies(5)})
    commit(repo, "b")
    assert compare.main(["HEAD~1", "HEAD", "--json"]) == 0
    rows = {r["method"]: r for r in json.loads(capsys.readouterr().out)}
    expected = paired_difference(a, b)
    assert rows["meta_gmvae"]["paired"]["mean"] == pytest.approx(expected.mean, abs=1e-4)
    assert rows["meta_gmvae"]["paired"]["low"] == pytest.approx(expected.low, abs=1e-4)
    assert rows["meta_gmvae"]["a_accuracy"] == pytest.approx(100 * a.mean(), abs=1e-4)
    assert rows["pixel_1nn"]["paired"] == {"episodes": N, "high": 0, "improved": 0, "low": 0, "mean": 0, "worse": 0}

    assert compare.main(["HEAD~1", "HEAD", "--method", "meta_gmvae"]) == 0
    text = capsys.readouterr().out
    assert f"a = HEAD~1 ({first[:7]}), b = HEAD (" in text and "paired t" in text
    line = next(row for row in text.splitlines() if row.startswith("omniglot"))
    assert compare.signed(expected.mean) in line and compare.interval(expected) in line
    assert expected.mean > 2.0 and expected.low > 0  # a 2.7-point shift (2 of 75 queries), far outside noise


def test_identical_runs_print_zero_with_a_zero_width_interval(repo, capsys):
    write_results(repo, {"meta_gmvae": accuracies(0)})
    commit(repo, "a")
    write_results(repo, {"meta_gmvae": accuracies(0)})  # rewritten in the workspace, same results
    assert compare.main([]) == 0  # HEAD against the workspace
    line = next(row for row in capsys.readouterr().out.splitlines() if row.startswith("omniglot"))
    assert line.split()[3:] == ["65.74", "65.74", "0.00", "[0.00,", "0.00]", "1.37", "0.0%", "0.0%", "1000"]


def test_results_on_different_episodes_are_refused(repo, capsys):
    write_results(repo, {"meta_gmvae": accuracies(0)})
    commit(repo, "a")
    write_results(repo, {"meta_gmvae": accuracies(0)}, episode_seed=1)
    commit(repo, "other episodes")
    assert compare.main(["HEAD~1", "HEAD"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert "refusing to compare results scored on different episodes" in err
    assert "omniglot meta_gmvae 5way_1shot: the episodes differ" in err
    assert "HEAD~1:metrics/episodes/omniglot.json" in err and "HEAD:metrics/episodes/omniglot.json" in err


def test_experiment_names_and_errors(repo, capsys):
    write_results(repo, {"meta_gmvae": accuracies(0)})
    base = commit(repo, "a")
    write_results(repo, {"meta_gmvae": accuracies(1, shift=1)})
    exp = commit(repo, "an experiment")
    git(repo, "reset", "-q", "--hard", base)
    git(repo, "update-ref", f"refs/exps/{base[:2]}/{base[2:]}/lr-high", exp)  # how DVC stores experiments
    assert compare.main(["HEAD", "lr-high", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["paired"]["mean"] == pytest.approx(
        paired_difference(accuracies(0), accuracies(1, shift=1)).mean, abs=1e-4
    )
    assert compare.main(["HEAD", "no-such-run"]) == 2  # a mistake: one line, no traceback
    err = capsys.readouterr().err
    assert err.startswith("metagmvae compare: error: 'no-such-run': neither a git revision nor a DVC experiment name")
    assert err.count("\n") == 1
    assert compare.main(["HEAD", "HEAD", "--dataset", "mini_imagenet"]) == 2
    assert "nothing to compare" in capsys.readouterr().err


def test_two_methods_within_one_revision(repo, capsys, tmp_path):
    ours, baseline = accuracies(0, shift=5), accuracies(0)
    write_results(repo, {"meta_gmvae": ours, "pixel_1nn": baseline})
    assert compare.main(["--methods", "pixel_1nn", "meta_gmvae", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["method"] == "meta_gmvae vs pixel_1nn"
    assert row["paired"]["mean"] == pytest.approx(100 * 5 / 75, abs=0.05)  # 5 more queries right (a few clip at 75)
    assert compare.main(["--methods", "pixel_1nn", "meta_gmvae", "--out", str(tmp_path / "out")]) == 0
    written = json.loads((tmp_path / "out" / "comparison.json").read_text())
    assert written["rows"][0]["paired"]["improved"] == 1.0
    assert (tmp_path / "out" / "comparison.png").read_bytes()[:4] == b"\x89PNG"


def test_seed_spread_of_three_runs(repo, capsys, tmp_path):
    runs = [accuracies(seed) for seed in (10, 11, 12)]
    for i, acc in enumerate(runs):
        write_results(repo, {"meta_gmvae": acc})
        commit(repo, f"seed {i}")
    assert seeds.main(["HEAD~2", "HEAD~1", "HEAD", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    per_seed = [100 * r.mean() for r in runs]
    assert row["per_seed"] == pytest.approx(per_seed, abs=1e-4)
    assert row["std"] == pytest.approx(np.std(per_seed, ddof=1), abs=1e-4)
    assert seeds.main(["HEAD~2", "HEAD~1", "HEAD", "--out", str(tmp_path / "s")]) == 0
    text = capsys.readouterr().out
    assert "std" in text and f"{np.mean(per_seed):.2f}" in text
    assert (tmp_path / "s" / "seeds.png").read_bytes()[:4] == b"\x89PNG"
    assert seeds.main(["HEAD", "HEAD"]) == 2
    assert "the same run is named twice" in capsys.readouterr().err

    write_results(repo, {"meta_gmvae": runs[0]}, episode_seed=1)
    commit(repo, "other episodes")
    assert seeds.main(["HEAD~2", "HEAD"]) == 1
    assert "scored on different episodes" in capsys.readouterr().err

    recorded = json.loads((tmp_path / "s" / "seeds.json").read_text())["params"]
    assert set(recorded) == {"omniglot"} and len(recorded["omniglot"]) == 12  # judged by the report
    (repo / "params.yaml").write_text(yaml.safe_dump({"metatrain": {"m": {"dataset": "omniglot", "lr": 0.5}}}))
    write_results(repo, {"meta_gmvae": runs[1]}, episode_seed=1)
    commit(repo, "other parameters, same episodes")
    assert seeds.main(["HEAD~1", "HEAD"]) == 2
    assert "omniglot: the runs differ in more than their seeds" in capsys.readouterr().err


def test_a_dataset_parameters_are_its_sections_without_the_seeds():
    params = {
        "augment": {"omniglot": {"image_size": 28}},
        "metatrain": {
            "omniglot_5way": {"dataset": "omniglot", "seed": 3, "model": {"seed": 1, "latent": 64}},
            "mini_imagenet_5way": {"dataset": "mini_imagenet", "seed": 0},
        },
        "report": {"baseline": "HEAD"},
    }
    assert seeds.dataset_params(params, "omniglot") == {
        "augment.omniglot": {"image_size": 28},
        "metatrain.omniglot_5way": {"dataset": "omniglot", "model": {"latent": 64}},
    }
    reseeded = {**params, "metatrain": {**params["metatrain"], "omniglot_5way": {"dataset": "omniglot", "seed": 9}}}
    assert seeds.params_fingerprint(params, "mini_imagenet") == seeds.params_fingerprint(reseeded, "mini_imagenet")
    reseeded["metatrain"]["omniglot_5way"]["model"] = {"seed": 5, "latent": 64}
    assert seeds.params_fingerprint(params, "omniglot") == seeds.params_fingerprint(reseeded, "omniglot")
    reseeded["metatrain"]["omniglot_5way"]["model"]["latent"] = 32
    assert seeds.params_fingerprint(params, "omniglot") != seeds.params_fingerprint(reseeded, "omniglot")
