"""Meta-GMVAE on the committed Mini-ImageNet features: one change at a time, scored on validation.

    python -m benchmarks.mini_imagenet_tuning [--out benchmarks/mini_imagenet_tuning.json] [NAME ...]
    python -m benchmarks.mini_imagenet_tuning --profile cpu --store STORE.h5 --out ...  # other features

Each variant is a profile's ``metatrain.mini_imagenet_5way`` section (default: the quick one,
``params.yaml`` itself) with a few keys changed. It trains through the ``metatrain`` stage script
on a feature store (default: the committed one) and the validation episodes, into a temporary
folder, untracked. The record is its best 5-way 1-shot
validation accuracy (1000 validation episodes at the section's ``val_samples``) and its wall
time. The test episodes are not read: what wins here is then run through ``dvc exp run``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import yaml

from metagmvae.cli.profile import merge, profiled_params
from metagmvae.runtime.io import read_json, write_json

REPO = Path(__file__).resolve().parent.parent
MODEL = "mini_imagenet_5way"
COMMITTED_STORE = Path("data/mini_imagenet/mini_imagenet.h5")
VARIANTS = {  # name -> changed keys of metatrain.mini_imagenet_5way
    "unchanged": {},
    "steps_6000": {"steps": 6000},
    "lr_1e-3": {"lr": 1e-3},
    "lr_3e-4_cosine": {"lr": 3e-4, "lr_schedule": "cosine"},
    "weight_decay_0": {"weight_decay": 0.0},
    "latent_64": {"model": {"latent": 64}},
    "samples_128_rec_8": {"samples": 128, "samples_decoder": 8},
    "samples_8": {"samples": 8, "samples_decoder": 8},
    "fix_pi": {"fix_pi": True},
    "train_em_iters_3": {"train_em_iters": 3},
    "points_20": {"points": 20},
}


def train(name: str, change: dict, work: Path, *, params: dict, store: Path) -> dict:
    """One variant: ``params`` (the profile's, unchanged) with ``change`` merged into the model's section."""
    params = dict(params, metatrain=dict(params["metatrain"]))  # merge copies what it changes
    params["metatrain"][MODEL] = merge(params["metatrain"][MODEL], change, f"metatrain.{MODEL}.")
    params_file = work / f"{name}.yaml"
    params_file.write_text(yaml.safe_dump(params))
    out = work / name
    cmd = [sys.executable, "stages/metatrain.py", MODEL, "--params", str(params_file)]
    cmd += ["--store", str(store), "--episodes", "data/mini_imagenet/episodes.h5"]
    cmd += ["--out", str(out / "model"), "--plots", str(out / "plots"), "--train-curve", str(out / "train.csv")]
    cmd += ["--val-curve", str(out / "val.csv"), "--metrics", str(out / "metrics.json"), "--resume", str(out / "r")]
    tick = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=dict(os.environ, METAGMVAE_TRACKING="off"), capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed:\n{proc.stderr[-3000:]}")
    metrics = read_json(out / "metrics.json")
    return {
        "name": name,
        "change": change,
        "val_1shot": metrics["best_val_accuracy"]["1shot"],
        "wall_seconds": round(time.perf_counter() - tick, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"only these (default: all): {list(VARIANTS)}")
    parser.add_argument("--out", type=Path, help="write the records as JSON here")
    parser.add_argument("--profile", default="quick", help="the profile whose section is varied")
    parser.add_argument("--store", type=Path, default=COMMITTED_STORE)
    args = parser.parse_args(argv)
    params = profiled_params(REPO / "params.yaml", args.profile, [])
    rows = []
    with tempfile.TemporaryDirectory(prefix="mini-tuning-") as tmp:
        for name in args.names or VARIANTS:
            rows.append(train(name, VARIANTS[name], Path(tmp), params=params, store=args.store))
            print(f"{name:<22} val 1-shot {rows[-1]['val_1shot']:6.2f}  {rows[-1]['wall_seconds']:6.1f} s", flush=True)
    if args.out:
        features = None  # the commit of the committed store (dvc.lock); another store: its encoder only
        if args.store == COMMITTED_STORE:
            git_log = ["git", "log", "-1", "--format=%h", "--", "dvc.lock"]
            features = subprocess.run(git_log, cwd=REPO, capture_output=True, text=True).stdout.strip()
        with h5py.File(args.store, "r") as store:
            encoder = store.attrs["encoder_sha256"]
        record = {"profile": args.profile, "features_at": features, "encoder_sha256": encoder, "variants": rows}
        write_json(args.out, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
