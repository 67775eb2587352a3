"""Trajectory parity: the official Meta-GMVAE and ours trained side by side on the same data, and
scored on the same 1000 test episodes every ``--every`` steps.

    python -m benchmarks.official_dynamics train --side official --seed 0 --config b1m200s4 --steps 6000 \\
        --official ../official --runs /tmp/parity
    python -m benchmarks.official_dynamics train --side ours --seed 0 --config b1m200s4 --steps 6000 --runs /tmp/parity
    python -m benchmarks.official_dynamics score --runs /tmp/parity --official ../official
    python -m benchmarks.official_dynamics report --runs /tmp/parity      # -> benchmarks/official_dynamics.{json,png}

**Official side**: ``omniglot/model.py`` of a checkout of db-Lee/Meta-GMVAE @ 7962392 (``--official``,
never copied here), imported unmodified, with its own initialisation, EM, loss and test-time
``prediction``; driven by the five lines of its ``trainer.py`` step (zero_grad, forward,
rec + kl, backward, Adam(lr, weight_decay)). Its random draws come from the process-wide torch and
numpy RNGs, seeded with ``--seed``. Its decoder runs in channels-last memory format (the same
numbers up to float rounding, 15% faster on the CPU).
**Our side**: the project's own training code (:func:`metagmvae.methods.meta_gmvae.start_training`
and :func:`metagmvae.methods.meta_gmvae.fit_model`, in :func:`metagmvae.training.loop.fit`) on
``metatrain.omniglot_5way`` of params.yaml with the configuration's B, M, S = S_rec, a constant rate and fp32.

Both draw their batches from the same unlabeled pool of our store, uniformly with replacement
(:func:`metagmvae.data.episodes.sample_training_batch`, seeded with ``--seed``): the official
data loader's distribution. Training saves every ``--every`` steps a snapshot of the weights and
a resume state (kill it and run it again: it continues; ask for more ``--steps`` later and it
extends the run). ``score`` scores every unscored snapshot on the 5-way 1-shot test episodes of
``data/omniglot/episodes.h5`` with our evaluation (``evaluate.omniglot``: S_test 32, T_s 10) and,
for official snapshots, also with the official ``prediction`` (its weights, its code), so that
training and evaluation differences are told apart. ``report`` merges the runs into the committed
record (a run folder replaces that run's committed scores whole; runs kept only in the record stay,
so seeds trained in different sessions add up), with the machine each run trained on, a Welch test
of the two sides' seed means at every snapshot, and a plot.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from benchmarks.bench import machine, official_modules, trained_on, write_block
from metagmvae.analysis.stats import paired_difference
from metagmvae.cli.profile import profiled_params
from metagmvae.data.episodes import read_episodes, sample_training_batch
from metagmvae.data.stores import load_split
from metagmvae.evaluation.accuracy import episode_accuracies, summarize
from metagmvae.methods.meta_gmvae import fit_model, start_training
from metagmvae.models import build_model
from metagmvae.models.official import to_our_state_dict
from metagmvae.pipeline.evaluate import test_accuracies
from metagmvae.runtime import checkpoint
from metagmvae.runtime.io import project_root, read_json, write_json
from metagmvae.runtime.tracking import Run
from metagmvae.schema.params import parse_section
from metagmvae.training.loop import STATE_FORMAT
from metagmvae.training.resume import GlobalTorchRNG, ResumeFolder

ROOT = project_root()
CONFIGS = {  # name -> B episodes per step, M points per episode, S = S_rec samples per point
    "b1m200s4": {"batch": 1, "points": 200, "samples": 4},
    "b4m200s4": {"batch": 4, "points": 200, "samples": 4},  # the official 5-way reference, at S 4
}
WAY, SHOT, LR, WEIGHT_DECAY, EM_ITERS = 5, 1, 1e-3, 1e-6, 10
SIDES = ("official", "ours")
STUDY = ROOT / "docs" / "studies" / "2026-12-07-trajectory-parity.md"
RECORD = ROOT / "benchmarks" / "official_dynamics"  # .json and .png
MARKER = "official-dynamics"


def our_config(config: str, seed: int, steps: int):
    """``metatrain.omniglot_5way`` of params.yaml at ``config`` (S_rec = S), a constant rate, fp32."""
    c = CONFIGS[config]
    keys = c | {"samples_decoder": c["samples"], "steps": steps, "seed": seed, "lr": f"{LR:f}"}
    keys |= {"weight_decay": f"{WEIGHT_DECAY:f}", "lr_schedule": "constant", "precision": "fp32"}
    keys |= {} if torch.cuda.is_available() else {"device": "cpu"}
    sets = [f"metatrain.omniglot_5way.{k}={v}" for k, v in keys.items()]
    return parse_section(profiled_params(ROOT / "params.yaml", "quick", sets), "metatrain", "omniglot_5way")


def official_model(module, samples: int) -> torch.nn.Module:
    """The official GMVAE at the paper's Omniglot settings (K = 5, D = 64, T_u = T_s = 10)."""
    return module.GMVAE(
        input_shape=[1, 28, 28],
        unsupervised_em_iters=EM_ITERS,
        semisupervised_em_iters=EM_ITERS,
        fix_pi=False,
        hidden_size=64,
        component_size=WAY,
        latent_size=64,
        train_mc_sample_size=samples,
        test_mc_sample_size=32,
    )


class NumpyGlobalRNG:
    """numpy's process-wide RNG (the official EM start) as a stateful object for the resume state."""

    def state_dict(self) -> dict:
        kind, keys, pos, has_gauss, cached = np.random.get_state()
        return {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": pos, "gauss": (has_gauss, cached)}

    def load_state_dict(self, state: dict) -> None:
        keys = state["keys"].numpy().astype(np.uint32)
        np.random.set_state(("MT19937", keys, state["pos"], *state["gauss"]))


def run_dir(runs: Path, config: str, side: str, seed: int) -> Path:
    return runs / config / f"{side}-seed{seed}"


def upgrade_resume_state(resume: ResumeFolder) -> None:
    """A resume state of our side written before the training loop kept its own bookkeeping (model,
    optimizer, generator, torch RNG and step, saved at a snapshot, where nothing is left unlogged)
    gets the loop's empty log sums and history, so the run continues as it would have."""
    state = resume.peek()
    if state is None or "unlogged" in state:
        return
    state = {key: value for key, value in state.items() if key != "format"}
    empty = {"unlogged": {"sums": {}, "count": 0}, "minima": {}, "elapsed": 0.0}
    history = {"step": [], "terms": {}, "val_step": [], "val": {}}
    resume.save({}, **state, **empty, loop=STATE_FORMAT, history=history)


def train(args) -> None:
    """Train one side to ``--steps``, a snapshot and the resume state every ``--every`` steps."""
    folder = run_dir(args.runs, args.config, args.side, args.seed)
    folder.mkdir(parents=True, exist_ok=True)
    note_machine(folder)
    resume = ResumeFolder(folder, "resume")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    pool = torch.from_numpy(load_split("omniglot", "train", args.store)).flatten(0, 1).to(device)
    c = CONFIGS[args.config]

    def snapshot(step: int, model) -> None:
        checkpoint.save(folder / f"step_{step:05d}.pt", {"model": model.state_dict(), "step": step})

    if args.side == "ours":
        cfg = our_config(args.config, args.seed, args.steps)
        rt = cfg.runtime(convolutional=True)
        cfg = cfg.as_run_with(rt)
        model, optimizer, gen = start_training(cfg, rt)
        upgrade_resume_state(resume)

        def on_step(step: int, _seconds: float, _model) -> None:
            if step % args.every == 0:
                snapshot(step, model)
                print(f"{folder.name}: step {step}", flush=True)

        fit_model(
            cfg,
            rt,
            pool,
            model,
            optimizer,
            gen,
            name=folder.name,
            log_every=args.every,
            resume=resume,
            checkpoint_every=args.every,
            run=Run(None),
            progress=False,
            on_step=on_step,
        )
        return
    with official_modules(args.official) as (module, _):
        torch.manual_seed(args.seed)
        np.random.seed(args.seed)
        model = official_model(module, c["samples"]).to(device)
        model.decoder.to(memory_format=torch.channels_last)
        optimizer = torch.optim.Adam(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
        gen = torch.Generator(device).manual_seed(args.seed)
        stateful = {"model": model, "optimizer": optimizer, "generator": gen, "torch_rng": GlobalTorchRNG()}
        stateful["numpy_rng"] = NumpyGlobalRNG()
        done = (resume.restore(device, stateful) or {}).get("step", 0)
        model.train()
        for step in range(done + 1, args.steps + 1):
            x = sample_training_batch(pool, c["batch"], c["points"], gen)
            model.zero_grad()  # official omniglot/trainer.py, Trainer.train
            rec, kl = model(x)
            loss = rec + kl
            if not math.isfinite(loss.item()):
                raise SystemExit(f"{folder.name}: the official loss is not finite at step {step}")
            loss.backward()
            optimizer.step()
            if step % args.every == 0:
                snapshot(step, model)
                resume.save(stateful, step=step)
                print(f"{folder.name}: step {step}", flush=True)


def score(args) -> None:
    """Score every snapshot not yet in its run's ``scores.json`` (written after each one)."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    params = profiled_params(ROOT / "params.yaml", "quick", [])
    ecfg = parse_section(params, "evaluate", "omniglot")
    rt = ecfg.runtime(convolutional=True)
    test = torch.from_numpy(load_split("omniglot", "test", args.store)).to(device)
    episodes = read_episodes(args.episodes, "test", WAY, SHOT)
    spec = parse_section(params, "metatrain", "omniglot_5way").model
    ours = rt.prepare(build_model(spec)).eval()

    def our_evaluation(state) -> np.ndarray:
        ours.load_state_dict(state, strict=True)
        with rt.autocast():
            tokens = ours.encode(test)
        return test_accuracies(ours, tokens, episodes, ecfg, rt)

    with official_modules(args.official) as (module, _):
        for folder in sorted(args.runs.glob("*/*-seed*")):
            side, seed = folder.name.split("-seed")
            if args.side not in (None, side) or args.config not in (None, folder.parent.name):
                continue
            if args.seed not in (None, int(seed)):
                continue
            scores_path = folder / "scores.json"
            scores = read_json(scores_path) if scores_path.exists() else {}
            for snap in sorted(folder.glob("step_*.pt")):
                key = str(int(snap.stem.split("_")[1]))
                if key in scores:
                    continue
                state = checkpoint.load(snap, device)["model"]
                entry = {}
                if side == "official":
                    entry["our_evaluation"] = summarize(our_evaluation(to_our_state_dict(state)))
                    entry["official_prediction"] = summarize(official_prediction(module, state, test, episodes))
                else:
                    entry["our_evaluation"] = summarize(our_evaluation(state))
                scores[key] = entry
                write_json(scores_path, scores)
                print(f"{folder.parent.name}/{folder.name} step {key}: {json.dumps(entry)}", flush=True)


def official_prediction(module, state, test: torch.Tensor, episodes) -> np.ndarray:
    """Per-episode accuracy of the official ``GMVAE.prediction`` (eval mode, no gradient, its
    random draws from the global torch RNG seeded with 0), 50 episodes per call."""
    model = official_model(module, samples=4).to(test.device)
    model.load_state_dict(state, strict=True)
    model.eval()
    torch.manual_seed(0)

    def predict(support, y_support, query, way):
        with torch.no_grad():
            return model.prediction(support.contiguous(), y_support.contiguous(), query.contiguous())

    return episode_accuracies(predict, test, episodes, 50)


def welch(a: list[float], b: list[float]) -> dict:
    """Mean difference ``a - b`` with its 95% Welch interval and p-value (n >= 2 on each side)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    dof = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1)) if se > 0 else 1.0
    diff = float(a.mean() - b.mean())
    half = float(stats.t.ppf(0.975, dof) * se)
    p = float(2 * stats.t.sf(abs(diff) / se, dof)) if se > 0 else 1.0
    return {"difference": round(diff, 2), "ci95": [round(diff - half, 2), round(diff + half, 2)], "p": round(p, 3)}


def seed_pairs(runs: dict[str, dict[int, dict]], step: int) -> list[tuple[float, float]]:
    """``(official, ours)`` accuracy at ``step`` of every seed scored there on both sides."""
    pairs = []
    for name, scores in runs.items():
        twin = runs.get(name.replace("official-", "ours-", 1), {})
        if name.startswith("official-") and step in scores and step in twin:
            pairs.append((scores[step]["official_prediction"]["accuracy"], twin[step]["our_evaluation"]["accuracy"]))
    return pairs


def by_seed(pairs: list[tuple[float, float]]) -> dict:
    """Mean of ours - official over seeds with its 95% paired-t interval. Both sides of a seed draw
    the same batches in the same order (their initial weights differ), so a seed's two runs may
    move together; pairing them removes what they share."""
    official, ours = (np.array(side) / 100 for side in zip(*pairs))
    d = paired_difference(official, ours)
    return {"seeds": len(pairs), "difference": round(d.mean, 2), "ci95": [round(d.low, 2), round(d.high, 2)]}


def note_machine(folder: Path) -> None:
    """Add this machine to the run's ``run.json`` (a run continued elsewhere lists both)."""
    path, here = folder / "run.json", trained_on()
    machines = read_json(path)["trained_on"] if path.exists() else []
    if here not in machines:
        write_json(path, {"trained_on": [*machines, here]})


def committed(out: Path) -> dict:
    """The record ``out``.json as committed (no configurations before the first report)."""
    path = out.with_suffix(".json")
    return read_json(path) if path.exists() else {"configs": {}}


def collected_runs(args) -> dict:
    """Per configuration, every run's scores by step and the machines it trained on: the committed
    record's runs, each replaced whole by its folder under ``--runs`` where there is one (a run
    trained again is another trajectory, so its old scores are dropped with it)."""
    old = committed(args.out)
    configs = {}
    for name, c in old["configs"].items():
        legacy = [f"{old['machine'].get('cpu')} (no bf16, no AMX)"]  # the record before runs named their machine
        machines = c.get("trained_on", {})
        configs[name] = {
            run: {"scores": {int(s): e for s, e in scores.items()}, "trained_on": machines.get(run, legacy)}
            for run, scores in c["runs"].items()
        }
    for config_dir in sorted(p for p in args.runs.iterdir() if p.is_dir() and p.name in CONFIGS):
        for folder in sorted(config_dir.glob("*-seed*")):
            if not (folder / "scores.json").exists():
                continue
            scores = {int(step): entry for step, entry in read_json(folder / "scores.json").items()}
            machines = read_json(folder / "run.json")["trained_on"] if (folder / "run.json").exists() else []
            configs.setdefault(config_dir.name, {})[folder.name] = {"scores": scores, "trained_on": machines}
    return configs


def report(args) -> None:
    """Merge every scored run under ``--runs`` into the record ``--out``.json, and draw its .png."""
    record = {
        "kind": "official_dynamics",
        "machine": machine(torch.device("cpu")),
        "official": "db-Lee/Meta-GMVAE @ 7962392 (omniglot/model.py, imported from a checkout)",
        "episodes": f"test, {WAY}-way {SHOT}-shot, 1000 fixed episodes (data/omniglot/episodes.h5)",
        "training": {"lr": LR, "weight_decay": WEIGHT_DECAY, "schedule": "constant", "precision": "fp32", "way": WAY},
        "configs": {},
    }
    for config_name, collected in sorted(collected_runs(args).items()):
        runs = {name: collected[name]["scores"] for name in sorted(collected)}
        steps = sorted({s for r in runs.values() for s in r})
        curves = {}
        for step in steps:
            row = {}
            for label, side, key in (
                ("official", "official", "official_prediction"),
                ("official_weights_our_evaluation", "official", "our_evaluation"),
                ("ours", "ours", "our_evaluation"),
            ):
                accs = [r[step][key]["accuracy"] for n, r in runs.items() if n.startswith(side) and step in r]
                if accs:
                    row[label] = {"seeds": len(accs), "mean": round(float(np.mean(accs)), 2), "accuracies": accs}
                    if len(accs) > 1:
                        row[label]["sd"] = round(float(np.std(accs, ddof=1)), 2)
            if row.get("ours", {}).get("seeds", 0) > 1 and row.get("official", {}).get("seeds", 0) > 1:
                row["ours_minus_official"] = welch(row["ours"]["accuracies"], row["official"]["accuracies"])
            pairs = seed_pairs(runs, step)
            if len(pairs) > 1:
                row["paired_by_seed"] = by_seed(pairs)
            curves[step] = row
        record["configs"][config_name] = CONFIGS[config_name] | {
            "runs": {n: {str(s): e for s, e in sorted(r.items())} for n, r in runs.items()},
            "trained_on": {n: collected[n]["trained_on"] for n in runs},
            "curves": {str(s): row for s, row in curves.items()},
        }
    write_json(args.out.with_suffix(".json"), record)
    plot(record, args.out.with_suffix(".png"))
    body = markdown(read_json(args.out.with_suffix(".json")))
    write_block(args.study, MARKER, "benchmarks/official_dynamics.py", "benchmarks/official_dynamics.json", body)
    print(f"written to {args.out.with_suffix('.json')} and .png")


def markdown(record: dict) -> str:
    """Per configuration, the seed mean +- sd of each side at every snapshot, and ours - official."""

    def difference(d: dict | None) -> str:
        return "–" if d is None else f"{d['difference']:+.2f} [{d['ci95'][0]:+.2f}, {d['ci95'][1]:+.2f}]"

    def cell(row: dict, label: str) -> str:
        r = row.get(label)
        if r is None:
            return "–"
        return f"{r['mean']:.2f}" + (f" ± {r['sd']:.2f}" if "sd" in r else "") + f" ({r['seeds']})"

    lines = []
    for name, c in sorted(record["configs"].items()):
        lines += [
            f"**{name}** (B {c['batch']} × M {c['points']} × S {c['samples']}): 5-way 1-shot test accuracy (%),"
            " mean ± sd over seeds (how many)",
            "",
            "| step | official code | official weights, our evaluation | ours | ours − official (Welch 95% CI)"
            " | ours − official, paired by seed (95% CI) |",
            "|---|---|---|---|---|---|",
        ]
        for step, row in sorted(c["curves"].items(), key=lambda kv: int(kv[0])):
            cells = [cell(row, k) for k in ("official", "official_weights_our_evaluation", "ours")]
            cells += [difference(row.get("ours_minus_official")), difference(row.get("paired_by_seed"))]
            lines.append(f"| {step} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines).rstrip()


def plot(record: dict, path: Path) -> None:
    """One panel per configuration: every run's test accuracy by step (thin) and each side's seed
    mean (thick); official weights scored by our evaluation dashed."""
    from metagmvae.analysis.plots import plt, save_figure

    configs = record["configs"]
    fig, axes = plt.subplots(1, len(configs), figsize=(6.5 * len(configs), 4.2), squeeze=False)
    styles = {
        "official": ("tab:orange", "-", "official code"),
        "official_weights_our_evaluation": ("tab:orange", ":", "official weights, our evaluation"),
        "ours": ("tab:blue", "-", "ours"),
    }
    for ax, (name, c) in zip(axes[0], configs.items()):
        for run, points in c["runs"].items():
            side = run.split("-")[0]
            key = "official_prediction" if side == "official" else "our_evaluation"
            steps = sorted(points, key=int)
            ys = [points[s][key]["accuracy"] for s in steps]
            ax.plot([int(s) for s in steps], ys, color=styles[side][0], alpha=0.3, lw=0.8)
        for label, (color, ls, text) in styles.items():
            pts = [(int(s), row[label]["mean"]) for s, row in c["curves"].items() if label in row]
            if pts:
                pts.sort()
                counts = sorted({c["curves"][str(s)][label]["seeds"] for s, _ in pts})
                seeds = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]} to {counts[-1]}"
                ax.plot(*zip(*pts), color=color, ls=ls, lw=2, marker="o", ms=3, label=f"{text} (mean of {seeds} seeds)")
        ax.set_title(f"{name}: B {c['batch']} x M {c['points']} x S {c['samples']}, constant lr")
        ax.set_xlabel("training step")
        ax.set_ylabel("5-way 1-shot test accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    save_figure(fig, path)


def todo(args) -> None:
    """Print ``SIDE:SEED`` for each run of ``--config`` that the record lacks or has not scored
    to ``--steps`` (the runs a lane still has to train)."""
    runs = committed(args.out)["configs"].get(args.config, {}).get("runs", {})
    for side in SIDES:
        for seed in args.seeds:
            scored = [int(step) for step in runs.get(f"{side}-seed{seed}", {})]
            if max(scored, default=0) < args.steps:
                print(f"{side}:{seed}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--runs", type=Path, required=True, help="folder of the runs (snapshots, scores)")
    common.add_argument("--store", type=Path, default=ROOT / "data/omniglot/omniglot.h5", help="the Omniglot store")
    common.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1: two runs share 2 cores)")
    official = argparse.ArgumentParser(add_help=False)
    official.add_argument("--official", type=Path, help="checkout of db-Lee/Meta-GMVAE @ 7962392")
    p = sub.add_parser("train", parents=[common, official], help="train one side of one configuration")
    p.add_argument("--side", choices=SIDES, required=True)
    p.add_argument("--config", choices=sorted(CONFIGS), required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--steps", type=int, required=True, help="train to this step (a longer run extends it)")
    p.add_argument("--every", type=int, default=500, help="snapshot and resume state every this many steps")
    p = sub.add_parser("score", parents=[common, official], help="score every unscored snapshot")
    p.add_argument("--episodes", type=Path, default=ROOT / "data/omniglot/episodes.h5")
    p.add_argument("--side", choices=SIDES, help="score this side's runs only (default: both)")
    p.add_argument("--config", choices=sorted(CONFIGS), help="score this configuration's runs only")
    p.add_argument("--seed", type=int, help="score this seed's runs only")
    p = sub.add_parser("report", parents=[common], help="collect the scores into the record and plot")
    p.add_argument("--out", type=Path, default=RECORD, help="the record (.json, .png) the runs are merged into")
    p.add_argument("--study", type=Path, default=STUDY, help="the page whose table is redrawn")
    p = sub.add_parser("todo", help="print SIDE:SEED for each run the record lacks to --steps")
    p.add_argument("--config", choices=sorted(CONFIGS), required=True)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--out", type=Path, default=RECORD)
    args = parser.parse_args(argv)
    if args.command == "todo":
        return todo(args)
    torch.set_num_threads(args.threads)
    if args.command != "report" and (args.command == "score" or args.side == "official") and args.official is None:
        parser.error("--official (a checkout of db-Lee/Meta-GMVAE) is needed here")
    {"train": train, "score": score, "report": report}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
