"""The `evaluate` stage: every model of a dataset and the baselines on the fixed test episodes."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from metagmvae.analysis import plots
from metagmvae.analysis.paper import PAPER_RESULTS
from metagmvae.data.episodes import EpisodeSet, episode_key, read_episodes
from metagmvae.data.stores import STORES, load_split, split_statistics
from metagmvae.evaluation.accuracy import episode_accuracies, model_accuracies, summarize
from metagmvae.evaluation.episode_results import EpisodeResults, trained_way
from metagmvae.methods.baselines import BASELINES
from metagmvae.models.trained import checkpoint_for, load_model
from metagmvae.runtime.io import write_csv, write_json
from metagmvae.runtime.tracking import result_metrics, start_run
from metagmvae.schema.data import check_episode_shape
from metagmvae.schema.evaluate import EvalConfig, cross_way_method

EMBEDDING_POINTS_PER_CLASS = 100  # Mini-ImageNet has 600 per class; Omniglot's 20 are all shown


def _report(method: str, key: str, res: dict) -> None:
    print(f"{method:>12} {key:>12}: {res['accuracy']:6.2f} +- {res['ci95']:.2f}")


def test_accuracies(model, tokens: torch.Tensor, episodes, cfg: EvalConfig, rt, progress: str | None = None):
    """Per-episode accuracy ``[n]`` of a Meta-GMVAE on encoded test ``tokens`` at the settings of
    an ``evaluate`` section (S_test, T_s, episodes per call, seed)."""
    return model_accuracies(
        model,
        tokens,
        episodes,
        rt=rt,
        samples=cfg.test_samples,
        em_iters=cfg.test_em_iters,
        episodes_per_call=cfg.episodes_per_call,
        seed=cfg.seed,
        progress=progress,
    )


@dataclass(frozen=True)
class Outputs:
    """Where the stage writes (dvc.yaml's outs; the per-episode results go beside ``metrics``,
    :func:`metagmvae.evaluation.episode_results.results_path`)."""

    metrics: Path  # {method: {"<W>way_<s>shot": {accuracy, ci95, episodes}}}, accuracies in percent
    accuracy_figure: Path  # accuracy by way/shot and method, beside the paper's
    embedding_figure: Path  # posterior means of one test episode, PCA
    accuracy_table: Path  # accuracy by shot against the paper (DVC plot data)


def run(dataset: str, cfg: EvalConfig, store: Path, episodes_path: Path, models_dir: Path, out: Outputs) -> dict:
    """Score every model of ``cfg.models`` (trained in ``models_dir/<name>``) and the baselines on
    the same test episodes of ``dataset``, and each model of ``cfg.cross_way`` also at those other
    ways (as ``meta_gmvae_trained_<K>way``); write ``out`` and every episode's result
    (:mod:`metagmvae.evaluation.episode_results`); returns the metrics."""
    rt = cfg.runtime(convolutional=STORES[dataset].images)
    test = torch.from_numpy(load_split(dataset, "test", store)).to(rt.device)
    results: dict[str, dict] = {"meta_gmvae": {}, **{b: {} for b in cfg.baselines}}
    per_episode = EpisodeResults(dataset, episodes_path)
    statistics = functools.cache(lambda: split_statistics(dataset, "train", store))
    baselines = {name: BASELINES[name](statistics) for name in cfg.baselines}
    run_params = {"dataset": dataset, **cfg.model_dump()}
    embedding_source = None

    def score(model, tokens: torch.Tensor, eps: EpisodeSet) -> np.ndarray:
        return test_accuracies(model, tokens, eps, cfg, rt, progress=episode_key(eps.way, eps.shot))

    def record(method: str, eps: EpisodeSet, accs: np.ndarray) -> None:
        key = episode_key(eps.way, eps.shot)
        results.setdefault(method, {})[key] = summarize(accs)
        per_episode.add(method, eps, accs)
        _report(method, key, results[method][key])

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
                record("meta_gmvae", eps, score(model, tokens, eps))
                for baseline, predict_baseline in baselines.items():
                    record(baseline, eps, episode_accuracies(predict_baseline, test, eps, cfg.episodes_per_call))
                for way in cfg.cross_way.get(name, []):  # the same checkpoint at another way (K is not in it)
                    other = read_episodes(episodes_path, "test", way, shot)
                    check_episode_shape(test.shape[0], test.shape[1], other.way, other.shot, other.query)
                    record(cross_way_method(train_cfg["way"]), other, score(model, tokens, other))
            if embedding_source is None:  # the first model (first checkpoint) on its last test episodes
                embedding_source = (name, next(iter(encoded.values()))[0], eps)
        write_json(out.metrics, results)
        episodes_out = per_episode.write_beside(out.metrics)
        paper = PAPER_RESULTS.get(dataset, {})
        own_way = {method: res for method, res in results.items() if trained_way(method) is None}
        plots.accuracy_figure(own_way, paper, out.accuracy_figure)
        write_csv(out.accuracy_table, *plots.accuracy_by_shot_table(own_way, paper))
        name, model, eps = embedding_source
        items = test[torch.as_tensor(eps.classes[0]), :EMBEDDING_POINTS_PER_CLASS]
        plots.embedding_figure(
            model,
            items,
            cfg.test_em_iters,
            rt.autocast,
            f"{name}: posterior means of one test episode's {eps.way} classes x {items.shape[1]} items "
            f"(colour = class), PCA",
            out.embedding_figure,
            seed=cfg.seed,
        )
        tracker.log_metrics(result_metrics(results))
        tracker.log_artifact(out.metrics)
        tracker.log_artifact(episodes_out, "episodes")
        for figure in (out.accuracy_figure, out.embedding_figure, out.accuracy_table):
            tracker.log_artifact(figure, "plots")
    return results
