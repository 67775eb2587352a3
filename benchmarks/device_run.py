"""One command for a machine with a GPU (``scripts/device_run.sh``): benchmark, then train the
Omniglot 5-way paper profile for a fixed wall-clock budget, test the best checkpoints on the
fixed test episodes, and leave everything a later call needs in one folder.

    python -m benchmarks.device_run --out OUT [--previous PREV] [--budget-minutes 6]

Needs only torch, numpy, h5py, pydantic and this package: no DVC, no MLflow (tracking is off).
The data are the Omniglot store and episode file of ``dvc repro episodes@omniglot`` (``--store``,
``--episodes``). ``OUT`` receives, at most two folders down (what the device tool returns):

* ``bench-<device>.json``: ``python -m benchmarks.bench`` on this machine (``--bench-cases``);
* ``resume/omniglot_5way-<fingerprint>/``: the training state (model, Adam, RNG states, history,
  step) and the best checkpoint per validation shot so far, as :func:`metagmvae.methods.meta_gmvae.train`
  keeps them;
* ``metrics.json``: steps done, training seconds, and the test accuracy (1000 episodes, mean and
  95% CI) of the best checkpoint per shot; ``history.json``: the training and validation curves.

``--previous PREV`` is an earlier call's ``OUT`` (brought back and carried to this machine): its
state is copied into ``OUT`` first and training continues from it, so successive calls, even on
different machines of one kind, extend one run. A call on a machine whose runtime resolves
differently (another precision) starts a run of its own (another fingerprint).
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

import torch

from benchmarks import bench
from metagmvae.cli.profile import profiled_params
from metagmvae.data.episodes import episode_key, read_episodes
from metagmvae.data.stores import load_split
from metagmvae.evaluation.accuracy import summarize
from metagmvae.methods.meta_gmvae import resume_folder, train
from metagmvae.models.trained import best_checkpoint_name, checkpoint_for, load_model
from metagmvae.pipeline.evaluate import test_accuracies
from metagmvae.runtime.io import project_root, read_json, write_json
from metagmvae.runtime.tracking import Run
from metagmvae.schema.params import parse_section

MODEL = "omniglot_5way"
TEST_SHOTS = (1, 5)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="output folder (created)")
    parser.add_argument("--previous", type=Path, help="an earlier call's output folder to continue from")
    parser.add_argument("--budget-minutes", type=float, default=6.0, help="wall-clock training budget")
    parser.add_argument("--profile", default="paper")
    parser.add_argument("--set", dest="sets", action="append", default=[], help="KEY=VALUE override (repeatable)")
    parser.add_argument("--params", type=Path, default=project_root() / "params.yaml")
    parser.add_argument("--store", type=Path, required=True, help="the Omniglot store (augment stage)")
    parser.add_argument("--episodes", type=Path, required=True, help="its episode file (episodes@omniglot)")
    parser.add_argument("--bench-cases", default="omniglot_5way,omniglot_20way,mini_imagenet_5way,simclr")
    parser.add_argument("--bench-variants", default="auto,fp32")
    parser.add_argument("--official", type=Path, help="a checkout of db-Lee/Meta-GMVAE for the bench")
    parser.add_argument("--no-bench", action="store_true")
    args = parser.parse_args(argv)
    os.environ["METAGMVAE_TRACKING"] = "off"
    args.out.mkdir(parents=True, exist_ok=True)
    if args.previous and args.previous.resolve() != args.out.resolve():
        for folder in ("resume", "model"):  # an unfinished run's state, or the finished model
            if (args.previous / folder).is_dir():
                shutil.copytree(args.previous / folder, args.out / folder, dirs_exist_ok=True)

    params = profiled_params(args.params, args.profile, args.sets)
    cfg, ecfg = parse_section(params, "metatrain", MODEL), parse_section(params, "evaluate", "omniglot")
    rt = cfg.runtime(convolutional=True)
    cfg = cfg.as_run_with(rt)

    if not args.no_bench:
        bench_argv = ["--cases", args.bench_cases, "--variants", args.bench_variants]
        bench_argv += ["--out", str(args.out / f"bench-{rt.device.type}.json")]
        bench.main(bench_argv + (["--official", str(args.official)] if args.official else []))

    episodes_path = args.episodes
    pool = torch.from_numpy(load_split("omniglot", "train", args.store)).flatten(0, 1).to(rt.device)
    val = torch.from_numpy(load_split("omniglot", "val", args.store)).to(rt.device)
    val_episodes = {s: read_episodes(episodes_path, "val", cfg.way, s) for s in cfg.val_shots}
    model_dir, resume_root = args.out / "model", args.out / "resume"
    tick = time.perf_counter()
    summary = train(
        cfg, rt, pool, val, val_episodes, model_dir, resume_root, Run(None), budget_seconds=60 * args.budget_minutes
    )
    print(f"training: {time.perf_counter() - tick:.0f} s this call", flush=True)

    # the best checkpoints so far: in the finished model folder, else beside the resume state
    resume = resume_folder(cfg, model_dir, resume_root)
    state = resume.peek() if summary is None else None
    history = state["history"] if state else read_json(model_dir / "history.json")
    test = torch.from_numpy(load_split("omniglot", "test", args.store)).to(rt.device)
    erl = ecfg.runtime(convolutional=True)
    metrics = {
        "model": MODEL,
        "profile": args.profile,
        "sets": args.sets,
        "finished": summary is not None,
        "steps_done": cfg.steps if summary else state["step"],
        "steps": cfg.steps,
        "train_seconds": round(summary["train_seconds"] if summary else state["elapsed"], 1),
        "runtime": rt.describe(),
        "test": {},
    }
    for shot in TEST_SHOTS:
        selected = shot if shot in cfg.val_shots else cfg.val_shots[0]
        best = checkpoint_for(model_dir, shot) if summary else resume.path / best_checkpoint_name(selected)
        if not best.exists():
            continue  # no validation has run yet
        model, train_cfg = load_model(best, erl)
        with erl.autocast():
            tokens = model.encode(test)
        eps = read_episodes(episodes_path, "test", cfg.way, shot)
        metrics["test"][episode_key(cfg.way, shot)] = summarize(test_accuracies(model, tokens, eps, ecfg, erl)) | {
            "checkpoint": best.name
        }
        print(f"test {episode_key(cfg.way, shot)}: {metrics['test'][episode_key(cfg.way, shot)]}", flush=True)
    write_json(args.out / "metrics.json", metrics)
    write_json(args.out / "history.json", history)


if __name__ == "__main__":
    main()
