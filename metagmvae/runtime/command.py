"""What every command of the ``metagmvae`` command line shares: a parser whose ``--help`` shows
the command's whole description, and one line on stderr with exit status 2 for a mistake the
user can fix (a misspelled option, an unknown profile, key or experiment, missing data), never
a traceback.

    parser = command.parser(__doc__, prog)
    parser.add_argument("--params", default="params.yaml", help="the parameter file")
    args = parser.parse_args(argv)
    ...
    return command.fail(parser.prog, "no such thing")   # one line, exit status 2
"""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Iterable
from typing import NoReturn

USAGE_ERROR = 2
"""Exit status of an expected mistake (argparse uses it for a bad command line too)."""


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (``prog: error: message``), not the usage
    followed by the error."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message} (see --help)", file=sys.stderr)
        sys.exit(USAGE_ERROR)


def parser(doc: str | None, prog: str | None = None) -> Parser:
    """A command's parser: ``--help`` prints ``doc`` whole (its layout kept), then the options."""
    return Parser(prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)


def fail(prog: str, message: object) -> int:
    """Print ``prog: error: message`` on stderr and return the exit status of a mistake."""
    print(f"{prog}: error: {message}", file=sys.stderr)
    return USAGE_ERROR


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` when a known name is close to ``name``, else ``""``."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
