"""The download stage: ordered sources, content verification, all-or-nothing output."""

import json

import pytest
from conftest import TINY_CHARACTERS, tiny_members, write_zip

from benchmarks import member_digests
from metagmvae.data import omniglot
from metagmvae.data.sources import SourceError
from metagmvae.pipeline import download
from metagmvae.runtime.config import ConfigError
from metagmvae.schema.params import parse_section


def params_for(sources, tiny_sources):
    archives = {}
    for name, chars in TINY_CHARACTERS.items():
        digest = omniglot.verify_archive(tiny_sources / name).content_sha256
        archives[name] = {"characters": chars, "content_sha256": digest}
    return {"download": {"omniglot": {"sources": sources, "timeout_seconds": 5, "archives": archives}}}


def fetch(params: dict, out, root):
    return download.run(parse_section(params, "download", "omniglot"), out, root=root)


def test_falls_back_through_sources_to_the_first_valid_copy(tiny_sources, tmp_path):
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    for name in TINY_CHARACTERS:
        (corrupt / name).write_bytes((tiny_sources / name).read_bytes()[:1000])
    sources = ["https://unreachable.invalid/omniglot", "missing-folder", str(corrupt), str(tiny_sources)]
    out = tmp_path / "raw"
    manifest = download.run(
        parse_section(params_for(sources, tiny_sources), "download", "omniglot"), out, root=tmp_path
    )
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
        download.run(
            parse_section(params_for([str(corrupt), "nowhere"], tiny_sources), "download", "omniglot"),
            out,
            root=tmp_path,
        )
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
        fetch(params, tmp_path / "raw", tmp_path)
    assert not (tmp_path / "raw").exists()


def test_unknown_dataset_and_bad_params(tiny_sources):
    params = params_for([str(tiny_sources)], tiny_sources)
    with pytest.raises(ConfigError, match="missing section 'download.cifar'"):
        parse_section(params, "download", "cifar")
    params["download"]["omniglot"]["mirror"] = "x"
    with pytest.raises(ConfigError, match=r"download.omniglot: unknown key\(s\) \['mirror'\]; allowed: \['archives', "):
        parse_section(params, "download", "omniglot")
    params = params_for([], tiny_sources)
    with pytest.raises(ConfigError, match=r"^download.omniglot.sources = \[\]: must have at least 1 item$"):
        parse_section(params, "download", "omniglot")


def test_a_modified_archive_names_the_source_file_and_the_first_changed_member(tiny_sources, tmp_path, monkeypatch):
    manifest = tmp_path / "members.json.gz"
    member_digests.write_manifest([tiny_sources / name for name in TINY_CHARACTERS], manifest)
    monkeypatch.setattr(omniglot, "MEMBER_DIGESTS", manifest)
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    members = tiny_members("images_background.zip", 12)  # in sorted order, as the digests are
    name, data = members[37]
    members[37] = (name, data[:-12] + bytes(12))  # same size, different bytes
    write_zip(mirror / "images_background.zip", members)
    (mirror / "images_evaluation.zip").write_bytes((tiny_sources / "images_evaluation.zip").read_bytes())
    with pytest.raises(SourceError) as err:
        download.run(
            parse_section(params_for([str(mirror)], tiny_sources), "download", "omniglot"), tmp_path / "raw", tmp_path
        )
    message = str(err.value)
    assert f"  {mirror}/images_background.zip: content digest " in message  # the source, not a temporary copy
    assert message.endswith(f"(different or modified images; the first member whose bytes differ is {name})")
    assert ".tmp" not in message and not (tmp_path / "raw").exists()
