"""One model's ``metatrain`` section."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import model_validator

from metagmvae.runtime.config import (
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    PositiveInts,
    Section,
    Way,
)
from metagmvae.schema.data import DATASETS
from metagmvae.schema.models import ModelSpec
from metagmvae.schema.runtime import RuntimeSettings

SCHEDULES = ("constant", "cosine")


class _TrainKeys(Section):
    dataset: Literal[DATASETS]
    model: ModelSpec
    way: Way  # K mixture components, and the validation way
    batch: PositiveInt  # B episodes per step
    points: PositiveInt  # M points per training episode
    samples: PositiveInt  # S Monte-Carlo samples per point (training: EM prior and KL)
    samples_decoder: PositiveInt  # S_rec <= S of each point's samples through the decoder (reconstruction)
    train_em_iters: PositiveInt  # T_u
    fix_pi: bool
    lr: PositiveFloat
    lr_schedule: Literal[SCHEDULES]  # constant | cosine (one half-cosine to 0 at the last step)
    weight_decay: NonNegativeFloat
    steps: PositiveInt
    val_every: PositiveInt
    val_shots: PositiveInts  # a best checkpoint is kept per shot
    val_samples: PositiveInt  # S at validation
    val_em_iters: PositiveInt  # T_s at validation
    episodes_per_call: PositiveInt
    checkpoint_every: PositiveInt
    log_every: PositiveInt
    seed: NonNegativeInt


class TrainConfig(RuntimeSettings, _TrainKeys):
    """One model's ``metatrain`` section (see params.yaml for meanings and units)."""

    RENAMED: ClassVar[dict[str, str]] = {"em_iters": "train_em_iters"}  # T_u, not T_s of `evaluate`

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        if self.samples_decoder > self.samples:
            raise ValueError(
                f"samples_decoder = {self.samples_decoder}: must be <= samples = {self.samples} "
                "(the decoder sees a subset of each point's samples)"
            )
        if self.way > self.points * self.samples:
            raise ValueError(
                f"way = {self.way} components need at least as many points, but "
                f"points * samples = {self.points * self.samples}"
            )
        return self
