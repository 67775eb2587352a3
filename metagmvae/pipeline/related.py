"""The `related` stage: one related method (LASIUM, LEO or SIB) trained on a dataset's store and
scored on the same fixed test episodes as Meta-GMVAE, with metrics in the same schema.

A ``related.<name>`` section holds the keys every method shares (``method``, ``dataset``, the
validation and test settings, the runtime) and the method's own hyper-parameters, which its
module parses (``metagmvae.related.<method>.parse_config``).
"""

from __future__ import annotations

import importlib
import time
from dataclasses import asdict
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from metagmvae import plots
from metagmvae.config import Checker, at_least, one_of, positive, positive_ints, section
from metagmvae.data.episodes import episode_key, read_episodes
from metagmvae.data.stores import STORES, load_split
from metagmvae.episode_results import EpisodeResults
from metagmvae.evaluate import episode_accuracies, summarize
from metagmvae.io import write_json
from metagmvae.paper import first_published
from metagmvae.runtime import make_runtime, runtime_params
from metagmvae.tracking import result_metrics, start_run

METHODS = ("lasium", "leo", "sib")
SHARED_KEYS = (
    *("method", "dataset", "val_way", "val_shot", "test_ways", "test_shots", "episodes_per_call"),
    *("device", "precision", "channels_last"),
)


def method_module(method: str) -> ModuleType:
    return importlib.import_module(f"metagmvae.related.{method}")


def related_config(params: dict, name: str) -> dict[str, Any]:
    """Parse and validate ``related.<name>``: the shared keys, the runtime and, through the
    method's own parser, its hyper-parameters (``cfg``)."""
    where = f"related.{name}"
    raw = section(params, "related", name)
    shared = Checker({k: raw[k] for k in raw if k in SHARED_KEYS}, where)
    out = {
        "method": shared.get("method", str, one_of(*METHODS)),
        "dataset": shared.get("dataset", str, one_of(*STORES)),
        "val_way": shared.get("val_way", int, at_least(2)),
        "val_shot": shared.get("val_shot", int, positive),
        "test_ways": shared.get("test_ways", list, positive_ints),
        "test_shots": shared.get("test_shots", list, positive_ints),
        "episodes_per_call": shared.get("episodes_per_call", int, positive),
        **runtime_params(shared),
    }
    shared.done()
    own = {k: v for k, v in raw.items() if k not in shared.seen}
    out["cfg"] = method_module(out["method"]).parse_config(own, where)
    return out


def run(
    name: str, params: dict, store: Path, episodes_path: Path, out_dir: Path, plots_dir: Path, metrics_path: Path
) -> dict:
    """Train ``related.<name>``, write ``out_dir/model.pt`` and ``summary.json``, score every test
    setting and write ``metrics_path`` as ``{method: {"<W>way_<s>shot": {accuracy, ci95,
    episodes}}}`` (percent), every episode's result beside it (:mod:`metagmvae.episode_results`)
    and ``plots_dir/accuracy.png`` (LASIUM also ``tasks.png``)."""
    spec = related_config(params, name)
    module, cfg, dataset, method = method_module(spec["method"]), spec["cfg"], spec["dataset"], spec["method"]
    rt = make_runtime(spec["device"], spec["precision"], spec["channels_last"], convolutional=STORES[dataset].images)
    val_eps = read_episodes(episodes_path, "val", spec["val_way"], spec["val_shot"])
    tests = {
        episode_key(way, shot): read_episodes(episodes_path, "test", way, shot)
        for way in spec["test_ways"]
        for shot in spec["test_shots"]
    }
    data = {split: torch.from_numpy(load_split(dataset, split, store)).to(rt.device) for split in ("train", "val")}
    test = torch.from_numpy(load_split(dataset, "test", store)).to(rt.device)
    model_path = out_dir / "model.pt"
    logged = {"model_name": name, **{k: v for k, v in spec.items() if k != "cfg"}, **asdict(cfg)}
    with start_run("related", name, logged, runtime=rt) as tracker:
        summary = module.train(cfg, rt, data, val_eps, model_path, tracker)
        predict = module.predictor(model_path, rt)
        results: dict[str, dict] = {method: {}}
        per_episode = EpisodeResults(dataset, episodes_path)
        tick = time.perf_counter()
        for key, eps in tests.items():
            accs = episode_accuracies(predict, test, eps, spec["episodes_per_call"])
            results[method][key] = summarize(accs)
            per_episode.add(method, eps, accs)
            print(f"{name} {key}: {results[method][key]['accuracy']:.2f} ± {results[method][key]['ci95']:.2f}")
        summary["test_seconds"] = round(time.perf_counter() - tick, 1)
        write_json(out_dir / "summary.json", {k: v for k, v in summary.items() if not k.endswith("seconds")})
        write_json(metrics_path, results)
        episodes_out = per_episode.write_beside(metrics_path)  # <metrics folder>/episodes/<name>.json
        plots_dir.mkdir(parents=True, exist_ok=True)
        plots.accuracy_figure(results, first_published(method, dataset), plots_dir / "accuracy.png")
        if hasattr(module, "task_figure"):
            module.task_figure(model_path, cfg, rt, plots_dir / "tasks.png")
        tracker.log_metrics(result_metrics(results) | {k: v for k, v in summary.items() if isinstance(v, int | float)})
        for path in (metrics_path, episodes_out, out_dir / "summary.json", *sorted(plots_dir.glob("*.png"))):
            tracker.log_artifact(path)
    return results
