"""The ``model`` key of a Meta-GMVAE section: the network's shape."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from metagmvae.runtime.config import PositiveInt, Section


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
