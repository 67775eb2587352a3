"""Loading ``params.yaml`` and the schema every section is parsed with.

Each section is a :class:`Section`, a pydantic model declared once (:mod:`metagmvae.schema`):
typed fields with their constraints, unknown keys refused (a typo must not silently fall back to
a default), strict types (``1`` is not ``true``, ``"5"`` is not ``5``). :func:`parse` validates
raw YAML against a schema and turns pydantic's errors into one line each, every one at once,
naming the key, the value and what is allowed, e.g.
``metatrain.omniglot_5way.lr = -1.0: must be > 0``.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import json
import os
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, TypeVar, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError


class ConfigError(ValueError):
    """A parameter is missing, unknown, of the wrong type or out of range."""


class Section(BaseModel):
    """One parameter section: strict types, no unknown keys, immutable once parsed.

    ``RENAMED`` maps a key's former name to its current one: a file still using the old name is
    refused with a message that names the new one.
    """

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)
    RENAMED: ClassVar[dict[str, str]] = {}
    ITEMS: ClassVar[str] = "key"  # what this section's keys are, for the unknown-key message

    def fingerprint(self) -> str:
        """Short hash of the whole section (names a training run's resume folder)."""
        return hashlib.sha256(json.dumps(self.model_dump(), sort_keys=True).encode()).hexdigest()[:12]


PositiveInt = Annotated[int, Field(gt=0)]
NonNegativeInt = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]
Fraction = Annotated[float, Field(ge=0, lt=1)]  # may be 0, not 1 (a dropout rate, a momentum)
Way = Annotated[int, Field(ge=2)]  # classes (mixture components) of an episode
PositiveInts = Annotated[list[PositiveInt], Field(min_length=1)]  # e.g. the shots of a setting


class SplitCounts(Section):
    """A count per split (classes, characters or images per class), each > 0."""

    train: PositiveInt
    val: PositiveInt
    test: PositiveInt


S = TypeVar("S")


@functools.cache
def _adapter(schema: Any) -> TypeAdapter:
    return TypeAdapter(schema)


def parse(schema: type[S] | Any, raw: Any, where: str) -> S:
    """``raw`` validated against ``schema`` (a :class:`Section` or a type built from them), or a
    :class:`ConfigError` listing every problem, one per line, located under ``where``."""
    try:
        return _adapter(schema).validate_python(raw)
    except ValidationError as exc:
        raise ConfigError("\n".join(problems(exc, schema, where))) from None


def problems(exc: ValidationError, schema: Any, where: str = "") -> list[str]:
    """pydantic's errors for ``schema`` as messages naming the key (``where.key.sub``), the value
    and what is allowed; unknown keys of one section are grouped into one message."""
    found: list[str] = []
    unknown: dict[str, tuple[type[Section] | None, list[str]]] = {}
    for err in exc.errors(include_url=False):
        names, owner = _locate(schema, err["loc"])
        path = ".".join(filter(None, (where, *names)))
        kind, value, ctx = err["type"], err.get("input"), err.get("ctx", {})
        if kind == "extra_forbidden":
            parent = ".".join(filter(None, (where, *names[:-1])))
            unknown.setdefault(parent, (owner, []))[1].append(names[-1])
        elif kind == "missing":
            renamed = owner.RENAMED if owner else {}
            if not any(new == names[-1] and old in (value or {}) for old, new in renamed.items()):
                found.append(f"{path}: missing")
        elif kind in ("value_error", "assertion_error") and isinstance(value, Mapping):
            found.append(f"{path}: {ctx.get('error', err['msg'])}")  # a check across the section's keys
        elif kind == "union_tag_invalid":
            key = ctx["discriminator"].strip("'")
            found.append(f"{path}.{key} = {ctx['tag']!r}: must be one of [{ctx['expected_tags']}]")
        elif kind == "union_tag_not_found":
            found.append(f"{path}.{ctx['discriminator'].strip(chr(39))}: missing")
        else:
            found.append(f"{path} = {value!r}: {_constraint(kind, ctx, err['msg'])}")
    for parent, (owner, keys) in unknown.items():
        renamed = owner.RENAMED if owner else {}
        for key in keys:  # a misspelled key: its "did you mean" says what the "missing" would
            for match in difflib.get_close_matches(key, list(owner.model_fields) if owner else [], n=1):
                found = [f for f in found if f != f"{parent}.{match}: missing"]
        for key in (key for key in keys if key in renamed):
            found.append(f"{parent}.{key}: this key is now called {renamed[key]!r}; rename it")
        if others := sorted(key for key in keys if key not in renamed):
            items = owner.ITEMS if owner else "key"
            allowed = f"; allowed: {sorted(owner.model_fields)}" if owner else ""
            hint = _suggestions(others, owner.model_fields if owner else ())
            found.append(f"{parent or 'params.yaml'}: unknown {items}(s) {others}{hint}{allowed}")
    return found


def _suggestions(unknown: list[str], known: Iterable[str]) -> str:
    """`` (did you mean 'steps'?)`` for one misspelled key, `` (did you mean 'stpes' -> 'steps',
    ...)`` for several; ``""`` when no known key is close."""
    close = {key: difflib.get_close_matches(key, list(known), n=1) for key in unknown}
    pairs = [(key, found[0]) for key, found in close.items() if found]
    if not pairs:
        return ""
    if len(unknown) == 1:
        return f" (did you mean {pairs[0][1]!r}?)"
    return " (did you mean " + ", ".join(f"{key!r} -> {match!r}" for key, match in pairs) + ")"


EXPECTED = {
    "int_type": "int",
    "float_type": "float",
    "bool_type": "bool (true or false)",
    "string_type": "str",
    "list_type": "list",
    "tuple_type": "list",
    "dict_type": "mapping",
    "model_type": "mapping",
    "model_attributes_type": "mapping",
}


def _constraint(kind: str, ctx: dict, msg: str) -> str:
    """What a single value violates, in the words of ``params.yaml``."""
    if kind in EXPECTED:
        return f"expected {EXPECTED[kind]}"
    bounds = {"greater_than": "> {gt}", "greater_than_equal": ">= {ge}", "less_than": "< {lt}"}
    bounds |= {"less_than_equal": "<= {le}"}
    if kind in bounds:  # a bound of 0 on a float field reads "> 0", not "> 0.0"
        return "must be " + bounds[kind].format(**{k: int(v) if v == int(v) else v for k, v in ctx.items()})
    if kind == "literal_error":
        return f"must be one of [{ctx['expected'].replace(' or ', ', ')}]"
    if kind == "string_pattern_mismatch":
        return f"must match {ctx['pattern']}"
    if kind in ("too_short", "too_long"):
        n = ctx["min_length"] if kind == "too_short" else ctx["max_length"]
        return f"must have {'at least' if kind == 'too_short' else 'at most'} {n} item{'s' * (n != 1)}"
    if kind in ("value_error", "assertion_error"):
        return str(ctx.get("error", msg))
    return msg


def _locate(schema: Any, loc: tuple) -> tuple[list[str], type[Section] | None]:
    """The key names of an error location (without the tags pydantic adds for a discriminated
    union's member) and the section that holds the last one."""
    names: list[str] = []
    node, owner = schema, None
    for part in loc:
        node = _bare(node)
        origin = get_origin(node)
        if isinstance(node, type) and issubclass(node, BaseModel):
            owner = node
            field = node.model_fields.get(str(part))
            node = field.annotation if field else None
        elif origin in (Union, types.UnionType):
            node = _member(get_args(node), part)
            continue
        elif origin in (dict, Mapping) or origin is typing.Mapping:
            node = get_args(node)[1] if get_args(node) else None
        elif origin in (list, tuple):
            node = get_args(node)[0] if get_args(node) else None
        else:
            node = None
        names.append(str(part))
    return names, owner


def _bare(node: Any) -> Any:
    while get_origin(node) is Annotated:
        node = get_args(node)[0]
    return node


def _member(members: tuple, tag: Any) -> Any:
    """The member of a discriminated union whose tag (a ``Literal`` field) is ``tag``."""
    for member in members:
        member = _bare(member)
        fields = getattr(member, "model_fields", {})
        if any(get_origin(f.annotation) is Literal and tag in get_args(f.annotation) for f in fields.values()):
            return member
    return None


def load_params(path: str | os.PathLike = "params.yaml") -> dict[str, Any]:
    """Read the whole parameter file (raw YAML; :func:`metagmvae.schema.params.load_valid_params`
    parses it)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: parameter file not found")
    with open(path) as f:
        params = yaml.safe_load(f)
    if not isinstance(params, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    return params


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
