"""The `download` stage: a dataset's raw files, fetched from an ordered list of sources and verified.

The output folder appears only once everything is fetched and verified (all or nothing), and
it holds nothing machine-specific (not the source used), so its hash is the same for everyone.
"""

from __future__ import annotations

import shutil
import urllib.error
from pathlib import Path
from typing import Any

from metagmvae.data import mini_imagenet, omniglot
from metagmvae.data.sources import URL_SCHEMES, SourceError, fetch_verified, resolve_source
from metagmvae.runtime.io import atomic_dir, write_json
from metagmvae.schema.data import MiniImagenetDownload, OmniglotDownload


def _omniglot(cfg: OmniglotDownload, out: Path, root: Path) -> dict[str, Any]:
    """Each archive from the first source whose copy has the expected contents."""
    manifest = {}
    for name, expected in cfg.archives.items():

        def verify(path: Path, label: str, expected=expected) -> omniglot.ArchiveSummary:
            return omniglot.verify_archive(path, expected.characters, expected.content_sha256, label=label)

        used, summary = fetch_verified(name, cfg.sources, out / name, verify, root, cfg.timeout_seconds)
        print(f"{name}: {summary.characters} characters, {summary.images} images, verified, from {used}")
        manifest[name] = vars(summary)
    return manifest


def _mini_imagenet(cfg: MiniImagenetDownload, out: Path, root: Path) -> dict[str, Any]:
    """The first source folder (packed or JPEG folder) that passes every check, as ``images.h5``."""
    failures = []
    staging = out / "staging"  # downloaded shards, inside the stage's temporary folder
    for source in cfg.sources:
        location = resolve_source(source, root)
        try:
            if location.startswith(URL_SCHEMES):
                folder = mini_imagenet.fetch_packed(location, staging, cfg.timeout_seconds)
            else:
                folder = Path(location)
            splits = mini_imagenet.read_source(folder)
            mini_imagenet.verify(splits, cfg.classes.model_dump(), cfg.images_per_class)
        except (OSError, urllib.error.URLError, ValueError) as exc:
            failures.append(f"  {location}: {exc}")
            continue
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        mini_imagenet.write_images(out / "images.h5", splits)
        print(f"mini_imagenet: {sum(len(s.jpegs) for s in splits.values())} images verified, from {location}")
        return {split: {"classes": len(s.classes), "images": len(s.jpegs)} for split, s in splits.items()}
    raise SourceError("mini_imagenet: no source gave a complete, valid copy:\n" + "\n".join(failures))


def run(cfg: OmniglotDownload | MiniImagenetDownload, out_dir: Path, root: Path) -> dict[str, Any]:
    """Fetch and verify the dataset of ``cfg`` (its ``download`` section) into ``out_dir`` with a
    ``manifest.json``; returns the manifest.

    Relative source folders are resolved against ``root`` (the repository root).
    """
    fetch = _omniglot if isinstance(cfg, OmniglotDownload) else _mini_imagenet
    with atomic_dir(out_dir) as tmp:
        manifest = fetch(cfg, tmp, root)
        write_json(tmp / "manifest.json", manifest)
    return manifest
