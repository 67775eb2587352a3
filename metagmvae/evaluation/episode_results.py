"""Per-episode test results: how many queries of every fixed test episode each method got right.

Every evaluation (the ``evaluate`` stage's Meta-GMVAE models and baselines, every ``related``
run) writes, beside its metrics file, a file in an ``episodes/`` folder::

    metrics/omniglot.json                    -> metrics/episodes/omniglot.json
    metrics/related/sib_mini_imagenet.json   -> metrics/related/episodes/sib_mini_imagenet.json

holding, per method and setting, the number of correct queries of each test episode, keyed by
the digest of the episodes they were scored on::

    {"format": "metagmvae.episode_results.v1", "dataset": "omniglot",
     "episodes_file_sha256": "<SHA-256 of data/omniglot/episodes.h5>",
     "results": {"meta_gmvae": {"5way_1shot": {"episodes_sha256": "<digest of these episodes>",
                                               "queries": 75, "correct": [61, 70, ...]}}}}

Counts are exact (an accuracy is ``correct / queries``) and take about 3 bytes per episode on
one line: about 4 KB per 1000-episode setting. Two results can be paired episode by episode
(:mod:`metagmvae.analysis.compare`) only when their ``episodes_sha256`` agree; the digest covers that
setting's episodes alone (every setting has its own seeded stream), so adding a setting or
changing the validation episodes keeps the test results comparable, while the file's own digest
is kept for tracing.

A model tested at a way other than its own (cross-way evaluation) is reported as the method
``meta_gmvae_trained_<K>way`` (see :func:`cross_way_method`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from metagmvae.data.episodes import EpisodeSet, episode_key
from metagmvae.runtime.io import sha256_file, write_json
from metagmvae.schema.evaluate import CROSS_WAY_PREFIX, CROSS_WAY_SUFFIX

FORMAT = "metagmvae.episode_results.v1"
FOLDER = "episodes"


def trained_way(method: str) -> int | None:
    """The training way of a :func:`cross_way_method` name; ``None`` for any other method."""
    core = method.removeprefix(CROSS_WAY_PREFIX).removesuffix(CROSS_WAY_SUFFIX)
    return int(core) if method.startswith(CROSS_WAY_PREFIX) and core.isdigit() else None


def results_path(metrics_path: str | os.PathLike) -> Path:
    """The per-episode file beside a metrics file: ``<folder>/episodes/<name>``."""
    metrics_path = Path(metrics_path)
    return metrics_path.parent / FOLDER / metrics_path.name


def is_results_path(path: str) -> bool:
    """Whether a (repository-relative, ``/``-separated) path names a per-episode results file."""
    parts = path.split("/")
    return len(parts) >= 2 and parts[-2] == FOLDER and parts[-1].endswith(".json")


def episodes_digest(episodes: EpisodeSet) -> str:
    """Hex SHA-256 of a set of episodes: their count, way, shot, query and every class and
    instance index. Equal digests mean the same episodes in the same order."""
    h = hashlib.sha256(f"{len(episodes)},{episodes.way},{episodes.shot},{episodes.query};".encode())
    for indices in (episodes.classes, episodes.instances):
        h.update(np.ascontiguousarray(indices, dtype="<i8").tobytes())
    return h.hexdigest()


def correct_counts(accuracies: np.ndarray, queries: int) -> list[int]:
    """Per-episode accuracies ``[n]`` in [0, 1] over ``queries`` queries each, as exact counts."""
    acc = np.asarray(accuracies, dtype=np.float64)
    counts = np.rint(acc * queries)
    if not np.allclose(counts, acc * queries, rtol=0, atol=1e-6):
        raise ValueError(f"accuracies are not multiples of 1/{queries}: not per-episode accuracies over {queries}")
    return [int(c) for c in counts]


class EpisodeResults:
    """Collects one evaluation's per-episode results and writes them beside its metrics file.

    episodes_file: the episode file the evaluation read (its SHA-256 is recorded).
    """

    def __init__(self, dataset: str, episodes_file: str | os.PathLike):
        self.dataset = dataset
        self.episodes_file_sha256 = sha256_file(episodes_file)
        self.results: dict[str, dict[str, dict]] = {}

    def add(self, method: str, episodes: EpisodeSet, accuracies: np.ndarray) -> None:
        """Record ``method``'s accuracies ``[n]`` (in [0, 1]) on ``episodes``, in their order."""
        if len(accuracies) != len(episodes):
            raise ValueError(f"{method}: {len(accuracies)} accuracies for {len(episodes)} episodes")
        key = episode_key(episodes.way, episodes.shot)
        if key in self.results.get(method, {}):
            raise ValueError(f"{method} {key}: recorded twice")
        queries = episodes.way * episodes.query
        self.results.setdefault(method, {})[key] = {
            "episodes_sha256": episodes_digest(episodes),
            "queries": queries,
            "correct": correct_counts(accuracies, queries),
        }

    def write_beside(self, metrics_path: str | os.PathLike) -> Path:
        """Write the file that belongs to ``metrics_path`` (see :func:`results_path`), atomically."""
        path = results_path(metrics_path)
        document = {
            "format": FORMAT,
            "dataset": self.dataset,
            "episodes_file_sha256": self.episodes_file_sha256,
            "results": self.results,
        }
        write_json(path, document, compact=True)
        return path


@dataclass(frozen=True)
class SettingResult:
    """One method's results on one setting, as read back."""

    accuracies: np.ndarray  # [n] per-episode accuracy in [0, 1]
    episodes_sha256: str
    source: str  # where it was read (for messages)


Table = dict[tuple[str, str, str], SettingResult]
"""``(dataset, method, "<W>way_<s>shot") -> SettingResult``."""


def parse(text: str, source: str) -> Table:
    """The entries of one per-episode file's contents; ``source`` names it in errors."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{source}: not JSON ({exc})") from exc
    if not isinstance(doc, Mapping) or doc.get("format") != FORMAT:
        raise ValueError(f"{source}: not a per-episode results file (format {FORMAT!r})")
    table: Table = {}
    for method, settings in doc["results"].items():
        for key, entry in settings.items():
            accuracies = np.asarray(entry["correct"], dtype=np.float64) / entry["queries"]
            table[(doc["dataset"], method, key)] = SettingResult(accuracies, entry["episodes_sha256"], source)
    return table


def merge(files: Mapping[str, str]) -> Table:
    """One table from several files' contents (``{source: text}``); a (dataset, method, setting)
    found in two files is an error naming both."""
    table: Table = {}
    for source, text in sorted(files.items()):
        for key, result in parse(text, source).items():
            if key in table:
                raise ValueError(f"{' '.join(key)}: found in both {table[key].source} and {source}")
            table[key] = result
    return table
