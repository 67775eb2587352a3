"""Published Meta-GMVAE results (Lee et al., ICLR 2021, Table 1): accuracy and 95% CI in percent."""

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
