"""Meta-training loop: sampling, optimisation, validation, checkpoint selection, resume.

State lives in a resume folder keyed by a hash of the training configuration, outside DVC's
outputs (DVC deletes declared outputs before rerunning a stage). A run killed for any reason
and started again with the same configuration continues from its last checkpoint; a changed
configuration starts afresh. The final outputs are assembled in a temporary folder and renamed
into place only when training has finished.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from metagmvae import checkpoint
from metagmvae.data.episodes import EpisodeSet, sample_training_batch
from metagmvae.evaluate import episode_accuracies, summarize
from metagmvae.io import atomic_dir, write_json
from metagmvae.loop import RunningMeans, check_finite, check_gradients, due
from metagmvae.models import MetaGMVAE, build_model
from metagmvae.models.gmvae import Losses
from metagmvae.progress import progress as progress_bar
from metagmvae.runtime import Runtime
from metagmvae.schedule import learning_rate, set_learning_rate
from metagmvae.tracking import Run


@dataclass(frozen=True)
class TrainConfig:
    """One model's ``metatrain`` section (see params.yaml for meanings and units)."""

    dataset: str
    model: dict[str, Any]
    way: int  # K mixture components, and the validation way
    batch: int  # B episodes per step
    points: int  # M points per training episode
    samples: int  # S Monte-Carlo samples per point (training: EM prior and KL)
    samples_decoder: int  # S_rec <= S of each point's samples through the decoder (reconstruction)
    train_em_iters: int  # T_u
    fix_pi: bool
    lr: float
    lr_schedule: str  # constant | cosine (one half-cosine to 0 at the last step)
    weight_decay: float
    steps: int
    val_every: int
    val_shots: list[int]
    val_samples: int  # S at validation
    val_em_iters: int  # T_s at validation
    episodes_per_call: int
    checkpoint_every: int
    log_every: int
    seed: int
    device: str
    precision: str  # auto | fp32 | bf16 (resolved by metagmvae.runtime.make_runtime)
    channels_last: bool | str  # auto | true | false

    def fingerprint(self) -> str:
        """Short hash of the whole configuration (names the resume folder)."""
        blob = json.dumps(asdict(self), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


@dataclass
class History:
    """Training curves: per-log-interval means of the loss terms and per-validation accuracies."""

    step: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    rec: list[float] = field(default_factory=list)
    kl: list[float] = field(default_factory=list)
    val_step: list[int] = field(default_factory=list)
    val: dict[str, list[float]] = field(default_factory=dict)  # "1shot" -> accuracies (%)


def train_step(
    model: MetaGMVAE,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    *,
    way: int,
    samples: int,
    samples_decoder: int,
    em_iters: int,
    fix_pi: bool,
    rt: Runtime,
    generator: torch.Generator,
    step: int,
) -> Losses:
    """One optimisation step on unlabeled episodes ``x`` ``[B, M, *item]``: the loss
    (:meth:`MetaGMVAE.loss` with ``way`` components, S = ``samples``, S_rec =
    ``samples_decoder``, T_u = ``em_iters``) under the runtime's autocast, backward, Adam. Stops
    with :class:`metagmvae.loop.NonFiniteLossError` (naming ``step`` and the term) before a NaN
    or Inf reaches the weights."""
    with rt.autocast():
        losses = model.loss(
            x,
            components=way,
            samples=samples,
            samples_decoder=samples_decoder,
            em_iters=em_iters,
            fix_pi=fix_pi,
            generator=generator,
        )
    check_finite(step, {"loss": losses.loss, "rec": losses.rec, "kl": losses.kl})
    optimizer.zero_grad(set_to_none=True)
    losses.loss.backward()
    check_gradients(step, model.parameters())
    optimizer.step()
    return losses


def validate(
    model: MetaGMVAE,
    cfg: TrainConfig,
    rt: Runtime,
    val_data: torch.Tensor,
    val_episodes: dict[int, EpisodeSet],
    seed: int,
) -> dict[int, float]:
    """Mean validation accuracy (%) per shot, on the fixed validation episodes."""
    model.eval()
    gen = rt.generator(seed)
    with rt.autocast():
        tokens = model.encode(val_data)

    def predict(support, y_support, query, way):
        with rt.autocast():
            return model.predict(
                support, y_support, query, way=way, samples=cfg.val_samples, em_iters=cfg.val_em_iters, generator=gen
            )

    out = {
        shot: summarize(episode_accuracies(predict, tokens, eps, cfg.episodes_per_call))["accuracy"]
        for shot, eps in val_episodes.items()
    }
    model.train()
    return out


def _rng_state(gen: torch.Generator) -> dict[str, torch.Tensor]:
    return {"generator": gen.get_state(), "torch": torch.get_rng_state()}


def start_training(cfg: TrainConfig, rt: Runtime) -> tuple[MetaGMVAE, torch.optim.Optimizer, torch.Generator]:
    """The model, its Adam optimizer and the batch-sampling generator at step 0, seeded by
    ``cfg.seed``."""
    torch.manual_seed(cfg.seed)
    model = rt.prepare(build_model(cfg.model))
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    return model, optimizer, rt.generator(cfg.seed)


def training_steps(
    cfg: TrainConfig,
    rt: Runtime,
    model: MetaGMVAE,
    optimizer: torch.optim.Optimizer,
    pool: torch.Tensor,
    gen: torch.Generator,
    done: int = 0,
) -> Iterator[tuple[int, Losses, float]]:
    """Run steps ``done + 1`` to ``cfg.steps`` (1-based): the step's learning rate, a batch of
    ``cfg.batch`` episodes of ``cfg.points`` inputs drawn from ``pool`` ``[P, *item]``, then
    :func:`train_step`. Yields ``(step, losses, seconds the step took)`` after each one; the
    caller may validate or save between steps (and must leave the model in train mode)."""
    model.train()
    for step in range(done + 1, cfg.steps + 1):
        tick = time.perf_counter()
        set_learning_rate(optimizer, learning_rate(step - 1, cfg.steps, 0, cfg.lr, cfg.lr_schedule))
        x = sample_training_batch(pool, cfg.batch, cfg.points, gen)
        losses = train_step(
            model,
            optimizer,
            x,
            way=cfg.way,
            samples=cfg.samples,
            samples_decoder=cfg.samples_decoder,
            em_iters=cfg.train_em_iters,
            fix_pi=cfg.fix_pi,
            rt=rt,
            generator=gen,
            step=step,
        )
        yield step, losses, time.perf_counter() - tick


def train(
    cfg: TrainConfig,
    rt: Runtime,
    pool: torch.Tensor,
    val_data: torch.Tensor,
    val_episodes: dict[int, EpisodeSet],
    out_dir: Path,
    resume_root: Path,
    run: Run,
    on_finish: Callable[[MetaGMVAE, dict], None] | None = None,
    progress: bool = True,
    budget_seconds: float | None = None,
) -> dict[str, Any] | None:
    """Meta-train one model and write ``out_dir`` (``best_<s>shot.pt`` per validation shot,
    ``history.json``, ``summary.json``; byte-identical for identical runs on CPU).

    Returns the summary plus the wall-clock ``train_seconds`` and ``seconds_per_step``; or
    ``None`` when ``budget_seconds`` of wall time ran out first: the state is then saved in the
    resume folder and the next call continues from it (see :func:`resume_dir`).

    pool: unlabeled training inputs ``[P, *item]`` on ``rt.device``.
    val_data: class-structured validation inputs ``[C, n, *item]`` on ``rt.device``.
    on_finish: called with the best model of the first validation shot and the history
        (as a dict) before the outputs are moved into place (figures).
    """
    call_start = time.perf_counter()
    resume_dir = resume_folder(cfg, out_dir, resume_root)
    resume_dir.mkdir(parents=True, exist_ok=True)
    state_path = resume_dir / "state.pt"

    model, optimizer, gen = start_training(cfg, rt)
    history, best, done, elapsed = History(), {s: -math.inf for s in cfg.val_shots}, 0, 0.0
    unlogged = RunningMeans()  # loss terms since the last log line

    if state_path.exists():
        state = checkpoint.load(state_path, rt.device)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        gen.set_state(state["rng"]["generator"].cpu())
        torch.set_rng_state(state["rng"]["torch"].cpu())
        history = History(**state["history"])
        best = {int(k): v for k, v in state["best"].items()}
        done, elapsed = state["step"], state["elapsed"]
        unlogged.load_state(state["unlogged"])
        print(f"resuming {out_dir.name} from step {done} ({state_path})", flush=True)

    def save_state() -> None:
        checkpoint.save(
            state_path,
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "rng": _rng_state(gen),
                "history": asdict(history),
                "best": {str(k): v for k, v in best.items()},
                "step": step,
                "elapsed": elapsed,
                "unlogged": unlogged.state(),  # checkpoints need not fall on log steps
                "config": asdict(cfg),
            },
        )

    bar = progress_bar(
        total=cfg.steps, initial=done, desc=f"metatrain {out_dir.name}", disable=not progress, unit="step"
    )
    for step, losses, seconds in training_steps(cfg, rt, model, optimizer, pool, gen, done):
        elapsed += seconds
        unlogged.add(loss=losses.loss, rec=losses.rec, kl=losses.kl)
        bar.update(1)

        if due(step, cfg.log_every, cfg.steps):
            means = unlogged.pop("train")
            history.step.append(step)
            for term in ("loss", "rec", "kl"):
                getattr(history, term).append(means[f"train/{term}"])
            run.log_metrics(means | {"train/seconds": elapsed}, step=step)
            bar.set_postfix({term: f"{means[f'train/{term}']:.2f}" for term in ("loss", "rec", "kl")}, refresh=False)

        if due(step, cfg.val_every, cfg.steps):
            accs = validate(model, cfg, rt, val_data, val_episodes, cfg.seed + step)
            history.val_step.append(step)
            for shot, acc in accs.items():
                history.val.setdefault(f"{shot}shot", []).append(acc)
                if acc > best[shot]:
                    best[shot] = acc
                    checkpoint.save(
                        resume_dir / f"best_{shot}shot.pt",
                        {
                            "model": model.state_dict(),
                            "config": asdict(cfg),
                            "step": step,
                            "val_accuracy": acc,
                        },
                    )
            run.log_metrics({f"val/{s}shot_accuracy": a for s, a in accs.items()}, step=step)
            bar.write(f"step {step}: validation " + ", ".join(f"{s}-shot {a:.2f}%" for s, a in accs.items()))
            save_state()
        elif step % cfg.checkpoint_every == 0:
            save_state()
        if budget_seconds is not None and time.perf_counter() - call_start > budget_seconds and step < cfg.steps:
            save_state()
            bar.close()
            print(f"{out_dir.name}: wall-clock budget of {budget_seconds:.0f} s spent at step {step}", flush=True)
            return None
    bar.close()

    summary = {  # no wall-clock times: identical runs give identical bytes
        "steps": cfg.steps,
        "best_val_accuracy": {f"{s}shot": round(a, 2) for s, a in best.items()},
        "val_shots": cfg.val_shots,
        "fingerprint": cfg.fingerprint(),
    }
    with atomic_dir(out_dir) as tmp:
        for shot in cfg.val_shots:
            shutil.copy2(resume_dir / f"best_{shot}shot.pt", tmp / f"best_{shot}shot.pt")
        write_json(tmp / "history.json", asdict(history))
        write_json(tmp / "summary.json", summary)
        if on_finish is not None:
            best_model, _ = load_model(tmp / f"best_{cfg.val_shots[0]}shot.pt", rt)
            on_finish(best_model, asdict(history))
    shutil.rmtree(resume_dir)
    return summary | {"train_seconds": round(elapsed, 1), "seconds_per_step": round(elapsed / cfg.steps, 4)}


def resume_folder(cfg: TrainConfig, out_dir: Path, resume_root: Path) -> Path:
    """Where :func:`train` keeps the state of ``cfg``'s run (and its best checkpoints so far)."""
    return resume_root / f"{out_dir.name}-{cfg.fingerprint()}"


def load_model(path: Path, rt: Runtime) -> tuple[MetaGMVAE, dict[str, Any]]:
    """Rebuild a model from a ``best_*.pt`` checkpoint, in eval mode on ``rt.device``.

    Returns ``(model, its training configuration as a dict)``.
    """
    state = checkpoint.load(path, rt.device)
    model = rt.prepare(build_model(state["config"]["model"]))
    model.load_state_dict(state["model"])
    return model.eval(), state["config"]


def checkpoint_for(model_dir: Path, shot: int) -> Path:
    """The checkpoint selected for testing at ``shot``: the one selected on validation at that
    shot if there is one, else the one selected at the first validation shot (Mini-ImageNet
    tests every shot with its 1-shot selection)."""
    val_shots = json.loads((model_dir / "summary.json").read_text())["val_shots"]
    return model_dir / f"best_{shot if shot in val_shots else val_shots[0]}shot.pt"
