"""The `download` stage: a dataset's raw files, fetched from an ordered list of sources and verified.

The output folder appears only once everything is fetched and verified (all or nothing), and
it holds nothing machine-specific (not the source used), so its hash is the same for everyone.
"""

from __future__ import annotations

import shutil
import urllib.error
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from metagmvae.config import Checker, ConfigError, positive, section
from metagmvae.data import mini_imagenet, omniglot
from metagmvae.data.sources import URL_SCHEMES, SourceError, fetch_verified, resolve_source
from metagmvae.io import atomic_dir, write_json


def _sources(check: Checker) -> list[str]:
    return check.get(
        "sources",
        list,
        lambda v: None if v and all(isinstance(s, str) for s in v) else "must be a non-empty list of URLs or folders",
    )


def _omniglot(check: Checker, out: Path, root: Path) -> dict[str, Any]:
    """Each archive from the first source whose copy has the expected contents."""
    sources, timeout = _sources(check), check.get("timeout_seconds", float, positive)
    archives = check.get("archives", dict, lambda v: None if v else "must name at least one file")
    check.done()
    verifiers = {}
    for name, spec in archives.items():
        sub = Checker(spec, f"{check.where}.archives.{name}")
        expected = (
            sub.get("characters", int, positive),
            sub.get("content_sha256", str, lambda v: None if len(v) == 64 else "must be a 64-hex-digit SHA-256"),
        )
        sub.done()
        verifiers[name] = lambda path, expected=expected: omniglot.verify_archive(path, *expected)
    manifest = {}
    for name, verify in verifiers.items():
        used, summary = fetch_verified(name, sources, out / name, verify, root, timeout)
        print(f"{name}: {summary.characters} characters, {summary.images} images, verified, from {used}")
        manifest[name] = vars(summary)
    return manifest


def _mini_imagenet(check: Checker, out: Path, root: Path) -> dict[str, Any]:
    """The first source folder (packed or JPEG folder) that passes every check, as ``images.h5``."""
    sources = _sources(check)
    classes = check.get(
        "classes",
        dict,
        lambda v: (
            None
            if sorted(v) == sorted(mini_imagenet.SPLITS) and all(isinstance(n, int) and n > 0 for n in v.values())
            else "must map train, val and test to class counts > 0"
        ),
    )
    per_class = check.get("images_per_class", int, positive)
    timeout = check.get("timeout_seconds", float, positive)
    check.done()
    failures = []
    staging = out / "staging"  # downloaded shards, inside the stage's temporary folder
    for source in sources:
        location = resolve_source(source, root)
        try:
            if location.startswith(URL_SCHEMES):
                folder = mini_imagenet.fetch_packed(location, staging, timeout)
            else:
                folder = Path(location)
            splits = mini_imagenet.read_source(folder)
            mini_imagenet.verify(splits, classes, per_class)
        except (OSError, urllib.error.URLError, ValueError) as exc:
            failures.append(f"  {location}: {exc}")
            continue
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        mini_imagenet.write_images(out / "images.h5", splits)
        print(f"mini_imagenet: {sum(len(s.jpegs) for s in splits.values())} images verified, from {location}")
        return {split: {"classes": len(s.classes), "images": len(s.jpegs)} for split, s in splits.items()}
    raise SourceError("mini_imagenet: no source gave a complete, valid copy:\n" + "\n".join(failures))


DOWNLOADERS = {"omniglot": _omniglot, "mini_imagenet": _mini_imagenet}


def run(dataset: str, params: Mapping[str, Any], out_dir: Path, root: Path) -> dict[str, Any]:
    """Fetch and verify ``dataset`` into ``out_dir`` with a ``manifest.json``; returns the manifest.

    Relative source folders are resolved against ``root`` (the repository root).
    """
    if dataset not in DOWNLOADERS:
        raise ConfigError(f"download: unknown dataset {dataset!r}; expected one of {sorted(DOWNLOADERS)}")
    check = Checker(section(params, "download", dataset), f"download.{dataset}")
    with atomic_dir(out_dir) as tmp:
        manifest = DOWNLOADERS[dataset](check, tmp, root)
        write_json(tmp / "manifest.json", manifest)
    return manifest
