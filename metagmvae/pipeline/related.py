"""The `related` stage: one related method (LASIUM, LEO or SIB) trained on a dataset's store and
scored on the same fixed test episodes as Meta-GMVAE, with metrics in the same schema.

A ``related.<name>`` section holds the keys every method shares (:class:`RelatedRun`: ``method``,
``dataset``, the validation and test settings, the runtime) and the method's own
hyper-parameters (its ``Config``, :mod:`metagmvae.methods.registry`), in one flat mapping.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from metagmvae.analysis import plots
from metagmvae.analysis.paper import first_published
from metagmvae.data.episodes import episode_key, read_episodes
from metagmvae.data.stores import STORES, load_split
from metagmvae.evaluation.accuracy import episode_accuracies, summarize
from metagmvae.evaluation.episode_results import EpisodeResults
from metagmvae.methods.registry import METHODS, TASK_SAMPLERS
from metagmvae.runtime.io import write_json
from metagmvae.runtime.tracking import result_metrics, start_run
from metagmvae.schema.related import RelatedRun


def run(
    name: str,
    spec: RelatedRun,
    store: Path,
    episodes_path: Path,
    out_dir: Path,
    plots_dir: Path,
    metrics_path: Path,
    resume_root: Path | None = None,
) -> dict:
    """Train ``related.<name>``, write ``out_dir/model.pt`` and ``summary.json``, score every test
    setting and write ``metrics_path`` as ``{method: {"<W>way_<s>shot": {accuracy, ci95,
    episodes}}}`` (percent), every episode's result beside it (:mod:`metagmvae.evaluation.episode_results`)
    and ``plots_dir/accuracy.png`` (and ``tasks.png`` for a method that generates its tasks). An
    interrupted training resumes from ``resume_root``."""
    method, dataset, cfg = spec.method, spec.dataset, spec.method_config()
    rt = spec.runtime(convolutional=STORES[dataset].images)
    val_eps = read_episodes(episodes_path, "val", spec.val_way, spec.val_shot)
    tests = {
        episode_key(way, shot): read_episodes(episodes_path, "test", way, shot)
        for way in spec.test_ways
        for shot in spec.test_shots
    }
    data = {split: torch.from_numpy(load_split(dataset, split, store)).to(rt.device) for split in ("train", "val")}
    test = torch.from_numpy(load_split(dataset, "test", store)).to(rt.device)
    model_path = out_dir / "model.pt"
    with start_run("related", name, {"model_name": name, **spec.model_dump()}, runtime=rt) as tracker:
        summary = METHODS[method].train(cfg, rt, data, val_eps, model_path, tracker, resume_root=resume_root)
        predict = METHODS[method].predictor(model_path, rt)
        results: dict[str, dict] = {method: {}}
        per_episode = EpisodeResults(dataset, episodes_path)
        tick = time.perf_counter()
        for key, eps in tests.items():
            accs = episode_accuracies(predict, test, eps, spec.episodes_per_call)
            results[method][key] = summarize(accs)
            per_episode.add(method, eps, accs)
            print(f"{name} {key}: {results[method][key]['accuracy']:.2f} ± {results[method][key]['ci95']:.2f}")
        summary["test_seconds"] = round(time.perf_counter() - tick, 1)
        write_json(out_dir / "summary.json", {k: v for k, v in summary.items() if not k.endswith("seconds")})
        write_json(metrics_path, results)
        episodes_out = per_episode.write_beside(metrics_path)  # <metrics folder>/episodes/<name>.json
        plots_dir.mkdir(parents=True, exist_ok=True)
        plots.accuracy_figure(results, first_published(method, dataset), plots_dir / "accuracy.png")
        if method in TASK_SAMPLERS:
            plots.generated_tasks_figure(*TASK_SAMPLERS[method](model_path, cfg, rt), plots_dir / "tasks.png")
        tracker.log_metrics(result_metrics(results) | {k: v for k, v in summary.items() if isinstance(v, int | float)})
        for path in (metrics_path, episodes_out, out_dir / "summary.json", *sorted(plots_dir.glob("*.png"))):
            tracker.log_artifact(path)
    return results
