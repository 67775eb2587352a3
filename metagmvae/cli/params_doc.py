"""The parameter reference (``docs/parameters.md``), generated from the schemas and ``params.yaml``.

Every key of every section: its type and check (from the pydantic field of its schema in
:mod:`metagmvae.schema`), its value in the committed ``params.yaml`` (the quick profile), its meaning (the
comment on the field's line in the schema, else the comment beside the key in ``params.yaml``)
and the stage that reads it. Sections with the same schema (the two datasets of ``episodes``, the
models of ``metatrain``, the runs of one related method) share one table, a value column each.
"""

from __future__ import annotations

import functools
import inspect
import json
import re
import types
import typing
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from metagmvae.runtime.config import _bare, _member

STAGES = {  # top-level section -> the stage reading ``<section>.<item>`` ({item}: its dataset, model or run)
    "download": "download@{item}",
    "augment": "augment",
    "pretrain": "pretrain",
    "extract": "extract",
    "episodes": "episodes@{item}",
    "metatrain": "metatrain@{item}",
    "evaluate": "evaluate@{item}",
    "related": "related@{item}",
    "report": "report",
}
PROFILE_NOTE = re.compile(r"^(paper|QUICK)\b")  # a params.yaml comment about one profile's value, not the key
BOUNDS = {"gt": "> {}", "ge": ">= {}", "lt": "< {}", "le": "<= {}", "min_length": "at least {} item(s)"}


def _number(value: Any) -> str:
    return str(int(value)) if isinstance(value, float) and value == int(value) else str(value)


def checks(annotation: Any, metadata: list[Any] = ()) -> list[str]:
    """The bounds an ``Annotated`` type (or a field's ``metadata``) carries: ``> 0``,
    ``at least 1 item(s)``."""
    found, metadata = [], list(metadata)
    while get_origin(annotation) is Annotated:
        annotation, *more = get_args(annotation)
        metadata += more
    for meta in metadata:
        for item in [meta, *getattr(meta, "metadata", [])]:
            found += [text.format(_number(getattr(item, k))) for k, text in BOUNDS.items() if hasattr(item, k)]
    return found


def type_text(annotation: Any, metadata: list[Any] = ()) -> str:
    """``int > 0``, ``one of: constant, cosine``, ``list of (int > 0), at least 1 item(s)``."""
    bare = _bare(annotation)
    origin, args = get_origin(bare), get_args(bare)
    if origin is Literal:
        text = "one of: " + ", ".join(str(a) for a in args)
    elif origin in (list, tuple):
        text = f"list of ({type_text(args[0])})" if args else "list"
    elif origin in (dict, Mapping) or origin is typing.Mapping:
        text = f"mapping of name to ({type_text(args[1])})" if args else "mapping"
    elif origin in (Union, types.UnionType):
        text = " or ".join(type_text(a) for a in args)
    elif isinstance(bare, type):
        text = bare.__name__
    else:
        text = "see meaning"
    return ", ".join([text, *checks(annotation, metadata)])


@functools.cache
def field_comments(schema: type[BaseModel]) -> dict[str, str]:
    """``{field: the comment on its line}`` over the project's classes ``schema`` inherits its
    fields from."""
    found: dict[str, str] = {}
    for cls in reversed(schema.__mro__):
        if not cls.__module__.startswith("metagmvae"):
            continue
        try:
            source = inspect.getsource(cls)
        except (OSError, TypeError):
            continue
        for line in source.splitlines():
            if match := re.match(r"^    (\w+): .*?  # (.*)$", line):
                found[match.group(1)] = match.group(2).strip()
    return found


def yaml_comments(text: str) -> dict[str, str]:
    """``{"a.b.c": comment}`` from ``params.yaml``: the comment beside a key, or the comment lines
    just above it."""
    found, stack, pending = {}, [], []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            pending.append(stripped.lstrip("#").strip())
            continue
        match = re.match(r"^( *)([\w.-]+):(.*)$", line)
        if not match:
            pending = [] if not stripped else pending
            continue
        depth = len(match.group(1)) // 2
        stack[depth:] = [match.group(2)]
        beside = match.group(3).split(" #", 1)[1].strip() if " #" in match.group(3) else ""
        if text := " ".join([*pending, beside]).strip():
            found[".".join(stack)] = text
        pending = []
    return found


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    text = json.dumps(value, separators=(", ", ": ")) if not isinstance(value, str) else value
    return text.replace("|", "\\|")


def _rows(schema: Any, raws: list[Any], prefix: str = "") -> list[tuple[str, FieldInfo, list[Any], type]]:
    """``(dotted key, field, [value per instance], the schema holding it)``: nested sections
    flattened into dotted keys."""
    out = []
    for name, field in schema.model_fields.items():
        values = [raw.get(name) if isinstance(raw, Mapping) else None for raw in raws]
        inner = _bare(field.annotation)
        if isinstance(inner, type) and issubclass(inner, BaseModel) and all(isinstance(v, Mapping) for v in values):
            out += _rows(inner, values, f"{prefix}{name}.")
        else:
            out.append((f"{prefix}{name}", field, values, schema))
    return out


def table(section: str, items: list[str], schema: Any, raws: list[Any], comments: dict[str, str]) -> str:
    """One table: a row per key, a value column per item (dataset, model or run)."""
    stage = STAGES[section]
    where = ", ".join(f"`{stage.format(item=item)}`" for item in items) if items else f"`{stage}`"
    title = section if not items else f"{section}.<{'|'.join(items)}>" if len(items) > 1 else f"{section}.{items[0]}"
    heads = [f"`{item}`" for item in items] or ["value"]
    lines = [
        f"### `{title}`",
        "",
        f"Read by {where}.",
        "",
        "| key | type, check | " + " | ".join(heads) + " | meaning |",
        "|" + "---|" * (len(heads) + 3),
    ]
    for key, field, values, owner in _rows(schema, raws):
        paths = [".".join(filter(None, (section, item, key))) for item in items or [""]]
        beside = [comments[p] for p in paths if p in comments and not PROFILE_NOTE.match(comments[p])]
        meaning = field_comments(owner).get(key.rsplit(".", 1)[-1]) or next(iter(beside), "")
        cells = [
            f"`{key}`",
            type_text(field.annotation, field.metadata),
            *(_cell(v) for v in values),
            meaning.replace("|", "\\|"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parameters_reference(params: Mapping[str, Any], params_text: str) -> str:
    """Markdown: a table per section and schema, in the order of :class:`~metagmvae.schema.params.Params`."""
    from metagmvae.schema.params import Params

    comments = yaml_comments(params_text)
    parts = []
    for section, field in Params.model_fields.items():
        raw = params.get(section) or {}
        schema = _bare(field.annotation)
        if isinstance(schema, type) and issubclass(schema, BaseModel) and schema.ITEMS != "key":
            groups: dict[Any, list[str]] = {}  # per-dataset sections, grouped by schema
            for item, sub in schema.model_fields.items():
                groups.setdefault(_bare(sub.annotation), []).append(item)
        elif isinstance(schema, type) and issubclass(schema, BaseModel):
            parts.append(table(section, [], schema, [raw], comments))
            continue
        else:  # a mapping of names (models, related runs) to sections, grouped by schema
            value_schema = get_args(schema)[1]
            groups = {}
            for item, sub in raw.items():
                member = _bare(value_schema)
                if get_origin(member) in (Union, types.UnionType):
                    member = _member(get_args(member), sub.get("method"))
                groups.setdefault(member, []).append(item)
        for member, items in groups.items():
            parts.append(table(section, items, member, [raw.get(item) for item in items], comments))
    return "\n\n".join(parts)
