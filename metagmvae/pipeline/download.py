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

from metagmvae.config import Checker, ConfigError, counts_per_split, positive, section
from metagmvae.data import mini_imagenet, omniglot
from metagmvae.data.sources import URL_SCHEMES, SourceError, fetch_verified, resolve_source
from metagmvae.io import atomic_dir, write_json


def _sources(check: Checker) -> list[str]:
    return check.get(
        "sources",
        list,
        lambda v: None if v and all(isinstance(s, str) for s in v) else "must be a non-empty list of URLs or folders",
    )


def _omniglot_config(check: Checker) -> dict[str, Any]:
    """``sources``, ``timeout`` and the expected ``(characters, content_sha256)`` per archive."""
    sources, timeout = _sources(check), check.get("timeout_seconds", float, positive)
    archives = check.get("archives", dict, lambda v: None if v else "must name at least one file")
    check.done()
    expected = {}
    for name, spec in archives.items():
        sub = Checker(spec, f"{check.where}.archives.{name}")
        expected[name] = (
            sub.get("characters", int, positive),
            sub.get("content_sha256", str, lambda v: None if len(v) == 64 else "must be a 64-hex-digit SHA-256"),
        )
        sub.done()
    return {"sources": sources, "timeout": timeout, "archives": expected}


def _omniglot(cfg: dict[str, Any], out: Path, root: Path) -> dict[str, Any]:
    """Each archive from the first source whose copy has the expected contents."""
    manifest = {}
    for name, expected in cfg["archives"].items():
        used, summary = fetch_verified(
            name,
            cfg["sources"],
            out / name,
            lambda path, expected=expected: omniglot.verify_archive(path, *expected),
            root,
            cfg["timeout"],
        )
        print(f"{name}: {summary.characters} characters, {summary.images} images, verified, from {used}")
        manifest[name] = vars(summary)
    return manifest


def _mini_imagenet_config(check: Checker) -> dict[str, Any]:
    """``sources``, class counts per split, images per class and ``timeout``."""
    cfg = {
        "sources": _sources(check),
        "classes": check.get("classes", dict, counts_per_split(mini_imagenet.SPLITS, "class counts")),
        "images_per_class": check.get("images_per_class", int, positive),
        "timeout": check.get("timeout_seconds", float, positive),
    }
    check.done()
    return cfg


def _mini_imagenet(cfg: dict[str, Any], out: Path, root: Path) -> dict[str, Any]:
    """The first source folder (packed or JPEG folder) that passes every check, as ``images.h5``."""
    failures = []
    staging = out / "staging"  # downloaded shards, inside the stage's temporary folder
    for source in cfg["sources"]:
        location = resolve_source(source, root)
        try:
            if location.startswith(URL_SCHEMES):
                folder = mini_imagenet.fetch_packed(location, staging, cfg["timeout"])
            else:
                folder = Path(location)
            splits = mini_imagenet.read_source(folder)
            mini_imagenet.verify(splits, cfg["classes"], cfg["images_per_class"])
        except (OSError, urllib.error.URLError, ValueError) as exc:
            failures.append(f"  {location}: {exc}")
            continue
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        mini_imagenet.write_images(out / "images.h5", splits)
        print(f"mini_imagenet: {sum(len(s.jpegs) for s in splits.values())} images verified, from {location}")
        return {split: {"classes": len(s.classes), "images": len(s.jpegs)} for split, s in splits.items()}
    raise SourceError("mini_imagenet: no source gave a complete, valid copy:\n" + "\n".join(failures))


DOWNLOADERS = {  # dataset -> (parse its section, fetch and verify)
    "omniglot": (_omniglot_config, _omniglot),
    "mini_imagenet": (_mini_imagenet_config, _mini_imagenet),
}


def download_config(params: Mapping[str, Any], dataset: str) -> dict[str, Any]:
    """Parse and validate ``download.<dataset>``."""
    if dataset not in DOWNLOADERS:
        raise ConfigError(f"download: unknown dataset {dataset!r}; expected one of {sorted(DOWNLOADERS)}")
    parse, _ = DOWNLOADERS[dataset]
    return parse(Checker(section(params, "download", dataset), f"download.{dataset}"))


def run(dataset: str, params: Mapping[str, Any], out_dir: Path, root: Path) -> dict[str, Any]:
    """Fetch and verify ``dataset`` into ``out_dir`` with a ``manifest.json``; returns the manifest.

    Relative source folders are resolved against ``root`` (the repository root).
    """
    cfg = download_config(params, dataset)
    _, fetch = DOWNLOADERS[dataset]
    with atomic_dir(out_dir) as tmp:
        manifest = fetch(cfg, tmp, root)
        write_json(tmp / "manifest.json", manifest)
    return manifest
