"""Check the whole parameter file before any work: ``python -m metagmvae.validate [params.yaml]``.

Every section is parsed by the parser its stage uses, then the checks that span sections are
added: episodes that the configured splits cannot supply (way larger than the classes, shot +
query larger than the images per class), models whose validation or test settings have no
episodes, evaluation of a model that is not trained. All problems are reported at once, each
naming the key, the value and what is allowed. Every stage script loads its parameters through
:func:`load_valid_params`, so a typo in the last stage's section stops the first stage instead
of failing after hours of training.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any

from metagmvae.config import ConfigError, load_params, section
from metagmvae.data import omniglot
from metagmvae.episode_results import cross_way_method
from metagmvae.pipeline.augment import augment_config
from metagmvae.pipeline.download import download_config
from metagmvae.pipeline.episodes import EpisodesConfig, check_settings, episodes_config
from metagmvae.pipeline.evaluate import EvalConfig, eval_config
from metagmvae.pipeline.extract import extract_config
from metagmvae.pipeline.metatrain import train_config
from metagmvae.pipeline.pretrain import pretrain_config
from metagmvae.pipeline.related import related_config
from metagmvae.report import report_config
from metagmvae.train import TrainConfig

SECTIONS: dict[str, tuple[str, ...] | None] = {  # section -> its datasets (None: names are free)
    "download": ("omniglot", "mini_imagenet"),
    "augment": ("omniglot",),
    "pretrain": ("mini_imagenet",),
    "extract": ("mini_imagenet",),
    "episodes": ("omniglot", "mini_imagenet"),
    "metatrain": None,  # model names
    "evaluate": ("omniglot", "mini_imagenet"),
    "related": None,  # names of related-method runs
    "report": None,  # its own keys (metagmvae.report.report_config)
}
OPTIONAL = ("related",)


def problems(params: Mapping[str, Any]) -> list[str]:
    """Every problem found in ``params``, as messages naming the key; empty when all is valid."""
    found: list[str] = []

    def attempt(parse: Callable[..., Any], *args: Any) -> Any:
        try:
            return parse(*args)
        except (ConfigError, ValueError) as exc:
            found.append(str(exc))
            return None

    if unknown := sorted(set(params) - set(SECTIONS)):
        found.append(f"unknown top-level section(s) {unknown}; allowed: {list(SECTIONS)}")
    for name, datasets in SECTIONS.items():
        if name not in params:
            if name not in OPTIONAL:
                found.append(f"missing top-level section {name!r}")
        elif not isinstance(params[name], Mapping):
            found.append(f"{name}: expected a mapping, got {params[name]!r}")
        elif datasets is not None and (extra := sorted(set(params[name]) - set(datasets))):
            found.append(f"{name}: unknown dataset(s) {extra}; allowed: {list(datasets)}")
    if found:
        return found

    download = {d: attempt(download_config, params, d) for d in SECTIONS["download"]}
    augment = attempt(augment_config, params)
    attempt(pretrain_config, params, "mini_imagenet")
    extract = attempt(extract_config, params, "mini_imagenet")
    episodes = {d: attempt(episodes_config, params, d) for d in SECTIONS["episodes"]}
    models = {name: attempt(train_config, params, name) for name in section(params, "metatrain")}
    evaluations = {d: attempt(eval_config, params, d) for d in SECTIONS["evaluate"]}
    related = {name: attempt(related_config, params, name) for name in params.get("related", {})}
    attempt(report_config, params)

    shapes = {}  # dataset -> split -> (classes, instances per class), as the stages will produce
    if augment:
        shapes["omniglot"] = {
            s: (n * omniglot.ROTATIONS, omniglot.IMAGES_PER_CHARACTER) for s, n in augment.split.items()
        }
    if download["mini_imagenet"] and extract:
        classes = download["mini_imagenet"]["classes"]
        shapes["mini_imagenet"] = {s: (classes[s], extract.per_class[s]) for s in classes}
    for dataset, cfg in episodes.items():
        if cfg and dataset in shapes:
            attempt(check_settings, dataset, cfg, shapes[dataset])

    for name, cfg in models.items():
        if not (cfg and episodes.get(cfg.dataset)):
            continue
        if missing := _missing_settings(episodes[cfg.dataset], "val", cfg.way, cfg.val_shots):
            found.append(
                f"metatrain.{name}: validation at {missing} needs those settings in "
                f"episodes.{cfg.dataset}.val (ways and shots)"
            )
    for dataset, cfg in evaluations.items():
        if not cfg:
            continue
        for name, shots in cfg.models.items():
            model = models.get(name)
            if name not in models:
                found.append(f"evaluate.{dataset}.models.{name}: no such model in metatrain ({sorted(models)})")
            elif model and model.dataset != dataset:
                found.append(f"evaluate.{dataset}.models.{name}: the model is trained on {model.dataset!r}")
            elif (
                model
                and episodes.get(dataset)
                and (missing := _missing_settings(episodes[dataset], "test", model.way, shots))
            ):
                found.append(
                    f"evaluate.{dataset}.models.{name}: testing at {missing} needs those settings in "
                    f"episodes.{dataset}.test (ways and shots)"
                )
        found += _cross_way_problems(dataset, cfg, models, episodes.get(dataset))
    for name, spec in related.items():
        if not (spec and episodes.get(spec["dataset"])):
            continue
        needed = [("val", spec["val_way"], [spec["val_shot"]])]
        needed += [("test", way, spec["test_shots"]) for way in spec["test_ways"]]
        for split, way, shots in needed:
            if missing := _missing_settings(episodes[spec["dataset"]], split, way, shots):
                found.append(f"related.{name}: {split} at {missing} needs those settings in episodes.{spec['dataset']}")
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
    _, ways, drawn = cfg.splits[split]
    return [f"{way}-way {shot}-shot" for shot in shots if way not in ways or shot not in drawn]


def load_valid_params(path: str | os.PathLike = "params.yaml") -> dict[str, Any]:
    """Read ``path`` and refuse it, listing every problem, unless all of it is valid."""
    params = load_params(path)
    if found := problems(params):
        raise ConfigError(f"{path}: {len(found)} problem(s):\n" + "\n".join(f"  - {p}" for p in found))
    return params


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("params", nargs="?", default="params.yaml")
    args = parser.parse_args(argv)
    try:
        params = load_valid_params(args.params)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"{args.params}: valid ({len(params)} sections, {len(params['metatrain'])} models)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
