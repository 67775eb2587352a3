"""Accuracy against training wall time: one training run, snapshots at fixed minutes.

    python -m benchmarks.timecurve --store data/omniglot/omniglot.h5 --episodes data/omniglot/episodes.h5
    python -m benchmarks.timecurve ... --model omniglot_20way --minutes 5 15 30 60
    python -m benchmarks.timecurve ... --profile quick --set metatrain.omniglot_5way.samples_decoder=1 \\
        --minutes 2 5 10 --out benchmarks/study/s_rec1

Trains ``metatrain.<model>`` of ``params.yaml`` (a profile's overrides and any ``--set`` applied;
``--profile quick`` or ``''`` is params.yaml itself), copies the weights each time the training
clock passes a mark and once at the end, then scores every snapshot on the fixed validation
episodes (the model's ``val_shots``) and the fixed test episodes (1- and 5-shot at the model's
way; the ``evaluate.<dataset>`` settings, 1000 episodes). The training clock counts only training
steps (batch sampling, forward, backward, Adam), as the official figures on the same chart do;
validation and testing happen after training. Needs the model's store and episode file
(``--store``, ``--episodes``: the outputs of ``dvc repro episodes@<dataset>``, see dvc.yaml; a
Mini-ImageNet model reads the feature store and its episodes). Writes ``<out>.json`` (machine,
configuration, every point) and ``<out>.png``.
"""

from __future__ import annotations

import argparse
import copy
import statistics
from pathlib import Path

import torch

from benchmarks.bench import machine
from metagmvae.analysis import plots
from metagmvae.analysis.paper import PAPER_RESULTS
from metagmvae.cli.profile import profiled_params
from metagmvae.data.episodes import episode_key, read_episodes
from metagmvae.data.stores import STORES, load_split
from metagmvae.evaluation.accuracy import summarize
from metagmvae.methods.meta_gmvae import fit_model, start_training
from metagmvae.models import build_model
from metagmvae.pipeline.evaluate import test_accuracies
from metagmvae.runtime.config import ConfigError
from metagmvae.runtime.io import project_root, read_json, with_extension, write_json
from metagmvae.runtime.tracking import Run
from metagmvae.schema.data import check_episode_shape
from metagmvae.schema.metatrain import TrainConfig
from metagmvae.schema.params import parse_section

TEST_SHOTS = (1, 5)
REFERENCES = project_root() / "benchmarks" / "references.json"  # the official code's measured curves


def train_with_snapshots(
    cfg: TrainConfig, rt, pool: torch.Tensor, marks_seconds: list[float]
) -> tuple[list[dict], float]:
    """Train as :func:`metagmvae.methods.meta_gmvae.train` does (same seeds, schedule and step) for
    ``cfg.steps`` steps, without validation, and copy the weights when the training clock
    first reaches each mark and at the last step.

    pool: unlabeled training images ``[P, 1, 28, 28]`` on ``rt.device``.
    Returns ``([{"mark_minutes", "minutes", "step", "state"}], median seconds per step)``, the
    snapshots in time order (marks past the end of training are dropped, and ``mark_minutes`` is
    ``None`` for the final snapshot). The median step time is what an idle machine gives even
    when other work shared the CPU for part of the run (``step x median`` is then the better clock).
    """
    model, optimizer, gen = start_training(cfg, rt)
    pending, snapshots, step_seconds, clock = sorted(marks_seconds), [], [], [0.0]

    def snapshot(mark: float | None, step: int, elapsed: float) -> None:
        state = copy.deepcopy(model.state_dict())
        snapshots.append({"mark_minutes": mark, "minutes": elapsed / 60, "step": step, "state": state})

    def on_step(step: int, elapsed: float, _model) -> None:
        step_seconds.append(elapsed - clock[0])
        clock[0] = elapsed
        while pending and elapsed >= pending[0]:
            snapshot(pending.pop(0) / 60, step, elapsed)

    done = fit_model(
        cfg,
        rt,
        pool,
        model,
        optimizer,
        gen,
        name="timecurve",
        desc="timecurve training",
        run=Run(None),
        on_step=on_step,
    )
    snapshot(None, cfg.steps, done.elapsed)
    return snapshots, statistics.median(step_seconds)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="cpu", help="profile in profiles/ applied to params.yaml ('quick': none)")
    parser.add_argument("--model", default="omniglot_5way", help="a metatrain section")
    parser.add_argument("--set", dest="sets", action="append", default=[], help="KEY=VALUE override (repeatable)")
    parser.add_argument("--minutes", type=float, nargs="+", default=[5, 15, 30, 60])
    parser.add_argument("--params", type=Path, default=project_root() / "params.yaml")
    parser.add_argument("--store", type=Path, required=True, help="the model's store (augment or extract stage)")
    parser.add_argument("--episodes", type=Path, required=True, help="its episode file (episodes@<dataset>)")
    parser.add_argument("--out", type=Path, default=project_root() / "benchmarks" / "accuracy_vs_time")
    args = parser.parse_args(argv)

    params = profiled_params(args.params, args.profile, args.sets)
    cfg = parse_section(params, "metatrain", args.model)
    dataset = cfg.dataset
    ecfg = parse_section(params, "evaluate", dataset)
    store, episodes_path = args.store, args.episodes
    for path in (store, episodes_path):
        if not path.exists():
            raise ConfigError(f"{path}: missing; build it first with `dvc repro episodes@{dataset}`")
    convolutional = STORES[dataset].images
    rt = cfg.runtime(convolutional=convolutional)
    cfg = cfg.as_run_with(rt)
    split_data, settings = {}, {}
    for split, shots in (("val", cfg.val_shots), ("test", TEST_SHOTS)):
        split_data[split] = torch.from_numpy(load_split(dataset, split, store)).to(rt.device)
        for shot in shots:
            eps = read_episodes(episodes_path, split, cfg.way, shot)
            check_episode_shape(*split_data[split].shape[:2], eps.way, eps.shot, eps.query)
            settings[(split, episode_key(cfg.way, shot))] = eps
    pool = torch.from_numpy(load_split(dataset, "train", store)).flatten(0, 1).to(rt.device)

    snapshots, median_step = train_with_snapshots(cfg, rt, pool, [60 * m for m in args.minutes])

    erl = ecfg.runtime(convolutional=convolutional)
    model = erl.prepare(build_model(cfg.model)).eval()
    points = []
    for snap in snapshots:
        model.load_state_dict(snap.pop("state"))
        with erl.autocast():
            tokens = {split: model.encode(data) for split, data in split_data.items()}
        point = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in snap.items()} | {"val": {}, "test": {}}
        for (split, key), eps in settings.items():
            point[split][key] = summarize(test_accuracies(model, tokens[split], eps, ecfg, erl))
        points.append(point)
        print(
            f"{point['minutes']:7.2f} min  step {point['step']:6d}  "
            + "  ".join(f"{s} {k} {r['accuracy']:.2f}" for s in ("val", "test") for k, r in point[s].items()),
            flush=True,
        )
    record = {
        "machine": machine(rt.device),
        "profile": args.profile or "quick",
        "sets": args.sets,
        "model": args.model,
        "store": {"path": str(store), "resize_filter": store_filter(store) if dataset == "omniglot" else None},
        "train_config": cfg.model_dump(),
        "evaluation": {"samples": ecfg.test_samples, "em_iters": ecfg.test_em_iters, "precision": erl.precision},
        "points": points,
        "best_on_validation": best_on_validation(points),
        "median_step_seconds": round(median_step, 5),
    }
    for key, best in record["best_on_validation"].items():
        print(f"kept on validation {key}: step {best['step']} (test {best['test'][key]['accuracy']:.2f})", flush=True)
    json_path, png_path = with_extension(args.out, ".json"), with_extension(args.out, ".png")
    write_json(json_path, record)
    plots.accuracy_vs_time([record], references(dataset), png_path)
    print(f"written to {json_path} and {png_path}")


def best_on_validation(points: list[dict]) -> dict[str, dict]:
    """Per validation setting, the snapshot a pipeline run keeps (the earliest with the highest
    validation accuracy, as :class:`metagmvae.training.loop.BestOnValidation` does), not the last one:
    ``{setting: {"step", "minutes", "val", "test"}}``."""
    out = {}
    for key in points[0]["val"] if points else []:
        best = max(points, key=lambda p: (p["val"][key]["accuracy"], -p["step"]))
        out[key] = {"step": best["step"], "minutes": best["minutes"], "val": best["val"][key], "test": best["test"]}
    return out


def references(dataset: str) -> dict:
    """The official code's measured Omniglot curves (``benchmarks/references.json``, with their
    source) and the paper's results on ``dataset`` (:mod:`metagmvae.analysis.paper`)."""
    official = read_json(REFERENCES) if dataset == "omniglot" else {}
    return official | {"paper": {k: acc for k, (acc, _) in PAPER_RESULTS[dataset].items()}}


def store_filter(store: Path) -> str | None:
    """The resize filter the Omniglot store was built with (its ``augment`` attributes)."""
    from metagmvae.data import hdf5, omniglot

    with hdf5.open_store(store, omniglot.FORMAT) as f:
        value = f.attrs.get("resize_filter")
    return None if value is None else str(value)


if __name__ == "__main__":
    main()
