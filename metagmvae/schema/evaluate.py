"""One dataset's ``evaluate`` section."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, model_validator

from metagmvae.runtime.config import NonNegativeInt, PositiveInt, PositiveInts
from metagmvae.schema.runtime import RuntimeSettings

BASELINES = ("pixel_1nn", "logistic_regression")  # the few-shot baselines (metagmvae.methods.baselines)

CROSS_WAY_PREFIX, CROSS_WAY_SUFFIX = "meta_gmvae_trained_", "way"


def cross_way_method(trained_way: int) -> str:
    """``5`` -> ``"meta_gmvae_trained_5way"``: a Meta-GMVAE model trained with K = 5 components,
    as a method tested at other ways."""
    return f"{CROSS_WAY_PREFIX}{trained_way}{CROSS_WAY_SUFFIX}"


class EvalConfig(RuntimeSettings):
    """One dataset's ``evaluate`` section."""

    RENAMED: ClassVar[dict[str, str]] = {"samples": "test_samples", "em_iters": "test_em_iters"}

    models: Annotated[dict[str, PositiveInts], Field(min_length=1)]  # model -> test shots (at its own way)
    cross_way: dict[str, PositiveInts]  # model -> other ways it is also tested at (same shots and episodes)
    baselines: list[Literal[BASELINES]]
    test_samples: PositiveInt  # S_test
    test_em_iters: PositiveInt  # T_s
    episodes_per_call: PositiveInt
    seed: NonNegativeInt

    @model_validator(mode="after")
    def _cross_way_models_exist(self) -> EvalConfig:
        for name in self.cross_way:
            if name not in self.models:
                raise ValueError(f"cross_way.{name}: not one of models ({sorted(self.models)})")
        return self
