"""Mini-ImageNet download: both source forms, content checks, all-or-nothing output."""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest
import torch
import yaml
from conftest import (
    REPO,
    TINY_MINI_CLASSES,
    TINY_MINI_PER_CLASS,
    tiny_mini_params,
    write_mini_folder,
    write_mini_packed,
)

from metagmvae.data import mini_imagenet
from metagmvae.data.sources import SourceError
from metagmvae.pipeline import download
from metagmvae.schema.params import parse_section


def params_for(source) -> dict:
    return tiny_mini_params(yaml.safe_load((REPO / "params.yaml").read_text()), source)


def fetch(source, out):
    return download.run(parse_section(params_for(source), "download", "mini_imagenet"), out, root=REPO)


def assert_nothing_written(out):
    assert not out.exists()
    assert list(out.parent.glob(f".{out.name}*")) == []  # no temporary leftovers


def test_packed_and_folder_forms_give_the_same_bytes(tiny_mini_packed, tiny_mini_rows_cached, tmp_path):
    folder = write_mini_folder(tmp_path / "folder", tiny_mini_rows_cached)
    manifest = fetch(tiny_mini_packed, tmp_path / "a")
    fetch(folder, tmp_path / "b")
    a, b = tmp_path / "a" / "images.h5", tmp_path / "b" / "images.h5"
    assert a.read_bytes() == b.read_bytes()
    assert manifest == {s: {"classes": n, "images": n * TINY_MINI_PER_CLASS} for s, n in TINY_MINI_CLASSES.items()}
    with h5py.File(a) as f:
        for split, rows in tiny_mini_rows_cached.items():
            assert [n.decode() for n in f[split]["filenames"][()]] == [name for name, _, _ in rows]
            assert f[split]["label"][()].tolist() == np.repeat(np.arange(5), TINY_MINI_PER_CLASS).tolist()
            assert bytes(f[split]["jpeg"][3]) == rows[3][2]  # stored as given, not re-encoded


def test_load_images_decodes_class_major_subsets(tiny_mini_packed, tmp_path):
    fetch(tiny_mini_packed, tmp_path / "raw")
    full = mini_imagenet.load_images(tmp_path / "raw" / "images.h5", "val")
    sub = mini_imagenet.load_images(tmp_path / "raw" / "images.h5", "val", per_class=3)
    assert full.images.shape == (5, TINY_MINI_PER_CLASS, 3, 84, 84) and full.images.dtype == torch.uint8
    assert sub.images.shape == (5, 3, 3, 84, 84)
    assert np.array_equal(sub.images.numpy(), full.images[:, :3].numpy())
    assert sub.filenames[1] == full.filenames[1][:3]


def test_missing_image_is_named_and_nothing_is_written(tiny_mini_rows_cached, tmp_path):
    folder = write_mini_folder(tmp_path / "folder", tiny_mini_rows_cached)
    name = tiny_mini_rows_cached["test"][7][0]
    (folder / "images" / name).unlink()
    with pytest.raises(SourceError, match=f"{name}: image named in test.csv is missing"):
        fetch(folder, tmp_path / "raw")
    assert_nothing_written(tmp_path / "raw")


def test_broken_or_wrong_size_image_is_named(tiny_mini_rows_cached, tmp_path):
    folder = write_mini_folder(tmp_path / "folder", tiny_mini_rows_cached)
    name = tiny_mini_rows_cached["val"][2][0]
    blob = (folder / "images" / name).read_bytes()
    (folder / "images" / name).write_bytes(blob[: len(blob) // 2])
    with pytest.raises(SourceError, match=f"{name}: image does not decode"):
        fetch(folder, tmp_path / "raw")
    assert_nothing_written(tmp_path / "raw")

    from PIL import Image

    Image.new("RGB", (80, 84)).save(folder / "images" / name, format="JPEG")
    with pytest.raises(SourceError, match=f"{name}: image is 80x84, expected 84x84"):
        fetch(folder, tmp_path / "raw")


def test_truncated_shard_is_refused(tiny_mini_packed, tmp_path):
    packed = shutil.copytree(tiny_mini_packed, tmp_path / "packed")
    shard = packed / "train-0.bin"
    shard.write_bytes(shard.read_bytes()[:-100])
    with pytest.raises(SourceError, match="train-0.bin: SHA-256 does not match SHA256SUMS"):
        fetch(packed, tmp_path / "raw")
    assert_nothing_written(tmp_path / "raw")


def test_csv_naming_an_unknown_file_is_refused(tiny_mini_rows_cached, tmp_path):
    rows = {split: list(items) for split, items in tiny_mini_rows_cached.items()}
    packed = write_mini_packed(tmp_path / "packed", rows)
    lines = (packed / "train.csv").read_text().splitlines()
    lines[1] = "n99999999.jpg," + lines[1].split(",")[1]
    (packed / "train.csv").write_text("\n".join(lines) + "\n")
    # re-sign, so the inconsistency itself (not the checksum) is what is caught
    write_sums = [ln for ln in (packed / "SHA256SUMS").read_text().splitlines() if not ln.endswith(" train.csv")]
    import hashlib

    digest = hashlib.sha256((packed / "train.csv").read_bytes()).hexdigest()
    (packed / "SHA256SUMS").write_text("\n".join([*write_sums, f"{digest}  train.csv"]) + "\n")
    with pytest.raises(SourceError, match=r"does not list the images of train.csv.*'n99999999.jpg'"):
        fetch(packed, tmp_path / "raw")
    assert_nothing_written(tmp_path / "raw")

    folder = write_mini_folder(tmp_path / "folder", rows)
    shutil.copy(packed / "train.csv", folder / "train.csv")
    with pytest.raises(SourceError, match="n99999999.jpg: image named in train.csv is missing"):
        fetch(folder, tmp_path / "raw")


def test_wrong_class_counts_are_refused(tiny_mini_packed, tmp_path):
    params = params_for(tiny_mini_packed)
    params["download"]["mini_imagenet"]["images_per_class"] = 600
    with pytest.raises(SourceError, match=r"split 'train': class \S+ has 20 images, expected 600"):
        download.run(parse_section(params, "download", "mini_imagenet"), tmp_path / "raw", root=REPO)
    params["download"]["mini_imagenet"].update(images_per_class=20, classes={"train": 64, "val": 5, "test": 5})
    with pytest.raises(SourceError, match="split 'train': 5 classes, expected 64"):
        download.run(parse_section(params, "download", "mini_imagenet"), tmp_path / "raw", root=REPO)
    assert_nothing_written(tmp_path / "raw")


def test_falls_back_to_the_next_source(tiny_mini_packed, tmp_path):
    params = params_for(tiny_mini_packed)
    params["download"]["mini_imagenet"]["sources"] = [
        "https://unreachable.invalid/mini",
        "nowhere",
        str(tiny_mini_packed),
    ]
    params["download"]["mini_imagenet"]["timeout_seconds"] = 2
    download.run(parse_section(params, "download", "mini_imagenet"), tmp_path / "raw", root=tmp_path)
    assert (tmp_path / "raw" / "images.h5").is_file()


def test_a_url_serving_the_packed_form_is_downloaded(tiny_mini_packed, tmp_path):
    params = params_for(tiny_mini_packed.as_uri())
    download.run(parse_section(params, "download", "mini_imagenet"), tmp_path / "raw", root=tmp_path)
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == ["images.h5", "manifest.json"]
