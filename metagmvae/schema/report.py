"""The ``report`` section."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import AfterValidator

from metagmvae.runtime.config import Section, parse


def _names_a_revision(value: str) -> str:
    if not value.strip():
        raise ValueError("must name a git revision or experiment")
    return value


class ReportConfig(Section):
    """The ``report`` section."""

    baseline: Annotated[str, AfterValidator(_names_a_revision)]  # git revision or DVC experiment of the differences


def report_config(params: Mapping[str, Any]) -> ReportConfig:
    """The ``report`` section of raw ``params``, parsed (the stage reads no other section)."""
    return parse(ReportConfig, params.get("report"), "report")
