"""The `extract` stage: eval-mode SimCLR features of every split into one HDF5 feature store."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from metagmvae.data import features, mini_imagenet
from metagmvae.methods import simclr
from metagmvae.runtime.config import ConfigError
from metagmvae.runtime.device import Runtime
from metagmvae.runtime.io import sha256_file, write_json
from metagmvae.runtime.progress import progress as progress_bar
from metagmvae.schema.pretrain import ExtractConfig

SPLITS = mini_imagenet.SPLITS


@torch.inference_mode()
def encode_images(
    encoder: torch.nn.Module, images: torch.Tensor, rt: Runtime, *, batch: int, image_size: int, desc: str | None
) -> np.ndarray:
    """Features ``[N, d]`` float32 of uint8 images ``[N, 3, 84, 84]``, in order, no augmentation;
    each batch is resized to the ``image_size`` the encoder was trained at."""
    out = []
    for start in progress_bar(range(0, images.shape[0], batch), desc=desc, unit="batch", leave=False):
        x = rt.images(simclr.plain(simclr.resize(images[start : start + batch], image_size).to(rt.device)))
        with rt.autocast():
            out.append(encoder(x).float().cpu())
    return torch.cat(out).numpy()


def encoder_budget(encoder_cfg: dict, train_images: int) -> dict:
    """What the encoder's pre-training cost, from its checkpoint's configuration: images per
    class, training images, epochs, batch, optimizer steps, resolution and size (no wall time:
    the store's bytes must not depend on the machine)."""
    steps = train_images // encoder_cfg["batch"] * encoder_cfg["epochs"]
    keys = ("train_per_class", "epochs", "batch", "lr", "image_size", "blocks", "hidden")
    return {k: encoder_cfg[k] for k in keys} | {"train_images": train_images, "steps": steps}


def run(
    dataset: str, cfg: ExtractConfig, images_path: Path, encoder_path: Path, out_path: Path, metrics_path: Path
) -> dict[str, tuple]:
    """Encode the first ``per_class[split]`` images of every class of every split with the
    encoder of ``encoder_path`` and write the feature store ``out_path`` (with each split's
    feature statistics and the encoder's training budget as attributes, see
    :func:`metagmvae.data.features.write_features`) and a summary of both to ``metrics_path``.
    Returns the shapes."""
    where = f"extract.{dataset}"
    rt = cfg.runtime(convolutional=True)
    counts, batch = cfg.per_class.model_dump(), cfg.batch

    encoder, encoder_cfg = simclr.load_encoder(encoder_path, rt)
    splits = {}
    for split in SPLITS:
        data = mini_imagenet.load_images(images_path, split, counts[split])
        if data.images.shape[1] < counts[split]:
            raise ConfigError(
                f"{where}.per_class.{split} = {counts[split]}: the split has only {data.images.shape[1]} "
                "images per class"
            )
        c, n = data.images.shape[:2]
        feats = encode_images(
            encoder,
            data.images.flatten(0, 1),
            rt,
            batch=batch,
            image_size=encoder_cfg["image_size"],
            desc=f"extract {split}",
        )
        splits[split] = (feats.reshape(c, n, -1), data.class_names, data.filenames)
        print(f"extract {split}: {c} classes x {n} images -> features {feats.shape[1]}")
    budget = encoder_budget(encoder_cfg, splits["train"][0].shape[0] * encoder_cfg["train_per_class"])
    attrs = {"encoder_sha256": sha256_file(encoder_path), "dataset": dataset, "encoder_budget": json.dumps(budget)}
    features.write_features(out_path, splits, attrs)
    with features.FeatureStore(out_path) as store:
        write_json(metrics_path, {"encoder_budget": budget} | {s: store.summary(s) for s in SPLITS})
    return {split: value[0].shape for split, value in splits.items()}
