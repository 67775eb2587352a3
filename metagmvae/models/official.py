"""Weights of the official implementation (db-Lee/Meta-GMVAE @ 7962392, ``omniglot/model.py``) in
this package's Omniglot model: the name mapping of ``tests/data/official_parity/README.md``.

Lets our evaluation score a model the official code trained (``benchmarks/official_dynamics.py``)
and the parity test load the fixture's weights.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

OFFICIAL_CONSTANTS = frozenset({"log_norm_constant", "uniform_pi"})  # official buffers we do not keep
"""Buffers of the official model that are constants of its code, not weights."""


def our_name(official: str) -> str:
    """Official ``state_dict`` name -> ours (raises ``KeyError`` for a name with no counterpart)."""
    parts = official.split(".")
    if parts[0] == "encoder":  # encoder.encoder.<4 * block + {0: conv, 1: bn}>.<p>
        index = int(parts[2])
        return f"encoder.net.{index // 4}.{index % 4}.{parts[3]}"
    if parts[0] == "q_z_given_x_net":
        if parts[1] == "2":
            return f"head.{parts[2]}"
        layer = {"fc_q": "to_q", "fc_k": "to_k", "fc_v": "to_v", "fc_o": "ff"}[parts[3]]
        return f"set_encoder.{parts[1]}.{layer}.{parts[4]}"
    if parts[0] == "proj":
        return f"decoder.mlp.{parts[1]}.{parts[2]}"
    if parts[0] == "decoder":
        return f"decoder.deconv.{parts[2]}.{parts[3]}"
    raise KeyError(official)


def to_our_state_dict(official: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An official Omniglot ``state_dict`` renamed for our model (load it with ``strict=True``)."""
    return {our_name(key): value for key, value in official.items() if key not in OFFICIAL_CONSTANTS}
