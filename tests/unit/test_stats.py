"""The paired-t interval on per-episode accuracies: coverage of a known shift on synthetic
episodes, its width against the unpaired interval, and the seed spread."""

import numpy as np
import pytest
from scipy.stats import t as student_t

from metagmvae.analysis.stats import paired_difference, seed_spread, t_quantile, unpaired_half_width

QUERIES = 75  # a 5-way episode with 15 queries per class


def synthetic_pair(rng: np.random.Generator, n: int, shift: float) -> tuple[np.ndarray, np.ndarray]:
    """Two methods on the same ``n`` episodes: each episode has its own difficulty (a success
    probability drawn from Beta(8, 3), mean 0.73), shared by both methods, so their accuracies
    are positively correlated; b's probability is a's plus ``shift``. Accuracies are binomial
    counts over the episode's queries, as in a real evaluation. The expected mean difference
    is exactly ``shift``."""
    p = np.clip(rng.beta(8, 3, n), 0.0, 1.0 - shift)
    a = rng.binomial(QUERIES, p) / QUERIES
    b = rng.binomial(QUERIES, p + shift) / QUERIES
    return a, b


def test_t_quantiles_match_the_tables():
    assert t_quantile(19) == pytest.approx(2.0930, abs=1e-4)
    assert t_quantile(999) == pytest.approx(1.9623, abs=1e-4)
    assert t_quantile(2) == pytest.approx(4.3027, abs=1e-4)


def test_paired_interval_covers_a_known_shift_at_the_nominal_rate():
    shift, seeds = 0.02, 400
    covered = 0
    for seed in range(seeds):
        a, b = synthetic_pair(np.random.default_rng(seed), 300, shift)
        d = paired_difference(a, b)
        covered += d.low <= 100 * shift <= d.high
    # binomial(400, 0.95) has a standard deviation of 1.1%: 92-98% is +-2.7 of them
    assert 0.92 <= covered / seeds <= 0.98, covered / seeds


def test_paired_interval_is_narrower_than_the_unpaired_one_on_correlated_episodes():
    a, b = synthetic_pair(np.random.default_rng(0), 1000, 0.02)
    assert np.corrcoef(a, b)[0, 1] > 0.3  # episode difficulty is shared
    d = paired_difference(a, b)
    unpaired = unpaired_half_width(a, b)
    assert (d.high - d.low) / 2 < 0.5 * unpaired  # measured: 0.43 against 1.22 points
    # and it excludes zero where the unpaired interval may not: the point of pairing
    assert d.low > 0
    assert d.mean == pytest.approx(100 * (b.mean() - a.mean()))


def test_paired_difference_numbers_on_a_small_example():
    a = np.array([0.5, 0.6, 0.7, 0.8])
    b = np.array([0.6, 0.6, 0.9, 0.7])
    d = paired_difference(a, b)  # differences 0.1, 0, 0.2, -0.1: mean 0.05, sd 0.12910
    assert d.mean == pytest.approx(5.0)
    half = 3.18245 * 0.129099 / 2 * 100
    assert (d.low, d.high) == pytest.approx((5.0 - half, 5.0 + half), abs=1e-3)
    assert (d.improved, d.worse, d.episodes) == (0.5, 0.25, 4)


def test_runs_differing_by_known_query_counts_give_the_hand_computed_interval():
    """b gets 3, 1, 0, -2, 0 more of the 75 queries right than a, episode after episode (50
    episodes of varied difficulty): mean 0.4 queries, sample sd sqrt(10 * 13.2 / 49) queries."""
    a = (20 + np.arange(50) % 40) / QUERIES  # 20 to 59 of 75 right: the difficulty varies
    b = a + np.tile([3, 1, 0, -2, 0], 10) / QUERIES
    d = paired_difference(a, b)
    mean = 100 * 0.4 / QUERIES  # 0.5333 points
    half = student_t.ppf(0.975, 49) * 100 * np.sqrt(10 * 13.2 / 49) / QUERIES / np.sqrt(50)  # 0.6220 points
    assert d.mean == pytest.approx(mean, abs=1e-9)
    assert (d.low, d.high) == pytest.approx((mean - half, mean + half), abs=1e-9)
    assert (d.improved, d.worse, d.episodes) == (0.4, 0.2, 50)
    # The same 2 queries more on every episode: the pairing removes the difficulty entirely (a
    # zero-width interval), where the unpaired interval still sees a's spread of 20 to 59 queries.
    shifted = paired_difference(a, a + 2 / QUERIES)
    assert shifted.mean == pytest.approx(100 * 2 / QUERIES, abs=1e-9)
    assert shifted.high - shifted.low == pytest.approx(0.0, abs=1e-9)
    assert unpaired_half_width(a, a + 2 / QUERIES) > 5.0


def test_mismatched_or_too_few_episodes_are_refused():
    with pytest.raises(ValueError, match="a has 3, b has 2"):
        paired_difference(np.zeros(3), np.zeros(2))
    with pytest.raises(ValueError, match=r"n >= 2"):
        paired_difference(np.zeros(1), np.zeros(1))


def test_seed_spread_gives_mean_and_std_across_seeds_beside_the_episode_ci():
    runs = [np.full(100, 0.70), np.full(100, 0.72), np.r_[np.full(50, 0.64), np.full(50, 0.84)]]
    s = seed_spread(runs)
    assert s.per_seed == pytest.approx((70.0, 72.0, 74.0))
    assert (s.mean, s.std) == pytest.approx((72.0, 2.0))
    assert s.mean_half_width == pytest.approx(4.3027 * 2.0 / np.sqrt(3), abs=1e-3)
    # per-episode CI of one run, 1.96 * std / sqrt(n), averaged: 0, 0 and 1.96 * 10 / 10
    assert s.episode_ci95 == pytest.approx(1.96 / 3, abs=0.01)
    with pytest.raises(ValueError, match="at least 2 runs"):
        seed_spread(runs[:1])
