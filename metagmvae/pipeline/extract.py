"""The `extract` stage: eval-mode SimCLR features of every split into one HDF5 feature store."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from metagmvae import simclr
from metagmvae.config import Checker, ConfigError, positive, section
from metagmvae.data import features, mini_imagenet
from metagmvae.io import sha256_file
from metagmvae.progress import progress as progress_bar
from metagmvae.runtime import Runtime, make_runtime, runtime_params

SPLITS = mini_imagenet.SPLITS


@torch.inference_mode()
def encode_images(encoder: torch.nn.Module, images: torch.Tensor, rt: Runtime, batch: int, desc: str) -> np.ndarray:
    """Features ``[N, 256]`` float32 of uint8 images ``[N, 3, 84, 84]``, in order, no augmentation."""
    out = []
    for start in progress_bar(range(0, images.shape[0], batch), desc=desc, unit="batch", leave=False):
        x = rt.images(simclr.plain(images[start : start + batch].to(rt.device)))
        with rt.autocast():
            out.append(encoder(x).float().cpu())
    return torch.cat(out).numpy()


@dataclass(frozen=True)
class ExtractConfig:
    """The ``extract.<dataset>`` section."""

    per_class: dict[str, int]  # split -> images per class encoded (the first ones)
    batch: int
    device: str
    precision: str  # auto | fp32 | bf16 (resolved by metagmvae.runtime.make_runtime)
    channels_last: bool | str  # auto | true | false


def extract_config(params: dict, dataset: str) -> ExtractConfig:
    """Parse and validate ``extract.<dataset>``."""
    where = f"extract.{dataset}"
    check = Checker(section(params, "extract", dataset), where)
    per_class = check.get("per_class", dict)
    batch = check.get("batch", int, positive)
    runtime = runtime_params(check)
    check.done()
    sub = Checker(per_class, f"{where}.per_class")
    counts = {split: sub.get(split, int, positive) for split in SPLITS}
    sub.done()
    return ExtractConfig(counts, batch, **runtime)


def run(dataset: str, params: dict, images_path: Path, encoder_path: Path, out_path: Path) -> dict[str, tuple]:
    """Encode the first ``per_class[split]`` images of every class of every split with the
    encoder of ``encoder_path`` and write the feature store ``out_path``. Returns the shapes."""
    where = f"extract.{dataset}"
    cfg = extract_config(params, dataset)
    rt = make_runtime(cfg.device, cfg.precision, cfg.channels_last, convolutional=True)
    counts, batch = cfg.per_class, cfg.batch

    encoder, _ = simclr.load_encoder(encoder_path, rt)
    splits = {}
    for split in SPLITS:
        data = mini_imagenet.load_images(images_path, split, counts[split])
        if data.images.shape[1] < counts[split]:
            raise ConfigError(
                f"{where}.per_class.{split} = {counts[split]}: the split has only {data.images.shape[1]} "
                "images per class"
            )
        c, n = data.images.shape[:2]
        feats = encode_images(encoder, data.images.flatten(0, 1), rt, batch, f"extract {split}")
        splits[split] = (feats.reshape(c, n, -1), data.class_names, data.filenames)
        print(f"extract {split}: {c} classes x {n} images -> features {feats.shape[1]}")
    features.write_features(out_path, splits, {"encoder_sha256": sha256_file(encoder_path), "dataset": dataset})
    return {split: value[0].shape for split, value in splits.items()}
