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


def due(step: int, every: int, last: int) -> bool:
    """Whether something done every ``every`` steps, and at the ``last``, happens at 1-based ``step``."""
    return step % every == 0 or step == last
