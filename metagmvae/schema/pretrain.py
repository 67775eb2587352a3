"""The ``pretrain`` and ``extract`` sections (SimCLR and its feature store)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BeforeValidator, Field, model_validator

from metagmvae.runtime.config import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, Section, SplitCounts
from metagmvae.schema.data import IMAGE_SIZE
from metagmvae.schema.metatrain import SCHEDULES
from metagmvae.schema.runtime import RuntimeSettings


def feature_size(*, image_size: int, blocks: int, hidden: int) -> int:
    """Width of the encoder's flattened output: ``hidden`` channels times the side left after
    ``blocks`` floor-mode 2x2 poolings, squared (84 px, 5 blocks: 2 x 2 x 64 = 256; 42 px,
    4 blocks: the same 256). 0 when the image does not survive the poolings."""
    side = image_size
    for _ in range(blocks):
        side //= 2
    return hidden * side * side


def _area_range(value: tuple[float, float]) -> tuple[float, float]:
    if not 0 < value[0] <= value[1] <= 1:
        raise ValueError("must be [low, high] with 0 < low <= high <= 1")
    return value


AreaRange = Annotated[
    tuple[float, float], BeforeValidator(lambda v: tuple(v) if isinstance(v, list) else v), AfterValidator(_area_range)
]


class _PretrainKeys(Section):
    train_per_class: PositiveInt  # images per training class used (600 = all)
    epochs: PositiveInt
    batch: Annotated[int, Field(ge=2)]  # global batch of images (2 views each, negatives from it), over processes
    lr: PositiveFloat
    warmup_epochs: NonNegativeInt
    weight_decay: NonNegativeFloat
    temperature: PositiveFloat
    hidden: PositiveInt  # encoder width (channels per block)
    blocks: PositiveInt  # conv blocks (5 at 84 px, 4 at 42 px: 256-d features either way)
    image_size: Annotated[int, Field(ge=8, le=IMAGE_SIZE)]  # side for pre-training and extraction (stored: 84)
    crop_scale: AreaRange  # random-resized-crop area fraction [low, high] ([0.08, 1.0] in the paper)
    lr_schedule: Literal[SCHEDULES]  # after the warm-up: cosine (one half-cosine to 0) | constant
    seed: NonNegativeInt
    checkpoint_every: PositiveInt  # resume state every this many steps (and at every epoch's end)


class PretrainConfig(RuntimeSettings, _PretrainKeys):
    """The ``pretrain.<dataset>`` section (see params.yaml)."""

    @model_validator(mode="after")
    def _consistent(self) -> PretrainConfig:
        if feature_size(image_size=self.image_size, blocks=self.blocks, hidden=self.hidden) == 0:
            raise ValueError(f"image_size = {self.image_size} does not survive blocks = {self.blocks} 2x2 poolings")
        if self.warmup_epochs >= self.epochs:
            raise ValueError(f"warmup_epochs = {self.warmup_epochs}: must be < epochs = {self.epochs}")
        return self


class ExtractConfig(RuntimeSettings):
    """The ``extract.<dataset>`` section."""

    per_class: SplitCounts  # images per class encoded (the first ones), per split
    batch: PositiveInt  # images encoded together
