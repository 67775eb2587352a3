"""Why Omniglot accuracy fell in the accuracy study: one change at a time from the falling setting.

    python -m benchmarks.fall_ablation train --variant base --seed 0 --runs /work/ablation
    python -m benchmarks.fall_ablation report --runs /work/ablation   # -> benchmarks/fall_ablation.{json,png}

The falling setting is ``5w_m200s32r1_lanczos`` of ``benchmarks/accuracy_study.json`` (test 5-way
1-shot 78.1 -> 70.1 -> 65.9 % at 2.6k / 5.2k / 9.2k steps): ``metatrain.omniglot_5way`` of
params.yaml with B 1 x M 200, S 32 with S_rec 1, one half-cosine of the rate over the run, the
Lanczos store. Each variant changes one thing (:data:`VARIANTS`). Training is the pipeline's own
(:func:`metagmvae.methods.meta_gmvae.train`: validation on the fixed 200 validation episodes per shot every
``--every`` steps, the best checkpoint per shot, the smallest EM component per log line), resumable
from its run folder. ``report`` reads every run's ``history.json`` and writes the record: per
variant and seed, the validation curve, its peak and its last value (a fall is peak - last), and
the smallest EM component seen.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from benchmarks.bench import machine, trained_on, write_block
from benchmarks.official_dynamics import STUDY
from metagmvae.cli.profile import profiled_params
from metagmvae.data.episodes import read_episodes
from metagmvae.data.stores import load_split
from metagmvae.methods.meta_gmvae import train
from metagmvae.pipeline import augment
from metagmvae.runtime.io import project_root, read_json, write_json
from metagmvae.runtime.tracking import Run
from metagmvae.schema.params import parse_section

ROOT = project_root()
SECTION = "metatrain.omniglot_5way"
MARKER = "fall-ablation"
RECORD = ROOT / "benchmarks" / "fall_ablation"  # .json and .png
FALLING = {"batch": 1, "points": 200, "samples": 32, "samples_decoder": 1, "lr_schedule": "cosine"}
VARIANTS = {  # name -> (overrides of the falling setting, store)
    "base": ({}, "lanczos"),
    "constant": ({"lr_schedule": "constant"}, "lanczos"),
    "decoder_all_samples": ({"samples_decoder": 32}, "lanczos"),
    "bf16": ({"precision": "bf16"}, "lanczos"),
    "binary": ({}, "nearest"),
    "m100": ({"points": 100}, "lanczos"),
}


def config(variant: str, seed: int, steps: int, every: int):
    overrides, _ = VARIANTS[variant]
    keys = FALLING | {"precision": "fp32"} | overrides | {"steps": steps, "seed": seed, "val_every": every}
    keys |= {"checkpoint_every": every, "log_every": 50}
    params = profiled_params(ROOT / "params.yaml", "quick", [f"{SECTION}.{k}={v}" for k, v in keys.items()])
    return parse_section(params, "metatrain", "omniglot_5way")


def nearest_store(path: Path, raw: Path) -> Path:
    """The Omniglot store with ``augment.omniglot.resize_filter: nearest`` (exactly the official
    binary arrays) at ``path``, built from the raw zips in ``raw`` the first time (atomically, so
    two runs may build it at once)."""
    if not path.exists():
        params = profiled_params(ROOT / "params.yaml", "quick", ["augment.omniglot.resize_filter=nearest"])
        augment.run(parse_section(params, "augment", "omniglot"), raw, path, path.with_suffix(".split.json"))
    return path


def train_variant(args) -> None:
    cfg = config(args.variant, args.seed, args.steps, args.every)
    store = args.lanczos if VARIANTS[args.variant][1] == "lanczos" else nearest_store(args.nearest, args.raw)
    rt = cfg.runtime(convolutional=True)
    cfg = cfg.as_run_with(rt)
    pool = torch.from_numpy(load_split("omniglot", "train", store)).flatten(0, 1).to(rt.device)
    val = torch.from_numpy(load_split("omniglot", "val", store)).to(rt.device)
    val_episodes = {s: read_episodes(args.episodes, "val", cfg.way, s) for s in cfg.val_shots}
    folder = args.runs / f"{args.variant}-seed{args.seed}"
    summary = train(cfg, rt, pool, val, val_episodes, folder / "model", folder / "resume", Run(None), progress=False)
    run = {"variant": args.variant, "seed": args.seed, "trained_on": trained_on(), "config": cfg.model_dump()}
    write_json(folder / "run.json", run | summary)


def committed_runs(out: Path) -> dict:
    """``{variant: {seed: run}}`` of the record ``out``.json as committed (empty before the first)."""
    path = out.with_suffix(".json")
    return read_json(path)["runs"] if path.exists() else {}


def report(args) -> None:
    """Merge the finished runs under ``--runs`` into the record ``--out``.json (a run folder
    replaces the committed run of the same variant and seed; the others stay, so runs made in
    different sessions add up), and draw its .png."""
    runs = committed_runs(args.out)
    for folder in sorted(args.runs.glob("*-seed*")):
        if not (folder / "run.json").exists():  # written when the run has finished
            continue
        h = read_json(folder / "model" / "history.json")
        variant, seed = folder.name.rsplit("-seed", 1)
        val = h["val"]["1shot"]
        runs.setdefault(variant, {})[seed] = {
            "trained_on": read_json(folder / "run.json")["trained_on"],
            "steps": h["val_step"][-1],
            "val_step": h["val_step"],
            "val_1shot": val,
            "val_5shot": h["val"].get("5shot"),
            "peak": max(val),
            "peak_step": h["val_step"][int(np.argmax(val))],
            "last": val[-1],
            "fall": round(max(val) - val[-1], 2),
            "min_component": min(h.get("min_component", [float("nan")])),
        }
    record = {
        "kind": "fall_ablation",
        "machine": machine(torch.device("cpu")),
        "falling_setting": FALLING | {"store": "lanczos"},
        "variants": {n: {"overrides": o, "store": s} for n, (o, s) in VARIANTS.items()},
        "runs": runs,
    }
    write_json(args.out.with_suffix(".json"), record)
    plot(record, args.out.with_suffix(".png"))
    write_block(args.study, MARKER, "benchmarks/fall_ablation.py", "benchmarks/fall_ablation.json", markdown(record))


def markdown(record: dict) -> str:
    """Per variant and seed: the validation peak (its step), the last value, the fall between
    them, and the smallest EM component seen (points x samples held by one of the K components)."""
    lines = [
        "5-way 1-shot validation accuracy (%) on the 200 fixed validation episodes, every 500 steps",
        "",
        "| variant (one change) | seed | steps | peak (step) | last | fall | smallest EM component |",
        "|---|---|---|---|---|---|---|",
    ]
    for variant in VARIANTS:
        for seed, r in sorted(record["runs"].get(variant, {}).items(), key=lambda kv: int(kv[0])):
            cells = [variant, seed, str(r["steps"]), f"{r['peak']:.2f} ({r['peak_step']})", f"{r['last']:.2f}"]
            cells += [f"{r['fall']:.2f}", f"{r['min_component']:.1f}"]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def todo(args) -> None:
    """Print ``VARIANT:SEED`` for each run that the record lacks or has not trained to ``--steps``."""
    runs = committed_runs(args.out)
    for variant in VARIANTS:
        for seed in args.seeds:
            if runs.get(variant, {}).get(str(seed), {}).get("steps", 0) < args.steps:
                print(f"{variant}:{seed}")


def plot(record: dict, path: Path) -> None:
    from metagmvae.analysis.plots import plt, save_figure

    fig, ax = plt.subplots(figsize=(8, 4.5))
    colors = dict(zip(VARIANTS, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    for variant, seeds in record["runs"].items():
        for i, (_seed, r) in enumerate(sorted(seeds.items())):
            label = variant if i == 0 else None
            ax.plot(r["val_step"], r["val_1shot"], color=colors.get(variant), marker="o", ms=3, label=label)
    ax.set_xlabel("training step")
    ax.set_ylabel("5-way 1-shot validation accuracy (%)")
    ax.set_title("From the falling setting (B 1 x M 200, S 32 / S_rec 1, cosine, Lanczos), one change each")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="train one variant with one seed (resumes its run folder)")
    p.add_argument("--variant", choices=sorted(VARIANTS), required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--steps", type=int, default=6000)
    p.add_argument("--every", type=int, default=500, help="validate and save the resume state every N steps")
    p.add_argument("--lanczos", type=Path, default=ROOT / "data/omniglot/omniglot.h5", help="the Lanczos store")
    p.add_argument("--nearest", type=Path, help="the store with resize_filter nearest (built here if missing)")
    p.add_argument("--raw", type=Path, default=ROOT / "data/omniglot/raw", help="the raw zips, to build it")
    p.add_argument("--episodes", type=Path, default=ROOT / "data/omniglot/episodes.h5")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--runs", type=Path, required=True)
    p = sub.add_parser("report", help="collect the runs into the record and its plot")
    p.add_argument("--runs", type=Path, required=True)
    p.add_argument("--out", type=Path, default=RECORD)
    p.add_argument("--study", type=Path, default=STUDY, help="the page whose table is redrawn")
    p = sub.add_parser("todo", help="print VARIANT:SEED for each run the record lacks to --steps")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--steps", type=int, default=6000)
    p.add_argument("--out", type=Path, default=RECORD)
    args = parser.parse_args(argv)
    if args.command == "todo":
        return todo(args)
    if args.command == "train":
        torch.set_num_threads(args.threads)
        if VARIANTS[args.variant][1] == "nearest" and args.nearest is None:
            parser.error("--nearest (where the store with resize_filter nearest is, or is to be built) is needed here")
        train_variant(args)
    else:
        report(args)


if __name__ == "__main__":
    sys.exit(main())
