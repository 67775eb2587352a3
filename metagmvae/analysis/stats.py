"""Statistics for comparisons on the fixed test episodes: paired differences and seed spread.

Every run of this pipeline is scored on the same test episodes, so two runs can be compared
episode by episode. The paired difference ``d_i = b_i - a_i`` removes the variation of episode
difficulty that both runs share, and its 95% confidence interval is the **paired t** interval
``mean(d) ± t(0.975, n - 1) · sd(d) / √n`` (sample standard deviation, ``ddof = 1``). With
n = 1000 bounded differences the central limit theorem makes the t interval accurate (tested
for coverage on synthetic episodes in ``tests/unit/test_stats.py``); a bootstrap would give the same
width at this n and is not used. The unpaired (Welch) interval of the same two runs is computed
beside it to show what the pairing buys.

All inputs are per-episode accuracies as fractions in [0, 1]; all outputs are percentage points.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as scipy_stats

from metagmvae.evaluation.accuracy import summarize

CONFIDENCE = 0.95


def t_quantile(degrees_of_freedom: float, confidence: float = CONFIDENCE) -> float:
    """The two-sided ``confidence`` quantile of Student's t, e.g. 2.093 for 19 degrees of freedom."""
    return float(scipy_stats.t.ppf(0.5 + confidence / 2, degrees_of_freedom))


@dataclass(frozen=True)
class PairedDifference:
    """``b - a`` over the same episodes, in percentage points."""

    mean: float
    low: float  # 95% paired-t interval of the mean difference
    high: float
    improved: float  # fraction of episodes where b is more accurate than a
    worse: float  # fraction where b is less accurate (the rest are ties)
    episodes: int


def _as_fractions(name: str, values: np.ndarray) -> np.ndarray:
    out = np.asarray(values, dtype=np.float64)
    if out.ndim != 1 or len(out) < 2:
        raise ValueError(f"{name}: expected per-episode accuracies [n >= 2], got shape {out.shape}")
    return out


def paired_difference(a: np.ndarray, b: np.ndarray) -> PairedDifference:
    """Mean of ``b - a`` over paired episodes with its 95% paired-t interval.

    a, b: per-episode accuracies ``[n]`` in [0, 1] of the same ``n`` episodes, in the same order.
    """
    a, b = _as_fractions("a", a), _as_fractions("b", b)
    if a.shape != b.shape:
        raise ValueError(f"paired episodes must match: a has {len(a)}, b has {len(b)}")
    d = b - a
    n = len(d)
    half = t_quantile(n - 1) * float(d.std(ddof=1)) / math.sqrt(n)
    mean = float(d.mean())
    return PairedDifference(
        mean=100.0 * mean,
        low=100.0 * (mean - half),
        high=100.0 * (mean + half),
        improved=float((d > 0).mean()),
        worse=float((d < 0).mean()),
        episodes=n,
    )


def unpaired_half_width(a: np.ndarray, b: np.ndarray) -> float:
    """Half-width (points) of the 95% Welch interval of ``mean(b) - mean(a)``, treating the two
    runs as independent samples (what comparing two ``accuracy ± ci95`` entries amounts to)."""
    a, b = _as_fractions("a", a), _as_fractions("b", b)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    if va + vb == 0:
        return 0.0
    dof = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    return 100.0 * t_quantile(dof) * math.sqrt(va + vb)


@dataclass(frozen=True)
class SeedSpread:
    """One configuration trained with N seeds and tested on the same episodes, in percent."""

    per_seed: tuple[float, ...]  # mean test accuracy of each seed's run
    mean: float  # mean across seeds
    std: float  # standard deviation across seeds (ddof = 1)
    mean_half_width: float  # 95% t interval of the seed mean: t(0.975, N - 1) · std / √N
    episode_ci95: float  # the per-episode CI of one run (1.96 · std / √n, as in the metrics), mean over seeds


def seed_spread(runs: Sequence[np.ndarray]) -> SeedSpread:
    """Spread across training seeds of one configuration.

    runs: one per seed, per-episode accuracies ``[n]`` in [0, 1] on the same episodes.
    """
    if len(runs) < 2:
        raise ValueError(f"a seed spread needs at least 2 runs, got {len(runs)}")
    per_seed = np.array([100.0 * _as_fractions(f"seed {i}", r).mean() for i, r in enumerate(runs)])
    std = float(per_seed.std(ddof=1))
    return SeedSpread(
        per_seed=tuple(float(v) for v in per_seed),
        mean=float(per_seed.mean()),
        std=std,
        mean_half_width=t_quantile(len(runs) - 1) * std / math.sqrt(len(runs)),
        episode_ci95=float(np.mean([summarize(r)["ci95"] for r in runs])),
    )
