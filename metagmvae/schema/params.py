"""The whole parameter file: :class:`Params` gathers every section's schema (``metagmvae validate``
runs it from the command line).

Every section is parsed once, by its schema in this package, then the checks that span sections
are added: episodes that the configured splits cannot supply (way larger than the classes, shot +
query larger than the images per class), models whose validation or test settings have no
episodes, evaluation of a model that is not trained. All problems are reported at once, each
naming the key, the value and what is allowed. Every stage script loads its parameters through
:func:`load_valid_params` and passes its own, typed section on, so a typo in the last stage's
section stops the first stage instead
of failing after hours of training.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, ClassVar, get_args, get_origin

from pydantic import Field, ValidationError

from metagmvae.runtime.config import ConfigError, Section, load_params, parse, problems
from metagmvae.schema.data import (
    IMAGES_PER_CHARACTER,
    ROTATIONS,
    AugmentConfig,
    EpisodesConfig,
    MiniImagenetDownload,
    OmniglotDownload,
    check_settings,
)
from metagmvae.schema.evaluate import EvalConfig, cross_way_method
from metagmvae.schema.metatrain import TrainConfig
from metagmvae.schema.pretrain import ExtractConfig, PretrainConfig
from metagmvae.schema.related import RelatedSection
from metagmvae.schema.report import ReportConfig


class _Datasets(Section):
    ITEMS: ClassVar[str] = "dataset"


class DownloadSections(_Datasets):
    omniglot: OmniglotDownload
    mini_imagenet: MiniImagenetDownload


class AugmentSections(_Datasets):
    omniglot: AugmentConfig


class PretrainSections(_Datasets):
    mini_imagenet: PretrainConfig


class ExtractSections(_Datasets):
    mini_imagenet: ExtractConfig


class EpisodesSections(_Datasets):
    omniglot: EpisodesConfig
    mini_imagenet: EpisodesConfig


class EvaluateSections(_Datasets):
    omniglot: EvalConfig
    mini_imagenet: EvalConfig


class Params(Section):
    """The whole ``params.yaml``: one section per stage (per dataset, model or related run)."""

    ITEMS: ClassVar[str] = "top-level section"

    download: DownloadSections
    augment: AugmentSections
    pretrain: PretrainSections
    extract: ExtractSections
    episodes: EpisodesSections
    metatrain: dict[str, TrainConfig]  # model name -> its section
    evaluate: EvaluateSections
    related: dict[str, RelatedSection] = Field(default_factory=dict)  # related run -> its section (optional)
    report: ReportConfig

    def section(self, name: str, item: str) -> Any:
        """The parsed section ``name.item`` (a dataset, model or related run)."""
        sections = getattr(self, name)
        found = sections if isinstance(sections, dict) else dict(sections)
        if item not in found:
            raise ConfigError(f"params.yaml: no section {name}.{item} (found {sorted(found)})")
        return found[item]


def parse_params(params: Mapping[str, Any]) -> Params:
    """Every section of ``params`` (raw YAML) parsed with its schema; a :class:`ConfigError` lists
    every problem of every section (not the checks across sections: :func:`load_valid_params`)."""
    return parse(Params, params, "")


def section_schema(*keys: str) -> Any:
    """The schema of the section ``k1.k2...`` of :class:`Params` (``("metatrain", "x")``: a
    :class:`~metagmvae.schema.metatrain.TrainConfig`)."""
    schema: Any = Params
    for key in keys:
        if get_origin(schema) is dict:
            schema = get_args(schema)[1]
        elif key in getattr(schema, "model_fields", {}):
            schema = schema.model_fields[key].annotation
        else:
            raise ConfigError(f"params.yaml: no section {'.'.join(keys)!r}")
    return schema


def parse_section(params: Mapping[str, Any], *keys: str) -> Any:
    """One section, ``params[k1][k2]``, parsed with its schema (for code holding one section,
    such as the developer tools and the tests); errors are located under ``k1.k2``."""
    raw: Any = params
    for depth, key in enumerate(keys):
        if not isinstance(raw, Mapping) or key not in raw:
            raise ConfigError(f"params.yaml: missing section {'.'.join(keys[: depth + 1])!r}")
        raw = raw[key]
    return parse(section_schema(*keys), raw, ".".join(keys))


def _valid_sections(params: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``{section: {dataset or name: its parsed section, or None where it is invalid}}``: what the
    checks across sections can use even when some section is wrong."""
    out: dict[str, dict[str, Any]] = {}
    for section in Params.model_fields:
        items = params.get(section)
        out[section] = {}
        for item in items if isinstance(items, Mapping) else ():
            try:
                out[section][item] = parse_section(params, section, item)
            except ConfigError:
                out[section][item] = None
    return out


def cross_section_problems(sections: dict[str, dict[str, Any]]) -> list[str]:
    """The problems no single section shows: episodes the splits cannot supply, and validation or
    test settings that no episodes were drawn for (sections that failed to parse are skipped)."""
    found: list[str] = []
    shapes = {}  # dataset -> split -> (classes, instances per class), as the stages will produce
    if augment := sections["augment"].get("omniglot"):
        split = augment.split.model_dump()
        shapes["omniglot"] = {s: (n * ROTATIONS, IMAGES_PER_CHARACTER) for s, n in split.items()}
    download, extract = sections["download"].get("mini_imagenet"), sections["extract"].get("mini_imagenet")
    if download and extract:
        per_class = extract.per_class.model_dump()
        shapes["mini_imagenet"] = {s: (n, per_class[s]) for s, n in download.classes.model_dump().items()}
    episodes = sections["episodes"]
    for dataset, cfg in episodes.items():
        if cfg and dataset in shapes:
            try:
                check_settings(dataset, cfg, shapes[dataset])
            except ConfigError as exc:
                found.append(str(exc))

    models = sections["metatrain"]
    for name, model in models.items():
        if not (model and episodes.get(model.dataset)):
            continue
        if missing := _missing_settings(episodes[model.dataset], "val", model.way, model.val_shots):
            found.append(
                f"metatrain.{name}: validation at {missing} needs those settings in "
                f"episodes.{model.dataset}.val (ways and shots)"
            )
    for dataset, cfg in sections["evaluate"].items():
        for name, shots in cfg.models.items() if cfg else ():
            model = models.get(name)
            if name not in models:
                found.append(f"evaluate.{dataset}.models.{name}: no such model in metatrain ({sorted(models)})")
            elif model and model.dataset != dataset:
                found.append(f"evaluate.{dataset}.models.{name}: the model is trained on {model.dataset!r}")
            elif not (model and episodes.get(dataset)):
                continue
            elif missing := _missing_settings(episodes[dataset], "test", model.way, shots):
                found.append(
                    f"evaluate.{dataset}.models.{name}: testing at {missing} needs those settings in "
                    f"episodes.{dataset}.test (ways and shots)"
                )
        if cfg:
            found += _cross_way_problems(dataset, cfg, models, episodes.get(dataset))
    for name, run in sections["related"].items():
        if not (run and episodes.get(run.dataset)):
            continue
        needed = [("val", run.val_way, [run.val_shot])] + [("test", way, run.test_shots) for way in run.test_ways]
        for split, way, shots in needed:
            if missing := _missing_settings(episodes[run.dataset], split, way, shots):
                found.append(f"related.{name}: {split} at {missing} needs those settings in episodes.{run.dataset}")
    return found


def _cross_way_problems(
    dataset: str, cfg: EvalConfig, models: dict[str, TrainConfig | None], episodes: EpisodesConfig | None
) -> list[str]:
    """``evaluate.<dataset>.cross_way``: other ways than the model's own, drawn in the test
    episodes at the model's test shots, and one model per training way (the name of its results)."""
    found, trained_at = [], {}
    for name, ways in cfg.cross_way.items():
        model = models.get(name)
        if not model:
            continue
        where = f"evaluate.{dataset}.cross_way.{name}"
        trained_at.setdefault(model.way, []).append(name)
        if model.way in ways:
            found.append(
                f"{where} = {ways}: {model.way} is the model's own way (tested through evaluate.{dataset}.models)"
            )
        for way in ways:
            if episodes and (missing := _missing_settings(episodes, "test", way, cfg.models[name])):
                found.append(f"{where}: testing at {missing} needs those settings in episodes.{dataset}.test")
    for way, names in trained_at.items():
        if len(names) > 1:
            found.append(
                f"evaluate.{dataset}.cross_way: {names} are all trained at {way}-way; their cross-way results would "
                f"share one name ({cross_way_method(way)}): keep one"
            )
    return found


def _missing_settings(cfg: EpisodesConfig, split: str, way: int, shots: list[int]) -> list[str]:
    """The ``<W>-way <s>-shot`` settings among ``shots`` that ``cfg`` does not draw for ``split``."""
    drawn = cfg.splits[split]
    return [f"{way}-way {shot}-shot" for shot in shots if way not in drawn.ways or shot not in drawn.shots]


def params_problems(raw: Mapping[str, Any]) -> list[str]:
    """Every problem of a raw parameter file, of each section and across sections; empty when all
    of it is valid."""
    try:
        Params.model_validate(raw)
        found = []
    except ValidationError as exc:
        found = problems(exc, Params)
    return found + cross_section_problems(_valid_sections(raw))


def refusal(path: str | os.PathLike, found: list[str]) -> ConfigError:
    """The error for a file with ``found`` problems: one line for one problem, else a count and
    one line per problem."""
    if len(found) == 1:
        return ConfigError(f"{path}: {found[0]}")
    return ConfigError(f"{path}: {len(found)} problem(s):\n" + "\n".join(f"  - {p}" for p in found))


def load_valid_params(path: str | os.PathLike = "params.yaml") -> Params:
    """Read ``path`` and parse every section once; refuse it, listing every problem (of each
    section and across sections), unless all of it is valid."""
    raw = load_params(path)
    if found := params_problems(raw):
        raise refusal(path, found)
    return Params.model_validate(raw)
