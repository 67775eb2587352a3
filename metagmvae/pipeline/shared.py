"""What every stage script shares: a command line holding the paths dvc.yaml passes (written
once, in dvc.yaml's ``cmd``), the parameter file parsed once, the wall-time record, and one clear
message instead of a traceback for the errors a user can act on.

A stage script is its arguments and one call::

    parser = stage.parser(__doc__)
    parser.add_argument("dataset")
    parser.add_argument("--store", type=Path, required=True)
    stage.run(parser, lambda params, args: episodes.run(...))
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from metagmvae.data.hdf5 import StoreError
from metagmvae.data.mini_imagenet import SourceDataError
from metagmvae.data.omniglot import ArchiveError
from metagmvae.data.sources import SourceError
from metagmvae.runtime.checkpoint import CheckpointError
from metagmvae.runtime.command import USAGE_ERROR
from metagmvae.runtime.config import ConfigError
from metagmvae.runtime.walltime import stage_clock
from metagmvae.schema.params import Params, load_valid_params
from metagmvae.training.loop import NonFiniteLossError

EXPECTED_ERRORS = (
    ConfigError,  # params.yaml: the key, the value, what is allowed
    SourceError,  # no source gave a verified copy: every source and why
    ArchiveError,  # an Omniglot archive: the file and the problem
    SourceDataError,  # a Mini-ImageNet source folder: the file and the problem
    StoreError,  # an HDF5 store or episode file: missing, truncated, or of another format
    CheckpointError,  # a checkpoint: missing, truncated, or not ours
    NonFiniteLossError,  # training diverged: the step and the term
)
"""The project's own errors: their messages name the file or key and what to do, so a stage
prints the message alone; any other exception keeps its traceback."""


def parser(doc: str) -> argparse.ArgumentParser:
    """A stage's command line: ``--params`` and ``--clock`` (where its wall time is recorded)."""
    out = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    out.add_argument("--params", type=Path, default=Path("params.yaml"), help="the parameter file")
    out.add_argument("--clock", type=Path, help="write the stage's wall-time record here (dvc.yaml: metrics/time/)")
    return out


def run(
    parser: argparse.ArgumentParser, work: Callable[[Params, argparse.Namespace], Any], argv: list[str] | None = None
) -> None:
    """Parse the command line and ``params.yaml`` (every section, every problem at once), then
    ``work(params, args)`` inside the stage clock. An expected error is printed as one message
    on stderr and the process exits with status 2 (as every command of the project)."""
    args = parser.parse_args(argv)
    try:
        with stage_clock(args.clock):
            work(load_valid_params(args.params), args)
    except EXPECTED_ERRORS as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        sys.exit(USAGE_ERROR)
