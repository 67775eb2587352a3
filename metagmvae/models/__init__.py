"""Networks: encoders, the set encoder, decoders and the Meta-GMVAE core."""

from metagmvae.models.build import build_model
from metagmvae.models.gmvae import MetaGMVAE

__all__ = ["MetaGMVAE", "build_model"]
