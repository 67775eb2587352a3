"""What every training loop shares: stopping on a non-finite loss or gradient, running means of
the loss terms between log lines, and whether a periodic action (log, validate) falls on a step."""

from __future__ import annotations

import math

import torch


class NonFiniteLossError(FloatingPointError):
    """The loss or a gradient became NaN or infinite."""


def check_finite(step: int, terms: dict[str, torch.Tensor]) -> None:
    """Stop with the step number and the offending term on NaN/Inf."""
    for name, value in terms.items():
        if not torch.isfinite(value).all():
            raise NonFiniteLossError(
                f"step {step}: {name} is not finite ({value.item() if value.numel() == 1 else value})"
            )


def check_gradients(step: int, parameters) -> None:
    """Stop with the step number when a gradient of ``parameters`` holds a NaN or Inf (their total
    L2 norm is then not finite); the gradients themselves are left as they are."""
    check_finite(step, {"gradient norm": torch.nn.utils.clip_grad_norm_(parameters, math.inf)})


def _scalar(value) -> float:
    return value.item() if isinstance(value, torch.Tensor) else float(value)


class RunningMeans:
    """Means of scalar loss terms (and minima of others) over the steps since the last log line.

    ``state_dict()`` / ``load_state_dict()`` carry the partial sums through a resume, since checkpoints
    need not fall on log steps.
    """

    def __init__(self):
        self.sums: dict[str, float] = {}
        self.minima: dict[str, float] = {}
        self.count = 0

    def add(self, lowest: dict | None = None, **terms) -> None:
        """Add one step's values (0-dim tensors or floats): ``terms`` are averaged, the values of
        ``lowest`` kept at their minimum."""
        for name, value in terms.items():
            self.sums[name] = self.sums.get(name, 0.0) + _scalar(value)
        for name, value in (lowest or {}).items():
            self.minima[name] = min(self.minima.get(name, math.inf), _scalar(value))
        self.count += 1

    def pop(self, prefix: str) -> dict[str, float]:
        """``{"<prefix>/<term>": mean or minimum}``, and start over."""
        out = {f"{prefix}/{name}": total / self.count for name, total in self.sums.items()}
        out |= {f"{prefix}/{name}": low for name, low in self.minima.items()}
        self.sums, self.minima, self.count = {}, {}, 0
        return out

    def state_dict(self) -> dict:
        return {"sums": dict(self.sums), "minima": dict(self.minima), "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        self.sums, self.minima, self.count = dict(state["sums"]), dict(state.get("minima", {})), state["count"]


def due(step: int, every: int, last: int) -> bool:
    """Whether something done every ``every`` steps, and at the ``last``, happens at 1-based ``step``."""
    return step % every == 0 or step == last
