"""Benchmark the paper configurations on whatever device is present, optionally beside the
official implementation.

    python -m benchmarks.bench                                  # every case, every variant
    python -m benchmarks.bench --official ../Meta-GMVAE         # and the official code, same run
    python -m benchmarks.bench --cases omniglot_5way --variants auto --steps 3

Cases are built from ``params.yaml`` with ``profiles/paper.yaml`` applied (the paper's
configurations): the Meta-GMVAE training steps of ``metatrain.<model>``, a SimCLR step at the
paper's batch (augmentation included), feature extraction of ``EXTRACT_IMAGES`` images, and
1000 test episodes of Omniglot 5-way 1- and 5-shot at the ``evaluate.omniglot`` settings.
Variants are the ``precision`` / ``channels_last`` settings a user can write: ``auto`` (what
the committed parameters give on this machine), ``bf16``, ``fp32`` (channels-last where
``auto`` uses it: what a CPU without native bf16 runs) and ``fp32_nchw``.

``--official PATH`` imports the official implementation from a checkout of
github.com/db-Lee/Meta-GMVAE (commit 7962392) at PATH -- its ``omniglot/model.py`` and
``omniglot/data.py``, unmodified; nothing of it is copied here -- and times its Omniglot 5-way
and 20-way training steps (``GMVAE.forward``, backward, Adam, as its trainer does) and its
evaluation (``Data.generate_test_episode`` and ``GMVAE.prediction`` on groups of 4 episodes,
as its ``Trainer.eval`` does) with the same inputs, warm-up, step count and process pattern.

Every (case, variant) runs in a fresh process: the median time of the timed steps after
warm-up, and the peak memory (CPU: the process's peak resident set; CUDA: peak allocated).
Inputs are random tensors of the real shapes. Writes ``benchmarks/<device>.json`` (machine: CPU
model and flags or GPU name, torch, threads, commit; every timing; the ratios to the official
code when it was measured) and prints the tables.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from metagmvae.cli.profile import profiled_params
from metagmvae.runtime import command
from metagmvae.runtime.device import cpu_info
from metagmvae.runtime.io import atomic_path, project_root, write_json
from metagmvae.runtime.tracking import git_commit
from metagmvae.schema.params import parse_section

VARIANTS = {  # name -> (precision, channels_last) as written in params.yaml
    "auto": ("auto", "auto"),
    "bf16": ("bf16", "auto"),
    "fp32": ("fp32", "auto"),
    "fp32_nchw": ("fp32", False),
}
OFFICIAL = "official"
OFFICIAL_REPOSITORY = "db-Lee/Meta-GMVAE"  # recorded by name and commit, never by the folder it sits in
EVAL_CASES = {"eval_omniglot_5way_1shot": 1, "eval_omniglot_5way_5shot": 5}
EXTRACT_IMAGES = 6000
OFFICIAL_CASES = ("omniglot_5way", "omniglot_20way", *EVAL_CASES)  # the official code has Omniglot only
TEST_CLASSES, QUERY = 1292, 15  # Omniglot test split: classes of 20 images; queries per class


def train_cases() -> tuple[str, ...]:
    """The ``metatrain`` sections: one training case each."""
    return tuple(profiled_params(project_root() / "params.yaml", "paper", [])["metatrain"])


def cases() -> tuple[str, ...]:
    return (*train_cases(), "simclr", "extract", *EVAL_CASES)


def paper_section(*keys: str):
    """A section of ``params.yaml`` with the paper profile applied: where every case takes its
    settings (e.g. ``paper_section("metatrain", "omniglot_5way")``)."""
    return parse_section(profiled_params(project_root() / "params.yaml", "paper", []), *keys)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device: torch.device, warmup: int, steps: int) -> list[float]:
    """Seconds of each of ``steps`` calls of ``fn`` after ``warmup`` untimed ones."""
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


def _training_batch(model_cfg, batch: int, points: int, device: torch.device) -> torch.Tensor:
    """Random inputs of a training batch ``[B, M, *item]``: binary images or ReLU features."""
    gen = torch.Generator(device=device).manual_seed(0)
    n = batch * points
    if model_cfg.kind == "pixels":
        x = (torch.rand(n, 1, 28, 28, device=device, generator=gen) > 0.8).float()
    else:
        x = torch.relu(torch.randn(n, model_cfg.input_dim, device=device, generator=gen))
    return x.view(batch, points, *x.shape[1:])


def _test_images(device: torch.device) -> torch.Tensor:
    """Random binary test images ``[1292, 20, 1, 28, 28]``."""
    gen = torch.Generator(device=device).manual_seed(0)
    return (torch.rand(TEST_CLASSES, 20, 1, 28, 28, device=device, generator=gen) > 0.8).float()


def bench_train(name: str, rt, warmup: int, steps: int) -> list[float]:
    from metagmvae.methods.meta_gmvae import train_step
    from metagmvae.models import build_model

    cfg = paper_section("metatrain", name)
    torch.manual_seed(0)
    model = rt.prepare(build_model(cfg.model)).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = rt.generator(0)
    x = _training_batch(cfg.model, cfg.batch, cfg.points, rt.device)
    setting = {"way": cfg.way, "samples": cfg.samples, "samples_decoder": cfg.samples_decoder}
    setting |= {"em_iters": cfg.train_em_iters, "fix_pi": cfg.fix_pi, "rt": rt, "generator": gen, "step": 1}
    return _timed(lambda: train_step(model, optimizer, x, **setting), rt.device, warmup, steps)


def bench_simclr(rt, warmup: int, steps: int) -> list[float]:
    from metagmvae.methods import simclr
    from metagmvae.training.loop import update

    cfg = paper_section("pretrain", "mini_imagenet")
    torch.manual_seed(0)
    model = rt.prepare(simclr.SimCLR(cfg.hidden, blocks=cfg.blocks, image_size=cfg.image_size)).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    gen = rt.generator(0)
    size = (cfg.batch, 3, cfg.image_size, cfg.image_size)
    images = torch.randint(0, 256, size, dtype=torch.uint8, device=rt.device, generator=gen)

    def step():
        views = [rt.images(simclr.augment(images, gen)) for _ in range(2)]
        with rt.autocast():
            p1, p2 = model(*views)
        loss = simclr.nt_xent(p1, p2, cfg.temperature)
        update(1, loss, {"loss": loss}, optimizer, model.parameters())  # as the training loop does

    return _timed(step, rt.device, warmup, steps)


def bench_extract(rt, warmup: int, steps: int) -> list[float]:
    """Seconds to encode ``EXTRACT_IMAGES`` images with the SimCLR encoder (the extract stage)."""
    from metagmvae.methods import simclr
    from metagmvae.pipeline.extract import encode_images

    cfg, simclr_cfg = paper_section("extract", "mini_imagenet"), paper_section("pretrain", "mini_imagenet")
    torch.manual_seed(0)
    model = simclr.SimCLR(simclr_cfg.hidden, blocks=simclr_cfg.blocks, image_size=simclr_cfg.image_size)
    encoder = rt.prepare(model.encoder).eval()
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (EXTRACT_IMAGES, 3, 84, 84), dtype=torch.uint8, generator=gen)
    setting = {"batch": cfg.batch, "image_size": simclr_cfg.image_size, "desc": None}
    return _timed(lambda: encode_images(encoder, images, rt, **setting), rt.device, warmup, steps)


def bench_eval(name: str, rt) -> list[float]:
    """Seconds to evaluate 1000 5-way episodes (15 queries) of random test images, encoding included."""
    from metagmvae.data.episodes import sample_episodes
    from metagmvae.models import build_model
    from metagmvae.pipeline.evaluate import test_accuracies

    cfg, model_cfg = paper_section("evaluate", "omniglot"), paper_section("metatrain", "omniglot_5way").model
    torch.manual_seed(0)
    model = rt.prepare(build_model(model_cfg)).eval()
    test = _test_images(rt.device)
    eps = sample_episodes(np.random.default_rng(0), 1000, TEST_CLASSES, 20, 5, EVAL_CASES[name], QUERY)

    def run():
        with rt.autocast():
            tokens = model.encode(test)
        test_accuracies(model, tokens, eps, cfg, rt)

    return _timed(run, rt.device, 0, 1)


@contextlib.contextmanager
def official_modules(checkout: Path):
    """The official ``omniglot/model.py`` and ``omniglot/data.py``, imported from ``checkout``
    (they import their sibling ``module.py`` by its bare name)."""
    folder = Path(checkout).resolve() / "omniglot"
    if not (folder / "model.py").is_file():
        raise SystemExit(f"--official {checkout}: no omniglot/model.py there (a checkout of db-Lee/Meta-GMVAE)")
    sys.path.insert(0, str(folder))
    try:
        import model as official_model

        import data as official_data

        yield official_model, official_data
    finally:
        sys.path.remove(str(folder))


def bench_official(name: str, checkout: Path, device: torch.device, warmup: int, steps: int) -> list[float]:
    """The official code on the case ``name``: its model built with the paper settings of the
    matching ``metatrain`` section (or ``evaluate.omniglot`` for evaluation)."""
    train = paper_section("metatrain", "omniglot_5way" if name in EVAL_CASES else name)
    test = paper_section("evaluate", "omniglot")
    np.random.seed(0)  # the official EM initialisation and episodes draw from numpy's global RNG
    torch.manual_seed(0)
    with official_modules(checkout) as (official_model, official_data):
        model = official_model.GMVAE(
            input_shape=[1, 28, 28],
            unsupervised_em_iters=train.train_em_iters,
            semisupervised_em_iters=test.test_em_iters,
            fix_pi=train.fix_pi,
            hidden_size=train.model.hidden,
            component_size=train.way,
            latent_size=train.model.latent,
            train_mc_sample_size=train.samples,
            test_mc_sample_size=test.test_samples,
        ).to(device)
        if name not in EVAL_CASES:
            optimizer = torch.optim.Adam(model.parameters(), lr=train.lr, weight_decay=train.weight_decay)
            x = _training_batch(train.model, train.batch, train.points, device)

            def step():  # as official omniglot/trainer.py: Trainer.train
                model.train()
                model.zero_grad()
                rec, kl = model(x)
                (rec + kl).backward()
                optimizer.step()

            return _timed(step, device, warmup, steps)

        data = official_data.Data.__new__(official_data.Data)  # its episode sampler on our random images
        data.N, data.K_mte = 20, TEST_CLASSES
        data.x_mte = _test_images(torch.device("cpu")).numpy()
        shot, group = EVAL_CASES[name], train.batch  # the official trainer evaluates B = 4 episodes a call

        @torch.no_grad()
        def run():  # as official omniglot/trainer.py: Trainer.eval
            model.eval()
            accuracies = []
            while len(accuracies) < 1000:
                x_tr, y_tr, x_te, y_te = data.generate_test_episode(5, shot, QUERY, group, test=True)
                x_tr, x_te = (torch.from_numpy(a).to(device).float() for a in (x_tr, x_te))
                y_tr, y_te = (torch.from_numpy(a).to(device) for a in (y_tr, y_te))
                pred = model.prediction(x_tr, y_tr, x_te)
                accuracies.extend(torch.eq(pred, y_te).float().mean(-1).cpu().tolist())

        return _timed(run, device, 0, 1)


def run_case(name: str, variant: str, device: str, warmup: int, steps: int, official: Path | None) -> dict:
    """Run one case in this process; returns its timings, peak memory and the resolved runtime."""
    from metagmvae.data.stores import STORES
    from metagmvae.runtime.device import make_runtime, resolve_device

    result = {"case": name, "variant": variant}
    if variant == OFFICIAL:
        times = bench_official(name, official, resolve_device(device), warmup, steps)
        dev = resolve_device(device)
    else:
        precision, channels_last = VARIANTS[variant]
        dataset = paper_section("metatrain", name).dataset if name in train_cases() else "omniglot"
        rt = make_runtime(device, precision, channels_last, convolutional=STORES[dataset].images)
        result |= {"precision": rt.precision, "channels_last": rt.channels_last}
        if name in train_cases():
            times = bench_train(name, rt, warmup, steps)
        elif name == "simclr":
            times = bench_simclr(rt, warmup, steps)
        elif name == "extract":
            times = bench_extract(rt, warmup, steps)
        else:
            times = bench_eval(name, rt)
        dev = rt.device
    if dev.type == "cuda":
        peak = torch.cuda.max_memory_allocated(dev) / 2**30
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    return result | {
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


def write_block(page: Path, marker: str, script: str, record: str, body: str) -> None:
    """Replace the block between ``<!-- marker:begin -->`` and ``<!-- marker:end -->`` of ``page``
    with ``body``, noting the ``script`` and ``record`` it is generated from (atomically)."""
    begin, end = f"<!-- {marker}:begin -->", f"<!-- {marker}:end -->"
    block = f"{begin}\n<!-- generated by {script} from {record} -->\n{body}\n{end}"
    text = page.read_text()
    if begin not in text:
        raise ValueError(f"{page}: no {begin} ... {end} block")
    with atomic_path(page) as tmp:
        tmp.write_text(re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: block, text, flags=re.S))


def trained_on() -> str:
    """The machine a run trains on, in one line: the GPU, or the CPU model and whether it has the
    bf16 and AMX units that pick other kernels (and so other float rounding) than AVX2/AVX-512."""
    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    model, flags = cpu_info()
    units = [f for f in flags if f.startswith(("amx", "avx512_bf16"))]
    return model + (f" ({', '.join(units)})" if units else " (no bf16, no AMX)")


UNITS = {"simclr": "s/step", "extract": f"s/{EXTRACT_IMAGES} img", **dict.fromkeys(EVAL_CASES, "s/1000 ep")}


def with_ratios(results: list[dict]) -> list[dict]:
    """Each result with ``x_official_time`` / ``x_official_mem``: its ratio to the official code's
    result for the same case in the same run (when there is one)."""
    official = {r["case"]: r for r in results if r["variant"] == OFFICIAL}
    out = []
    for r in results:
        ref = official.get(r["case"])
        if ref and r["variant"] != OFFICIAL:
            r = r | {
                "x_official_time": round(r["seconds"] / ref["seconds"], 3),
                "x_official_mem": round(r["peak_gib"] / ref["peak_gib"], 3),
            }
        out.append(r)
    return out


def table(results: list[dict]) -> str:
    """One line per result: time, peak memory and the ratios to the official code."""
    lines = [
        f"{'case':<26} {'variant':<9} {'runs as':<14} {'time':>9} {'unit':<14} {'peak GiB':>8} "
        f"{'x official time':>15} {'x official mem':>14}"
    ]
    for r in results:
        runs_as = "-" if r["variant"] == OFFICIAL else f"{r['precision']}{'+CL' if r['channels_last'] else ''}"
        unit = UNITS.get(r["case"], "s/step")
        lines.append(
            f"{r['case']:<26} {r['variant']:<9} {runs_as:<14} {r['seconds']:>9.3f} {unit:<14} "
            f"{r['peak_gib']:>8.2f} {r.get('x_official_time', '-'):>15} {r.get('x_official_mem', '-'):>14}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    known = cases()
    parser = command.parser(__doc__, prog or "python -m benchmarks.bench")
    parser.add_argument("--cases", default=",".join(known), help=f"comma-separated subset of {list(known)}")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated subset of {list(VARIANTS)}")
    parser.add_argument("--official", type=Path, help="a checkout of db-Lee/Meta-GMVAE to time beside ours")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="where to time the steps")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps before the timed ones (default 1)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per case and variant; the median is kept")
    parser.add_argument("--out", type=Path, help="JSON file (default: benchmarks/<device>.json)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.official and not (args.official / "omniglot" / "model.py").exists():
        parser.error(f"--official {args.official}: no omniglot/model.py there (a checkout of {OFFICIAL_REPOSITORY})")
    chosen, variants = args.cases.split(","), args.variants.split(",")
    for case in chosen:
        if case not in known:
            parser.error(f"unknown case {case!r}; expected one of {list(known)}")
    for variant in variants:
        if variant not in (*VARIANTS, OFFICIAL):
            parser.error(f"unknown variant {variant!r}; expected one of {list(VARIANTS)}")
    if args.official:
        variants = [*dict.fromkeys([*variants, OFFICIAL])]

    if args.child:  # one case, one variant: report on stdout for the parent
        result = run_case(chosen[0], variants[0], args.device, args.warmup, args.steps, args.official)
        print("BENCH " + json.dumps(result))
        return

    from metagmvae.runtime.device import resolve_device

    device = resolve_device(args.device)
    results = []
    for case in chosen:
        for variant in variants:
            if variant == OFFICIAL and case not in OFFICIAL_CASES:
                continue
            cmd = [sys.executable, "-m", "benchmarks.bench", "--child", "--cases", case, "--variants", variant]
            cmd += ["--device", args.device, "--warmup", str(args.warmup), "--steps", str(args.steps)]
            if variant == OFFICIAL:
                cmd += ["--official", str(args.official.resolve())]
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=project_root())
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH ")]
            if proc.returncode != 0 or not lines:
                raise RuntimeError(f"benchmark {case} ({variant}) failed:\n{proc.stderr[-3000:]}")
            results.append(json.loads(lines[-1][len("BENCH ") :]))
            print(table(results[-1:]).splitlines()[-1], flush=True)
    results = with_ratios(results)
    report = {
        "machine": machine(device),
        "settings": {"warmup": args.warmup, "steps": args.steps, "cases_from": "params.yaml + profiles/paper.yaml"},
        "official": {"repository": OFFICIAL_REPOSITORY, "commit": git_commit(args.official)} if args.official else None,
        "results": results,
    }
    out = args.out or project_root() / "benchmarks" / f"{device.type}.json"
    write_json(out, report)
    print()
    print(table(results))
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    sys.exit(main())
