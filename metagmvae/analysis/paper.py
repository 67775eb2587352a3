"""Published results, accuracy and 95% CI in percent: Meta-GMVAE (Lee et al., ICLR 2021, Table 1)
and the related methods, each as its own paper reports it for its own setup, with its source."""

from __future__ import annotations

from dataclasses import dataclass

PAPER_RESULTS = {
    "omniglot": {
        "5way_1shot": (94.92, 0.42),
        "5way_5shot": (97.09, 0.20),
        "20way_1shot": (82.21, 0.44),
        "20way_5shot": (90.61, 0.19),
    },
    "mini_imagenet": {
        "5way_1shot": (42.82, 0.56),
        "5way_5shot": (55.73, 0.48),
        "5way_20shot": (63.14, 0.47),
        "5way_50shot": (68.26, 0.42),
    },
}


@dataclass(frozen=True)
class Source:
    """Where published numbers come from: ``key`` (a short label the report cites, e.g. ``"S1"``),
    the paper and its version, the table, the row (variant, backbone) and the number of test
    tasks the mean and CI are over (``None`` where the source does not say)."""

    key: str
    paper: str
    version: str
    table: str
    row: str
    test_tasks: int | None

    def describe(self) -> str:
        tasks = "test tasks not stated" if self.test_tasks is None else f"{self.test_tasks} test tasks"
        return f"{self.paper}, {self.version}, {self.table}, {self.row}; {tasks}"


@dataclass(frozen=True)
class Published:
    """One published result: ``setting`` ``"<W>way_<s>shot"``, accuracy and 95% CI (%, ``None``
    where none is quoted) and its :class:`Source`."""

    setting: str
    accuracy: float
    ci95: float | None
    source: Source


LEO_V1 = Source(
    "L1",
    "Rusu et al., Meta-Learning with Latent Embedding Optimization",
    "first arXiv version (1807.05960v1, 2018), the version this project follows",
    "Table 1",
    "LEO on WRN-28-10 features, a model per shot",
    None,
)
LEO_ICLR = Source(
    "L2",
    "Rusu et al., Meta-Learning with Latent Embedding Optimization",
    "later ICLR 2019 version (also the official repository's README), with the relation network",
    "Table 1",
    "LEO on WRN-28-10 features, a model per shot",
    None,
)
SIB_SOURCE = {
    (backbone, steps): Source(
        key,
        "Hu et al., Empirical Bayes Transductive Meta-Learning with Synthetic Gradients",
        "the version this project follows",
        "Table 2 (Mini-ImageNet test set)",
        f"SIB, T = {steps} synthetic-gradient steps, {backbone} features, a model per shot",
        600,
    )
    for key, backbone, steps in (("S1", "WRN-28-10", 3), ("S2", "Conv-4", 3), ("S3", "Conv-4", 5))
}

RELATED_PUBLISHED: dict[str, dict[str, tuple[Published, ...]]] = {
    "leo": {
        "mini_imagenet": (
            Published("5way_1shot", 60.06, 0.05, LEO_V1),
            Published("5way_5shot", 75.72, 0.18, LEO_V1),
            Published("5way_1shot", 61.76, 0.08, LEO_ICLR),
            Published("5way_5shot", 77.59, 0.12, LEO_ICLR),
        )
    },
    "sib": {
        "mini_imagenet": (
            Published("5way_1shot", 67.92, 0.55, SIB_SOURCE["WRN-28-10", 3]),
            Published("5way_5shot", 78.92, 0.37, SIB_SOURCE["WRN-28-10", 3]),
            Published("5way_1shot", 62.59, 1.02, SIB_SOURCE["Conv-4", 3]),
            Published("5way_5shot", 75.43, 0.67, SIB_SOURCE["Conv-4", 3]),
            Published("5way_1shot", 63.26, 1.07, SIB_SOURCE["Conv-4", 5]),
            Published("5way_5shot", 75.73, 0.71, SIB_SOURCE["Conv-4", 5]),
        )
    },
}
"""``{method: {dataset: (Published, ...)}}``; the first entry of a setting is the one plotted.
LEO and SIB: the numbers of the paper versions named in their sources (the LEO versions differ)."""

UNPUBLISHED_REASON = {
    "lasium": (
        "LASIUM (Khodadadeh et al., ICLR 2021): no number shown, because no table of the paper could be "
        "read here to name the variant (GAN or VAE; N, RO or OC; ProtoNets or MAML) and the table behind a "
        "number; the 80.15 / 91.10 (Omniglot) and 40.05 / 52.53 / 61.09 / 64.89 (Mini-ImageNet) shown before "
        "had no traceable table or variant, and Meta-GMVAE's Table 1 has no LASIUM row."
    ),
}
"""Why a related method's published numbers are left out ("-" in the report)."""


def published(method: str, dataset: str) -> tuple[Published, ...]:
    """Every published result of ``method`` on ``dataset`` (empty when none is traceable)."""
    return RELATED_PUBLISHED.get(method, {}).get(dataset, ())


def first_published(method: str, dataset: str) -> dict[str, tuple[float, float | None]]:
    """``{setting: (accuracy, ci95)}`` of the first published entry per setting (for the plots)."""
    out: dict[str, tuple[float, float | None]] = {}
    for entry in published(method, dataset):
        out.setdefault(entry.setting, (entry.accuracy, entry.ci95))
    return out
