"""Parameter profiles: override files in ``profiles/`` applied on top of ``params.yaml``.

``python -m metagmvae.profile paper`` prints one ``--set-param=<key>=<value>`` per line for
``dvc exp run``; ``--write params.yaml`` merges the profile into a parameter file instead (for
machines without DVC).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from metagmvae.config import ConfigError, flatten, load_params
from metagmvae.io import write_text

PROFILES = Path(__file__).resolve().parent.parent / "profiles"


def load_profile(name: str, folder: Path = PROFILES) -> dict[str, Any]:
    path = folder / f"{name}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in folder.glob("*.yaml"))
        raise ConfigError(f"profile {name!r}: no file {path} (known profiles: {known})")
    return yaml.safe_load(path.read_text()) or {}


def merge(base: Mapping[str, Any], overrides: Mapping[str, Any], where: str = "") -> dict[str, Any]:
    """Deep-merge ``overrides`` into a copy of ``base``; an override key absent from ``base`` is an error."""
    out = dict(base)
    for key, value in overrides.items():
        name = f"{where}{key}"
        if key not in base:
            raise ConfigError(f"profile overrides unknown key {name!r}")
        if isinstance(value, Mapping):
            out[key] = merge(base[key], value, name + ".")
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
        params = merge(params, override)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--write", metavar="FILE", help="write the merged parameters here instead")
    args = parser.parse_args()
    base, overrides = load_params(args.params), load_profile(args.profile)
    if args.write:
        write_text(args.write, yaml.safe_dump(merge(base, overrides), sort_keys=False))
    else:
        print("\n".join(set_param_args(base, overrides)))


if __name__ == "__main__":
    main()
