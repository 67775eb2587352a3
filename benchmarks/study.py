"""Collect training-budget runs into one study record and one figure.

    python -m benchmarks.study omniglot RUN_DIR --out benchmarks/accuracy_study
    python -m benchmarks.study simclr RUN_DIR --out benchmarks/simclr_budget

``omniglot``: the ``<run>.json`` records of ``python -m benchmarks.timecurve`` (one training
configuration each: validation and test accuracy at fixed training minutes); ``simclr``: those
of ``python -m benchmarks.simclr_budget`` (LR(SimCLR) test accuracy at fixed pre-training
minutes). Writes ``<out>.json`` (every run: its name, the overrides that define it, the machine,
every point) and ``<out>.png`` (accuracy against training minutes, one line per run).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from metagmvae.analysis import plots
from metagmvae.runtime.io import read_json, with_extension, write_json

KINDS = ("omniglot", "simclr")


def collect(run_dir: Path) -> list[dict]:
    """Every ``<run>.json`` in ``run_dir`` (sorted by name), with its name added."""
    runs = []
    for path in sorted(run_dir.glob("*.json")):
        record = read_json(path)
        if "points" in record:
            runs.append({"name": path.stem} | record)
    if not runs:
        raise SystemExit(f"{run_dir}: no run records (*.json with points)")
    return runs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("runs", type=Path, help="folder of run records")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--note", default="", help="what the study shows, stored with it")
    args = parser.parse_args(argv)
    runs = collect(args.runs)
    json_path, png_path = with_extension(args.out, ".json"), with_extension(args.out, ".png")
    write_json(json_path, {"kind": args.kind, "note": args.note, "runs": runs})
    plots.study_figure(args.kind, runs, png_path)
    print(f"{len(runs)} runs written to {json_path} and {png_path}")


if __name__ == "__main__":
    main()
