"""The results report: every dataset/way/shot with accuracy and CI, the paper's value and the
difference, the baselines, wall time per stage, device and commit.

    metagmvae report            # write metrics/report.md (what the `report` stage runs)

Beside each dataset's results: the paired differences of every result against the revision in
``report.baseline`` of params.yaml (``HEAD``: the previous commit, as the stage runs before the
commit it belongs to; any revision or DVC experiment name), read from the per-episode results
(:mod:`metagmvae.analysis.compare`), and the cross-way results (a model tested at another way than its
own) against the model trained at that way, on the same episodes.

The report names the commit it was written at, and says "with uncommitted changes" when tracked
files other than the pipeline's own outputs (``dvc.lock``, ``metrics/``, ``plots/``) and the
generated pages differ from it. When every result is identical, episode by episode, to the
baseline's (a rerun of the same commit), the paired table is one line saying so. The README
and ``docs/results.md`` show these tables through ``metagmvae docs`` (:mod:`metagmvae.cli.docs`),
never typed by hand.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from metagmvae.analysis.compare import between_methods, between_revisions, interval, revision_table, signed
from metagmvae.analysis.paper import PAPER_RESULTS, UNPUBLISHED_REASON, published
from metagmvae.analysis.revisions import WORKSPACE, Revision, resolve
from metagmvae.data.episodes import parse_episode_key
from metagmvae.evaluation.episode_results import SettingResult, Table, results_path, trained_way
from metagmvae.runtime import command
from metagmvae.runtime.config import ConfigError, load_params
from metagmvae.runtime.io import write_text
from metagmvae.schema.report import report_config

DATASETS = {"omniglot": "Omniglot", "mini_imagenet": "Mini-ImageNet (SimCLR features)"}
METHOD_NAMES = {
    "meta_gmvae": "Meta-GMVAE",
    "pixel_1nn": "pixel 1-NN",
    "logistic_regression": "LR on features (supervised)",
    "lasium": "LASIUM",
    "leo": "LEO (supervised)",
    "sib": "SIB (supervised, transductive)",
}
BACKBONE_NOTE = (
    "Their papers' numbers come from their own setups: LEO and SIB on WRN-28-10 features trained "
    "with labels (SIB also Conv4), LASIUM with its own backbones end to end. Here every method reads "
    "the same inputs (Omniglot pixels, our unsupervised SimCLR features), so a row measures the "
    "meta-learner, not the backbone."
)
INTRO = (
    "Test accuracy (%) on 1000 fixed test episodes per setting, mean ± 95% confidence interval\n"
    "(1.96 · std / √1000); the paper is Lee et al., ICLR 2021, Table 1. Every method of a dataset is\n"
    "scored on the same episodes."
)
OUTPUTS = ("dvc.lock", "metrics", "plots", "README.md", "docs")  # written by the pipeline and `metagmvae docs`
MAIN_METHOD = "meta_gmvae"
SEED_COLUMN = "Meta-GMVAE over training seeds (mean ± sd)"
RELATED_METHODS = ("lasium", "leo", "sib")


def _label(key: str) -> str:
    way, shot = parse_episode_key(key)
    return f"{way}-way {shot}-shot"


def _cell(res: dict | None) -> str:
    return "-" if res is None else f"{res['accuracy']:.2f} ± {res['ci95']:.2f}"


def _published_cell(published: tuple[float, float | None] | None) -> str:
    """A paper's ``(accuracy, ci95)``; some papers quote no CI."""
    if published is None:
        return "-"
    return f"{published[0]:.2f}" + ("" if published[1] is None else f" ± {published[1]:.2f}")


SEEDS = Path("docs/statistics/seeds/seeds.json")  # `metagmvae seeds ... --out docs/statistics/seeds`


@dataclass(frozen=True)
class SeedRecord:
    """A training-seed record (``metagmvae seeds --out``): the spread per (dataset, method,
    setting), the runs it was recorded from, and per dataset whether it is stale (recorded with
    other parameters than ``params``, or with none recorded)."""

    rows: dict[tuple[str, str, str], dict]
    runs: list[str]
    stale: dict[str, str]  # dataset -> why the record does not describe the current parameters ("": it does)


def load_seeds(path: Path, params: Mapping[str, Any]) -> SeedRecord | None:
    """The record at ``path`` judged against the current ``params`` (``None`` when there is none)."""
    from metagmvae.analysis.seeds import params_fingerprint

    if not path.exists():
        return None
    data = json.loads(path.read_text())
    rows = {(r["dataset"], r["method"], r["setting"]): r for r in data["rows"]}
    recorded = data.get("params", {})

    def why(dataset: str) -> str:
        if dataset not in recorded:
            return "params not recorded"
        return "" if recorded[dataset] == params_fingerprint(params, dataset) else "other params"

    return SeedRecord(rows, data["runs"], {d: why(d) for d in {d for d, _, _ in rows}})


def seeds_cell(record: SeedRecord | None, dataset: str, key: str) -> str:
    """``mean ± sd (N seeds at <first run's commit>)`` of Meta-GMVAE at ``key``, with why it is stale."""
    row = record.rows.get((dataset, MAIN_METHOD, key)) if record else None
    if row is None:
        return "not recorded"
    first = record.runs[0]
    at = first.split("(")[-1].rstrip(")") if "(" in first else first  # "HEAD (0142337)" -> 0142337
    cell = f"{row['mean']:.2f} ± {row['std']:.2f} ({len(row['per_seed'])} seeds at {at}"
    return cell + (f"; **stale**: {record.stale[dataset]})" if record.stale[dataset] else ")")


def results_table(dataset: str, results: dict[str, dict[str, dict]], seeds: SeedRecord | None = None) -> str:
    """A markdown table: one row per setting; Meta-GMVAE (this run, and with a seed record the
    mean ± sd over its training seeds), the paper (Table 1) and the difference, then every other method
    in the metrics file.

    results: ``{method: {"<W>way_<s>shot": {"accuracy": %, "ci95": %}}}``.
    """
    paper = PAPER_RESULTS.get(dataset, {})
    results = {m: r for m, r in results.items() if trained_way(m) is None}  # cross-way: their own table
    others = [m for m in results if m != MAIN_METHOD]
    header = ["setting", "Meta-GMVAE", *([SEED_COLUMN] if seeds else []), "paper", "difference"]
    header += [METHOD_NAMES.get(m, m) for m in others]
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for key in sorted({k for r in results.values() for k in r}, key=parse_episode_key):
        ours = results.get(MAIN_METHOD, {}).get(key)
        published = paper.get(key)
        diff = f"{ours['accuracy'] - published[0]:+.2f}" if ours and published else "-"
        cells = [_label(key), _cell(ours), *([seeds_cell(seeds, dataset, key)] if seeds else [])]
        cells += [_published_cell(published), diff]
        cells += [_cell(results[m].get(key)) for m in others]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def _train_shot(spec: dict) -> int | None:
    """The shot a related run's model is meta-trained at (LEO: ``train_shot``; LASIUM, SIB: ``shot``)."""
    return spec.get("train_shot", spec.get("shot"))


def related_results(metrics_dir: Path, dataset: str, related: dict[str, dict]) -> dict[str, dict[str, tuple]]:
    """``{method: {setting: (result, run name)}}`` from every related run on ``dataset``. A setting
    that several runs of one method score is taken from the run trained at that setting's shot,
    else from the first such run in ``related`` (the ``related`` section of params.yaml)."""
    out: dict[str, dict[str, tuple]] = {}
    for name, spec in related.items():
        run = metrics_dir / "related" / f"{name}.json"
        if spec.get("dataset") != dataset or not run.exists():
            continue
        for method, settings in json.loads(run.read_text()).items():
            for key, res in settings.items():
                shot, taken = parse_episode_key(key)[1], out.setdefault(method, {}).get(key)
                if taken is None or _train_shot(spec) == shot != _train_shot(related[taken[1]]):
                    out[method][key] = (res, name)
    return out


def related_table(dataset: str, runs: dict[str, dict[str, tuple]], related: dict[str, dict]) -> str:
    """A markdown table of every related method's accuracy here (and the shot its model was trained
    at) beside its own papers' values, each labelled with its source, then the sources.

    runs: :func:`related_results`; related: the ``related`` section of params.yaml.
    """
    rows = ["| method | setting | trained at | here | published |", "|---|---|---|---|---|"]
    cited, notes = {}, []
    for method in (m for m in RELATED_METHODS if m in runs):
        entries = published(method, dataset)
        if method in UNPUBLISHED_REASON:
            notes.append(UNPUBLISHED_REASON[method])
        for key in sorted(runs[method], key=parse_episode_key):
            res, name = runs[method][key]
            values = [e for e in entries if e.setting == key]
            cited |= {e.source.key: e.source for e in values}
            cell = "; ".join(f"{_published_cell((e.accuracy, e.ci95))} ({e.source.key})" for e in values) or "-"
            trained = f"{_train_shot(related[name])}-shot"
            rows.append("| " + " | ".join([METHOD_NAMES[method], _label(key), trained, _cell(res), cell]) + " |")
    sources = [f"{key}: {source.describe()}." for key, source in sorted(cited.items())]
    return "\n".join(rows) + "".join(f"\n\n{line}" for line in sources + notes)


@dataclass(frozen=True)
class Baseline:
    """What the report's paired differences are taken against."""

    label: str  # the revision as named, with its commit
    table: Table | None  # its per-episode results; None when there is no such revision
    note: str = ""  # why there is nothing to compare against


def method_label(method: str) -> str:
    """A method's column title: ``pixel 1-NN``, ``Meta-GMVAE trained 5-way`` (cross-way)."""
    way = trained_way(method)
    return METHOD_NAMES.get(method, method) if way is None else f"Meta-GMVAE trained {way}-way"


def episode_paths(metrics_dir: Path, related: dict[str, dict]) -> list[str]:
    """The per-episode files of the evaluations the report shows (``/``-separated paths)."""
    metrics = [metrics_dir / f"{dataset}.json" for dataset in DATASETS]
    metrics += [metrics_dir / "related" / f"{name}.json" for name in related]
    return [results_path(path).as_posix() for path in metrics]


def paired_table(dataset: str, results: dict[str, dict], current: Table, baseline: Baseline) -> str | None:
    """Setting x method (the results table's columns, then the cross-way results): the paired
    difference of every result against the baseline's, with its 95% CI; ``None`` when nothing
    of ``dataset`` is in both."""
    rows = between_revisions(baseline.table or {}, current, datasets=[dataset])
    if not rows:
        return None
    if all(_identical(baseline.table[key], current[key]) for key in ((r.dataset, r.method, r.setting) for r in rows)):
        return f"Every result is identical, episode by episode, to `{baseline.label}`'s: no paired differences to show."
    compared = {r.method for r in rows}
    columns = [MAIN_METHOD, *(m for m in results if m != MAIN_METHOD and trained_way(m) is None)]
    methods = [m for m in columns if m in compared] + sorted(compared - set(columns), key=lambda m: trained_way(m) or 0)
    cells = {(r.method, r.setting): r for r in rows}
    lines = [
        f"Paired differences against `{baseline.label}`: this run minus that one on the same episodes, in "
        "points, with the 95% CI of the mean per-episode difference (paired t); 'episodes differ': "
        "scored on other episodes, not comparable:",
        "",
        "| setting | " + " | ".join(method_label(m) for m in methods) + " |",
        "|" + "---|" * (len(methods) + 1),
    ]
    for setting in sorted({r.setting for r in rows}, key=parse_episode_key):
        row = [_label(setting)]
        for method in methods:
            r = cells.get((method, setting))
            row.append("-" if r is None else "episodes differ" if r.paired is None else _difference(r.paired))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def cross_way_table(dataset: str, results: dict[str, dict[str, dict]], current: Table) -> str | None:
    """Every cross-way result beside the model trained at the test way, on the same episodes,
    with the paired difference; ``None`` when ``dataset`` has none."""
    crossed = sorted((m for m in results if trained_way(m) is not None), key=trained_way)
    if not crossed:
        return None
    lines = [
        "Cross-way (the paper's Table 2, right): each model also tested at another way than the one it was "
        "trained at, on the same episodes as the model trained at that way; difference = cross-way "
        "minus own-way model, paired 95% CI:",
        "",
        "| setting | trained at | accuracy | trained at the test way | difference |",
        "|---|---|---|---|---|",
    ]
    for method in crossed:
        paired = {r.setting: r for r in between_methods(current, MAIN_METHOD, method, datasets=[dataset])}
        for key in sorted(results[method], key=parse_episode_key):
            own, r = results.get(MAIN_METHOD, {}).get(key), paired.get(key)
            diff = "-" if r is None else "episodes differ" if r.paired is None else _difference(r.paired)
            cells = [_label(key), f"{trained_way(method)}-way", _cell(results[method][key]), _cell(own), diff]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _identical(a: SettingResult, b: SettingResult) -> bool:
    """The same episodes and the same count of correct queries on every one of them."""
    return a.episodes_sha256 == b.episodes_sha256 and np.array_equal(a.accuracies, b.accuracies)


def _difference(paired) -> str:
    return f"{signed(paired.mean)} {interval(paired)}"


def dataset_results(metrics_dir: Path, dataset: str, runs: dict[str, dict[str, tuple]]) -> dict[str, dict[str, dict]]:
    """``metrics/<dataset>.json`` merged with the related runs' results on ``dataset``.

    runs: what :func:`related_results` returns for ``dataset``.
    """
    path = metrics_dir / f"{dataset}.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    for method, settings in runs.items():
        results[method] = {key: res for key, (res, _) in settings.items()}
    return results


def results_section(
    metrics_dir: Path,
    related: dict[str, dict] | None = None,
    baseline: Baseline | None = None,
    seeds: SeedRecord | None = None,
) -> str:
    """Markdown: per dataset with metrics, a heading, the results table, the paired differences
    against ``baseline`` and the cross-way results (where there are per-episode results) and,
    when related methods ran on it, their table against their own papers."""
    parts, tables, compared = [], [], 0
    current = revision_table(Revision(WORKSPACE, None), Path.cwd(), episode_paths(metrics_dir, related or {}))
    for dataset, title in DATASETS.items():
        runs = related_results(metrics_dir, dataset, related or {})
        results = dataset_results(metrics_dir, dataset, runs)
        if not results:
            continue
        tables.append(results)
        parts.append(f"### {title}\n\n{results_table(dataset, results, seeds)}")
        paired = paired_table(dataset, results, current, baseline) if baseline else None
        compared += paired is not None
        parts += [t for t in (paired, cross_way_table(dataset, results, current)) if t]
        if runs:
            table = related_table(dataset, runs, related or {})
            parts.append(f"Related methods against their own papers:\n\n{table}")
    if any(m in RELATED_METHODS for results in tables for m in results):
        parts.append(BACKBONE_NOTE)
    if baseline and not compared:
        parts.append(f"No paired differences against `{baseline.label}`: {baseline.note or 'no results in common'}.")
    return "\n\n".join(parts)


def timing_section(time_dir: Path) -> str:
    """Markdown table of the last successful run of every stage (seconds of wall time, device)."""
    records = [json.loads(p.read_text()) for p in sorted(time_dir.glob("*.json"))]
    if not records:
        return "No stage timings recorded yet."
    rows = ["| stage | wall time | device |", "|---|---|---|"]
    for rec in records:
        rows.append(f"| {rec['stage']} | {rec['seconds'] / 60:.1f} min | {rec['device']} |")
    total = sum(r["seconds"] for r in records)
    rows.append(f"| **total** | **{total / 60:.1f} min** | |")
    return "\n".join(rows)


def build_report(
    metrics_dir: Path,
    commit: str,
    related: dict[str, dict] | None = None,
    baseline: Baseline | None = None,
    seeds: SeedRecord | None = None,
) -> str:
    """The whole ``metrics/report.md`` (``commit``: :func:`commit_text`; ``related``: the
    ``related`` section of params.yaml; ``baseline``: the per-episode results the paired
    differences are taken against; ``seeds``: the training-seed record, :func:`load_seeds`)."""
    return (
        "# Results\n\n"
        f"Written by the `report` stage at {commit}.\n\n"
        f"{INTRO}\n\n"
        f"{results_section(metrics_dir, related, baseline, seeds)}\n\n"
        "## Wall time per stage\n\n"
        f"{timing_section(metrics_dir / 'time')}\n"
    )


def report_body(report: str) -> str:
    """The report without its title and commit line (what ``docs/results.md`` shows)."""
    return report.split("\n\n", 2)[2].strip()


def commit_text(repo: Path) -> str:
    """``commit `<sha>` ``, with `` with uncommitted changes (<files>)`` when tracked files other
    than the pipeline's outputs differ from it; ``an unversioned folder`` outside git."""
    git = ["git", "-C", str(repo)]
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode != 0:
        return "an unversioned folder (no git commit)"
    excluded = [f":(exclude){path}" for path in OUTPUTS]
    status = subprocess.run(
        [*git, "status", "--porcelain", "--untracked-files=no", "--", ".", *excluded], capture_output=True, text=True
    )
    changed = [line[3:] for line in status.stdout.splitlines()]
    text = f"commit `{head.stdout.strip()}`"
    if changed:
        shown = ", ".join(changed[:3]) + (f" and {len(changed) - 3} more" if len(changed) > 3 else "")
        text += f" with uncommitted changes ({shown})"
    return text


def load_baseline(name: str, metrics_dir: Path, related: dict[str, dict]) -> Baseline:
    """The per-episode results at revision ``name``, or why there are none (no such revision:
    a repository without commits, a folder outside git; or no per-episode files there)."""
    repo = Path.cwd()
    try:
        revision = resolve(name, repo)
        in_repo = metrics_dir.resolve().relative_to(repo.resolve())  # git paths are relative to the repository
        table = revision_table(revision, repo, episode_paths(in_repo, related))
    except ValueError as exc:
        return Baseline(name, None, str(exc))
    return Baseline(revision.label, table, "" if table else "it has no per-episode results (metrics/**/episodes/)")


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """``metagmvae report``: exit status 0, or 2 (one line) without metrics or with a bad
    ``report`` section."""
    parser = command.parser(__doc__, prog or "metagmvae report")
    parser.add_argument("--metrics", type=Path, default=Path("metrics"), help="the metrics folder (default: metrics)")
    parser.add_argument(
        "--params", type=Path, default=Path("params.yaml"), help="for the related runs and report.baseline"
    )
    parser.add_argument("--seeds", type=Path, default=SEEDS, help=f"the training-seed record (default: {SEEDS})")
    args = parser.parse_args(argv)
    if not args.metrics.is_dir():
        return command.fail(parser.prog, f"{args.metrics}: no metrics folder (run `dvc repro` first)")
    try:
        params = load_params(args.params) if args.params.exists() else {}
        related = params.get("related", {})
        baseline = load_baseline(report_config(params).baseline, args.metrics, related) if params else None
    except ConfigError as exc:
        return command.fail(parser.prog, exc)
    report_path = args.metrics / "report.md"
    seeds = load_seeds(args.seeds, params)
    write_text(report_path, build_report(args.metrics, commit_text(Path.cwd()), related, baseline, seeds))
    print(report_path.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
