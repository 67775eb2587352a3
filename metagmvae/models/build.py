"""Build a Meta-GMVAE from its ``model`` parameter section."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator
from torch import nn

from metagmvae.models.conv import ConvEncoder, DeconvDecoder
from metagmvae.models.gmvae import MetaGMVAE
from metagmvae.models.mlp import FeatureDecoder
from metagmvae.runtime.config import PositiveInt, Section, parse


class PixelsModel(Section):
    """``model`` of a Meta-GMVAE on images: the Conv4 encoder and the transposed-conv decoder."""

    kind: Literal["pixels"]
    latent: PositiveInt  # D
    hidden: PositiveInt  # conv channels (tokens are hidden x 2 x 2 wide) and decoder width
    heads: PositiveInt  # attention heads of the set encoder (must divide the token width)
    blocks: PositiveInt  # set-encoder blocks

    @model_validator(mode="after")
    def _heads_divide_the_width(self):
        if (width := token_width(self)) % self.heads:
            raise ValueError(f"set-encoder width {width} is not divisible by heads = {self.heads}")
        return self


class FeaturesModel(PixelsModel):
    """``model`` of a Meta-GMVAE on cached feature vectors: no image encoder, the MLP decoder."""

    kind: Literal["features"]
    input_dim: PositiveInt  # the width of the cached feature vectors (the tokens)


ModelSpec = Annotated[PixelsModel | FeaturesModel, Field(discriminator="kind")]


def token_width(spec: PixelsModel) -> int:
    """Width d of the set encoder's tokens: Conv4 output (hidden x 2 x 2) or the feature size."""
    return spec.input_dim if isinstance(spec, FeaturesModel) else spec.hidden * 4


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
