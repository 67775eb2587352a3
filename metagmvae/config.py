"""Loading and validating ``params.yaml`` before any work is done.

Each stage reads only its own section. Validation errors name the key, the value and what is
allowed, and unknown keys are refused (a typo must not silently fall back to a default).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A parameter is missing, unknown, of the wrong type or out of range."""


def load_params(path: str | os.PathLike = "params.yaml") -> dict[str, Any]:
    """Read the whole parameter file."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: parameter file not found")
    with open(path) as f:
        params = yaml.safe_load(f)
    if not isinstance(params, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    return params


def section(params: Mapping[str, Any], *keys: str) -> dict[str, Any]:
    """The nested section ``params[k1][k2]...``; a clear error names the missing key."""
    node: Any = params
    for depth, key in enumerate(keys):
        if not isinstance(node, Mapping) or key not in node:
            where = ".".join(keys[: depth + 1])
            have = sorted(node) if isinstance(node, Mapping) else type(node).__name__
            raise ConfigError(f"params.yaml: missing section {where!r} (found {have})")
        node = node[key]
    return copy.deepcopy(node)


class Checker:
    """Validate one section against a schema: ``{key: (type, check)}``.

    ``check`` is ``None`` or a callable returning an error message (or ``None`` when fine).
    Use :meth:`done` to refuse unknown keys; ``renamed`` maps a key's former name to its
    current one, so a file written for the old name is refused with a message naming the new.
    """

    def __init__(self, cfg: Mapping[str, Any], where: str, renamed: Mapping[str, str] | None = None):
        if not isinstance(cfg, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {cfg!r}")
        self.cfg = dict(cfg)
        self.where = where
        self.renamed = dict(renamed or {})
        self.seen: set[str] = set()

    def get(self, key: str, kind: type | tuple[type, ...], check=None) -> Any:
        self.seen.add(key)
        name = f"{self.where}.{key}"
        if key not in self.cfg:
            for old in (old for old, new in self.renamed.items() if new == key and old in self.cfg):
                raise ConfigError(self._renamed(old))
            raise ConfigError(f"{name}: missing")
        value = self.cfg[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
            allowed = " or ".join(k.__name__ for k in kinds)
            raise ConfigError(f"{name} = {value!r}: expected {allowed}")
        if check is not None and (problem := check(value)):
            raise ConfigError(f"{name} = {value!r}: {problem}")
        return value

    def done(self) -> None:
        unknown = sorted(set(self.cfg) - self.seen)
        for old in (key for key in unknown if key in self.renamed):
            raise ConfigError(self._renamed(old))
        if unknown:
            raise ConfigError(f"{self.where}: unknown key(s) {unknown}; allowed: {sorted(self.seen)}")

    def _renamed(self, old: str) -> str:
        return f"{self.where}.{old}: this key is now called {self.renamed[old]!r}; rename it"


def positive(value) -> str | None:
    return None if value > 0 else "must be > 0"


def non_negative(value) -> str | None:
    return None if value >= 0 else "must be >= 0"


def at_least(low):
    def check(value) -> str | None:
        return None if value >= low else f"must be >= {low}"

    return check


def fraction(value) -> str | None:
    """A probability-like value that may be 0 but not 1 (a dropout rate, a momentum)."""
    return None if 0 <= value < 1 else "must be in [0, 1)"


def counts_per_split(splits, what: str):
    """A mapping of exactly ``splits`` (any order) to integer ``what`` > 0."""

    def check(value) -> str | None:
        if sorted(value) == sorted(splits) and all(isinstance(n, int) and n > 0 for n in value.values()):
            return None
        return f"must map {', '.join(splits[:-1])} and {splits[-1]} to {what} > 0"

    return check


def one_of(*choices):
    def check(value) -> str | None:
        return None if value in choices else f"must be one of {list(choices)}"

    return check


def positive_ints(value) -> str | None:
    if not value or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value):
        return "must be a non-empty list of integers > 0"
    return None


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out
