"""The one training loop every method uses (:func:`fit`): the step count, the learning rate, the
optimizer update with its non-finite checks, running means in the log lines, periodic validation
with the best checkpoint per metric, the resume state, MLflow and the progress bar.

A method hands :func:`fit` a ``step_fn(step) -> Step`` (its forward pass on the step's batch: the
loss to backpropagate and the terms to log) and, optionally, a ``validate(step) -> {metric:
accuracy %}``; everything else is the loop's. A run killed at any point and started again with
the same configuration continues from its last resume state and ends with the same bytes as an
uninterrupted run: the state holds the model, the optimizer, the schedule, every random generator
(the caller's ``stateful`` objects and torch's global one), the partial log sums, the best
checkpoints so far and the history.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from metagmvae.runtime import checkpoint
from metagmvae.runtime.io import atomic_path
from metagmvae.runtime.progress import progress as progress_bar
from metagmvae.runtime.tracking import Run
from metagmvae.training.resume import GlobalTorchRNG, ResumeFolder
from metagmvae.training.schedule import set_learning_rate

STATE_FORMAT = "fit.v1"  # the layout of the resume state this loop writes (another one is not continued)


class NonFiniteLossError(FloatingPointError):
    """The loss or a gradient became NaN or infinite."""


def check_finite(step: int, terms: Mapping[str, torch.Tensor]) -> None:
    """Stop with the step number and the offending term on NaN/Inf."""
    for name, value in terms.items():
        value = torch.as_tensor(value)
        if not torch.isfinite(value).all():
            raise NonFiniteLossError(
                f"step {step}: {name} is not finite ({value.item() if value.numel() == 1 else value})"
            )


def check_gradients(step: int, parameters) -> None:
    """Stop with the step number when a gradient of ``parameters`` holds a NaN or Inf (their total
    L2 norm is then not finite); the gradients themselves are left as they are."""
    check_finite(step, {"gradient norm": torch.nn.utils.clip_grad_norm_(parameters, math.inf)})


class RunningMeans:
    """Means of scalar loss terms over the steps since the last log line.

    ``state_dict()`` / ``load_state_dict()`` carry the partial sums through a resume, since checkpoints
    need not fall on log steps.
    """

    def __init__(self):
        self.sums: dict[str, float] = {}
        self.count = 0

    def add(self, **terms) -> None:
        """Add one step's values (0-dim tensors or floats)."""
        for name, value in terms.items():
            value = value.item() if isinstance(value, torch.Tensor) else float(value)
            self.sums[name] = self.sums.get(name, 0.0) + value
        self.count += 1

    def pop(self, prefix: str) -> dict[str, float]:
        """``{"<prefix>/<term>": mean}``, and start over."""
        means = {f"{prefix}/{name}": total / self.count for name, total in self.sums.items()}
        self.sums, self.count = {}, 0
        return means

    def state_dict(self) -> dict:
        return {"sums": dict(self.sums), "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        self.sums, self.count = dict(state["sums"]), state["count"]


class RunningMinima:
    """The smallest value of each term since the last log line (e.g. the fewest samples in an EM
    component); its state goes through a resume like :class:`RunningMeans`'."""

    def __init__(self):
        self.values: dict[str, float] = {}

    def add(self, **terms) -> None:
        for name, value in terms.items():
            self.values[name] = min(self.values.get(name, math.inf), float(value))

    def pop(self, prefix: str) -> dict[str, float]:
        """``{"<prefix>/<term>": minimum}``, and start over."""
        minima = {f"{prefix}/{name}": value for name, value in self.values.items()}
        self.values = {}
        return minima

    def state_dict(self) -> dict[str, float]:
        return dict(self.values)

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.values = dict(state)


def due(step: int, every: int, last: int) -> bool:
    """Whether something done every ``every`` steps, and at the ``last``, happens at 1-based ``step``."""
    return step % every == 0 or step == last


@dataclass
class Step:
    """What a method's ``step_fn`` returns: the ``loss`` to backpropagate, the ``terms`` that are
    checked for NaN/Inf before the update and averaged in the log lines (0-dim tensors or floats),
    and ``minima`` logged as their smallest value between log lines."""

    loss: torch.Tensor
    terms: dict[str, Any]
    minima: dict[str, float] = field(default_factory=dict)


def update(
    step: int,
    loss: torch.Tensor,
    terms: Mapping[str, Any],
    optimizer: torch.optim.Optimizer,
    parameters,
    clip: Callable[[], torch.Tensor] | None = None,
) -> None:
    """One optimizer update: ``terms`` checked (stops with :class:`NonFiniteLossError` naming the
    step and the term before a NaN reaches the weights), gradients of ``loss``, then ``clip()``
    (returns the gradient norm; default: the norm, untouched) checked, then the optimizer's step."""
    check_finite(step, terms)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    norm = clip() if clip is not None else torch.nn.utils.clip_grad_norm_(parameters, math.inf)
    check_finite(step, {"gradient norm": norm})
    optimizer.step()


def best_checkpoint_name(metric: str) -> str:
    """``"1shot"`` -> ``best_1shot.pt``."""
    return f"best_{metric}.pt"


class BestOnValidation:
    """The best validation accuracy (%) per metric so far and its checkpoint
    (``{"model", "step", "val_accuracy", **extra}``), kept in ``folder`` (the resume folder, so a
    resumed run keeps its selection); a later step replaces it only when strictly better."""

    def __init__(self, folder: Path, metrics: list[str], extra: Mapping[str, Any] | None = None):
        self.folder, self.extra = Path(folder), dict(extra or {})
        self.accuracy = {metric: -math.inf for metric in metrics}
        self.step = {metric: 0 for metric in metrics}

    def path(self, metric: str) -> Path:
        return self.folder / best_checkpoint_name(metric)

    def offer(self, step: int, metric: str, accuracy: float, model: torch.nn.Module) -> None:
        if accuracy > self.accuracy[metric]:
            self.accuracy[metric], self.step[metric] = accuracy, step
            state = {"model": model.state_dict(), "step": step, "val_accuracy": accuracy} | self.extra
            checkpoint.save(self.path(metric), state)

    def copy_to(self, metric: str, target: Path) -> None:
        """Put the best checkpoint of ``metric`` at ``target`` (atomically)."""
        with atomic_path(target, suffix=".pt") as tmp:
            shutil.copyfile(self.path(metric), tmp)

    def state_dict(self) -> dict[str, list[float]]:
        return {metric: [acc, self.step[metric]] for metric, acc in self.accuracy.items()}

    def load_state_dict(self, state: dict[str, list[float]]) -> None:
        self.accuracy = {metric: acc for metric, (acc, _) in state.items()}
        self.step = {metric: int(step) for metric, (_, step) in state.items()}


@dataclass
class History:
    """The training curves: per log line the step and each logged term's mean (or minimum), per
    validation the step and each metric's accuracy (%)."""

    step: list[int] = field(default_factory=list)
    terms: dict[str, list[float]] = field(default_factory=dict)
    val_step: list[int] = field(default_factory=list)
    val: dict[str, list[float]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """``{"step", <term>..., "val_step", "val"}`` (the layout of ``history.json``)."""
        return {"step": self.step, **self.terms, "val_step": self.val_step, "val": self.val}


@dataclass
class Fit:
    """A finished :func:`fit`: the curves, the best checkpoints and the seconds spent in steps."""

    history: History
    best: BestOnValidation | None
    elapsed: float


def fit(
    *,
    name: str,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    step_fn: Callable[[int], Step],
    steps: int,
    run: Run,
    log_every: int,
    log_prefix: str = "train",
    learning_rate: Callable[[int], float] | None = None,
    scheduler: Any = None,
    clip: Callable[[], torch.Tensor] | None = None,
    validate: Callable[[int], dict[str, float]] | None = None,
    val_every: int | None = None,
    val_name: str = "val/{}_accuracy",
    best: BestOnValidation | None = None,
    resume: ResumeFolder | None = None,
    stateful: Mapping[str, Any] | None = None,
    checkpoint_every: int | None = None,
    checkpoint_at_log: bool = False,
    save_resume: Callable[[Callable[[], None]], None] | None = None,
    is_main: bool = True,
    progress: bool = True,
    desc: str | None = None,
    budget_seconds: float | None = None,
    on_step: Callable[[int, float, torch.nn.Module], bool | None] | None = None,
) -> Fit | None:
    """Train ``model`` from its last resume state (or step 0) to ``steps`` (1-based).

    Each step: the learning rate ``learning_rate(step)`` (if given) is set, ``step_fn(step)``
    computes the loss, :func:`update` applies it (``clip`` as there), ``scheduler.step()`` (if
    given). Every ``log_every`` steps (and at the last) the means of the terms since the last log
    line, their minima, the seconds spent in steps and the learning rate go to MLflow (under
    ``log_prefix``), the history and the bar. Every ``val_every`` steps (and at the last)
    ``validate(step)`` gives an accuracy per metric: logged as ``val_name.format(metric)``, kept in
    the history and offered to ``best``. The resume state is written after each validation, every
    ``checkpoint_every`` steps, at log steps when ``checkpoint_at_log``, and at the end (the caller
    removes it once its outputs are in place); ``save_resume(write)`` wraps its writing for runs of
    several processes (all call it; only the main one writes). ``on_step(step, seconds, model)``
    runs after each step; returning ``True`` stops the run there (its state saved).

    Returns the :class:`Fit`, or ``None`` when ``budget_seconds`` of wall time ran out first (the
    state is saved; the next call continues).
    """
    call_start = time.perf_counter()
    means, minima, history = RunningMeans(), RunningMinima(), History()
    objects = {"model": model, "optimizer": optimizer, "torch_rng": GlobalTorchRNG(), "unlogged": means}
    objects |= {"minima": minima} | ({"scheduler": scheduler} if scheduler is not None else {})
    objects |= ({"best": best} if best is not None else {}) | dict(stateful or {})
    done, elapsed = 0, 0.0
    if resume is not None and (found := resume.peek()) is not None and found.get("loop") != STATE_FORMAT:
        if is_main:
            print(f"{name}: ignoring {resume.state_file}, written by another version; starting afresh", flush=True)
        resume.remove()
    if resume is not None and (saved := resume.restore(next(model.parameters()).device, objects)) is not None:
        done, elapsed = saved["step"], saved["elapsed"]
        history = History(**saved["history"])
        if is_main and done < steps:
            print(f"resuming {name} from step {done} ({resume.state_file})", flush=True)

    def write_state(step: int) -> None:
        def write() -> None:
            resume.save(objects, loop=STATE_FORMAT, step=step, elapsed=elapsed, history=history.__dict__)

        if resume is None:
            return
        if save_resume is None:
            write()
        else:
            save_resume(write)

    bar = progress_bar(total=steps, initial=done, desc=desc or name, disable=not (progress and is_main), unit="step")
    model.train()
    for step in range(done + 1, steps + 1):
        tick = time.perf_counter()
        if learning_rate is not None:
            set_learning_rate(optimizer, learning_rate(step))
        rate = optimizer.param_groups[0]["lr"]  # this step's
        result = step_fn(step)
        terms = result.terms if log_prefix == "train" else {f"{log_prefix}/{k}": v for k, v in result.terms.items()}
        update(step, result.loss, terms, optimizer, model.parameters(), clip)
        if scheduler is not None:
            scheduler.step()
        elapsed += time.perf_counter() - tick
        means.add(**result.terms)
        minima.add(**result.minima)
        bar.update(1)
        stop = on_step is not None and on_step(step, elapsed, model)
        logged = due(step, log_every, steps)
        if logged:
            line = means.pop(log_prefix) | minima.pop(log_prefix)
            history.step.append(step)
            for key, value in line.items():
                history.terms.setdefault(key.split("/", 1)[1], []).append(value)
            if is_main:
                run.log_metrics(line | {f"{log_prefix}/seconds": elapsed, f"{log_prefix}/lr": rate}, step=step)
                bar.set_postfix({k.split("/", 1)[1]: f"{v:.3f}" for k, v in line.items()}, refresh=False)
        if validate is not None and due(step, val_every, steps):
            accuracies = validate(step)
            history.val_step.append(step)
            for metric, accuracy in accuracies.items():
                history.val.setdefault(metric, []).append(accuracy)
                if best is not None:
                    best.offer(step, metric, accuracy, model)
            run.log_metrics({val_name.format(m): a for m, a in accuracies.items()}, step=step)
            shown = ", ".join(f"{metric} {accuracy:.2f}%" for metric, accuracy in accuracies.items())
            bar.write(f"{desc or name} step {step}: validation {shown}")
            write_state(step)
        elif (checkpoint_every and step % checkpoint_every == 0) or (checkpoint_at_log and logged) or step == steps:
            write_state(step)
        over_budget = budget_seconds is not None and time.perf_counter() - call_start > budget_seconds
        if (stop or over_budget) and step < steps:
            write_state(step)
            bar.close()
            if over_budget:
                print(f"{name}: wall-clock budget of {budget_seconds:.0f} s spent at step {step}", flush=True)
            return None
    bar.close()
    return Fit(history, best, elapsed)
