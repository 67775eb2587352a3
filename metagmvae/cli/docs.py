"""Regenerate every number of README.md and docs/ that comes from a record: `metagmvae docs`.

    metagmvae docs            # rewrite the generated blocks from metrics/ and benchmarks/
    metagmvae docs --check    # exit status 1, naming each stale block, when one differs

A generated block sits between ``<!-- generated: NAME (metagmvae docs) -->`` and
``<!-- end generated: NAME -->``; everything between the two lines is rewritten, nothing else.
The blocks and their records:

    results     README.md           Meta-GMVAE, the paper and every method per setting: metrics/*.json,
                                    metrics/related/*.json (the runs named in params.yaml's `related`)
    headline    README.md           where Meta-GMVAE stands against the paper and the baselines: the same
    quick-time  README.md           the quick profile's time: metrics/time/*.json
    profiles    README.md           time and accuracy per profile: metrics/time/*.json, metrics/*.json,
                                    benchmarks/cpu_profile_mini_imagenet.json
    report      docs/results.md     every table of metrics/report.md (the `report` stage), without its
                                    commit line
    parameters  docs/parameters.md  every key of params.yaml: the schemas and params.yaml

`bash scripts/repro.sh` runs it after the pipeline, so the README always shows the metrics of
the workspace; the tests run `--check`.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

import yaml

from metagmvae.analysis.report import (
    DATASETS,
    MAIN_METHOD,
    METHOD_NAMES,
    SEEDS,
    dataset_results,
    load_seeds,
    related_results,
    report_body,
    results_table,
)
from metagmvae.evaluation.episode_results import trained_way
from metagmvae.runtime import command
from metagmvae.runtime.io import write_text

BLOCK = re.compile(
    r"(?P<head><!-- generated: (?P<name>[\w-]+) \(metagmvae docs\) -->\n)"
    r"(?P<body>.*?)(?P<tail><!-- end generated: (?P=name) -->)",
    re.S,
)
FILES = ("README.md", "docs/results.md", "docs/parameters.md")
NOT_MEASURED = "not yet measured"
CPU_MINI_IMAGENET = "benchmarks/cpu_profile_mini_imagenet.json"


def _params(repo: Path) -> dict:
    return yaml.safe_load((repo / "params.yaml").read_text()) or {}


def _results(repo: Path) -> dict[str, dict[str, dict[str, dict]]]:
    """``{dataset: {method: {setting: result}}}`` of the workspace's metrics files."""
    related = _params(repo).get("related", {})
    metrics = repo / "metrics"
    return {d: dataset_results(metrics, d, related_results(metrics, d, related)) for d in DATASETS}


def results_block(repo: Path) -> str:
    """Per dataset, the results table of ``metrics/report.md`` (no paired or cross-way tables)."""
    seeds = load_seeds(repo / SEEDS, _params(repo))
    parts = [f"**{DATASETS[d]}**\n\n{results_table(d, r, seeds)}" for d, r in _results(repo).items() if r]
    return "\n\n".join(parts) or "No metrics yet: run `bash scripts/repro.sh`."


def _range(values: list[float]) -> str:
    low, high = min(values), max(values)
    return f"{low:.1f}" if f"{low:.1f}" == f"{high:.1f}" else f"{low:.1f} to {high:.1f}"


def headline_block(repo: Path) -> str:
    """One line per dataset: Meta-GMVAE's distance to the paper and how many settings it wins
    against each other method on the same episodes."""
    from metagmvae.analysis.paper import PAPER_RESULTS

    lines = []
    for dataset, results in _results(repo).items():
        ours = results.get(MAIN_METHOD, {})
        if not ours:
            continue
        paper = PAPER_RESULTS.get(dataset, {})
        gaps = [paper[k][0] - r["accuracy"] for k, r in ours.items() if k in paper]
        versus = []
        for method, theirs in results.items():
            shared = [k for k in ours if k in theirs and method != MAIN_METHOD and trained_way(method) is None]
            if shared:
                ahead = sum(ours[k]["accuracy"] > theirs[k]["accuracy"] for k in shared)
                versus.append(f"ahead of {METHOD_NAMES.get(method, method)} in {ahead} of {len(shared)}")
        gap = f"{_range(gaps)} points below the paper" if gaps else "no paper value"
        lines.append(f"- **{DATASETS[dataset]}**: {gap} across {len(ours)} settings; " + ", ".join(versus) + ".")
    return "\n".join(lines) or "No metrics yet."


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


def _accuracy(results: dict, dataset: str, setting: str = "5way_1shot") -> str:
    res = results.get(dataset, {}).get(MAIN_METHOD, {}).get(setting)
    return NOT_MEASURED if res is None else f"{res['accuracy']:.2f}"


def _stage_times(repo: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((repo / "metrics" / "time").glob("*.json"))]


def quick_time_block(repo: Path) -> str:
    """The quick profile's measured time: the sum of its stages' last runs, and the machine."""
    times = _stage_times(repo)
    if not times:
        return f"The quick profile's time: {NOT_MEASURED}."
    devices = ", ".join(sorted({t["device"] for t in times}))
    return (
        f"Its stages took **{_minutes(sum(t['seconds'] for t in times))}** in all on the machine that ran them last "
        f"({devices}; the sum of `metrics/time/*.json`, per stage in [docs/results.md](docs/results.md))."
    )


def profiles_block(repo: Path) -> str:
    """Per profile: what it is, its measured time and Meta-GMVAE's 5-way 1-shot accuracy, with
    the record each number comes from."""
    rows = [
        "| profile | what | measured time | Meta-GMVAE 5-way 1-shot: Omniglot / Mini-ImageNet | record |",
        "|---|---|---|---|---|",
    ]
    quick_time = "[above](#run-it)" if _stage_times(repo) else NOT_MEASURED
    results = _results(repo)
    quick = f"{_accuracy(results, 'omniglot')} / {_accuracy(results, 'mini_imagenet')}"
    rows.append(f"| quick (`params.yaml`) | the whole pipeline, both datasets | {quick_time} | {quick} | `metrics/` |")
    cpu_record = repo / CPU_MINI_IMAGENET
    cpu_time, cpu_acc = NOT_MEASURED, NOT_MEASURED
    if cpu_record.exists():
        record = json.loads(cpu_record.read_text())
        cpu_time = f"Omniglot {NOT_MEASURED}; Mini-ImageNet branch {_minutes(record['total_seconds'])}"
        metrics = record["outputs"]["evaluate@mini_imagenet"]["metrics/mini_imagenet.json"]
        cpu_acc = _accuracy({"mini_imagenet": metrics}, "mini_imagenet")
    rows.append(
        f"| cpu (`profiles/cpu.yaml`) | a longer CPU budget per branch | {cpu_time} | {NOT_MEASURED} / {cpu_acc} | "
        f"`{CPU_MINI_IMAGENET}` |"
    )
    rows.append(
        f"| paper (`profiles/paper.yaml`) | the official settings, for a GPU | {NOT_MEASURED} | {NOT_MEASURED} | - |"
    )
    return "\n".join(rows)


def report_block(repo: Path) -> str:
    """Every table of ``metrics/report.md``, after its commit line."""
    report = repo / "metrics" / "report.md"
    return report_body(report.read_text()) if report.exists() else "No report yet: run `bash scripts/repro.sh`."


def parameters_block(repo: Path) -> str:
    from metagmvae.cli.params_doc import parameters_reference

    text = (repo / "params.yaml").read_text()
    return parameters_reference(yaml.safe_load(text), text)


GENERATORS: dict[str, Callable[[Path], str]] = {
    "results": results_block,
    "headline": headline_block,
    "profiles": profiles_block,
    "quick-time": quick_time_block,
    "report": report_block,
    "parameters": parameters_block,
}


def regenerate(text: str, repo: Path, where: str) -> str:
    """``text`` with every generated block rewritten; a block of unknown name is an error."""

    def body(match: re.Match) -> str:
        name = match["name"]
        if name not in GENERATORS:
            raise ValueError(f"{where}: unknown generated block {name!r} (known: {', '.join(GENERATORS)})")
        return f"{match['head']}{GENERATORS[name](repo).rstrip()}\n{match['tail']}"

    return BLOCK.sub(body, text)


def stale(repo: Path) -> list[str]:
    """``file: block NAME`` for every generated block whose text differs from its records."""
    found = []
    for name in FILES:
        path = repo / name
        if not path.exists():
            found.append(f"{name}: missing")
            continue
        text = path.read_text()
        fresh = regenerate(text, repo, name)
        old = {m["name"]: m["body"] for m in BLOCK.finditer(text)}
        new = {m["name"]: m["body"] for m in BLOCK.finditer(fresh)}
        found += [f"{name}: block {block!r} is stale" for block in old if old[block] != new[block]]
    return found


def write(repo: Path) -> list[str]:
    """Rewrite the generated blocks of every file; the files that changed."""
    changed = []
    for name in FILES:
        path = repo / name
        if path.exists():
            text = path.read_text()
            if (fresh := regenerate(text, repo, name)) != text:
                write_text(path, fresh)
                changed.append(name)
    return changed


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """``metagmvae docs``: exit status 0; with ``--check``, 1 when a block is stale."""
    parser = command.parser(__doc__, prog or "metagmvae docs")
    parser.add_argument("--check", action="store_true", help="change nothing; exit status 1 naming each stale block")
    parser.add_argument("--repo", type=Path, default=Path("."), help="the repository root (default: here)")
    args = parser.parse_args(argv)
    if not (args.repo / "params.yaml").exists():
        return command.fail(parser.prog, f"{args.repo.resolve()}: no params.yaml (run it at the repository root)")
    try:
        if args.check:
            if found := stale(args.repo):
                print("\n".join(found) + "\n(regenerate with `metagmvae docs`)", file=sys.stderr)
                return 1
            print("every generated block is up to date")
            return 0
        changed = write(args.repo)
    except ValueError as exc:
        return command.fail(parser.prog, exc)
    print(f"updated: {', '.join(changed)}" if changed else "every generated block was up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
