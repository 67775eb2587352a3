"""Test accuracy against training wall time: one training run, snapshots at fixed minutes.

    python -m metagmvae.timecurve                             # profile cpu, 5 / 15 / 30 / 60 min
    python -m metagmvae.timecurve --minutes 1 2 --profile cpu

Trains ``metatrain.<model>`` (Omniglot 5-way by default) of ``params.yaml`` with a profile's
overrides applied, copies the weights each time the training clock passes a mark and once at the
end, then tests every snapshot on the fixed 1000 test episodes (5-way 1- and 5-shot, the
``evaluate.omniglot`` settings). The training clock counts only training steps (batch sampling,
forward, backward, Adam), as the official figure on the same chart does (33.6% 5-way 1-shot after
18 minutes on the 2-core CPU); no validation runs. Needs the Omniglot store and episodes
(``dvc repro episodes@omniglot``). Writes ``benchmarks/accuracy_vs_time.json`` and ``.png``.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import torch

from metagmvae import plots
from metagmvae.bench import machine
from metagmvae.config import ConfigError, load_params
from metagmvae.data.episodes import check_episode_shape, episode_key, read_episodes
from metagmvae.data.stores import load_split, store_path
from metagmvae.evaluate import model_accuracies, summarize
from metagmvae.io import project_root, write_json
from metagmvae.models import build_model
from metagmvae.pipeline.evaluate import eval_config
from metagmvae.pipeline.metatrain import train_config
from metagmvae.profile import load_profile, merge
from metagmvae.progress import progress
from metagmvae.runtime import make_runtime
from metagmvae.train import TrainConfig, start_training, training_steps

# Reference points on the same chart (accuracy %, 5-way, this project's split, 1000 episodes).
OFFICIAL_CPU = {"minutes": 18.0, "5way_1shot": 33.6}  # the official code on the 2-core CPU
PIXEL_1NN = {"5way_1shot": 45.5, "5way_5shot": 66.7}
PAPER = {"5way_1shot": 94.92, "5way_5shot": 97.09}  # 60k steps of the paper configuration
TEST_SHOTS = (1, 5)


def train_with_snapshots(cfg: TrainConfig, rt, pool: torch.Tensor, marks_seconds: list[float]) -> list[dict]:
    """Train as :func:`metagmvae.train.train` does (same seeds, schedule and step) for
    ``cfg.steps`` steps, without validation, and copy the weights when the training clock
    first reaches each mark and at the last step.

    pool: unlabeled training images ``[P, 1, 28, 28]`` on ``rt.device``.
    Returns ``[{"mark_minutes", "minutes", "step", "state"}]`` in time order; marks past the
    end of training are dropped, and ``mark_minutes`` is ``None`` for the final snapshot.
    """
    model, optimizer, gen = start_training(cfg, rt)
    pending, snapshots, elapsed = sorted(marks_seconds), [], 0.0

    def snapshot(mark: float | None, step: int) -> None:
        state = copy.deepcopy(model.state_dict())
        snapshots.append({"mark_minutes": mark, "minutes": elapsed / 60, "step": step, "state": state})

    bar = progress(total=cfg.steps, desc="timecurve training", unit="step")
    for step, _, seconds in training_steps(cfg, rt, model, optimizer, pool, gen):
        elapsed += seconds
        bar.update(1)
        while pending and elapsed >= pending[0]:
            snapshot(pending.pop(0) / 60, step)
    bar.close()
    snapshot(None, cfg.steps)
    return snapshots


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu", help="profile in profiles/ applied to params.yaml ('' for none)")
    parser.add_argument("--model", default="omniglot_5way", help="a metatrain section on the Omniglot store")
    parser.add_argument("--minutes", type=float, nargs="+", default=[5, 15, 30, 60])
    parser.add_argument("--params", type=Path, default=project_root() / "params.yaml")
    parser.add_argument("--store", type=Path, help="default: data/omniglot/omniglot.h5")
    parser.add_argument("--episodes", type=Path, help="default: data/omniglot/episodes.h5")
    parser.add_argument("--out", type=Path, default=project_root() / "benchmarks" / "accuracy_vs_time")
    args = parser.parse_args(argv)

    params = load_params(args.params)
    if args.profile:
        params = merge(params, load_profile(args.profile))
    cfg, ecfg = train_config(params, args.model), eval_config(params, "omniglot")
    if cfg.dataset != "omniglot" or cfg.way != 5:
        raise ConfigError(f"metatrain.{args.model}: the time curve is for Omniglot 5-way models")
    store = args.store or project_root() / store_path("omniglot")
    episodes_path = args.episodes or store.parent / "episodes.h5"
    for path in (store, episodes_path):
        if not path.exists():
            raise ConfigError(f"{path}: missing; build it first with `dvc repro episodes@omniglot`")
    rt = make_runtime(cfg.device, cfg.precision, cfg.channels_last)
    test_episodes = {s: read_episodes(episodes_path, "test", cfg.way, s) for s in TEST_SHOTS}
    test = torch.from_numpy(load_split("omniglot", "test", store)).to(rt.device)
    for eps in test_episodes.values():
        check_episode_shape(test.shape[0], test.shape[1], eps.way, eps.shot, eps.query)
    pool = torch.from_numpy(load_split("omniglot", "train", store)).flatten(0, 1).to(rt.device)

    snapshots = train_with_snapshots(cfg, rt, pool, [60 * m for m in args.minutes])

    erl = make_runtime(ecfg.device, ecfg.precision, ecfg.channels_last)
    model = erl.prepare(build_model(cfg.model)).eval()
    points = []
    for snap in snapshots:
        model.load_state_dict(snap.pop("state"))
        with erl.autocast():
            tokens = model.encode(test)
        point = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in snap.items()}
        for shot, eps in test_episodes.items():
            accs = model_accuracies(
                model, erl, tokens, eps, ecfg.samples, ecfg.em_iters, ecfg.episodes_per_call, ecfg.seed
            )
            point[episode_key(cfg.way, shot)] = summarize(accs)
        points.append(point)
        print(
            f"{point['minutes']:7.2f} min  step {point['step']:6d}  "
            + "  ".join(
                f"{k} {point[k]['accuracy']:.2f} +- {point[k]['ci95']:.2f}" for k in ("5way_1shot", "5way_5shot")
            ),
            flush=True,
        )
    record = {
        "machine": machine(rt.device),
        "profile": args.profile,
        "model": args.model,
        "train_config": vars(cfg),
        "evaluation": {"episodes": len(test_episodes[1]), "samples": ecfg.samples, "em_iters": ecfg.em_iters},
        "points": points,
        "official_cpu": OFFICIAL_CPU,
        "pixel_1nn": PIXEL_1NN,
        "paper": PAPER,
    }
    write_json(args.out.with_suffix(".json"), record)
    plots.accuracy_vs_time(record, args.out.with_suffix(".png"))
    print(f"written to {args.out.with_suffix('.json')} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
