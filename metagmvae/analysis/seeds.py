"""Training-seed spread of one configuration: N runs that differ only in their seeds.

    # seeds 1 and 2 of both Omniglot models through the DVC queue (seed 0 is the committed run)
    for s in 1 2; do
      dvc exp run --queue -n seed$s -S metatrain.omniglot_5way.seed=$s -S metatrain.omniglot_20way.seed=$s
    done
    dvc queue start -j 1            # wait until `dvc queue status` shows every run as Success
    metagmvae seeds HEAD seed1 seed2 --dataset omniglot
    metagmvae seeds HEAD seed1 seed2 --dataset omniglot --out docs/seeds   # + seeds.json, seeds.png

Reads each revision's per-episode results (as :mod:`metagmvae.analysis.compare` does) and prints, for
every dataset, method and setting present in all of them: each seed's accuracy, the mean across
seeds, the standard deviation across seeds, the 95% t interval of that mean (N - 1 degrees of
freedom) and, beside them, the per-episode CI of one run (``1.96 · std / √n``, the ``ci95`` of
the metrics files, averaged over the seeds). Refuses runs scored on different episodes.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml

from metagmvae.analysis.compare import EpisodesDiffer, add_selection_arguments, revision_table, select
from metagmvae.analysis.revisions import Revision, read_text, resolve
from metagmvae.analysis.stats import SeedSpread, seed_spread
from metagmvae.evaluation.episode_results import Table
from metagmvae.runtime import command

METHOD_NOTE = (
    "std: standard deviation of the N runs' accuracies (ddof 1); ± mean: 95% t interval of the mean "
    "across seeds (N - 1 degrees of freedom); ± episodes: per-episode CI of one run (1.96 · std / √n)"
)


def spreads(
    tables: dict[str, Table], *, datasets: list[str], methods: list[str], settings: list[str]
) -> dict[tuple[str, str, str], SeedSpread]:
    """The seed spread of every (dataset, method, setting) found in every run's table and in the
    filters (empty: all). tables: revision label -> its table, one per seed.

    Raises ``ValueError`` when a result was scored on different episodes in two runs.
    """
    common = set.intersection(*(set(t) for t in tables.values()))
    keys = select(common, datasets=datasets, methods=methods, settings=settings)
    out = {}
    for key in keys:
        results = [t[key] for t in tables.values()]
        if len({r.episodes_sha256 for r in results}) > 1:
            sources = ", ".join(f"{r.source} ({r.episodes_sha256[:12]})" for r in results)
            raise EpisodesDiffer(f"{' '.join(key)}: the runs were scored on different episodes: {sources}")
        out[key] = seed_spread([r.accuracies for r in results])
    return out


def format_spreads(rows: dict[tuple[str, str, str], SeedSpread], labels: list[str]) -> str:
    header = ["dataset", "method", "setting", "N", "per seed", "mean", "std", "± mean", "± episodes"]
    lines = [header]
    for (dataset, method, setting), s in rows.items():
        per_seed = " ".join(f"{v:.2f}" for v in s.per_seed)
        lines.append(
            [dataset, method, setting, str(len(s.per_seed)), per_seed, f"{s.mean:.2f}", f"{s.std:.2f}"]
            + [f"{s.mean_half_width:.2f}", f"{s.episode_ci95:.2f}"]
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    body = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in lines]
    return f"runs (seeds in this order): {', '.join(labels)}\n{METHOD_NOTE}\n" + "\n".join(body)


def dataset_params(params: Mapping[str, Any], dataset: str) -> dict[str, Any]:
    """The parameters that make ``dataset``'s results, with every ``seed`` key dropped (what N
    seed runs share): each stage's section named after the dataset or whose ``dataset`` is it."""

    def without_seeds(value):
        if isinstance(value, Mapping):
            return {k: without_seeds(v) for k, v in value.items() if k != "seed"}
        return value

    out = {}
    for stage, sections in params.items():
        if isinstance(sections, Mapping):
            for name, section in sections.items():
                if name == dataset or (isinstance(section, Mapping) and section.get("dataset") == dataset):
                    out[f"{stage}.{name}"] = without_seeds(section)
    return out


def params_fingerprint(params: Mapping[str, Any], dataset: str) -> str:
    """12 hex digits identifying :func:`dataset_params` (key order does not matter)."""
    text = json.dumps(dataset_params(params, dataset), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def revision_fingerprints(revisions: list[Revision], repo: Path, datasets: set[str]) -> dict[str, str]:
    """Per dataset, the fingerprint the runs share; refuses runs that differ in more than their seeds."""
    params = {r.label: yaml.safe_load(read_text(r, repo, "params.yaml") or "{}") or {} for r in revisions}
    out = {}
    for dataset in sorted(datasets):
        prints = {label: params_fingerprint(p, dataset) for label, p in params.items()}
        if len(set(prints.values())) > 1:
            raise ValueError(f"{dataset}: the runs differ in more than their seeds (parameters {prints})")
        out[dataset] = next(iter(prints.values()))
    return out


def as_records(rows: dict[tuple[str, str, str], SeedSpread]) -> list[dict]:
    return [
        {"dataset": d, "method": m, "setting": s, **{k: _rounded(v) for k, v in asdict(spread).items()}}
        for (d, m, s), spread in rows.items()
    ]


def _rounded(value):
    return [round(v, 4) for v in value] if isinstance(value, tuple) else round(value, 4)


def write_outputs(
    rows: dict[tuple[str, str, str], SeedSpread], labels: list[str], out_dir: Path, params: dict[str, str]
) -> None:
    """``out_dir/seeds.json`` and ``seeds.png``, also logged to MLflow as a ``seeds`` run's artifacts.

    params: per dataset, the runs' :func:`params_fingerprint` (the report flags the record as
    stale when the committed parameters give another)."""
    from metagmvae.analysis import plots
    from metagmvae.runtime.io import write_json
    from metagmvae.runtime.tracking import start_run

    data, figure = out_dir / "seeds.json", out_dir / "seeds.png"
    write_json(data, {"runs": labels, "params": params, "method": METHOD_NOTE, "rows": as_records(rows)})
    plots.seed_spread_figure(
        [" ".join(key) for key in rows],
        list(rows.values()),
        f"{len(labels)} training seeds ({', '.join(labels)}), same test episodes",
        figure,
    )
    with start_run("seeds", f"seeds {' '.join(labels)}", {"runs": labels}) as tracker:
        tracker.log_metrics({f"{'/'.join(key)}/std_across_seeds": s.std for key, s in rows.items()})
        tracker.log_artifact(data)
        tracker.log_artifact(figure)


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """``metagmvae seeds``: exit status 0, 1 when the runs were scored on different episodes, 2
    (one line) for an unknown revision or nothing in common."""
    parser = command.parser(__doc__, prog or "metagmvae seeds")
    parser.add_argument("revisions", nargs="+", help="one run per seed: git revisions, DVC experiment names, workspace")
    add_selection_arguments(parser)
    parser.add_argument("--out", type=Path, help="also write seeds.json and seeds.png here (and to MLflow)")
    args = parser.parse_args(argv)
    repo = Path.cwd()
    try:
        if len(args.revisions) < 2:
            raise ValueError("give at least two runs (one per seed)")
        revisions = [resolve(name, repo) for name in args.revisions]
        if len({r.commit for r in revisions}) < len(revisions):
            raise ValueError(f"the same run is named twice: {[r.label for r in revisions]}")
        tables = {r.label: revision_table(r, repo) for r in revisions}
        rows = spreads(tables, datasets=args.dataset, methods=args.method, settings=args.setting)
        if not rows:
            raise ValueError(f"nothing to aggregate: no per-episode results common to {list(tables)}")
        fingerprints = revision_fingerprints(revisions, repo, {dataset for dataset, _, _ in rows})
    except EpisodesDiffer as exc:
        print(exc, file=sys.stderr)
        return 1
    except ValueError as exc:
        return command.fail(parser.prog, exc)
    labels = list(tables)
    print(json.dumps(as_records(rows), indent=2) if args.json else format_spreads(rows, labels))
    if args.out:
        write_outputs(rows, labels, args.out, fingerprints)
    return 0


if __name__ == "__main__":
    sys.exit(main())
