"""LASIUM (Khodadadeh et al., ICLR 2021): unsupervised meta-learning on tasks generated in the
latent space of a generative model, here a VAE, meta-trained with ProtoNets (Snell et al., 2017).

Three phases, one code path for both datasets (the item's shape picks the architecture):

1. a VAE is fitted to the unlabeled training pool (``data["train"].flatten(0, 1)``: the class
   structure and labels are never used), then frozen. Images ``[1, 28, 28]`` in [0, 1]: a Conv4
   encoder and the transposed-conv decoder with a Bernoulli likelihood. Feature vectors ``[F]``:
   MLPs with a unit-variance Gaussian likelihood on features standardised with the pool's
   per-feature mean and standard deviation;
2. a generated ``way``-way task: ``way`` anchors drawn from the prior ``N(0, I)`` and redrawn
   until every pair is at least ``epsilon`` apart; each anchor is its class's first member, the
   other ``shot + query - 1`` come from LASIUM-N (anchor + ``N(0, sigma^2 I)``), LASIUM-RO
   (``anchor + alpha * (u - anchor)`` for a fresh prior draw ``u`` redrawn until it is at least
   ``epsilon`` from the anchor) or LASIUM-OC (``anchor + alpha * (other anchor - anchor)``, the
   other anchors of the task in turn, as the official code: member ``r`` of class ``i`` moves
   towards anchor ``(i + r) mod way``, and where that is its own anchor it gets LASIUM-N noise
   instead); all are decoded to items (Bernoulli means, or de-standardised Gaussian means);
   generated query images are shifted by up to ``query_shift`` pixels (the official augmentation);
3. a ProtoNet embedding (Conv4, or an MLP on standardised features) meta-trained with Adam on
   the generated tasks; the predictor is the nearest-prototype rule (squared Euclidean distance),
   with the embedding's BatchNorm on its running statistics or, as the official code, on each
   episode's support and query batches (``bn_statistics``).

The labelled validation episodes only select the checkpoint, as for Meta-GMVAE.

Differences from the paper: its LASIUM-VAE anchors are encodings of random training images (the
prior-anchor sampling with the ``epsilon`` threshold is its GAN variant), and its Mini-ImageNet
models see 84x84 pixels (VAE on pixels, or BigBiGAN; Conv4 ProtoNet) where ours see 256-d SimCLR
features (MLP VAE, MLP ProtoNet, no BatchNorm, no shifts).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from metagmvae.data.episodes import EpisodeSet
from metagmvae.evaluation.accuracy import Predictor, mean_accuracy
from metagmvae.methods import Splits
from metagmvae.methods.related_fit import fit_best_accuracy
from metagmvae.models.conv import ConvEncoder, DeconvDecoder
from metagmvae.runtime import checkpoint
from metagmvae.runtime.device import Runtime
from metagmvae.runtime.tracking import Run
from metagmvae.schema.related import LasiumConfig as Config
from metagmvae.training.loop import Step, fit
from metagmvae.training.resume import resume_folders

# Its published results and their sources: metagmvae.analysis.paper.published('lasium', dataset).


# ---------------------------------------------------------------- task generation


def min_pairwise_distance(z: torch.Tensor) -> torch.Tensor:
    """Smallest Euclidean distance between two different rows of each set: ``[T, N, d] -> [T]``."""
    dist = (z.unsqueeze(2) - z.unsqueeze(1)).pow(2).sum(-1).sqrt()
    eye = torch.eye(z.shape[1], dtype=torch.bool, device=z.device)
    return dist.masked_fill(eye, math.inf).amin((1, 2))


def sample_anchors(
    tasks: int, way: int, latent: int, epsilon: float, max_tries: int, generator: torch.Generator
) -> torch.Tensor:
    """``tasks`` sets of ``way`` prior draws ``N(0, I)``, each set redrawn whole until all its
    pairwise distances are ``>= epsilon``: ``[tasks, way, latent]``. Raises ``ValueError`` when a
    set still fails after ``max_tries`` draws."""
    device = generator.device
    z = torch.randn(tasks, way, latent, generator=generator, device=device)
    for _ in range(max_tries - 1):
        bad = min_pairwise_distance(z) < epsilon
        if not bad.any():
            return z
        z[bad] = torch.randn(int(bad.sum()), way, latent, generator=generator, device=device)
    if (min_pairwise_distance(z) < epsilon).any():
        typical = math.sqrt(2 * latent)
        raise ValueError(
            f"epsilon = {epsilon}: no {way} prior draws in {latent} dimensions were pairwise >= {epsilon} apart "
            f"after max_tries = {max_tries} draws (two draws are typically {typical:.1f} apart); lower epsilon"
        )
    return z


def interpolate(anchors: torch.Tensor, others: torch.Tensor, alpha: float) -> torch.Tensor:
    """LASIUM-RO/OC members ``anchor + alpha * (other - anchor)``: anchors ``[..., N, d]``, others
    ``[..., N, M, d]`` -> ``[..., N, M, d]``."""
    a = anchors.unsqueeze(-2)
    return a + alpha * (others - a)


def far_draws(anchors: torch.Tensor, count: int, epsilon: float, max_tries: int, generator: torch.Generator):
    """``count`` prior draws per anchor, each redrawn until it is at least ``epsilon`` from its
    anchor: ``[T, N, d] -> [T, N, count, d]``. Raises ``ValueError`` after ``max_tries`` draws."""
    t, n, d = anchors.shape
    draws = torch.randn(t, n, count, d, generator=generator, device=anchors.device)
    for _ in range(max_tries):
        near = (draws - anchors.unsqueeze(-2)).norm(dim=-1) < epsilon
        if not near.any():
            return draws
        draws[near] = torch.randn(int(near.sum()), d, generator=generator, device=anchors.device)
    raise ValueError(
        f"epsilon = {epsilon}: prior draws in {d} dimensions stayed within {epsilon} of their anchor after "
        f"max_tries = {max_tries} draws; lower epsilon"
    )


def other_anchors(anchors: torch.Tensor, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """LASIUM-OC's targets as the official code: member ``r`` (0-based) of class ``i`` moves towards
    anchor ``(i + r + 1) mod N``. Returns the targets ``[T, N, count, d]`` and a mask ``[N, count]``
    of the members whose target is their own anchor (they get LASIUM-N noise instead)."""
    n = anchors.shape[1]
    target = (torch.arange(n).unsqueeze(1) + torch.arange(1, count + 1)) % n  # [N, count]
    own = target == torch.arange(n).unsqueeze(1)
    return anchors[:, target.to(anchors.device)], own.to(anchors.device)


def class_members(
    anchors: torch.Tensor,
    count: int,
    *,
    strategy: str,
    sigma: float,
    alpha: float,
    epsilon: float,
    max_tries: int,
    generator: torch.Generator,
) -> torch.Tensor:
    """``count`` latent codes per anchor, the anchor first: ``[T, N, d] -> [T, N, count, d]``. The
    other ``count - 1``: ``N``: anchor plus ``N(0, sigma^2 I)`` noise; ``RO``: :func:`interpolate`
    towards prior draws at least ``epsilon`` from the anchor (:func:`far_draws`); ``OC``: towards
    the task's other anchors (:func:`other_anchors`)."""
    new = count - 1
    if strategy == "RO":
        members = interpolate(anchors, far_draws(anchors, new, epsilon, max_tries, generator), alpha)
    else:
        noise = torch.randn(*anchors.shape[:2], new, anchors.shape[2], generator=generator, device=anchors.device)
        members = anchors.unsqueeze(-2) + sigma * noise
        if strategy == "OC":
            targets, own = other_anchors(anchors, new)
            members = torch.where(own.unsqueeze(-1), members, interpolate(anchors, targets, alpha))
    return torch.cat([anchors.unsqueeze(-2), members], dim=-2)


# ---------------------------------------------------------------- models


def mlp(inputs: int, hidden: int, out: int) -> nn.Sequential:
    """Linear -> ReLU -> Linear -> ReLU -> Linear."""
    return nn.Sequential(
        nn.Linear(inputs, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, out)
    )


def _check_item_shape(item_shape: tuple[int, ...]) -> None:
    if len(item_shape) not in (1, 3) or (len(item_shape) == 3 and tuple(item_shape[1:]) != (28, 28)):
        raise ValueError(f"LASIUM needs items [C, 28, 28] (images) or [F] (features), got {list(item_shape)}")


class VAE(nn.Module):
    """``q(z|x) = N(mu, diag(exp(logvar)))``, ``p(z) = N(0, I)``; ``p(x|z)`` Bernoulli for images
    ``[C, 28, 28]`` or unit-variance Gaussian for standardised feature vectors ``[F]``."""

    def __init__(self, item_shape: tuple[int, ...], latent: int, hidden: int):
        super().__init__()
        _check_item_shape(item_shape)
        self.bernoulli = len(item_shape) == 3
        if self.bernoulli:  # 28 -> 14 -> 7 -> 4 -> 2: hidden * 2 * 2 features
            self.encoder = nn.Sequential(ConvEncoder(item_shape[0], hidden), nn.Linear(4 * hidden, 2 * latent))
            self.decoder = DeconvDecoder(latent, hidden, item_shape[0])
        else:
            self.encoder = mlp(item_shape[0], hidden, 2 * latent)
            self.decoder = mlp(latent, hidden, item_shape[0])

    def loss(self, x: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Negative ELBO terms, each averaged over the batch ``x`` ``[B, *item]``: the
        reconstruction NLL (nats per item, up to a constant for Gaussians) and the KL to the prior."""
        mu, logvar = self.encoder(x).float().chunk(2, dim=-1)
        z = mu + (0.5 * logvar).exp() * torch.randn(mu.shape, generator=generator, device=mu.device)
        out = self.decoder(z).float()
        if self.bernoulli:
            rec = F.binary_cross_entropy_with_logits(out, x.float(), reduction="none").flatten(1).sum(1)
        else:
            rec = 0.5 * (out - x.float()).pow(2).sum(1)
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1)
        return rec.mean(), kl.mean()

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Likelihood means: ``[B, d] -> [B, *item]`` (pixel intensities, or standardised features)."""
        out = self.decoder(z)
        return torch.sigmoid(out) if self.bernoulli else out


class Lasium(nn.Module):
    """The frozen generator (``vae``) and the ProtoNet ``embed``; ``mean``/``std`` standardise
    items (the pool's per-feature statistics for features; 0 and 1, the identity, for images)."""

    def __init__(self, cfg: Config, item_shape: tuple[int, ...]):
        super().__init__()
        self.cfg = cfg
        self.item_shape = tuple(item_shape)
        self.vae = VAE(self.item_shape, cfg.latent, cfg.vae_hidden)
        if not self.vae.bernoulli and cfg.query_shift:
            raise ValueError(f"query_shift = {cfg.query_shift}: shifts need images, the items are {list(item_shape)}")
        if self.vae.bernoulli:
            self.embed = ConvEncoder(item_shape[0], cfg.embed_hidden)
        else:
            self.embed = mlp(item_shape[0], cfg.embed_hidden, cfg.embed_hidden)
        self.register_buffer("mean", torch.zeros(self.item_shape))
        self.register_buffer("std", torch.ones(self.item_shape))

    def standardize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def embedding(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, *item] -> [B, D]`` float32."""
        return self.embed(self.standardize(x)).float()

    @torch.no_grad()
    def generate(self, tasks: int, generator: torch.Generator) -> torch.Tensor:
        """``tasks`` generated tasks, ``[tasks, way, shot + query, *item]`` in data units."""
        c = self.cfg
        anchors = sample_anchors(tasks, c.way, c.latent, c.epsilon, c.max_tries, generator)
        z = class_members(
            anchors,
            c.shot + c.query,
            strategy=c.strategy,
            sigma=c.sigma,
            alpha=c.alpha,
            epsilon=c.epsilon,
            max_tries=c.max_tries,
            generator=generator,
        )
        items = self.vae.decode(z.flatten(0, 2)).float() * self.std + self.mean
        return items.view(*z.shape[:3], *self.item_shape)


# ---------------------------------------------------------------- ProtoNet


def prototypes(embedded: torch.Tensor, labels: torch.Tensor, way: int) -> torch.Tensor:
    """Class means of embedded support items: ``[E, S, D]``, labels ``[E, S]`` -> ``[E, way, D]``."""
    onehot = F.one_hot(labels, way).to(embedded.dtype)
    return onehot.transpose(1, 2) @ embedded / onehot.sum(1).unsqueeze(-1)


def squared_distances(query: torch.Tensor, protos: torch.Tensor) -> torch.Tensor:
    """``[E, Q, D]`` x ``[E, W, D]`` -> ``[E, Q, W]``, exact (no ``a^2 - 2ab + b^2`` cancellation)."""
    return (query.unsqueeze(2) - protos.unsqueeze(1)).pow(2).sum(-1)


def protonet_loss(
    support: torch.Tensor, support_labels: torch.Tensor, query: torch.Tensor, query_labels: torch.Tensor, way: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cross-entropy of the softmax over negative squared distances to the prototypes, and
    the accuracy (fraction): embedded support ``[E, S, D]``, embedded query ``[E, Q, D]``."""
    logits = -squared_distances(query, prototypes(support, support_labels, way))
    loss = F.cross_entropy(logits.flatten(0, 1), query_labels.flatten())
    return loss, (logits.argmax(-1) == query_labels).float().mean()


@contextmanager
def batch_statistics(module: nn.Module) -> Iterator[None]:
    """Within the block, every BatchNorm of ``module`` normalises with the statistics of the batch
    it is given and leaves its running statistics (and its mode) as they were."""
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m.training, m.track_running_stats) for m in norms]
    for m in norms:
        m.train()
        m.track_running_stats = False
    try:
        yield
    finally:
        for m, (training, tracking) in zip(norms, saved, strict=True):
            m.train(training)
            m.track_running_stats = tracking


def nearest_prototype(model: Lasium, rt: Runtime) -> Predictor:
    """ProtoNet's rule with ``model``'s embedding. With ``bn_statistics: running`` the embedding is
    used in whatever mode ``model`` is in; with ``episode`` each episode's support and its queries
    are embedded as two batches whose own BatchNorm statistics are used (the official protocol)."""

    def embed(items: torch.Tensor) -> torch.Tensor:  # [E, n, *item] -> [E, n, D]
        if model.cfg.bn_statistics == "running":
            return model.embedding(items.flatten(0, 1)).view(*items.shape[:2], -1)
        with batch_statistics(model.embed):
            return torch.stack([model.embedding(episode) for episode in items])

    @torch.no_grad()
    def predict(support: torch.Tensor, support_labels: torch.Tensor, query: torch.Tensor, way: int) -> torch.Tensor:
        with rt.autocast():
            s, q = embed(support), embed(query)
        return squared_distances(q, prototypes(s, support_labels, way)).argmin(-1)

    return predict


def shift_images(images: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Each image of ``[B, C, H, W]`` moved by its own integer offset (dy, dx), each uniform in
    ``[-max_shift, max_shift]``, the uncovered border filled with 0 (background)."""
    b, c, h, w = images.shape
    dy, dx = torch.randint(-max_shift, max_shift + 1, (2, b, 1), generator=generator, device=images.device)
    rows = torch.arange(h, device=images.device) + max_shift - dy  # output row y reads input row y - dy
    cols = torch.arange(w, device=images.device) + max_shift - dx
    image, channel = torch.arange(b, device=images.device), torch.arange(c, device=images.device)
    padded = F.pad(images, (max_shift,) * 4)
    return padded[image.view(b, 1, 1, 1), channel.view(1, c, 1, 1), rows.view(b, 1, h, 1), cols.view(b, 1, 1, w)]


# ---------------------------------------------------------------- training


def _vae_step(model: Lasium, cfg: Config, rt: Runtime, pool: torch.Tensor, gen: torch.Generator) -> Step:
    """Phase 1's step: the VAE's loss on a minibatch drawn with replacement from the unlabeled
    ``pool`` ``[P, *item]``."""
    x = model.standardize(pool[torch.randint(len(pool), (cfg.vae_batch,), generator=gen, device=pool.device)])
    with rt.autocast():
        rec, kl = model.vae.loss(x, gen)
    return Step(rec + kl, {"rec": rec, "kl": kl})


def _protonet_step(model: Lasium, rt: Runtime, gen: torch.Generator) -> Step:
    """Phase 2's step: the ProtoNet loss of the embedding on ``cfg.batch`` freshly generated tasks
    (the frozen VAE in eval mode), and the training accuracy on the tasks' queries."""
    c = model.cfg
    model.vae.eval()
    with rt.autocast():
        tasks = model.generate(c.batch, gen).float()  # [B, W, K + Q, *item]
        if c.query_shift:
            queries = shift_images(tasks[:, :, c.shot :].flatten(0, 2), c.query_shift, gen)
            tasks = torch.cat([tasks[:, :, : c.shot], queries.view(c.batch, c.way, c.query, *tasks.shape[3:])], 2)
        emb = model.embedding(tasks.flatten(0, 2)).view(c.batch, c.way, c.shot + c.query, -1)
    labels = torch.arange(c.way, device=emb.device).view(1, c.way, 1)
    loss, acc = protonet_loss(
        emb[:, :, : c.shot].flatten(1, 2),
        labels.expand(c.batch, -1, c.shot).flatten(1),
        emb[:, :, c.shot :].flatten(1, 2),
        labels.expand(c.batch, -1, c.query).flatten(1),
        c.way,
    )
    return Step(loss, {"loss": loss, "accuracy": acc})


def train(
    cfg: Config,
    rt: Runtime,
    data: Splits,
    val_episodes: EpisodeSet,
    out_path: Path,
    run: Run,
    progress: bool = True,
    resume_root: Path | None = None,
) -> dict[str, Any]:
    """Fit the VAE on the unlabeled ``data["train"]`` ``[C, n, *item]`` (flattened: its class
    structure is never used), then meta-train the ProtoNet on generated tasks, validating every
    ``cfg.val_every`` steps on ``val_episodes`` of ``data["val"]``, and write the state with the
    best validation accuracy to ``out_path`` (byte-identical for identical calls on CPU). Both
    phases run in the training loop and resume from ``resume_root`` after a kill.

    Returns ``{"steps", "vae_steps", "best_val_accuracy" (percent), "train_seconds"}``.
    """
    tick = time.perf_counter()
    pool = data["train"].flatten(0, 1)
    torch.manual_seed(cfg.seed)
    model = rt.prepare(Lasium(cfg, tuple(pool.shape[1:])))
    if not model.vae.bernoulli:
        model.mean.copy_(pool.mean(0))
        model.std.copy_(pool.std(0).clamp_min(1e-6))
    gen = rt.generator(cfg.seed)
    with resume_folders(resume_root, out_path, cfg, ("vae", "protonet"), rt) as (vae_resume, protonet_resume):
        vae_optimizer = torch.optim.Adam(model.vae.parameters(), lr=cfg.vae_lr)
        fit(
            name="lasium vae",
            model=model,
            optimizer=vae_optimizer,
            step_fn=lambda step: _vae_step(model, cfg, rt, pool, gen),
            steps=cfg.vae_steps,
            log_every=cfg.log_every,
            checkpoint_at_log=True,  # the resume state at every log line
            log_prefix="vae",
            resume=vae_resume,
            stateful={"generator": gen},
            run=run,
            progress=progress,
        )
        model.vae.eval().requires_grad_(False)

        predict = nearest_prototype(model, rt)

        def validate(step: int) -> dict[str, float]:
            model.embed.eval()
            accuracy = mean_accuracy(predict, data["val"], val_episodes, cfg.val_episodes_per_call)
            model.embed.train()
            return {"accuracy": accuracy}

        summary = fit_best_accuracy(
            cfg,
            name="lasium",
            model=model,
            optimizer=torch.optim.Adam(model.embed.parameters(), lr=cfg.lr),
            step_fn=lambda step: _protonet_step(model, rt, gen),
            validate=validate,
            resume=protonet_resume,
            stateful={"generator": gen},
            out_path=out_path,
            run=run,
            progress=progress,
            extra={"item_shape": list(model.item_shape)},
        )
    return summary | {"vae_steps": cfg.vae_steps, "train_seconds": round(time.perf_counter() - tick, 1)}


def load_model(path: Path, rt: Runtime) -> Lasium:
    """Rebuild a trained model from its checkpoint, in eval mode on ``rt.device``."""
    state = checkpoint.load(path, rt.device)
    model = rt.prepare(Lasium(Config(**state["config"]), tuple(state["item_shape"])))
    model.load_state_dict(state["model"])
    return model.eval().requires_grad_(False)


def predictor(path: Path, rt: Runtime) -> Predictor:
    """The nearest-prototype predictor of a checkpoint written by :func:`train`."""
    return nearest_prototype(load_model(path, rt), rt)


def sample_tasks(
    model_or_path: Lasium | Path, cfg: Config, rt: Runtime, tasks: int = 3
) -> tuple[torch.Tensor, bool, str]:
    """``tasks`` generated tasks (seeded by ``cfg.seed``) for a figure: the items ``[T, W, M,
    *item]`` on the CPU, whether they are images, and the generator's name."""
    model = model_or_path if isinstance(model_or_path, Lasium) else load_model(Path(model_or_path), rt)
    gen = rt.generator(cfg.seed)
    with rt.autocast():
        generated = model.generate(tasks, gen).float().cpu()
    return generated, model.vae.bernoulli, f"LASIUM-{cfg.strategy}"
