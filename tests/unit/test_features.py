"""The Mini-ImageNet feature path: SimCLR pre-training (resume), extraction to the HDF5 feature
store, lazy reads and episodes drawn from it."""

from __future__ import annotations

import hashlib

import h5py
import numpy as np
import pytest
import torch
import yaml
from conftest import REPO, TINY_MINI_CLASSES, TINY_MINI_PER_CLASS, tiny_mini_params

from metagmvae.data import episodes as episode_lib
from metagmvae.data import stores
from metagmvae.data.features import FeatureStore
from metagmvae.methods import simclr_pretrain as pretrain_loop
from metagmvae.pipeline import extract, pretrain
from metagmvae.runtime.checkpoint import load
from metagmvae.runtime.config import ConfigError
from metagmvae.schema.params import parse_section


def tiny_params(source):
    return tiny_mini_params(yaml.safe_load((REPO / "params.yaml").read_text()), source)


def test_feature_file_layout_matches_the_split_csvs(mini_store, tiny_mini_rows_cached):
    path = mini_store / "mini_imagenet.h5"
    with h5py.File(path) as f:
        assert f.attrs["format"] == "metagmvae.features.v1"
        digest = hashlib.sha256((mini_store / "simclr" / "simclr.pt").read_bytes()).hexdigest()
        assert f.attrs["encoder_sha256"] == digest
        for split, rows in tiny_mini_rows_cached.items():
            g = f[split]
            c = TINY_MINI_CLASSES[split]
            assert g["features"].shape == (c, TINY_MINI_PER_CLASS, 256) and g["features"].dtype == np.float32
            assert g["features"].chunks == (1, TINY_MINI_PER_CLASS, 256)  # one class per read
            assert g["label"][()].tolist() == [[k] * TINY_MINI_PER_CLASS for k in range(c)]
            names = [n.decode() for n in g["filenames"][()]]
            assert names == [name for name, _, _ in rows]
            classes = [n.decode() for n in g["class_names"][()]]
            assert classes == list(dict.fromkeys(label for _, label, _ in rows))
            feats = g["features"][()]
            assert (feats >= 0).all() and feats.std() > 0  # ReLU + max-pool outputs, not constant


def test_extraction_is_deterministic_and_uses_eval_mode(mini_store, tiny_mini_packed, tmp_path):
    params = tiny_params(tiny_mini_packed)
    again = tmp_path / "again.h5"
    extract.run(
        "mini_imagenet",
        parse_section(params, "extract", "mini_imagenet"),
        mini_store / "raw" / "images.h5",
        mini_store / "simclr" / "simclr.pt",
        again,
        tmp_path / "a.json",
    )
    assert again.read_bytes() == (mini_store / "mini_imagenet.h5").read_bytes()
    # a feature does not depend on the other images of its batch (BatchNorm running statistics)
    params["extract"]["mini_imagenet"]["batch"] = 7
    other = tmp_path / "other.h5"
    extract.run(
        "mini_imagenet",
        parse_section(params, "extract", "mini_imagenet"),
        mini_store / "raw" / "images.h5",
        mini_store / "simclr" / "simclr.pt",
        other,
        tmp_path / "b.json",
    )
    with h5py.File(again) as a, h5py.File(other) as b:
        assert np.allclose(a["test/features"][()], b["test/features"][()], atol=1e-5)


def test_feature_store_reads_the_same_episodes_as_the_in_memory_path(mini_store):
    path = mini_store / "mini_imagenet.h5"
    n_classes, n_instances = stores.split_shape("mini_imagenet", "test", path)
    loaded = torch.from_numpy(stores.load_split("mini_imagenet", "test", path))
    assert loaded.shape == (n_classes, n_instances, 256)
    rng = episode_lib.episode_rng(0, "test", 5, 1)
    eps = episode_lib.sample_episodes(rng, 12, n_classes, n_instances, 5, 1, 5)
    again = episode_lib.sample_episodes(episode_lib.episode_rng(0, "test", 5, 1), 12, n_classes, n_instances, 5, 1, 5)
    assert np.array_equal(eps.classes, again.classes) and np.array_equal(eps.instances, again.instances)
    with FeatureStore(path) as store:
        assert store.shape("test") == (n_classes, n_instances, 256)
        lazy = store.gather("test", eps)
        two_classes = store.class_rows("test", np.array([3, 1, 3]))
    for a, b in zip(lazy, episode_lib.gather(loaded, eps), strict=True):
        assert torch.equal(a, b)
    assert sorted(two_classes) == [1, 3] and np.array_equal(two_classes[3], loaded[3].numpy())


def test_pretrain_resumes_after_an_interruption_to_the_same_weights(
    tiny_mini_packed, mini_store, tmp_path, monkeypatch
):
    params = tiny_params(tiny_mini_packed)
    images = mini_store / "raw" / "images.h5"
    whole = tmp_path / "whole"
    pretrain.run(
        "mini_imagenet",
        parse_section(params, "pretrain", "mini_imagenet"),
        images,
        whole / "simclr",
        whole / "m.json",
        whole / "resume",
    )

    calls = {"n": 0}
    real_barrier = pretrain_loop.barrier

    def crash_after_first_epoch():
        calls["n"] += 1
        if calls["n"] == 1:  # the first epoch's resume state is on disk
            raise KeyboardInterrupt
        real_barrier()

    monkeypatch.setattr(pretrain_loop, "barrier", crash_after_first_epoch)
    split = tmp_path / "split"
    with pytest.raises(KeyboardInterrupt):
        pretrain.run(
            "mini_imagenet",
            parse_section(params, "pretrain", "mini_imagenet"),
            images,
            split / "simclr",
            split / "m.json",
            split / "resume",
        )
    assert not (split / "simclr").exists()  # nothing half-written
    assert [p.name for p in (split / "resume").iterdir()][0].startswith("simclr-")
    pretrain.run(
        "mini_imagenet",
        parse_section(params, "pretrain", "mini_imagenet"),
        images,
        split / "simclr",
        split / "m.json",
        split / "resume",
    )
    a, b = load(whole / "simclr" / "simclr.pt"), load(split / "simclr" / "simclr.pt")
    assert a["epochs"] == b["epochs"] == 2
    for name in a["model"]:
        assert torch.equal(a["model"][name], b["model"][name]), name
    assert list((split / "resume").iterdir()) == []  # resume state is removed once finished


def test_pretrain_refuses_bad_settings_before_work(tiny_mini_packed, mini_store, tmp_path):
    from metagmvae.runtime.config import ConfigError

    refusals = [
        ("warmup_epochs", 5, ConfigError, "warmup_epochs = 5: must be < epochs = 2"),
        ("batch", 1000, ValueError, "batch 1000 is larger than the 100 training images"),
    ]
    for key, value, error, message in refusals:
        params = tiny_params(tiny_mini_packed)
        params["pretrain"]["mini_imagenet"][key] = value
        with pytest.raises(error, match=message):
            pretrain.run(
                "mini_imagenet",
                parse_section(params, "pretrain", "mini_imagenet"),
                mini_store / "raw" / "images.h5",
                tmp_path / "s",
                tmp_path / "m",
                tmp_path,
            )
    assert not (tmp_path / "s").exists()


def test_store_records_feature_statistics_and_the_encoder_budget(mini_store):
    import json

    with FeatureStore(mini_store / "mini_imagenet.h5") as store:
        for split in TINY_MINI_CLASSES:
            mean, std = store.statistics(split)
            flat = store.load(split).reshape(-1, 256).astype(np.float64)
            np.testing.assert_allclose(mean, flat.mean(0), rtol=1e-12, atol=0)
            np.testing.assert_allclose(std, flat.std(0), rtol=1e-12, atol=0)  # population std
        budget = json.loads(store._file.attrs["encoder_budget"])
    train = TINY_MINI_CLASSES["train"] * TINY_MINI_PER_CLASS
    assert budget["train_images"] == train and budget["steps"] == train // 50 * 2  # tiny profile: batch 50, 2 epochs
    assert (budget["image_size"], budget["blocks"]) == (84, 5)
    summary = json.loads((mini_store / "features.json").read_text())
    assert summary["encoder_budget"] == budget
    assert summary["train"]["features"] == 256 and 0 < summary["train"]["zero_fraction"] < 1
    mean, _ = stores.split_statistics("mini_imagenet", "train", mini_store / "mini_imagenet.h5")
    assert summary["train"]["mean"] == round(float(mean.mean()), 4)


def test_pretraining_at_a_lower_resolution_gives_features_of_the_same_width(mini_store, tiny_mini_packed, tmp_path):
    """42 px and four blocks: 42 -> 21 -> 10 -> 5 -> 2, 64 x 2 x 2 = 256 features at a quarter of
    the convolution cost; extraction resizes to what the encoder was trained at."""
    params = tiny_params(tiny_mini_packed)
    params["pretrain"]["mini_imagenet"].update(image_size=42, blocks=4, epochs=1, warmup_epochs=0)
    images = mini_store / "raw" / "images.h5"
    pretrain.run(
        "mini_imagenet",
        parse_section(params, "pretrain", "mini_imagenet"),
        images,
        tmp_path / "simclr",
        tmp_path / "simclr.json",
        tmp_path / "r",
    )
    extract.run(
        "mini_imagenet",
        parse_section(params, "extract", "mini_imagenet"),
        images,
        tmp_path / "simclr" / "simclr.pt",
        tmp_path / "f.h5",
        tmp_path / "f.json",
    )
    with FeatureStore(tmp_path / "f.h5") as store:
        assert store.shape("test") == (TINY_MINI_CLASSES["test"], TINY_MINI_PER_CLASS, 256)
    params["pretrain"]["mini_imagenet"].update(image_size=42, blocks=6)
    with pytest.raises(ConfigError, match="image_size = 42 does not survive blocks = 6"):
        parse_section(params, "pretrain", "mini_imagenet")
