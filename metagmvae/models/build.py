"""Build a Meta-GMVAE from its ``model`` parameter section."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from metagmvae.config import Checker, ConfigError, one_of, positive
from metagmvae.models.conv import ConvEncoder, DeconvDecoder
from metagmvae.models.gmvae import MetaGMVAE
from metagmvae.models.mlp import FeatureDecoder

MODEL_KINDS = ("pixels", "features")


def model_config(cfg: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Validate a ``model`` parameter section; errors name the key (``where.key``)."""
    check = Checker(cfg, where)
    out = {
        "kind": check.get("kind", str, one_of(*MODEL_KINDS)),
        "latent": check.get("latent", int, positive),
        "hidden": check.get("hidden", int, positive),
        "heads": check.get("heads", int, positive),
        "blocks": check.get("blocks", int, positive),
    }
    if out["kind"] == "features":  # the width of the cached feature vectors
        out["input_dim"] = check.get("input_dim", int, positive)
    check.done()
    width = token_width(out)
    if width % out["heads"]:
        raise ConfigError(f"{where}: set-encoder width {width} is not divisible by heads = {out['heads']}")
    return out


def token_width(cfg: Mapping[str, Any]) -> int:
    """Width d of the set encoder's tokens: Conv4 output (hidden x 2 x 2) or the feature size."""
    return cfg["hidden"] * 4 if cfg["kind"] == "pixels" else cfg["input_dim"]


def build_model(cfg: Mapping[str, Any]) -> MetaGMVAE:
    """A Meta-GMVAE from a validated ``model`` section (see :func:`model_config`).

    ``pixels``: Conv4 encoder (``hidden`` channels) and the transposed-conv Bernoulli decoder;
    ``features``: no image encoder (cached features are the tokens) and the MLP Gaussian decoder
    with ``hidden`` units.
    """
    kind = cfg["kind"]
    if kind == "pixels":
        encoder = ConvEncoder(in_channels=1, hidden=cfg["hidden"], blocks=4, ceil_mode=True)
        decoder = DeconvDecoder(latent=cfg["latent"], hidden=cfg["hidden"])
    elif kind == "features":
        encoder = nn.Identity()
        decoder = FeatureDecoder(latent=cfg["latent"], hidden=cfg["hidden"], out=cfg["input_dim"])
    else:
        raise ValueError(f"unknown model kind {kind!r}; expected one of {list(MODEL_KINDS)}")
    return MetaGMVAE(
        encoder, decoder, token_dim=token_width(cfg), latent=cfg["latent"], heads=cfg["heads"], blocks=cfg["blocks"]
    )
