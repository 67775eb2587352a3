"""Write the expected per-member digests of the Omniglot archives, so that a modified copy is
refused naming the first member whose bytes differ (:data:`metagmvae.data.omniglot.MEMBER_DIGESTS`).

    python -m benchmarks.member_digests data/omniglot/raw/images_background.zip \\
        data/omniglot/raw/images_evaluation.zip

Run it on verified archives (the download stage's output): the manifest is keyed by each
archive's content digest, the ``content_sha256`` of params.yaml.
"""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path

from metagmvae.data import omniglot
from metagmvae.runtime.io import atomic_path


def manifest(archives: list[Path]) -> dict[str, dict[str, str]]:
    """``{content_sha256: {"archive": file name, "members": concatenated member digests}}``."""
    out = {}
    for archive in archives:
        groups = omniglot.read_archive(archive)
        out[omniglot.content_digest(groups)] = {"archive": archive.name, "members": omniglot.member_digests(groups)}
    return out


def write_manifest(archives: list[Path], path: Path) -> None:
    """:func:`manifest` as gzip-compressed JSON, byte-identical for identical archives."""
    blob = json.dumps(manifest(archives), sort_keys=True).encode()
    with atomic_path(path) as tmp:
        tmp.write_bytes(gzip.compress(blob, compresslevel=9, mtime=0))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("archives", type=Path, nargs="+")
    parser.add_argument("--out", type=Path, default=omniglot.MEMBER_DIGESTS)
    args = parser.parse_args(argv)
    write_manifest(args.archives, args.out)
    print(f"{args.out}: member digests of {len(args.archives)} archive(s)")


if __name__ == "__main__":
    main()
