"""Omniglot archives: content verification, bad input, split, preprocessing, rotations."""

import io
import zipfile

import h5py
import numpy as np
import pytest
from conftest import TINY_CHARACTERS, tiny_members, write_zip
from PIL import Image

from metagmvae.data import omniglot

SIZES = {"train": 12, "val": 3, "test": 5}


def test_repacked_archive_with_identical_images_passes(tiny_sources, tmp_path):
    original = omniglot.verify_archive(tiny_sources / "images_background.zip")
    members = tiny_members("images_background.zip", 12)
    repacked = write_zip(tmp_path / "repacked.zip", list(reversed(members)), zipfile.ZIP_STORED)
    again = omniglot.verify_archive(repacked, characters=12, content_sha256=original.content_sha256)
    assert again == original
    assert original.characters == 12 and original.images == 240


def test_modified_image_fails_the_digest(tiny_sources, tmp_path):
    digest = omniglot.verify_archive(tiny_sources / "images_background.zip").content_sha256
    members = tiny_members("images_background.zip", 12)
    name, data = members[5]
    members[5] = (name, data[:-12] + bytes(12))  # same size, different bytes
    bad = write_zip(tmp_path / "modified.zip", members)
    with pytest.raises(omniglot.ArchiveError, match=r"modified.zip: content digest .* does not match"):
        omniglot.verify_archive(bad, characters=12, content_sha256=digest)


@pytest.mark.parametrize(
    "mutate,match",
    [
        (lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), "corrupt or truncated zip"),
        (lambda p: p.write_bytes(b"not a zip at all"), "corrupt or truncated zip"),
    ],
)
def test_corrupt_or_truncated_archive(tiny_sources, tmp_path, mutate, match):
    path = tmp_path / "images_background.zip"
    path.write_bytes((tiny_sources / "images_background.zip").read_bytes())
    mutate(path)
    with pytest.raises(omniglot.ArchiveError, match=f"images_background.zip: {match}"):
        omniglot.verify_archive(path)


def test_crc_error_is_reported(tiny_sources, tmp_path):
    members = tiny_members("images_background.zip", 12)
    path = write_zip(tmp_path / "flipped.zip", members, zipfile.ZIP_STORED)
    raw = bytearray(path.read_bytes())
    offset = raw.index(members[0][1]) + 100  # inside the first stored PNG
    raw[offset] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(omniglot.ArchiveError, match="flipped.zip: corrupt or truncated zip archive .*CRC"):
        omniglot.verify_archive(path)


@pytest.mark.parametrize(
    "members,match",
    [
        ([("../evil/a/b.png", b"\x89PNG\r\n\x1a\n")], "unsafe member name '../evil/a/b.png'"),
        ([("/abs/a/b/c.png", b"\x89PNG\r\n\x1a\n")], "unsafe member name '/abs/a/b/c.png'"),
        ([("top/a/b/readme.txt", b"hello")], "unexpected member 'top/a/b/readme.txt'"),
        ([("top/a/b/c.png", b"GIF89a")], "member 'top/a/b/c.png' is not a PNG"),
        ([("top/a/b/c.png", b"\x89PNG\r\n\x1a\n")], "character a/b has 1 images, expected 20"),
    ],
)
def test_wrong_members_are_named(tmp_path, members, match):
    with pytest.raises(omniglot.ArchiveError, match=match):
        omniglot.verify_archive(write_zip(tmp_path / "bad.zip", members))


def test_wrong_character_count(tiny_sources):
    with pytest.raises(omniglot.ArchiveError, match="holds 12 characters, expected 964"):
        omniglot.verify_archive(tiny_sources / "images_background.zip", characters=964)


def test_split_is_the_documented_permutation():
    split = omniglot.split_characters(1623, {"train": 1200, "val": 100, "test": 323}, seed=0)
    order = np.random.RandomState(0).permutation(1623)
    assert np.array_equal(split["train"], order[:1200])
    assert np.array_equal(split["val"], order[1200:1300])
    assert np.array_equal(split["test"], order[1300:])
    with pytest.raises(ValueError, match="sum to 1622, but the archives hold 1623"):
        omniglot.split_characters(1623, {"train": 1200, "val": 100, "test": 322}, seed=0)


@pytest.fixture(scope="module")
def built(tiny_sources, tmp_path_factory):
    out = tmp_path_factory.mktemp("aug")
    archives = [tiny_sources / name for name in TINY_CHARACTERS]
    split = omniglot.build_dataset(archives, out / "a.h5", SIZES, 0, 28, "lanczos", progress=False)
    omniglot.build_dataset(archives, out / "b.h5", SIZES, 0, 28, "lanczos", progress=False)
    return out, split


def test_augmented_file_counts_range_and_identical_bytes(built):
    out, split = built
    assert (out / "a.h5").read_bytes() == (out / "b.h5").read_bytes()
    for name, chars in SIZES.items():
        images = omniglot.load_split(out / "a.h5", name)
        assert images.shape == (4 * chars, 20, 1, 28, 28)
        assert images.dtype == np.float32 and images.min() >= 0.0 and images.max() <= 1.0
        assert len(split[name]) == chars
    # strokes are 1 on a 0 background: most pixels are background
    assert np.median(omniglot.load_split(out / "a.h5", "train")) == 0.0
    assert len(set(sum(split.values(), []))) == sum(SIZES.values())  # splits are disjoint


def test_rotations_are_exact_quarter_turns(built):
    out, _ = built
    images = omniglot.load_split(out / "a.h5", "train")[:, :, 0]  # [4C, 20, 28, 28]
    by_char = images.reshape(-1, 4, 20, 28, 28)
    for k in range(4):
        assert np.array_equal(by_char[:, k], np.rot90(by_char[:, 0], k, axes=(-2, -1)))
    assert not np.array_equal(by_char[:, 1], by_char[:, 0])


def test_split_names_are_saved_with_the_output(built):
    out, split = built
    with h5py.File(out / "a.h5") as f:
        assert [s.decode() for s in f["test/characters"][()]] == split["test"]
        assert f.attrs["resize_filter"] == "lanczos"


def test_preprocessing_inverts_and_resizes():
    img = Image.new("1", (105, 105), 1)
    for x in range(40, 60):
        for y in range(10, 95):
            img.putpixel((x, y), 0)  # a black vertical bar
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    out = omniglot.preprocess_png(buf.getvalue(), 28, "lanczos")
    assert out.shape == (28, 28) and out.dtype == np.uint8
    assert out[14, 13] >= 250  # inside the bar: ink (Lanczos may undershoot by a level or two)
    assert out[14, 2] == 0 and out[14, 25] == 0  # background


@pytest.mark.parametrize("official_filter", [Image.Resampling.LANCZOS, Image.Resampling.BILINEAR])
def test_nearest_filter_gives_the_official_binary_arrays(tiny_sources, official_filter):
    """The official 28 x 28 arrays come from resizing the mode-"1" PNGs, which Pillow does by
    nearest neighbour whatever filter is asked: `resize_filter: nearest` gives exactly those
    binary images (inverted), while `lanczos` gives 8-bit grey with ringing."""
    with zipfile.ZipFile(tiny_sources / "images_background.zip") as zf:
        png = next(zf.read(n) for n in sorted(zf.namelist()) if n.endswith(".png"))
    with Image.open(io.BytesIO(png)) as img:
        assert img.mode == "1"
        official = 255 - np.asarray(img.resize((28, 28), resample=official_filter).convert("L"))
    ours = omniglot.preprocess_png(png, 28, "nearest")
    np.testing.assert_array_equal(ours, official)
    assert set(np.unique(ours)) <= {0, 255}
    grey = omniglot.preprocess_png(png, 28, "lanczos")
    assert len(np.unique(grey)) > 2
