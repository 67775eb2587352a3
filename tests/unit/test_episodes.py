"""Episode sampling invariants, the fixed-episode file, and training batches."""

import numpy as np
import pytest
import torch

from metagmvae.data import episodes as ep


@pytest.mark.parametrize("way,shot,query", [(5, 1, 15), (5, 5, 15), (20, 5, 15), (3, 2, 1)])
def test_episode_invariants(way, shot, query):
    eps = ep.sample_episodes(ep.episode_rng(0, "test", way, shot), 300, 40, 20, way, shot, query)
    assert eps.classes.shape == (300, way) and eps.instances.shape == (300, way, shot + query)
    for classes, instances in zip(eps.classes, eps.instances):
        assert len(set(classes.tolist())) == way  # distinct classes
        assert classes.min() >= 0 and classes.max() < 40
        for row in instances:  # support and query disjoint, distinct, in range
            assert len(set(row.tolist())) == shot + query
            assert row.min() >= 0 and row.max() < 20


def test_same_seed_same_episodes_and_streams_are_independent():
    a = ep.sample_episodes(ep.episode_rng(3, "val", 5, 1), 50, 100, 20, 5, 1, 15)
    b = ep.sample_episodes(ep.episode_rng(3, "val", 5, 1), 50, 100, 20, 5, 1, 15)
    c = ep.sample_episodes(ep.episode_rng(3, "val", 5, 5), 50, 100, 20, 5, 1, 15)
    d = ep.sample_episodes(ep.episode_rng(4, "val", 5, 1), 50, 100, 20, 5, 1, 15)
    assert np.array_equal(a.classes, b.classes) and np.array_equal(a.instances, b.instances)
    assert not np.array_equal(a.classes, c.classes)
    assert not np.array_equal(a.classes, d.classes)


def test_classes_are_drawn_uniformly():
    eps = ep.sample_episodes(ep.episode_rng(0, "test", 5, 1), 4000, 10, 20, 5, 1, 1)
    counts = np.bincount(eps.classes.ravel(), minlength=10)
    assert counts.min() > 1800 and counts.max() < 2200  # expected 2000 each


@pytest.mark.parametrize(
    "way,shot,query,match",
    [
        (41, 1, 15, "way=41 is larger than the 40 classes"),
        (5, 6, 15, "shot \\+ query = 6 \\+ 15 = 21"),
        (0, 1, 15, "must be >= 1"),
    ],
)
def test_impossible_episodes_are_refused(way, shot, query, match):
    with pytest.raises(ValueError, match=match):
        ep.sample_episodes(ep.episode_rng(0, "test", 5, 1), 1, 40, 20, way, shot, query)


def test_gather_is_class_major_with_matching_labels():
    # data[c, i] = 100 * c + i, so every gathered item names its class and instance.
    data = (100 * torch.arange(12).view(12, 1) + torch.arange(20).view(1, 20)).float()
    eps = ep.sample_episodes(ep.episode_rng(0, "test", 4, 2), 7, 12, 20, 4, 2, 3)
    support, y_support, query, y_query = ep.gather(data, eps)
    assert support.shape == (7, 8) and query.shape == (7, 12)
    for e in range(7):
        assert y_support[e].tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
        assert y_query[e].tolist() == [0] * 3 + [1] * 3 + [2] * 3 + [3] * 3
        assert (support[e] // 100).long().tolist() == eps.classes[e].repeat(2).tolist()
        assert (query[e] // 100).long().tolist() == eps.classes[e].repeat(3).tolist()
        for w in range(eps.way):
            sup = (support[e, 2 * w : 2 * w + 2] % 100).long().tolist()
            qry = (query[e, 3 * w : 3 * w + 3] % 100).long().tolist()
            assert sup == eps.instances[e, w, :2].tolist() and qry == eps.instances[e, w, 2:].tolist()
            assert not set(sup) & set(qry)


def test_episode_file_round_trip_and_identical_bytes(tmp_path):
    sets = {
        ("test", 5, 1): ep.sample_episodes(ep.episode_rng(0, "test", 5, 1), 10, 40, 20, 5, 1, 15),
        ("val", 20, 5): ep.sample_episodes(ep.episode_rng(0, "val", 20, 5), 10, 40, 20, 20, 5, 15),
        ("val", 5, 2): ep.sample_episodes(ep.episode_rng(0, "val", 5, 2), 3, 40, 20, 5, 2, 4),
    }
    ep.write_episodes(tmp_path / "a.h5", sets, {"seed": 0})
    ep.write_episodes(tmp_path / "b.h5", sets, {"seed": 0})
    assert (tmp_path / "a.h5").read_bytes() == (tmp_path / "b.h5").read_bytes()
    for (split, way, shot), written in sets.items():
        back = ep.read_episodes(tmp_path / "a.h5", split, way, shot)
        assert back.classes.dtype == back.instances.dtype == np.int64
        assert np.array_equal(back.classes, written.classes) and np.array_equal(back.instances, written.instances)
        assert (back.shot, back.query, back.way, len(back)) == (shot, written.query, way, len(written))
    with pytest.raises(ValueError, match="no episodes 'test/20way_1shot'"):
        ep.read_episodes(tmp_path / "a.h5", "test", 20, 1)


def test_training_batches_draw_with_replacement_from_the_pool():
    pool = torch.arange(10).float().view(10, 1)  # each row holds its own index
    batch = ep.sample_training_batch(pool, 4, 50, torch.Generator().manual_seed(0))
    assert batch.shape == (4, 50, 1)
    again = ep.sample_training_batch(pool, 4, 50, torch.Generator().manual_seed(0))
    other = ep.sample_training_batch(pool, 4, 50, torch.Generator().manual_seed(1))
    assert torch.equal(batch, again) and not torch.equal(batch, other)


def test_training_batches_are_uniform_independent_draws():
    """2000 episodes of 5 points from a pool of 10: every row is drawn equally often, and an
    episode has 5 distinct rows with the with-replacement probability 10 * 9 * 8 * 7 * 6 / 10^5."""
    pool = torch.arange(10).float().view(10, 1)
    rows = ep.sample_training_batch(pool, 2000, 5, torch.Generator().manual_seed(0))[..., 0].long()
    counts = torch.bincount(rows.flatten(), minlength=10).double()
    assert ((counts - 1000).abs() < 5 * 30).all(), counts  # binomial sd sqrt(10000 * 0.1 * 0.9) = 30
    distinct = torch.tensor([len(set(r.tolist())) == 5 for r in rows]).double().mean()
    assert abs(distinct - 0.3024) < 5 * 0.0103, distinct  # without replacement it would be 1
    first, second = rows[:, 0], rows[:, 1]  # consecutive draws independent: equal 1 time in 10
    assert abs((first == second).double().mean() - 0.1) < 5 * 0.0067
