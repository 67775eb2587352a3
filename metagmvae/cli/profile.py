"""Parameter profiles: override files in ``profiles/`` applied on top of ``params.yaml``.

``metagmvae profile paper`` prints one ``--set-param=<key>=<value>`` per line for
``dvc exp run``; ``--write FILE`` merges the profile into a parameter file instead (for
machines without DVC). ``quick`` is ``params.yaml`` itself (no overrides); the others are the
files ``profiles/<name>.yaml``. An unknown profile or key is one line on stderr, exit status 2.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from metagmvae.runtime import command
from metagmvae.runtime.command import did_you_mean
from metagmvae.runtime.config import ConfigError, flatten, load_params
from metagmvae.runtime.io import write_text

PROFILES = Path(__file__).resolve().parents[2] / "profiles"


QUICK = "quick"
"""The committed ``params.yaml`` itself: the profile without overrides."""


def known_profiles(folder: Path = PROFILES) -> list[str]:
    """Every profile name: ``quick`` and one per file in ``folder``."""
    return sorted({QUICK, *(p.stem for p in folder.glob("*.yaml"))})


def load_profile(name: str, folder: Path = PROFILES) -> dict[str, Any]:
    """The overrides of profile ``name`` (``quick``: none)."""
    if name == QUICK:
        return {}
    path = folder / f"{name}.yaml"
    if not path.exists():
        known = known_profiles(folder)
        raise ConfigError(f"unknown profile {name!r}{did_you_mean(name, known)}; known profiles: {', '.join(known)}")
    return yaml.safe_load(path.read_text()) or {}


def merge(
    base: Mapping[str, Any], overrides: Mapping[str, Any], where: str = "", what: str = "profile overrides"
) -> dict[str, Any]:
    """Deep-merge ``overrides`` into a copy of ``base``; an override key absent from ``base`` is an
    error (``what`` names the overrides in it) that names the closest existing key."""
    out = dict(base)
    for key, value in overrides.items():
        name = f"{where}{key}"
        if key not in base:
            raise ConfigError(f"{what} unknown key {name!r}{did_you_mean(key, base)}")
        if isinstance(value, Mapping):
            if not isinstance(base[key], Mapping):
                raise ConfigError(f"{what} {name!r} with a mapping, but it is a single value")
            out[key] = merge(base[key], value, name + ".", what)
        else:
            out[key] = value
    return out


def apply_sets(params: dict, sets: list[str]) -> dict:
    """``["a.b.c=2", ...]`` (values in YAML) applied to a copy of ``params``; a key that does not
    exist is refused, as ``dvc exp run -S`` would refuse it."""
    for item in sets:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE")
        override: dict = yaml.safe_load(value)
        for part in reversed(key.split(".")):
            override = {part: override}
        params = merge(params, override, what="-S sets an")
    return params


def profiled_params(path: Path, profile: str, sets: list[str]) -> dict[str, Any]:
    """The parameter file ``path`` with a profile's overrides (none for ``""`` or ``"quick"``, the
    file itself) and then ``--set`` overrides applied (raw YAML, for the developer tools)."""
    params = load_params(path)
    if profile not in ("", "quick"):
        params = merge(params, load_profile(profile))
    return apply_sets(params, sets)


def set_param_args(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> list[str]:
    """``dvc exp run`` arguments for the overrides (validated against ``base``)."""
    merge(base, overrides)
    return [f"--set-param={key}={json.dumps(value)}" for key, value in flatten(overrides).items()]


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """``metagmvae profile NAME``: exit status 0, or 2 with one line for an unknown profile or key."""
    parser = command.parser(__doc__, prog or "metagmvae profile")
    parser.add_argument("profile", help="the profile's name: quick, or a file profiles/<name>.yaml")
    parser.add_argument("--params", default="params.yaml", help="the parameter file it applies to")
    parser.add_argument("--write", metavar="FILE", help="write the merged parameters to FILE instead of printing")
    args = parser.parse_args(argv)
    try:
        base, overrides = load_params(args.params), load_profile(args.profile)
        merged = merge(base, overrides)
    except ConfigError as exc:
        return command.fail(parser.prog, exc)
    if args.write:
        write_text(args.write, yaml.safe_dump(merged, sort_keys=False))
    else:
        print("\n".join(set_param_args(base, overrides)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
