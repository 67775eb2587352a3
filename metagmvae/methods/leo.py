"""LEO: "Meta-Learning with Latent Embedding Optimization" (Rusu et al., ICLR 2019), supervised, on
frozen feature vectors (the Mini-ImageNet SimCLR store: 256-d instead of the paper's 640-d WRN-28-10).

Per episode of ``W`` classes with ``K`` support examples each (features ``x``, ``D``-d):

1. encode: input dropout, a linear map to ``L``-d codes, a relation network over all ``(WK)^2``
   ordered pairs of support examples (within and across classes) averaged over the partner, then
   over each class's ``K`` examples: a Gaussian over the class's latent code, sampled
   (reparameterised) in training and its mean at test. As the official code, each class's code is
   repeated over its ``K`` examples (``z [E, W, K, L]``), each copy sampled and adapted on its own.
2. decode: a linear map from ``z`` to a Gaussian over the classifier weights ``w [E, W, K, D]``
   (sampled in training, its mean at test); class ``k``'s logit is ``x . mean_j w[k, j]``.
3. inner loop: ``inner_steps`` gradient steps on ``z`` of the support cross-entropy (summed over
   examples, as the official code), with a meta-learned step per latent dimension; then
   ``finetune_steps`` steps directly on ``w`` with a meta-learned step per feature.
4. outer loss: the query cross-entropy under the final weights, plus ``beta`` times the
   single-sample KL of the latent to N(0, I), ``gamma`` times ``||stop_grad(z') - z||^2`` (mean), ``lambda_1``
   times the L2 penalty ``sum(w^2) / 2`` of the encoder, relation network and decoder weights, and
   ``lambda_2`` times the orthogonality penalty of the decoder. Adam, with every gradient clipped to
   ``[-0.1, 0.1]`` and then to L2 norm 0.1 per tensor (the official ``runner.py``).

This follows the official implementation (github.com/deepmind/leo, the ICLR 2019 version of the
paper), not the first arXiv version, which has no relation network (a class's code is the mean of
its encoder outputs), 3 latent steps in training and 6 at test with no fine-tuning steps, the
orthogonality penalty on the encoder as well as the decoder, feature dropout up to 0.95, Adam at
1e-3 for 50k steps, and two-layer ReLU networks of 256 units for 5-shot.

Differences from the official code:

* the features are 256-d SimCLR ones, L2-normalised (``normalize``) as the official data pipeline
  does with its WRN features (on the raw ones, norms near 18, the first latent step of the summed
  support loss with the official step size 1.0 overflows the decoder's ``exp`` std: NaN at step 1);
* a NaN loss or gradient stops training (:func:`metagmvae.training.loop.check_finite`) instead of falling
  back to the L2 penalty's gradient;
* validation uses the fixed validation episodes (15 queries per class) instead of 10 fresh batches
  of 200 episodes with all remaining examples as queries;
* the predictor accepts any way and shot (the relation network and the adaptation do).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import skip_init

from metagmvae.data.episodes import EpisodeSet, episode_rng, gather, sample_episodes
from metagmvae.evaluation.accuracy import Predictor, mean_accuracy
from metagmvae.methods import Splits
from metagmvae.methods.related_fit import fit_best_accuracy
from metagmvae.runtime import checkpoint
from metagmvae.runtime.device import Runtime
from metagmvae.runtime.tracking import Run
from metagmvae.schema.related import LeoConfig as Config
from metagmvae.training.loop import Step
from metagmvae.training.resume import NumpyGenerator, resume_folders

# Its published results and their sources: metagmvae.analysis.paper.published('leo', dataset).

MAX_PAIRS = 1 << 18
"""At test, episodes are adapted in chunks of at most this many support pairs (relation network
memory: a 5-way 50-shot episode has 62,500 pairs of ``2L`` activations)."""


@dataclass(frozen=True)
class Noise:
    """Meta-training randomness, from one seeded generator: input dropout and the Gaussian samples.
    Passing ``None`` instead means evaluation: no dropout, Gaussian means."""

    generator: torch.Generator
    dropout: float

    def drop(self, x: torch.Tensor) -> torch.Tensor:
        keep = torch.rand(x.shape, generator=self.generator, device=x.device) >= self.dropout
        return x * keep / (1.0 - self.dropout)

    def normal(self, like: torch.Tensor) -> torch.Tensor:
        return torch.randn(like.shape, generator=self.generator, device=like.device, dtype=like.dtype)


def dropout(x: torch.Tensor, noise: Noise | None) -> torch.Tensor:
    return x if noise is None else noise.drop(x)


def gaussian(params: torch.Tensor, offset: float, noise: Noise | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``params [..., 2F]`` = (mean, raw std) with std ``max(exp(raw) - 1 + offset, 1e-10)`` (the
    official parameterisation) -> ``(sample [..., F], log q(sample) - log N(sample; 0, I) [..., F])``:
    a reparameterised sample and its single-sample KL estimate with noise, else the mean and zeros."""
    mean, raw = params.chunk(2, dim=-1)
    if noise is None:
        return mean, torch.zeros_like(mean)
    std = (raw.exp() - 1.0 + offset).clamp_min(1e-10)
    eps = noise.normal(mean)
    sample = mean + std * eps
    return sample, 0.5 * (sample.pow(2) - eps.pow(2)) - std.log()


def orthogonality_penalty(weight: torch.Tensor) -> torch.Tensor:
    """Mean squared difference between the rows' correlation (cosine) matrix and the identity:
    ``weight [R, C]`` -> scalar, zero exactly when the rows are pairwise orthogonal."""
    norms = weight.norm(dim=1, keepdim=True) + 1e-32
    correlation = (weight @ weight.T) / (norms @ norms.T)
    return (correlation - torch.eye(weight.shape[0], device=weight.device, dtype=weight.dtype)).pow(2).mean()


class LEO(nn.Module):
    """Encoder, relation network and decoder over ``features``-d inputs with ``latents``-d codes,
    and the meta-learned inner step sizes. Weights: Glorot-uniform, no biases (the official code)."""

    def __init__(
        self,
        features: int,
        latents: int,
        inner_steps: int,
        finetune_steps: int,
        inner_lr: float,
        finetune_lr: float,
        seed: int,
    ):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)

        def linear(inputs: int, outputs: int) -> nn.Linear:
            layer = skip_init(nn.Linear, inputs, outputs, bias=False)
            nn.init.xavier_uniform_(layer.weight, generator=gen)
            return layer

        pair = 2 * latents
        self.encoder = linear(features, latents)
        self.relation = nn.Sequential(linear(pair, pair), nn.ReLU(), linear(pair, pair), nn.ReLU(), linear(pair, pair))
        self.decoder = linear(latents, 2 * features)
        self.inner_lr = nn.Parameter(torch.full((latents,), float(inner_lr)))
        self.finetune_lr = nn.Parameter(torch.full((features,), float(finetune_lr)))
        self.inner_steps, self.finetune_steps = inner_steps, finetune_steps

    def encode(self, support: torch.Tensor, noise: Noise | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Support ``[E, W, K, D]`` (class-major) -> latent codes ``z [E, W, K, L]`` and the KL
        estimate per episode ``[E]`` (mean over the codes' elements; zeros without noise)."""
        e, way, shot, _ = support.shape
        codes = self.encoder(dropout(support, noise)).flatten(1, 2)  # [E, n, L]
        n = codes.shape[1]
        pairs = torch.cat([codes.unsqueeze(2).expand(-1, -1, n, -1), codes.unsqueeze(1).expand(-1, n, -1, -1)], -1)
        relations = self.relation(pairs).mean(2).view(e, way, shot, -1)  # [E, W, K, 2L]
        z, kl = gaussian(relations.mean(2, keepdim=True).expand(-1, -1, shot, -1), 0.0, noise)
        return z, kl.flatten(1).mean(1)

    def decode(self, z: torch.Tensor, noise: Noise | None) -> torch.Tensor:
        """Codes ``z [E, W, K, L]`` -> classifier weights ``[E, W, K, D]``; in training sampled with
        a std offset of the Glorot scale ``sqrt(2 / (W + D))``, as the official code."""
        offset = math.sqrt(2.0 / (z.shape[1] + self.finetune_lr.shape[0]))
        return gaussian(self.decoder(z), offset, noise)[0]

    @staticmethod
    def logits(x: torch.Tensor, w: torch.Tensor, noise: Noise | None) -> torch.Tensor:
        """Inputs ``[E, M, D]``, weights ``[E, W, K, D]`` -> float32 logits ``[E, M, W]``: each
        class's logit averaged over its ``K`` weight copies (inputs dropped out in training)."""
        return (dropout(x, noise) @ w.mean(2).transpose(1, 2)).float()

    def support_loss(self, support: torch.Tensor, w: torch.Tensor, noise: Noise | None) -> torch.Tensor:
        """Cross-entropy of the support ``[E, W, K, D]`` under ``w``, summed over examples and
        episodes (the official inner loss; episodes are independent, so each gets its own gradient)."""
        e, way, shot, _ = support.shape
        labels = torch.arange(way, device=support.device).repeat_interleave(shot).expand(e, -1)
        return F.cross_entropy(
            self.logits(support.flatten(1, 2), w, noise).flatten(0, 1), labels.flatten(), reduction="sum"
        )

    def adapt(
        self, z: torch.Tensor, support: torch.Tensor, noise: Noise | None, create_graph: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The inner loop from codes ``z`` (which must require grad): ``inner_steps`` steps on ``z``,
        then ``finetune_steps`` on the decoded weights. Returns ``(w [E, W, K, D], adapted z',
        final summed support loss)``; differentiable through the steps when ``create_graph``."""
        w = self.decode(z, noise)
        loss = self.support_loss(support, w, noise)
        for _ in range(self.inner_steps):
            (grad,) = torch.autograd.grad(loss, z, create_graph=create_graph)
            z = z - self.inner_lr * grad
            w = self.decode(z, noise)
            loss = self.support_loss(support, w, noise)
        for _ in range(self.finetune_steps):
            (grad,) = torch.autograd.grad(loss, w, create_graph=create_graph)
            w = w - self.finetune_lr * grad
            loss = self.support_loss(support, w, noise)
        return w, z, loss

    def classify(self, support: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        """Evaluation: support ``[E, W, K, D]`` (class-major), query ``[E, M, D]`` -> labels ``[E, M]``."""
        with torch.no_grad():
            z, _ = self.encode(support, None)
        with torch.enable_grad():
            w, _, _ = self.adapt(z.detach().requires_grad_(True), support, None, create_graph=False)
        return self.logits(query, w.detach(), None).argmax(-1)

    def weight_matrices(self) -> list[torch.Tensor]:
        """The weights under the L2 penalty (all but the step sizes)."""
        return [m.weight for m in self.modules() if isinstance(m, nn.Linear)]


def build_model(cfg: Config, features: int) -> LEO:
    return LEO(features, cfg.latents, cfg.inner_steps, cfg.finetune_steps, cfg.inner_lr, cfg.finetune_lr, cfg.seed)


def meta_loss(
    model: LEO, cfg: Config, support: torch.Tensor, query: torch.Tensor, query_labels: torch.Tensor, noise: Noise
) -> dict[str, torch.Tensor]:
    """The outer loss of a batch of training episodes and its terms (scalars).

    support ``[E, W, K, D]`` class-major; query ``[E, M, D]`` with labels ``[E, M]``.
    """
    z, kl = model.encode(support, noise)
    w, adapted, support_loss = model.adapt(z, support, noise, create_graph=True)
    logits = model.logits(query, w, noise)
    query_ce = F.cross_entropy(logits.flatten(0, 1), query_labels.flatten())
    terms = {
        "query_ce": query_ce,
        "kl": kl.mean(),
        "encoder_penalty": (adapted.detach() - z).pow(2).mean(),
        "l2": sum(0.5 * weight.pow(2).sum() for weight in model.weight_matrices()),
        "orthogonality": orthogonality_penalty(model.decoder.weight.T),  # rows: latent dimensions
    }
    terms["loss"] = (
        query_ce
        + cfg.kl_weight * terms["kl"]
        + cfg.encoder_penalty * terms["encoder_penalty"]
        + cfg.l2_penalty * terms["l2"]
        + cfg.orthogonality_penalty * terms["orthogonality"]
    )
    terms["support_ce"] = support_loss.detach() / support.shape[:3].numel()
    terms["query_accuracy"] = (logits.argmax(-1) == query_labels).float().mean()
    return terms


def clip_gradients(params, value: float, norm: float) -> torch.Tensor:
    """Clip every gradient element to ``[-value, value]``, then every gradient tensor to L2 norm
    ``norm`` (the official order). Returns the total gradient norm before clipping."""
    grads = [p.grad for p in params if p.grad is not None]
    total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    for g in grads:
        g.clamp_(-value, value)
        g.mul_((norm / torch.linalg.vector_norm(g)).clamp(max=1.0))
    return total


def inputs(x: torch.Tensor, normalize: bool) -> torch.Tensor:
    """Items ``[..., *item]`` of episodes ``[E, N, *item]`` or of a split ``[C, n, *item]`` as feature
    vectors ``[E, N, D]``, L2-normalised when ``normalize``."""
    x = x.flatten(2)
    return F.normalize(x, dim=-1) if normalize else x


def model_predictor(model: LEO, rt: Runtime, normalize: bool) -> Predictor:
    """The predictor of a model for any way and shot: the support of each episode must hold the same
    number of examples of every label ``0..way-1``, in any order."""

    def predict(support: torch.Tensor, support_labels: torch.Tensor, query: torch.Tensor, way: int) -> torch.Tensor:
        e, n = support_labels.shape
        shot = n // way
        order = support_labels.argsort(dim=1, stable=True)
        expected = torch.arange(way, device=support_labels.device).repeat_interleave(shot)
        if n != way * shot or not (support_labels.gather(1, order) == expected).all():
            raise ValueError(f"LEO needs the same number of support examples of every label 0..{way - 1}")
        support = inputs(support, normalize)[torch.arange(e, device=order.device).unsqueeze(1), order]
        support, query = support.view(e, way, shot, -1), inputs(query, normalize)
        chunk = max(1, MAX_PAIRS // n**2)
        with rt.autocast():
            return torch.cat([model.classify(support[i : i + chunk], query[i : i + chunk]) for i in range(0, e, chunk)])

    return predict


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
    """Meta-train LEO on ``cfg.way``-way ``cfg.train_shot``-shot episodes of ``data["train"]``
    ``[C, n, D]`` and write the weights with the best mean accuracy on ``val_episodes`` of
    ``data["val"]`` to ``out_path``, in the training loop (resumes from ``resume_root`` after a
    kill). Returns ``{"steps", "best_val_accuracy" (%), "train_seconds"}``.
    """
    pool = inputs(data["train"], cfg.normalize)
    model = rt.prepare(build_model(cfg, pool.shape[-1]))
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    rng = NumpyGenerator(episode_rng(cfg.seed, "train", cfg.way, cfg.train_shot))
    noise = Noise(rt.generator(cfg.seed), cfg.dropout)
    predict = model_predictor(model, rt, cfg.normalize)

    def step_fn(step: int) -> Step:
        episodes = sample_episodes(rng.rng, cfg.batch, pool.shape[0], pool.shape[1], cfg.way, cfg.train_shot, cfg.query)
        support, _, query, y_query = gather(pool, episodes)
        with rt.autocast():
            terms = meta_loss(model, cfg, support.view(cfg.batch, cfg.way, cfg.train_shot, -1), query, y_query, noise)
        return Step(terms["loss"], terms)

    def validate(step: int) -> dict[str, float]:
        return {"accuracy": mean_accuracy(predict, data["val"], val_episodes, len(val_episodes))}

    with rt.one_cpu_thread(), resume_folders(resume_root, out_path, cfg, ("leo",), rt) as (resume,):
        return fit_best_accuracy(
            cfg,
            name="leo",
            model=model,
            optimizer=optimizer,
            step_fn=step_fn,
            validate=validate,
            resume=resume,
            stateful={"episodes_rng": rng, "noise": noise.generator},
            out_path=out_path,
            run=run,
            progress=progress,
            clip=lambda: clip_gradients(model.parameters(), cfg.clip_value, cfg.clip_norm),
        )


def predictor(path: Path, rt: Runtime) -> Predictor:
    """Rebuild the model of a checkpoint written by :func:`train` (eval mode, on ``rt.device``)."""
    state = checkpoint.load(path, rt.device)
    cfg = Config(**state["config"])
    model = rt.prepare(build_model(cfg, state["model"]["finetune_lr"].shape[0]))
    model.load_state_dict(state["model"])
    return model_predictor(model.eval(), rt, cfg.normalize)
