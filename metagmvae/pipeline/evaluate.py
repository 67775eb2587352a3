"""The `evaluate` stage: every model of a dataset and the baselines on the fixed test episodes."""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from metagmvae import plots
from metagmvae.baselines import BASELINES
from metagmvae.config import Checker, ConfigError, non_negative, positive, positive_ints, section
from metagmvae.data.episodes import check_episode_shape, episode_key, read_episodes
from metagmvae.data.stores import STORES, load_split, split_statistics
from metagmvae.evaluate import episode_accuracies, model_accuracies, summarize
from metagmvae.io import write_csv, write_json
from metagmvae.paper import PAPER_RESULTS
from metagmvae.runtime import make_runtime, runtime_params
from metagmvae.tracking import result_metrics, start_run
from metagmvae.train import checkpoint_for, load_model

RENAMED = {"samples": "test_samples", "em_iters": "test_em_iters"}  # former key -> current key
EMBEDDING_POINTS_PER_CLASS = 100  # Mini-ImageNet has 600 per class; Omniglot's 20 are all shown


def _report(method: str, key: str, res: dict) -> None:
    print(f"{method:>12} {key:>12}: {res['accuracy']:6.2f} +- {res['ci95']:.2f}")


@dataclass(frozen=True)
class EvalConfig:
    """One dataset's ``evaluate`` section."""

    models: dict[str, list[int]]  # model name -> test shots (at the model's own way)
    baselines: list[str]
    test_samples: int  # S_test
    test_em_iters: int  # T_s
    episodes_per_call: int
    seed: int
    device: str
    precision: str  # auto | fp32 | bf16 (resolved by metagmvae.runtime.make_runtime)
    channels_last: bool | str  # auto | true | false


def eval_config(params: dict, dataset: str) -> EvalConfig:
    """Parse and validate ``evaluate.<dataset>``."""
    where = f"evaluate.{dataset}"
    check = Checker(section(params, "evaluate", dataset), where, renamed=RENAMED)
    cfg = EvalConfig(
        models=check.get("models", dict, lambda v: None if v else "must name at least one model"),
        baselines=check.get(
            "baselines", list, lambda v: None if set(v) <= set(BASELINES) else f"must be drawn from {sorted(BASELINES)}"
        ),
        test_samples=check.get("test_samples", int, positive),
        test_em_iters=check.get("test_em_iters", int, positive),
        episodes_per_call=check.get("episodes_per_call", int, positive),
        seed=check.get("seed", int, non_negative),
        **runtime_params(check),
    )
    check.done()
    for name, shots in cfg.models.items():
        if problem := positive_ints(shots):
            raise ConfigError(f"{where}.models.{name} = {shots!r}: {problem}")
    return cfg


def run(
    dataset: str, params: dict, store: Path, episodes_path: Path, models_dir: Path, out_path: Path, plots_dir: Path
) -> dict:
    """Score every model of ``evaluate.<dataset>`` and the baselines on the same test episodes.

    Writes ``out_path`` as ``{method: {"<W>way_<s>shot": {accuracy, ci95, episodes}}}`` with
    accuracies in percent.
    """
    cfg = eval_config(params, dataset)
    rt = make_runtime(cfg.device, cfg.precision, cfg.channels_last, convolutional=STORES[dataset].images)
    test = torch.from_numpy(load_split(dataset, "test", store)).to(rt.device)
    results: dict[str, dict] = {"meta_gmvae": {}, **{b: {} for b in cfg.baselines}}
    statistics = functools.cache(lambda: split_statistics(dataset, "train", store))
    baselines = {name: BASELINES[name](statistics) for name in cfg.baselines}
    run_params = {"dataset": dataset, **asdict(cfg)}
    embedding_source = None
    with start_run("evaluate", f"evaluate-{dataset}", run_params, runtime=rt) as tracker:
        for name, shots in cfg.models.items():
            encoded = {}  # checkpoint -> (model, its config, test tokens): Mini-ImageNet tests one at every shot
            for shot in shots:
                path = checkpoint_for(models_dir / name, shot)
                if path not in encoded:
                    model, train_cfg = load_model(path, rt)
                    with rt.autocast():
                        encoded[path] = (model, train_cfg, model.encode(test))
                model, train_cfg, tokens = encoded[path]
                eps = read_episodes(episodes_path, "test", train_cfg["way"], shot)
                check_episode_shape(test.shape[0], test.shape[1], eps.way, eps.shot, eps.query)
                key = episode_key(eps.way, shot)
                accs = model_accuracies(
                    model, rt, tokens, eps, cfg.test_samples, cfg.test_em_iters, cfg.episodes_per_call, cfg.seed, key
                )
                results["meta_gmvae"][key] = summarize(accs)
                _report("meta_gmvae", key, results["meta_gmvae"][key])
                for baseline, predict_baseline in baselines.items():
                    accs = episode_accuracies(predict_baseline, test, eps, cfg.episodes_per_call)
                    results[baseline][key] = summarize(accs)
                    _report(baseline, key, results[baseline][key])
            if embedding_source is None:  # the first model (first checkpoint) on its last test episodes
                embedding_source = (name, next(iter(encoded.values()))[0], eps)
        write_json(out_path, results)
        paper = PAPER_RESULTS.get(dataset, {})
        plots.accuracy_figure(results, paper, plots_dir / "accuracy.png")
        write_csv(plots_dir / "accuracy_by_shot.csv", *plots.accuracy_by_shot_table(results, paper))
        name, model, eps = embedding_source
        items = test[torch.as_tensor(eps.classes[0]), :EMBEDDING_POINTS_PER_CLASS]
        plots.embedding_figure(
            model,
            items,
            cfg.test_em_iters,
            rt.autocast,
            f"{name}: posterior means of one test episode's {eps.way} classes x {items.shape[1]} items "
            f"(colour = class), PCA",
            plots_dir / "embedding.png",
            seed=cfg.seed,
        )
        tracker.log_metrics(result_metrics(results))
        tracker.log_artifact(out_path)
        for figure in ("accuracy.png", "embedding.png", "accuracy_by_shot.csv"):
            tracker.log_artifact(plots_dir / figure, "plots")
    return results
