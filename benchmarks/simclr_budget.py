"""What a SimCLR encoder is worth against its pre-training compute: one pre-training run,
snapshots at fixed training minutes, LR(SimCLR) on the fixed test episodes for each.

    python -m benchmarks.simclr_budget --images data/mini_imagenet/raw/images.h5 \\
        --episodes data/mini_imagenet/episodes.h5 --minutes 2 5 10 20 --out benchmarks/simclr_budget/base
    python -m benchmarks.simclr_budget ... --set pretrain.mini_imagenet.image_size=42 \\
        --set pretrain.mini_imagenet.blocks=4 --minutes 2 5 10 --out benchmarks/simclr_budget/px42

Pre-trains ``pretrain.mini_imagenet`` of ``params.yaml`` (a profile and ``--set`` overrides
applied; with ``lr_schedule=constant`` a snapshot at minute t is a run stopped at t) and copies
the weights when the training clock (steps only) passes each mark, plus the untrained encoder
(minute 0: the random-encoder row); training stops at the last mark (``epochs`` must be large
enough to reach it) or at the end of its schedule, whichever comes first. Each snapshot then encodes the test split
and the first ``--stats-per-class`` images of every training class (for the standardisation
statistics) and scores the paper's LR(SimCLR) baseline on the fixed 5-way 1- and 5-shot test
episodes (``--episodes``, the episodes@mini_imagenet output, 1000 each). Writes ``<out>.json``.
"""

from __future__ import annotations

import argparse
import copy
import shutil
from pathlib import Path

import numpy as np
import torch

from benchmarks.bench import machine
from metagmvae.cli.profile import profiled_params
from metagmvae.data import mini_imagenet
from metagmvae.data.episodes import episode_key, read_episodes
from metagmvae.evaluation.accuracy import episode_accuracies, summarize
from metagmvae.methods import simclr
from metagmvae.methods.baselines import logistic_regression
from metagmvae.methods.simclr_pretrain import pretrain
from metagmvae.pipeline.extract import encode_images
from metagmvae.runtime import checkpoint
from metagmvae.runtime.io import project_root, with_extension, write_json
from metagmvae.runtime.tracking import Run
from metagmvae.schema.params import parse_section

TEST_SHOTS = (1, 5)


class LastMark(Exception):
    """Raised from the step hook once the last snapshot is taken: pre-training stops there."""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="quick", help="profile in profiles/ ('quick': params.yaml itself)")
    parser.add_argument("--set", dest="sets", action="append", default=[], help="KEY=VALUE override (repeatable)")
    parser.add_argument("--minutes", type=float, nargs="+", default=[2, 5, 10, 20])
    parser.add_argument("--stats-per-class", type=int, default=100)
    parser.add_argument("--params", type=Path, default=project_root() / "params.yaml")
    parser.add_argument("--images", type=Path, required=True, help="the download stage's images.h5")
    parser.add_argument("--episodes", type=Path, required=True, help="the episodes@mini_imagenet file")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    params = profiled_params(args.params, args.profile, args.sets)
    cfg, ecfg = parse_section(params, "pretrain", "mini_imagenet"), parse_section(params, "extract", "mini_imagenet")
    rt = cfg.runtime(convolutional=True)
    images_path = args.images
    train = mini_imagenet.load_images(images_path, "train", cfg.train_per_class).images
    train = simclr.resize(train.flatten(0, 1), cfg.image_size).to(rt.device)
    stats_images = mini_imagenet.load_images(images_path, "train", args.stats_per_class).images.flatten(0, 1)
    test_images = mini_imagenet.load_images(images_path, "test").images
    episodes = {shot: read_episodes(args.episodes, "test", 5, shot) for shot in TEST_SHOTS}

    marks = sorted(60 * m for m in args.minutes)
    snapshots = []
    torch.manual_seed(cfg.seed)
    untrained = simclr.SimCLR(cfg.hidden, blocks=cfg.blocks, image_size=cfg.image_size)
    snapshots.append({"minutes": 0.0, "step": 0, "state": copy.deepcopy(untrained.state_dict())})

    def on_step(step: int, elapsed: float, model: torch.nn.Module) -> None:
        if marks and elapsed >= marks[0]:  # one snapshot for every mark this step passed
            while marks and elapsed >= marks[0]:
                marks.pop(0)
            snapshots.append({"minutes": elapsed / 60, "step": step, "state": copy.deepcopy(model.state_dict())})
        if not marks:
            raise LastMark

    scratch = args.out.parent / f".{args.out.name}.work"
    try:
        summary = pretrain(cfg, rt, train, scratch / "simclr", scratch / "resume", Run(None), on_step=on_step)
        final = checkpoint.load(scratch / "simclr" / "simclr.pt")["model"]
        snapshots.append({"minutes": summary["train_seconds"] / 60, "step": "end", "state": final})
    except LastMark:
        pass
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    erl = ecfg.runtime(convolutional=True)
    model = simclr.SimCLR(cfg.hidden, blocks=cfg.blocks, image_size=cfg.image_size)
    points = []
    for snap in snapshots:
        model.load_state_dict(snap.pop("state"))
        encoder = erl.prepare(model.encoder).eval()
        setting = {"batch": ecfg.batch, "image_size": cfg.image_size, "desc": None}
        stats = encode_images(encoder, stats_images, erl, **setting).astype(np.float64)
        test = encode_images(encoder, test_images.flatten(0, 1), erl, **setting)
        test = torch.from_numpy(test).view(*test_images.shape[:2], -1)
        predict = logistic_regression(lambda stats=stats: (stats.mean(0), stats.std(0)))
        point = {"minutes": round(snap["minutes"], 3), "step": snap["step"]}
        for shot, eps in episodes.items():
            point[episode_key(5, shot)] = summarize(episode_accuracies(predict, test, eps, 100))
        points.append(point)
        print(
            f"{point['minutes']:6.2f} min  step {point['step']}  "
            + "  ".join(f"{k} {point[k]['accuracy']:.2f}" for k in (episode_key(5, s) for s in TEST_SHOTS)),
            flush=True,
        )
    write_json(
        with_extension(args.out, ".json"),
        {
            "machine": machine(rt.device),
            "profile": args.profile,
            "sets": args.sets,
            "pretrain_config": cfg.as_run_with(rt).model_dump(),
            "train_images": int(train.shape[0]),
            "stats_per_class": args.stats_per_class,
            "points": points,
        },
    )


if __name__ == "__main__":
    main()
