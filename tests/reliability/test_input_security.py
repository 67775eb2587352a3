"""Item 6: archives with absolute, ``..`` or symlinked members are refused; source folders
cannot point outside themselves; checkpoints never run pickled code."""

from __future__ import annotations

import copy
import re
import zipfile

import pytest
import yaml
from conftest import REPO, tiny_members, write_mini_folder, write_mini_packed, write_zip

from metagmvae import checkpoint
from metagmvae.data import mini_imagenet, omniglot
from metagmvae.data.sources import SourceError
from metagmvae.io import sha256_file
from metagmvae.pipeline import download
from metagmvae.validate import parse_section

PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())
PNG = tiny_members("images_background.zip", 1)[0][1]


@pytest.mark.parametrize(
    "member",
    ["/etc/cron.d/evil.png", "images_background/../../evil.png", "images_background\\..\\evil.png"],
)
def test_unsafe_member_names_are_refused(tmp_path, member):
    archive = write_zip(tmp_path / "images_background.zip", [(member, PNG)])
    with pytest.raises(omniglot.ArchiveError, match=r"images_background.zip: unsafe member name"):
        omniglot.verify_archive(archive)


def test_symlink_member_is_refused(tmp_path):
    archive = tmp_path / "images_background.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        info = zipfile.ZipInfo("images_background/Alphabet/character01/0001_01.png")
        info.external_attr = 0o120777 << 16  # a symbolic link to /etc/passwd
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(omniglot.ArchiveError, match="is a symbolic link"):
        omniglot.verify_archive(archive)


def test_download_stage_refuses_a_zip_slip_archive_and_writes_nothing(tmp_path):
    source = tmp_path / "mirror"
    source.mkdir()
    write_zip(source / "images_background.zip", [("images_background/../../../evil.png", PNG)])
    params = copy.deepcopy(PARAMS)
    params["download"]["omniglot"]["sources"] = [str(source)]
    work = tmp_path / "work"
    with pytest.raises(SourceError, match=r"unsafe member name 'images_background/../../../evil.png'"):
        download.run(parse_section(params, "download", "omniglot"), work / "raw", tmp_path)
    assert list(work.iterdir()) == [] and not (tmp_path / "evil.png").exists()


def test_source_folders_cannot_name_files_outside_themselves(tmp_path):
    rows = {s: [(f"{s}{i}.jpg", f"n{s}", b"\xff\xd8jpeg") for i in range(2)] for s in ("train", "val", "test")}
    (tmp_path / "secret.jpg").write_bytes(b"\xff\xd8secret")
    # the folder form: a split CSV naming ../../secret.jpg
    folder = write_mini_folder(tmp_path / "folder", rows)
    (folder / "train.csv").write_text("filename,label\n../../secret.jpg,ntrain\n")
    with pytest.raises(mini_imagenet.SourceDataError, match=r"train.csv: refusing the path '../../secret.jpg'"):
        mini_imagenet.read_source(folder)
    # the packed form: SHA256SUMS listing a file outside the folder
    packed = write_mini_packed(tmp_path / "packed", rows)
    with open(packed / "SHA256SUMS", "a") as f:
        f.write(f"{sha256_file(tmp_path / 'secret.jpg')}  ../secret.jpg\n")
    with pytest.raises(mini_imagenet.SourceDataError, match=r"SHA256SUMS: refusing the path '../secret.jpg'"):
        mini_imagenet.read_source(packed)
    # ... or index.csv reading a shard that SHA256SUMS does not vouch for (checksums made to match)
    packed = write_mini_packed(tmp_path / "packed2", rows)
    index = (packed / "index.csv").read_text().replace("train-0.bin", "../secret.jpg", 1)
    (packed / "index.csv").write_text(index)
    sums = [line for line in (packed / "SHA256SUMS").read_text().splitlines() if not line.endswith("index.csv")]
    (packed / "SHA256SUMS").write_text("\n".join([*sums, f"{sha256_file(packed / 'index.csv')}  index.csv"]) + "\n")
    with pytest.raises(mini_imagenet.SourceDataError, match=r"shard '../secret.jpg' is not listed in SHA256SUMS"):
        mini_imagenet.read_source(packed)


class Payload:
    """Unpickling this would create a file: proof that code ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_checkpoint_carrying_code_is_refused_without_running_it(tmp_path):
    import torch

    marker = tmp_path / "code-ran"
    evil = tmp_path / "evil.pt"
    torch.save({"format": checkpoint.FORMAT, "model": Payload(marker)}, evil)
    with pytest.raises(checkpoint.CheckpointError, match=r"evil.pt: unreadable checkpoint"):
        checkpoint.load(evil)
    assert not marker.exists()


def test_no_reader_unpickles_or_evaluates_downloaded_data():
    """The package never calls the loaders that run code from a file."""
    forbidden = re.compile(
        r"pickle\.loads?\(|allow_pickle\s*=\s*True|weights_only\s*=\s*False|(?<![\w.])(eval|exec)\(|"
        r"yaml\.load\(|yaml\.unsafe_load|shell\s*=\s*True|marshal\.loads?\("
    )
    for path in sorted((REPO / "metagmvae").rglob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            assert not forbidden.search(line), f"{path.relative_to(REPO)}:{number}: {line.strip()}"
    assert forbidden.search("state = pickle.load(f)") and not forbidden.search("model.eval()")
