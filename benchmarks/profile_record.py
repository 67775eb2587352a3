"""One dataset's branch of a profile run, gathered from its revision into one committed record.

    python -m benchmarks.profile_record cpu-20261201-155629 --dataset mini_imagenet --profile cpu \\
        --out benchmarks/cpu_profile_mini_imagenet.json

A profile runs as a DVC experiment (``bash scripts/repro.sh --profile cpu --temp <targets>``);
its metrics files are committed to the experiment's ref, so they are read with git
(:mod:`metagmvae.analysis.revisions`), not from the workspace. The dataset's stages are those of the
revision's ``dvc.lock`` whose command names the dataset, one of its models or one of its
related methods (``--stages``: only those named, the ones an experiment re-ran). The record
holds the parameters of the dataset's sections as the run used them, every JSON metrics output
of those stages (test accuracies, training records, feature statistics, wall times; not the
per-episode files), the stages' wall times in seconds with their sum, and the machine this
script runs on (run it on the machine that ran the experiment). The paired differences against
another run come from ``python -m metagmvae.analysis.compare`` (its ``--out``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import yaml

from benchmarks.bench import machine
from metagmvae.analysis.revisions import Revision, read_text, resolve
from metagmvae.runtime.io import project_root, write_json


def read_json(revision: Revision, repo: Path, path: str) -> dict:
    text = read_text(revision, repo, path)
    if text is None:
        raise SystemExit(f"{revision.label}: no {path}")
    return json.loads(text)


def dataset_params(params: dict, dataset: str) -> dict[str, dict]:
    """The sections of ``params`` that configure ``dataset``'s stages: section -> key -> settings."""
    chosen = {}
    for section, entries in params.items():
        if not isinstance(entries, dict):
            continue
        keys = {
            k: v for k, v in entries.items() if k == dataset or (isinstance(v, dict) and v.get("dataset") == dataset)
        }
        if keys:
            chosen[section] = keys
    return chosen


def dataset_outputs(revision: Revision, repo: Path, names: set[str], stages: list[str]) -> dict[str, dict[str, dict]]:
    """Stage name -> {path: content} of the JSON metrics outputs (not the per-episode files) of
    every stage whose command's first argument is in ``names`` (and, unless empty, in ``stages``)."""
    lock = yaml.safe_load(read_text(revision, repo, "dvc.lock"))["stages"]
    outputs = {}
    for stage, entry in lock.items():
        if entry["cmd"].split()[2] not in names or (stages and stage not in stages):
            continue
        paths = [o["path"] for o in entry.get("outs", [])]
        paths = [p for p in paths if p.startswith("metrics/") and p.endswith(".json") and "/episodes/" not in p]
        outputs[stage] = {p: read_json(revision, repo, p) for p in paths}
    return outputs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("revision", help="a DVC experiment name or git revision")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--profile", required=True, help="the profile the run applied (a label for the record)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--stages", nargs="+", default=[], help="only these stages (those the experiment ran)")
    args = parser.parse_args(argv)
    repo = project_root()
    try:
        revision = resolve(args.revision, repo)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    params = dataset_params(yaml.safe_load(read_text(revision, repo, "params.yaml")), args.dataset)
    names = {name for entries in params.values() for name in entries}
    outputs = dataset_outputs(revision, repo, names, args.stages)
    seconds = {
        stage: content["seconds"]
        for stage, files in outputs.items()
        for path, content in files.items()
        if path.startswith("metrics/time/")
    }
    record = {
        "revision": revision.label,
        "profile": args.profile,
        "params": params,
        "stage_seconds": seconds,
        "total_seconds": round(sum(seconds.values()), 1),
        "machine": machine(torch.device("cpu")),
        "outputs": outputs,
    }
    write_json(args.out, record)
    print(f"{args.out}: {revision.label}, {len(outputs)} stages, {record['total_seconds'] / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
