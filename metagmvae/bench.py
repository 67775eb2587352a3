"""Benchmark the paper configurations on whatever device is present.

    python -m metagmvae.bench                       # every case, bf16 + channels-last and fp32
    python -m metagmvae.bench --cases omniglot_5way --variants fast --steps 3

Measures, per case and precision variant, the median time of a full training step (forward,
backward, Adam) after warm-up and the peak memory (CPU: the process's peak resident set, each
case in a fresh process; CUDA: peak allocated), and the time to evaluate 1000 test episodes.
Inputs are random tensors of the real shapes (as the official figures were measured). Writes a
JSON file (device, CPU model and flags or GPU name, torch version, threads, commit) and prints a
table with the ratio to the official implementation's figures.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from metagmvae.io import project_root, write_json
from metagmvae.tracking import git_commit
from metagmvae.walltime import cpu_info

OFFICIAL = {
    # the official implementation: this project's 2-core CPU (torch 2.14.1; evaluation of 1- and
    # 5-shot together took about 90 s, counted as 45 s each) and one H100 (fp32; spec 8.3)
    "cpu": {
        "omniglot_5way": {"seconds": 15.1, "peak_gib": 9.8},
        "eval_omniglot_5way_1shot": {"seconds": 45.0},
        "eval_omniglot_5way_5shot": {"seconds": 45.0},
    },
    "cuda": {
        "omniglot_5way": {"seconds": 0.0556, "peak_gib": 6.3},
        "omniglot_20way": {"seconds": 0.0933, "peak_gib": 9.6},
        "mini_imagenet": {"seconds": 0.011, "peak_gib": 0.4},
        "eval_omniglot_5way_1shot": {"seconds": 2.5},  # 250 groups of 4 episodes at about 10 ms
        "eval_omniglot_5way_5shot": {"seconds": 2.5},
    },
}
VARIANTS = {"fast": ("bf16", True), "fp32": ("fp32", False)}


@dataclass(frozen=True)
class TrainCase:
    """One paper configuration of a Meta-GMVAE training step (spec section 6)."""

    model: dict
    way: int
    batch: int
    points: int
    samples: int
    em_iters: int = 10


PIXELS = {"kind": "pixels", "latent": 64, "hidden": 64, "heads": 4, "blocks": 2}
FEATURES = {"kind": "features", "input_dim": 256, "latent": 32, "hidden": 512, "heads": 4, "blocks": 2}
TRAIN_CASES = {
    "omniglot_5way": TrainCase(PIXELS, way=5, batch=4, points=200, samples=32),
    "omniglot_20way": TrainCase(PIXELS, way=20, batch=4, points=300, samples=32),
    "mini_imagenet": TrainCase(FEATURES, way=5, batch=16, points=5, samples=256),
}
EVAL_CASES = {"eval_omniglot_5way_1shot": 1, "eval_omniglot_5way_5shot": 5}
CASES = [*TRAIN_CASES, "simclr_512", *EVAL_CASES]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device: torch.device, warmup: int, steps: int) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(steps):
        _sync(device)
        tick = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - tick)
    return times


def _input(case: TrainCase, n: int, device: torch.device, gen: torch.Generator) -> torch.Tensor:
    if case.model["kind"] == "pixels":
        return (torch.rand(n, 1, 28, 28, device=device, generator=gen) > 0.8).float()
    return torch.relu(torch.randn(n, 256, device=device, generator=gen))


def bench_train(name: str, rt, warmup: int, steps: int) -> list[float]:
    from metagmvae.models import build_model
    from metagmvae.train import train_step

    case = TRAIN_CASES[name]
    torch.manual_seed(0)
    model = rt.prepare(build_model(case.model)).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    gen = rt.generator(0)
    x = _input(case, case.batch * case.points, rt.device, gen)
    x = x.view(case.batch, case.points, *x.shape[1:])
    return _timed(
        lambda: train_step(model, optimizer, x, case.way, case.samples, case.em_iters, False, rt, gen, 1),
        rt.device,
        warmup,
        steps,
    )


def bench_simclr(rt, warmup: int, steps: int, batch: int = 512) -> list[float]:
    from metagmvae import simclr

    torch.manual_seed(0)
    model = rt.prepare(simclr.SimCLR()).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = rt.generator(0)
    images = torch.randint(0, 256, (batch, 3, 84, 84), dtype=torch.uint8, device=rt.device, generator=gen)

    def step():
        views = [simclr.augment(images, gen) for _ in range(2)]
        if rt.channels_last:
            views = [v.contiguous(memory_format=torch.channels_last) for v in views]
        with rt.autocast():
            p1, p2 = model(*views)
        loss = simclr.nt_xent(p1, p2, 0.5)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return _timed(step, rt.device, warmup, steps)


def bench_eval(name: str, rt, episodes_per_call: int, samples: int = 32, n_episodes: int = 1000) -> list[float]:
    """Seconds to evaluate ``n_episodes`` 5-way episodes (15 queries) on 1292 random test classes."""
    from metagmvae.data.episodes import sample_episodes
    from metagmvae.evaluate import episode_accuracies
    from metagmvae.models import build_model

    shot = EVAL_CASES[name]
    torch.manual_seed(0)
    model = rt.prepare(build_model(PIXELS)).eval()
    gen = rt.generator(0)
    test = (torch.rand(1292, 20, 1, 28, 28, device=rt.device, generator=gen) > 0.8).float()
    eps = sample_episodes(np.random.default_rng(0), n_episodes, 1292, 20, 5, shot, 15)

    def run():
        with rt.autocast():
            tokens = model.encode(test)

        def predict(support, y_support, query, way):
            with rt.autocast():
                return model.predict(support, y_support, query, way, samples, 10, gen)

        episode_accuracies(predict, tokens, eps, episodes_per_call)

    return _timed(run, rt.device, 0, 1)


def run_case(name: str, variant: str, device: str, warmup: int, steps: int, episodes_per_call: int) -> dict:
    """Run one case in this process; returns its timings and peak memory."""
    from metagmvae.runtime import make_runtime

    precision, channels_last = VARIANTS[variant]
    rt = make_runtime(device, precision, channels_last)
    if name in TRAIN_CASES:
        times = bench_train(name, rt, warmup, steps)
    elif name == "simclr_512":
        times = bench_simclr(rt, warmup, steps)
    else:
        times = bench_eval(name, rt, episodes_per_call)
    if rt.device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(rt.device) / 2**30
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    return {
        "case": name,
        "variant": variant,
        "seconds": statistics.median(times),
        "all_seconds": [round(t, 4) for t in times],
        "peak_gib": round(peak, 3),
    }


def machine(device: torch.device) -> dict:
    info = {
        "device": device.type,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "commit": git_commit(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    else:
        info["cpu"], flags = cpu_info()
        if flags:
            info["cpu_flags"] = flags
    return info


def table(results: list[dict], device: str) -> str:
    official = OFFICIAL.get(device, {})
    lines = [f"{'case':<26} {'variant':<6} {'time':>10} {'peak GiB':>9} {'x official time':>16} {'x official mem':>15}"]
    for r in results:
        ref = official.get(r["case"], {})
        t_ratio = f"{r['seconds'] / ref['seconds']:.3f}" if "seconds" in ref else "-"
        m_ratio = f"{r['peak_gib'] / ref['peak_gib']:.3f}" if "peak_gib" in ref else "-"
        unit = "s/1000 ep" if r["case"].startswith("eval") else "s/step"
        lines.append(
            f"{r['case']:<26} {r['variant']:<6} {r['seconds']:>7.3f} {unit:<9} {r['peak_gib']:>6.2f} "
            f"{t_ratio:>16} {m_ratio:>15}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated subset of {CASES}")
    parser.add_argument("--variants", default="fast,fp32", help=f"comma-separated subset of {list(VARIANTS)}")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--episodes-per-call", type=int, default=50)
    parser.add_argument("--out", type=Path, help="JSON file (default: benchmarks/<device>.json)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    cases, variants = args.cases.split(","), args.variants.split(",")
    for case in cases:
        if case not in CASES:
            parser.error(f"unknown case {case!r}; expected one of {CASES}")
    for variant in variants:
        if variant not in VARIANTS:
            parser.error(f"unknown variant {variant!r}; expected one of {list(VARIANTS)}")

    if args.child:  # one case, one variant: report on stdout for the parent
        result = run_case(cases[0], variants[0], args.device, args.warmup, args.steps, args.episodes_per_call)
        print("BENCH " + json.dumps(result))
        return

    from metagmvae.runtime import resolve_device

    device = resolve_device(args.device)
    results = []
    for case in cases:
        for variant in variants:
            cmd = [sys.executable, "-m", "metagmvae.bench", "--child", "--cases", case, "--variants", variant]
            cmd += ["--device", args.device, "--warmup", str(args.warmup), "--steps", str(args.steps)]
            cmd += ["--episodes-per-call", str(args.episodes_per_call)]
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=project_root())
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH ")]
            if proc.returncode != 0 or not lines:
                raise RuntimeError(f"benchmark {case} ({variant}) failed:\n{proc.stderr[-3000:]}")
            results.append(json.loads(lines[-1][len("BENCH ") :]))
            print(table(results[-1:], device.type).splitlines()[-1], flush=True)
    report = {
        "machine": machine(device),
        "settings": {"warmup": args.warmup, "steps": args.steps, "episodes_per_call": args.episodes_per_call},
        "official": OFFICIAL.get(device.type, {}),
        "results": results,
    }
    out = args.out or project_root() / "benchmarks" / f"{device.type}.json"
    write_json(out, report)
    print()
    print(table(results, device.type))
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
