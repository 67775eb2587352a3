"""Check the whole parameter file before any work: ``metagmvae validate [params.yaml] [-S KEY=VALUE]``
(also ``python -m metagmvae.cli.validate``). Imports no torch: the answer comes in well under a
second (the checks themselves: :mod:`metagmvae.schema.params`)."""

from __future__ import annotations

import sys

from metagmvae.runtime.config import ConfigError, load_params
from metagmvae.schema.params import Params, params_problems, refusal


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """``metagmvae validate``: exit status 0 when valid, 2 (one line per problem) when not."""
    from metagmvae.cli.profile import apply_sets
    from metagmvae.runtime import command

    parser = command.parser(__doc__, prog or "metagmvae validate")
    parser.add_argument("params", nargs="?", default="params.yaml", help="the parameter file (default: params.yaml)")
    parser.add_argument(
        "-S",
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="check the file with this change applied, as `dvc exp run -S KEY=VALUE` would (repeatable)",
    )
    args = parser.parse_args(argv)
    try:
        raw = apply_sets(load_params(args.params), args.set)
        if found := params_problems(raw):
            raise refusal(args.params, found)
    except ConfigError as exc:
        return command.fail(parser.prog, exc)
    params = Params.model_validate(raw)
    print(f"{args.params}: valid ({len(Params.model_fields)} sections, {len(params.metatrain)} models)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
