"""Build a Meta-GMVAE from its ``model`` parameter section."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from metagmvae.models.conv import ConvEncoder, DeconvDecoder
from metagmvae.models.gmvae import MetaGMVAE
from metagmvae.models.mlp import FeatureDecoder
from metagmvae.runtime.config import parse
from metagmvae.schema.models import FeaturesModel, ModelSpec, PixelsModel, token_width


def build_model(spec: PixelsModel | Mapping[str, Any]) -> MetaGMVAE:
    """A Meta-GMVAE from a ``model`` section (a parsed one, or a mapping such as a checkpoint's
    stored configuration, parsed here).

    ``pixels``: Conv4 encoder (``hidden`` channels) and the transposed-conv Bernoulli decoder;
    ``features``: no image encoder (cached features are the tokens) and the MLP Gaussian decoder
    with ``hidden`` units.
    """
    if isinstance(spec, Mapping):
        spec = parse(ModelSpec, dict(spec), "model")
    if isinstance(spec, FeaturesModel):
        encoder = nn.Identity()
        decoder = FeatureDecoder(latent=spec.latent, hidden=spec.hidden, out=spec.input_dim)
    else:
        encoder = ConvEncoder(in_channels=1, hidden=spec.hidden, blocks=4, ceil_mode=True)
        decoder = DeconvDecoder(latent=spec.latent, hidden=spec.hidden)
    return MetaGMVAE(
        encoder, decoder, token_dim=token_width(spec), latent=spec.latent, heads=spec.heads, blocks=spec.blocks
    )
