"""The download stage: ordered sources, content verification, all-or-nothing output."""

import json

import pytest
from conftest import TINY_CHARACTERS

from metagmvae.config import ConfigError
from metagmvae.data import omniglot
from metagmvae.data.sources import SourceError
from metagmvae.pipeline import download


def params_for(sources, tiny_sources):
    archives = {}
    for name, chars in TINY_CHARACTERS.items():
        digest = omniglot.verify_archive(tiny_sources / name).content_sha256
        archives[name] = {"characters": chars, "content_sha256": digest}
    return {"download": {"omniglot": {"sources": sources, "timeout_seconds": 5, "archives": archives}}}


def test_falls_back_through_sources_to_the_first_valid_copy(tiny_sources, tmp_path):
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    for name in TINY_CHARACTERS:
        (corrupt / name).write_bytes((tiny_sources / name).read_bytes()[:1000])
    sources = ["https://unreachable.invalid/omniglot", "missing-folder", str(corrupt), str(tiny_sources)]
    out = tmp_path / "raw"
    manifest = download.run("omniglot", params_for(sources, tiny_sources), out, root=tmp_path)
    assert sorted(p.name for p in out.iterdir()) == ["images_background.zip", "images_evaluation.zip", "manifest.json"]
    assert (out / "images_background.zip").read_bytes() == (tiny_sources / "images_background.zip").read_bytes()
    assert manifest["images_background.zip"]["images"] == 240
    assert json.loads((out / "manifest.json").read_text()) == manifest


def test_no_valid_source_names_every_failure_and_leaves_nothing(tiny_sources, tmp_path):
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "images_background.zip").write_bytes(b"garbage")
    out = tmp_path / "raw"
    with pytest.raises(SourceError) as err:
        download.run("omniglot", params_for([str(corrupt), "nowhere"], tiny_sources), out, root=tmp_path)
    msg = str(err.value)
    assert "images_background.zip: no source gave a valid copy" in msg
    assert "corrupt or truncated zip" in msg and "does not exist" in msg
    assert not out.exists()
    assert list(tmp_path.glob(".raw*")) == []  # no temporary leftovers


def test_wrong_archive_is_refused(tiny_sources, tmp_path):
    params = params_for([str(tiny_sources)], tiny_sources)
    spec = params["download"]["omniglot"]["archives"]
    spec["images_background.zip"]["content_sha256"] = spec["images_evaluation.zip"]["content_sha256"]
    with pytest.raises(SourceError, match="content digest .* does not match"):
        download.run("omniglot", params, tmp_path / "raw", root=tmp_path)
    assert not (tmp_path / "raw").exists()


def test_unknown_dataset_and_bad_params(tiny_sources, tmp_path):
    with pytest.raises(ConfigError, match="unknown dataset 'cifar'"):
        download.run("cifar", {}, tmp_path / "raw", root=tmp_path)
    params = params_for([str(tiny_sources)], tiny_sources)
    params["download"]["omniglot"]["mirror"] = "x"
    with pytest.raises(ConfigError, match=r"download.omniglot: unknown key\(s\) \['mirror'\]"):
        download.run("omniglot", params, tmp_path / "raw", root=tmp_path)
    params = params_for([], tiny_sources)
    with pytest.raises(ConfigError, match="download.omniglot.sources = \\[\\]: must be a non-empty list"):
        download.run("omniglot", params, tmp_path / "raw", root=tmp_path)
