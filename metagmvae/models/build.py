"""Build a Meta-GMVAE from its ``model`` parameter section."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from metagmvae.config import Checker, ConfigError, one_of, positive
from metagmvae.models.conv import ConvEncoder, DeconvDecoder
from metagmvae.models.gmvae import MetaGMVAE

MODEL_KINDS = ("pixels",)


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
    check.done()
    if (out["hidden"] * 4) % out["heads"]:
        raise ConfigError(
            f"{where}: set-encoder width 4 * hidden = {out['hidden'] * 4} is not divisible by heads = {out['heads']}"
        )
    return out


def build_model(cfg: Mapping[str, Any]) -> MetaGMVAE:
    """``cfg`` keys: ``kind`` (``pixels``), ``latent``, ``hidden``, ``heads``, ``blocks``."""
    kind = cfg["kind"]
    if kind == "pixels":
        hidden = cfg["hidden"]
        encoder = ConvEncoder(in_channels=1, hidden=hidden, blocks=4, ceil_mode=True)
        decoder = DeconvDecoder(latent=cfg["latent"], hidden=hidden)
        token_dim = hidden * 4  # [hidden, 2, 2] flattened
    else:
        raise ValueError(f"unknown model kind {kind!r}; expected 'pixels'")
    return MetaGMVAE(
        encoder, decoder, token_dim=token_dim, latent=cfg["latent"], heads=cfg["heads"], blocks=cfg["blocks"]
    )
