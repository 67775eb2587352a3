"""metagmvae: the project's command line (the pipeline itself runs through `dvc repro`).

    metagmvae validate [params.yaml] [-S KEY=VALUE]   check every parameter before any work
    metagmvae profile paper [--write FILE]            a profile as `dvc exp run` arguments
    metagmvae compare HEAD my-exp                     paired differences between two runs
    metagmvae seeds HEAD seed1 seed2                  spread across training seeds
    metagmvae report                                  write metrics/report.md (the `report` stage)
    metagmvae docs [--check]                          regenerate the numbers in README.md and docs/

`metagmvae COMMAND --help` describes a command and every option. A mistake (an unknown profile,
parameter key, revision or experiment, missing data) is one line on stderr and exit status 2.
Every command also runs as `python -m metagmvae.<module>`.
"""

from __future__ import annotations

import importlib
import sys

from metagmvae.runtime import command

COMMANDS = {  # command -> the module whose main(argv, prog) runs it
    "validate": "metagmvae.cli.validate",
    "profile": "metagmvae.cli.profile",
    "compare": "metagmvae.analysis.compare",
    "seeds": "metagmvae.analysis.seeds",
    "report": "metagmvae.analysis.report",
    "docs": "metagmvae.cli.docs",
}


def main(argv: list[str] | None = None) -> int:
    """Run ``metagmvae COMMAND [options]``; its exit status."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in COMMANDS:
        module = importlib.import_module(COMMANDS[argv[0]])
        return module.main(argv[1:], prog=f"metagmvae {argv[0]}") or 0
    parser = command.parser(__doc__, "metagmvae")
    parser.add_argument("command", help="one of: " + ", ".join(COMMANDS))
    parser.add_argument("options", nargs="*", default=[], help="the command's options (metagmvae COMMAND --help)")
    args = parser.parse_args(argv)
    return command.fail(
        "metagmvae",
        f"unknown command {args.command!r}{command.did_you_mean(args.command, COMMANDS)}; known: {', '.join(COMMANDS)}",
    )


if __name__ == "__main__":
    sys.exit(main())
