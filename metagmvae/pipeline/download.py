"""The `download` stage: every raw file of a dataset, fetched from its sources and verified."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from metagmvae.config import Checker, ConfigError, positive, section
from metagmvae.data import omniglot
from metagmvae.data.sources import fetch_verified
from metagmvae.io import atomic_dir, write_json

log = logging.getLogger(__name__)


def _omniglot_verifier(name: str, spec: Mapping[str, Any]):
    check = Checker(spec, f"download.omniglot.archives.{name}")
    characters = check.get("characters", int, positive)
    digest = check.get("content_sha256", str, lambda v: None if len(v) == 64 else "must be a 64-hex-digit SHA-256")
    check.done()

    def verify(path: Path) -> omniglot.ArchiveSummary:
        return omniglot.verify_archive(path, characters, digest)

    return verify


VERIFIERS = {"omniglot": _omniglot_verifier}


def run(dataset: str, params: Mapping[str, Any], out_dir: Path, root: Path) -> dict[str, Any]:
    """Fetch every archive of ``dataset`` into ``out_dir`` (all or nothing).

    Writes ``manifest.json`` with what each file holds (no machine-specific paths, so the
    output hash does not depend on which source was used). Returns the manifest.
    """
    if dataset not in VERIFIERS:
        raise ConfigError(f"download: unknown dataset {dataset!r}; expected one of {sorted(VERIFIERS)}")
    check = Checker(section(params, "download", dataset), f"download.{dataset}")
    sources = check.get(
        "sources",
        list,
        lambda v: None if v and all(isinstance(s, str) for s in v) else "must be a non-empty list of URLs or folders",
    )
    timeout = check.get("timeout_seconds", float, positive)
    archives = check.get("archives", dict, lambda v: None if v else "must name at least one file")
    check.done()
    verifiers = {name: VERIFIERS[dataset](name, spec) for name, spec in archives.items()}

    manifest = {}
    with atomic_dir(out_dir) as tmp:
        for name, verify in verifiers.items():
            used, summary = fetch_verified(name, sources, tmp / name, verify, root, timeout)
            log.info("%s: verified copy from %s", name, used)
            print(f"{name}: {summary.characters} characters, {summary.images} images, verified, from {used}")
            manifest[name] = vars(summary)
        write_json(tmp / "manifest.json", manifest)
    return manifest
