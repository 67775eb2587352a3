"""Paired comparison of two runs on the same fixed test episodes.

    metagmvae compare                       # HEAD against the workspace, every result
    metagmvae compare HEAD~1 HEAD           # two commits
    metagmvae compare ts-1 ts-20            # two DVC experiments (names from `dvc exp show`)
    metagmvae compare main ts-1 --dataset omniglot --method meta_gmvae --setting 5way_5shot
    metagmvae compare --methods logistic_regression meta_gmvae   # b against a in one revision
    metagmvae compare HEAD ts-1 --out docs/compare   # also comparison.json, comparison.png (MLflow)

Reads the per-episode results (:mod:`metagmvae.evaluation.episode_results`, ``metrics/**/episodes/*.json``)
at each revision, as ``dvc metrics diff`` reads metrics, and prints for every dataset, method and
setting present on both sides: both mean accuracies, the mean of the per-episode differences
``b - a`` with its 95% paired-t confidence interval (:mod:`metagmvae.analysis.stats`), the half-width of
the unpaired interval for contrast, and the fractions of episodes that improved and got worse.
It refuses (exit status 1, nothing printed on stdout) when any compared setting was scored on
different episodes: the digests in the two files differ. A revision or experiment that does not
exist, or nothing in common to compare, is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from metagmvae.analysis.revisions import WORKSPACE, Revision, list_files, read_text, resolve
from metagmvae.analysis.stats import PairedDifference, paired_difference, unpaired_half_width
from metagmvae.data.episodes import parse_episode_key
from metagmvae.evaluation.episode_results import SettingResult, Table, is_results_path, merge
from metagmvae.runtime import command

METRICS_FOLDER = "metrics"
METHOD_NOTE = "b - a in points; 95% CI: paired t over the per-episode differences (n - 1 degrees of freedom)"


class EpisodesDiffer(ValueError):
    """Two results to be paired were scored on different episodes."""


@dataclass(frozen=True)
class Comparison:
    """One dataset/setting compared between two sides ``a`` and ``b`` (accuracies in percent)."""

    dataset: str
    method: str  # the method (two revisions) or "<b method> vs <a method>" (one revision)
    setting: str
    a_accuracy: float
    b_accuracy: float
    paired: PairedDifference | None  # None when the episodes differ
    unpaired_half_width: float | None
    episodes_differ: str | None  # why the two sides cannot be paired


def revision_table(revision: Revision, repo: Path, paths: Iterable[str] | None = None) -> Table:
    """Every per-episode result at ``revision`` (or only those in ``paths``; absent ones are
    skipped), read from the files under ``metrics/``."""
    if paths is None:
        paths = [p for p in list_files(revision, repo, METRICS_FOLDER) if is_results_path(p)]
    texts = {f"{revision.name}:{p}": text for p in paths if (text := read_text(revision, repo, p)) is not None}
    return merge(texts)


def pair(dataset: str, method: str, setting: str, a: SettingResult, b: SettingResult) -> Comparison:
    """The paired comparison of ``b`` against ``a``, or the reason it is impossible."""
    a_acc, b_acc = 100.0 * float(a.accuracies.mean()), 100.0 * float(b.accuracies.mean())
    if a.episodes_sha256 != b.episodes_sha256:
        why = (
            f"the episodes differ: {a.source} has episodes {a.episodes_sha256[:12]}, "
            f"{b.source} has {b.episodes_sha256[:12]}"
        )
        return Comparison(dataset, method, setting, a_acc, b_acc, None, None, why)
    paired = paired_difference(a.accuracies, b.accuracies)
    return Comparison(
        dataset, method, setting, a_acc, b_acc, paired, unpaired_half_width(a.accuracies, b.accuracies), None
    )


def result_order(key: tuple[str, str, str]) -> tuple:
    """Sort key of ``(dataset, method, setting)``: settings by way, then shot."""
    return key[0], key[1], parse_episode_key(key[2])


def select(
    keys: Iterable[tuple[str, str, str]],
    *,
    datasets: Iterable[str] = (),
    methods: Iterable[str] = (),
    settings: Iterable[str] = (),
) -> list[tuple[str, str, str]]:
    """The ``(dataset, method, setting)`` keys that pass every filter (an empty filter passes
    all), in :func:`result_order`."""
    datasets, methods, settings = set(datasets), set(methods), set(settings)
    return sorted(
        (
            (dataset, method, setting)
            for dataset, method, setting in keys
            if (not datasets or dataset in datasets)
            and (not methods or method in methods)
            and (not settings or setting in settings)
        ),
        key=result_order,
    )


def between_revisions(
    a: Table, b: Table, *, datasets: Iterable[str] = (), methods: Iterable[str] = (), settings: Iterable[str] = ()
) -> list[Comparison]:
    """Every (dataset, method, setting) in both tables and in the filters, ``b`` against ``a``."""
    keys = select(a.keys() & b.keys(), datasets=datasets, methods=methods, settings=settings)
    return [pair(*key, a[key], b[key]) for key in keys]


def between_methods(
    table: Table, method_a: str, method_b: str, *, datasets: Iterable[str] = (), settings: Iterable[str] = ()
) -> list[Comparison]:
    """``method_b`` against ``method_a`` on every dataset and setting where the table has both."""
    both = [k for k in table if k[1] == method_a and (k[0], method_b, k[2]) in table]
    label = f"{method_b} vs {method_a}"
    return [
        pair(d, label, s, table[(d, method_a, s)], table[(d, method_b, s)])
        for d, _, s in select(both, datasets=datasets, settings=settings)
    ]


def refuse_differing_episodes(rows: list[Comparison]) -> None:
    """Raise :class:`EpisodesDiffer` listing every row whose two sides used different episodes."""
    bad = [f"  {r.dataset} {r.method} {r.setting}: {r.episodes_differ}" for r in rows if r.episodes_differ]
    if bad:
        raise EpisodesDiffer(
            "refusing to compare results scored on different episodes (no pairing is possible; "
            "restrict the comparison with --dataset/--method/--setting):\n" + "\n".join(bad)
        )


def signed(points: float) -> str:
    """``+1.23`` / ``-0.40`` / ``0.00`` (no sign on a difference that rounds to zero)."""
    text = f"{points:+.2f}"
    return text[1:] if text in ("+0.00", "-0.00") else text


def interval(paired: PairedDifference) -> str:
    """``[-1.30, -0.34]``."""
    return f"[{signed(paired.low)}, {signed(paired.high)}]"


def format_rows(rows: list[Comparison], a_label: str, b_label: str) -> str:
    """A fixed-width table of paired comparisons, with the method stated above it."""
    header = [
        "dataset",
        "method",
        "setting",
        "a",
        "b",
        "b - a",
        "95% CI",
        "unpaired ±",
        "improved",
        "worse",
        "episodes",
    ]
    lines = [header]
    for r in rows:
        p = r.paired
        lines.append(
            [r.dataset, r.method, r.setting, f"{r.a_accuracy:.2f}", f"{r.b_accuracy:.2f}", signed(p.mean), interval(p)]
            + [f"{r.unpaired_half_width:.2f}", f"{100 * p.improved:.1f}%", f"{100 * p.worse:.1f}%", str(p.episodes)]
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    body = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in lines]
    return f"a = {a_label}, b = {b_label}: {METHOD_NOTE}\n" + "\n".join(body)


def as_records(rows: list[Comparison]) -> list[dict]:
    """Rows as JSON-ready dicts (points and fractions, rounded to 4 decimals)."""
    records = []
    for r in rows:
        record = asdict(r)
        record["paired"] = {k: round(v, 4) for k, v in asdict(r.paired).items()} if r.paired else None
        for key in ("a_accuracy", "b_accuracy", "unpaired_half_width"):
            record[key] = None if record[key] is None else round(record[key], 4)
        records.append(record)
    return records


def write_outputs(rows: list[Comparison], a_label: str, b_label: str, out_dir: Path) -> None:
    """``out_dir/comparison.json`` and ``comparison.png`` (differences with their CIs), also logged
    to MLflow as the artifacts of a ``compare`` run."""
    from metagmvae.analysis import plots
    from metagmvae.runtime.io import write_json
    from metagmvae.runtime.tracking import start_run

    data, figure = out_dir / "comparison.json", out_dir / "comparison.png"
    write_json(data, {"a": a_label, "b": b_label, "method": METHOD_NOTE, "rows": as_records(rows)})
    plots.paired_differences_figure(
        [f"{r.dataset} {r.method} {r.setting}" for r in rows],
        [(r.paired.mean, r.paired.low, r.paired.high) for r in rows],
        f"b = {b_label} against a = {a_label}: paired difference, 95% CI",
        figure,
    )
    with start_run("compare", f"compare {a_label} .. {b_label}", {"a": a_label, "b": b_label}) as tracker:
        tracker.log_metrics({f"{r.dataset}/{r.method}/{r.setting}/difference": r.paired.mean for r in rows})
        tracker.log_artifact(data)
        tracker.log_artifact(figure)


def add_selection_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``--dataset``, ``--method``, ``--setting`` filters (for :func:`select`) and ``--json``,
    shared by ``compare`` and ``seeds``."""
    parser.add_argument("--dataset", action="append", default=[], help="only this dataset (repeatable)")
    parser.add_argument("--method", action="append", default=[], help="only this method (repeatable)")
    parser.add_argument("--setting", action="append", default=[], help="only this setting, e.g. 5way_1shot")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """``metagmvae compare``: exit status 0, 1 when the two sides were scored on different
    episodes, 2 (one line) for an unknown revision or experiment or nothing to compare."""
    parser = command.parser(__doc__, prog or "metagmvae compare")
    parser.add_argument(
        "revisions",
        nargs="*",
        help="a [b]: git revisions, DVC experiment names or 'workspace' (default: HEAD workspace)",
    )
    parser.add_argument("--methods", nargs=2, metavar=("A", "B"), help="compare method B against A in one revision")
    add_selection_arguments(parser)
    parser.add_argument("--out", type=Path, help="also write comparison.json and comparison.png here (and to MLflow)")
    args = parser.parse_args(argv)
    repo = Path.cwd()
    try:
        if args.methods:
            if len(args.revisions) > 1:
                parser.error("--methods compares two methods within one revision: give at most one")
            revision = resolve(args.revisions[0] if args.revisions else WORKSPACE, repo)
            table = revision_table(revision, repo)
            rows = between_methods(table, *args.methods, datasets=args.dataset, settings=args.setting)
            a_label, b_label = (f"{m} at {revision.label}" for m in args.methods)
            what = f"{args.methods[0]} and {args.methods[1]} at {revision.label}"
        else:
            if len(args.revisions) > 2:
                parser.error("give at most two revisions")
            names = {0: ["HEAD", WORKSPACE], 1: [*args.revisions, WORKSPACE], 2: args.revisions}[len(args.revisions)]
            a, b = (resolve(name, repo) for name in names)
            rows = between_revisions(
                revision_table(a, repo),
                revision_table(b, repo),
                datasets=args.dataset,
                methods=args.method,
                settings=args.setting,
            )
            a_label, b_label, what = a.label, b.label, f"{a.label} and {b.label}"
        if not rows:
            raise ValueError(f"nothing to compare: no per-episode results common to {what} (metrics/**/episodes/)")
        refuse_differing_episodes(rows)
    except EpisodesDiffer as exc:
        print(exc, file=sys.stderr)
        return 1
    except ValueError as exc:
        return command.fail(parser.prog, exc)
    print(json.dumps(as_records(rows), indent=2) if args.json else format_rows(rows, a_label, b_label))
    if args.out:
        write_outputs(rows, a_label, b_label, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
