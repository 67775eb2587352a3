"""Break the code on purpose, one known mutation at a time, and check that its test fails.

    python scripts/known_mutations.py [--out docs/testing/known_mutations.json] [NAME ...]

Each entry below is a bug a review found the suite blind to (issue 18), or a gap it named: the
edit that makes the bug, and the tests that must fail on it. The tree is copied (tracked files
only) to a temporary folder; the named tests must pass on the copy as it is (run once per set
of tests), then each mutation is applied there, its tests run (``pytest -x``) and the edit
undone. The script exits 1 when a clean run fails or a mutant survives. Minutes on 2 cores (one
integration test runs the Omniglot chain twice).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Mutation:
    name: str
    what: str
    file: str
    edits: tuple[tuple[str, str], ...]  # (old, new): old must occur exactly once in file
    tests: tuple[str, ...]


MUTATIONS = (
    Mutation(
        "kl_sign",
        "KL sign flipped",
        "metagmvae/models/gmvae.py",
        (("kl = (log_q - log_p).mean()", "kl = (log_p - log_q).mean()"),),
        ("tests/unit/test_models.py::test_kl_and_reconstruction_equal_an_independent_computation_at_fixed_noise",),
    ),
    Mutation(
        "no_optimizer_step",
        "optimizer.step() deleted from the training loop (Meta-GMVAE)",
        "metagmvae/training/loop.py",
        (("    optimizer.step()\n", "    pass\n"),),
        ("tests/unit/test_train.py::test_training_lowers_the_loss_and_lifts_accuracy_well_above_the_untrained_model",),
    ),
    Mutation(
        "latest_weights_as_best",
        "the latest weights saved at every validation, labelled with the best value",
        "metagmvae/training/loop.py",
        (
            (
                "            self.accuracy[metric], self.step[metric] = accuracy, step\n",
                "            self.accuracy[metric], self.step[metric] = accuracy, step\n        if True:\n",
            ),
            ('"val_accuracy": accuracy}', '"val_accuracy": self.accuracy[metric]}'),
        ),
        ("tests/unit/test_train.py::test_the_selected_checkpoint_holds_the_weights_and_step_of_the_best_validation",),
    ),
    Mutation(
        "autocast_noop",
        "Runtime.autocast made a no-op for bf16",
        "metagmvae/runtime/device.py",
        (("return torch.autocast(self.device.type, dtype=torch.bfloat16)", "return contextlib.nullcontext()"),),
        ("tests/unit/test_fast_paths.py::test_channels_last_and_bf16_training_steps_match_fp32",),
    ),
    Mutation(
        "bench_skips_work",
        "the timed function skipped inside the bench loop",
        "benchmarks/bench.py",
        (("        tick = time.perf_counter()\n        fn()\n", "        tick = time.perf_counter()\n"),),
        ("tests/integration/test_bench.py::test_each_timed_step_runs_the_work_after_the_warm_up",),
    ),
    Mutation(
        "summarize_no_1_96",
        "summarize: the 1.96 removed from the 95% CI",
        "metagmvae/evaluation/accuracy.py",
        (("100.0 * 1.96 * acc.std()", "100.0 * acc.std()"),),
        ("tests/unit/test_evaluate.py::test_summarize_is_the_mean_and_1_96_population_std_over_root_n_in_percent",),
    ),
    Mutation(
        "summarize_ddof_1",
        "summarize: sample std (ddof = 1) instead of the official population std",
        "metagmvae/evaluation/accuracy.py",
        (("1.96 * acc.std()", "1.96 * acc.std(ddof=1)"),),
        ("tests/unit/test_evaluate.py::test_summarize_is_the_mean_and_1_96_population_std_over_root_n_in_percent",),
    ),
    Mutation(
        "resume_ignores_config",
        "resume folder without the config fingerprint (a changed config resumes foreign state)",
        "metagmvae/methods/meta_gmvae.py",
        (('f"{out_dir.name}-{cfg.fingerprint()}"', 'f"{out_dir.name}"'),),
        ("tests/unit/test_train.py::test_changed_config_does_not_resume_foreign_state",),
    ),
    Mutation(
        "batches_without_replacement",
        "training batches drawn without replacement",
        "metagmvae/data/episodes.py",
        (
            (
                "idx = torch.randint(pool.shape[0], (batch * points,), device=pool.device, generator=generator)",
                "idx = torch.randperm(pool.shape[0], device=pool.device, generator=generator)[: batch * points]",
            ),
        ),
        ("tests/unit/test_episodes.py::test_training_batches_draw_with_replacement_from_the_pool",),
    ),
    Mutation(
        "episode_file_reorders_instances",
        "the episode file stores the episodes' instances in another order",
        "metagmvae/data/episodes.py",
        (
            (
                'hdf5.write_array(g, "instances", eps.instances)',
                'hdf5.write_array(g, "instances", eps.instances[::-1].copy())',
            ),
        ),
        ("tests/unit/test_episodes.py::test_episode_file_round_trip_and_identical_bytes",),
    ),
    Mutation(
        "episode_file_drops_query",
        "the episode file reads the query count back as the shot count",
        "metagmvae/data/episodes.py",
        (('int(g.attrs["shot"]), int(g.attrs["query"])', 'int(g.attrs["shot"]), int(g.attrs["shot"])'),),
        ("tests/unit/test_episodes.py::test_episode_file_round_trip_and_identical_bytes",),
    ),
    Mutation(
        "crop_square_only",
        "SimCLR crops always square (aspect ratio ignored)",
        "metagmvae/methods/simclr.py",
        (("    aspect = log_ratio.exp()\n", "    aspect = torch.ones_like(log_ratio)\n"),),
        ("tests/unit/test_simclr.py::test_crop_boxes_keep_the_aspect_ratio_range",),
    ),
    Mutation(
        "no_flip",
        "SimCLR horizontal flip removed",
        "metagmvae/methods/simclr.py",
        (
            (
                "flip = torch.rand(n, generator=gen, device=x.device) < 0.5",
                "flip = torch.rand(n, generator=gen, device=x.device) < 0.0",
            ),
        ),
        ("tests/unit/test_simclr.py::test_every_augmentation_is_applied_at_its_rate",),
    ),
    Mutation(
        "no_colour_jitter",
        "SimCLR colour jitter removed",
        "metagmvae/methods/simclr.py",
        (
            (
                "x = color_jitter(resized_crop(x, boxes, flip).clamp(0, 1), gen)",
                "x = resized_crop(x, boxes, flip).clamp(0, 1)",
            ),
        ),
        ("tests/unit/test_simclr.py::test_every_augmentation_is_applied_at_its_rate",),
    ),
    Mutation(
        "no_grayscale",
        "SimCLR random grayscale removed",
        "metagmvae/methods/simclr.py",
        (
            (
                "gray = torch.rand(n, generator=gen, device=x.device) < 0.2",
                "gray = torch.rand(n, generator=gen, device=x.device) < 0.0",
            ),
        ),
        ("tests/unit/test_simclr.py::test_every_augmentation_is_applied_at_its_rate",),
    ),
    Mutation(
        "simclr_no_optimizer_step",
        "optimizer.step() deleted from the training loop (SimCLR)",
        "metagmvae/training/loop.py",
        (("    optimizer.step()\n", "    pass\n"),),
        ("tests/unit/test_simclr.py::test_pretraining_lowers_nt_xent_and_its_features_beat_the_random_encoder",),
    ),
    Mutation(
        "fix_pi_ignored",
        "fix_pi=True ignored by the training EM (weights re-estimated anyway)",
        "metagmvae/models/em.py",
        (("            if not fix_pi:\n", "            if True:\n"),),
        ("tests/unit/test_em.py::test_fixed_weights_change_the_fitted_means_of_an_unbalanced_mixture",),
    ),
    Mutation(
        "init_first_k_points",
        "EM initial means always the first K points of an episode",
        "metagmvae/models/em.py",
        (
            (
                "    return noise.topk(k, dim=1).indices\n",
                "    return torch.arange(k, device=device).expand(batch, k) + 0 * noise[:, :k].long()\n",
            ),
        ),
        ("tests/unit/test_em.py::test_initial_indices_are_uniform_over_the_points_and_follow_the_generator",),
    ),
    Mutation(
        "seed_depends_on_the_process",
        "the model seed depends on the interpreter's string-hash seed (same in one process, not across two)",
        "metagmvae/methods/meta_gmvae.py",
        (("    torch.manual_seed(cfg.seed)\n", '    torch.manual_seed(cfg.seed + hash("seed") % 1000)\n'),),
        ("tests/integration/reliability/test_determinism.py::test_omniglot_chain_twice_gives_identical_bytes",),
    ),
    Mutation(
        "unsafe_loader_in_scripts",
        "a yaml.full_load call added to a file under scripts/",
        "scripts/mutation_score.py",
        (
            (
                "import fnmatch\n",
                "import fnmatch\n\nimport yaml\n\n\ndef _read(path):\n    return yaml.full_load(open(path))\n",
            ),
        ),
        (
            "tests/integration/reliability/test_input_security.py::test_no_python_file_in_the_repository_unpickles_or_evaluates_data",
        ),
    ),
    Mutation(
        "report_out_of_date",
        "a committed metric changed without rebuilding metrics/report.md",
        "metrics/omniglot.json",
        (('"accuracy": 66.38,', '"accuracy": 66.4,'),),
        ("tests/unit/test_report.py::test_committed_report_is_built_from_the_committed_metrics",),
    ),
)


def copy_tree(dest: Path) -> None:
    """The tracked files of the checkout (as they are in the working tree), and its git folder
    (the committed-report test reads the baseline revision)."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for name in filter(None, files.decode().split("\0")):
        source = REPO / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    subprocess.run(["git", "clone", "-q", "--bare", str(REPO), str(dest / ".git")], check=True)
    subprocess.run(["git", "config", "core.bare", "false"], cwd=dest, check=True)


def run_tests(tree: Path, tests: tuple[str, ...]) -> tuple[bool, float, str]:
    """(passed, seconds, last lines of the output) of ``pytest -x`` on ``tests`` in ``tree``."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    mirrors = {"METAGMVAE_TEST_MIRROR": "omniglot", "METAGMVAE_TEST_MINI_MIRROR": "mini-imagenet"}
    for variable, folder in mirrors.items():  # the mirrors beside this checkout, not the copy
        env.setdefault(variable, str(REPO.parent / "shared" / "data" / folder))
    tick = time.perf_counter()
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    proc = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
    tail = "\n".join(proc.stdout.strip().splitlines()[-3:])
    return proc.returncode == 0, time.perf_counter() - tick, tail


def apply(tree: Path, mutation: Mutation) -> str:
    """Apply the edits of ``mutation`` in ``tree``; return the file's original text."""
    path = tree / mutation.file
    original = text = path.read_text()
    for old, new in mutation.edits:
        if text.count(old) != 1:
            raise SystemExit(f"{mutation.name}: {old!r} occurs {text.count(old)} times in {mutation.file}, not once")
        text = text.replace(old, new)
    path.write_text(text)
    return original


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"only these (default: all): {[m.name for m in MUTATIONS]}")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args(argv)
    unknown = set(args.names) - {m.name for m in MUTATIONS}
    if unknown:
        parser.error(f"unknown mutations {sorted(unknown)}")
    chosen = [m for m in MUTATIONS if not args.names or m.name in args.names]
    rows, ok = [], True
    with tempfile.TemporaryDirectory(prefix="known-mutations-") as tmp:
        tree = Path(tmp)
        copy_tree(tree)
        clean_runs: dict[tuple[str, ...], tuple[bool, float, str]] = {}  # tests shared by mutations run clean once
        for mutation in chosen:
            if mutation.tests not in clean_runs:
                clean_runs[mutation.tests] = run_tests(tree, mutation.tests)
            clean, _, clean_tail = clean_runs[mutation.tests]
            original = apply(tree, mutation)
            try:
                survived, seconds, tail = run_tests(tree, mutation.tests)
            finally:
                (tree / mutation.file).write_text(original)
            verdict = "clean run failed" if not clean else ("SURVIVED" if survived else "killed")
            ok &= verdict == "killed"
            print(f"{verdict:<16} {mutation.name:<32} {seconds:6.1f} s  {mutation.tests[0]}", flush=True)
            if verdict != "killed":
                print("  " + (clean_tail if not clean else tail).replace("\n", "\n  "), flush=True)
            rows.append(
                {
                    "name": mutation.name,
                    "what": mutation.what,
                    "file": mutation.file,
                    "tests": list(mutation.tests),
                    "verdict": verdict,
                    "seconds": round(seconds, 1),
                }
            )
    if args.out:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
        record = {"commit": commit, "python": platform.python_version(), "mutations": rows}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
