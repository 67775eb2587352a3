"""Published results, accuracy and 95% CI in percent: Meta-GMVAE (Lee et al., ICLR 2021, Table 1)
and the related methods, each as its own paper reports it for its own setup."""

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

RELATED_PAPER_RESULTS: dict[str, dict[str, dict[str, tuple[float, float | None]]]] = {
    # LASIUM-ProtoNets (Khodadadeh et al.): Table 1 (Omniglot) and Table 2 (Mini-ImageNet, Conv4 on
    # 84x84 pixels), as also quoted in Meta-GMVAE's Table 1; no CI is quoted, no Omniglot 20-way.
    "lasium": {
        "omniglot": {"5way_1shot": (80.15, None), "5way_5shot": (91.10, None)},
        "mini_imagenet": {
            "5way_1shot": (40.05, None),
            "5way_5shot": (52.53, None),
            "5way_20shot": (61.09, None),
            "5way_50shot": (64.89, None),
        },
    },
    # LEO (Rusu et al., ICLR 2019), Table 1, WRN-28-10 features trained with labels.
    "leo": {"mini_imagenet": {"5way_1shot": (61.76, 0.08), "5way_5shot": (77.59, 0.12)}},
    # SIB (Hu et al., ICLR 2020), transductive, K = 3, WRN-28-10 (its Conv-4-64 row: 58.0 ± 0.6 /
    # 70.7 ± 0.4; the official README's re-run: 70.70 ± 0.59 / 80.05 ± 0.36).
    "sib": {"mini_imagenet": {"5way_1shot": (70.0, 0.6), "5way_5shot": (79.2, 0.4)}},
}
"""``{method: {dataset: {"<W>way_<s>shot": (accuracy, ci95 or None)}}}``, from each method's paper."""
