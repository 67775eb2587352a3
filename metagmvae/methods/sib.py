"""SIB: "Empirical Bayes Transductive Meta-Learning with Synthetic Gradients" (Hu et al., ICLR 2020),
supervised and transductive, on frozen feature vectors (the Mini-ImageNet SimCLR store).

Per episode, a cosine classifier with weights ``theta [W, F]`` (one row per class) is

1. initialised from the support set by the initialization network: the mean of the (L2-normalised)
   support features of each class, times a learnable per-feature weight (the official
   ``FeatExemplarAvgBlock`` + ``LinearDiag``);
2. refined by ``K`` steps of synthetic gradient descent on the *unlabelled* queries:
   ``theta <- theta - lr_theta * d<logits, g>/d theta`` where ``g = dni(logits)`` is the synthetic
   gradient network's prediction of ``dLoss/dlogits`` for the query logits ``[N, W]``.

Meta-training minimises the cross-entropy of the queries under ``theta_K`` over labelled training
episodes, differentiating through the K steps (into the initialization and synthetic gradient
networks and the cosine scale). The backbone is frozen: the features are the store's.

Two choices differ from the official code (github.com/hushell/sib_meta_learn), both so that one
model serves any way and gives the same prediction for an episode whatever the batch around it:

* The official DNI is an MLP ``R^W -> R^W`` (hidden ``8 W`` units), tied to the training way. Here
  each of its layers is the permutation-equivariant linear map over classes
  ``h_k <- A h_k + B mean_j h_j + c`` (Zaheer et al., 2017) with ``dni_hidden`` channels per class
  (8 = the official ``8 W`` units over ``W`` classes). The problem is symmetric in the class order
  (labels are drawn at random and the initialization treats classes alike), so the ideal synthetic
  gradient is equivariant too; the map accepts any way.
* The official DNI normalises its hidden units with BatchNorm kept in training mode at test time
  ("updating bn helps to estimate better gradient"), over the one test episode's queries. Here the
  normalisation is per episode (over its queries and classes) in training and testing alike, with a
  learnable affine, and no running statistics.

The classifier's learnable bias of the official code (a constant added to every logit) is left
out: it cancels in the softmax.

Like the official code, and unlike the paper, there is no variational posterior over theta and no
KL term: theta_K is a point estimate and the loss is the query cross-entropy alone. The paper's
schedule (Adam, batch 8, 60 epochs, the rate dropped by 0.1 at epochs 10, 25 and 50) is
``optimizer: adam`` with ``lr_drop_steps`` at the same fractions of ``steps``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from metagmvae.data.episodes import EpisodeSet, episode_rng, gather, sample_episodes
from metagmvae.evaluation.accuracy import Predictor, mean_accuracy
from metagmvae.methods import Splits
from metagmvae.methods.related_fit import fit_best_accuracy
from metagmvae.runtime import checkpoint
from metagmvae.runtime.device import Runtime
from metagmvae.runtime.tracking import Run
from metagmvae.schema.related import SibConfig as Config
from metagmvae.training.loop import Step
from metagmvae.training.resume import NumpyGenerator, resume_folders

# Its published results and their sources: metagmvae.analysis.paper.published('sib', dataset).


def cosine_logits(query: torch.Tensor, theta: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``scale * cos(query_i, theta_k)``: query ``[E, N, F]``, theta ``[E, W, F]`` -> ``[E, N, W]``."""
    return scale * F.normalize(query, dim=-1) @ F.normalize(theta, dim=-1).transpose(1, 2)


class EquivariantLinear(nn.Module):
    """``[E, N, W, i] -> [E, N, W, o]``: ``h_k A + mean_j(h_j) B + c``, the same map for every class
    ``k``, so permuting the classes of the input permutes the output alike, for any ``W``."""

    def __init__(self, inputs: int, outputs: int):
        super().__init__()
        self.own = nn.Linear(inputs, outputs)
        self.pooled = nn.Linear(inputs, outputs, bias=False)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.own(h) + self.pooled(h.mean(2, keepdim=True))


class EpisodeNorm(nn.Module):
    """Normalise each channel over an episode's queries and classes: ``[E, N, W, c]`` -> same,
    with a learnable per-channel affine (BatchNorm over one episode, without running statistics)."""

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        var, mean = torch.var_mean(h, dim=(1, 2), unbiased=False, keepdim=True)
        return (h - mean) * torch.rsqrt(var + self.eps) * self.weight + self.bias


class SyntheticGradient(nn.Module):
    """The DNI: query logits ``[E, N, W]`` -> predicted ``dLoss/dlogits`` ``[E, N, W]``.

    Three layers as the official ``dni_linear`` (Linear, ReLU, norm; Linear, ReLU, norm; Linear),
    each linear layer equivariant over the classes with ``hidden`` channels per class.
    """

    def __init__(self, hidden: int):
        super().__init__()
        self.net = nn.Sequential(
            EquivariantLinear(1, hidden),
            nn.ReLU(),
            EpisodeNorm(hidden),
            EquivariantLinear(hidden, hidden),
            nn.ReLU(),
            EpisodeNorm(hidden),
            EquivariantLinear(hidden, 1),
        )

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        return self.net(logits.unsqueeze(-1)).squeeze(-1)


class SIB(nn.Module):
    """Initialization network, synthetic gradient network and cosine classifier over ``features``-d inputs."""

    def __init__(
        self, features: int, dni_hidden: int, theta_steps: int, lr_theta: float, scale: float, normalize: bool
    ):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(float(scale)))
        self.init_weight = nn.Parameter(torch.ones(features))  # per-feature weight of the class means
        self.dni = SyntheticGradient(dni_hidden)
        self.theta_steps, self.lr_theta, self.normalize = theta_steps, lr_theta, normalize

    def init_theta(self, support: torch.Tensor, support_labels: torch.Tensor, way: int) -> torch.Tensor:
        """theta_0 ``[E, W, F]`` from support ``[E, W*s, F]`` and its labels ``[E, W*s]`` in ``[0, W)``."""
        if self.normalize:
            support = F.normalize(support, dim=-1)
        onehot = F.one_hot(support_labels, way).to(support.dtype).transpose(1, 2)  # [E, W, W*s]
        means = onehot @ support / onehot.sum(-1, keepdim=True)
        return means * self.init_weight

    def refine(self, theta: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        """``theta_steps`` synthetic gradient steps on the queries ``[E, N, F]``: theta ``[E, W, F]`` -> same.

        Differentiable (for meta-training) when gradients are enabled by the caller; under
        ``torch.no_grad`` the steps still run and the result is detached.
        """
        create_graph = torch.is_grad_enabled()
        with torch.enable_grad():
            if not theta.requires_grad:
                theta = theta.detach().requires_grad_(True)
            for _ in range(self.theta_steps):
                logits = cosine_logits(query, theta, self.scale)
                (grad,) = torch.autograd.grad(logits, theta, self.dni(logits), create_graph=create_graph)
                theta = theta - self.lr_theta * grad
        return theta if create_graph else theta.detach()

    def forward(self, support: torch.Tensor, support_labels: torch.Tensor, query: torch.Tensor, way: int):
        """Query logits ``[E, N, W]`` under theta_K (see :meth:`init_theta`, :meth:`refine`)."""
        theta = self.refine(self.init_theta(support, support_labels, way), query)
        return cosine_logits(query, theta, self.scale)


def build_model(cfg: Config | Mapping[str, Any], features: int) -> SIB:
    c = cfg if isinstance(cfg, Mapping) else cfg.model_dump()
    return SIB(features, c["dni_hidden"], c["theta_steps"], c["lr_theta"], c["scale"], c["normalize"])


def model_predictor(model: SIB) -> Predictor:
    """The predictor of a model (put in eval mode): arg-max of the query logits, ``[E, W*Q]``."""
    model.eval()

    def predict(support: torch.Tensor, support_labels: torch.Tensor, query: torch.Tensor, way: int) -> torch.Tensor:
        with torch.no_grad():
            return model(support.flatten(2), support_labels, query.flatten(2), way).argmax(-1)

    return predict


def make_optimizer(cfg: Config, params) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=True)
    return torch.optim.Adam(params, cfg.lr, betas=(cfg.momentum, 0.999), weight_decay=cfg.weight_decay)


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
    """Meta-train SIB on episodes of ``data["train"]`` ``[C, n, F]`` and write the weights with the best
    mean accuracy on ``val_episodes`` of ``data["val"]`` to ``out_path``, in the training loop
    (resumes from ``resume_root`` after a kill).

    Computed in float32 (the runtime's autocast is not used: the model is a few thousand
    parameters and the double backward through the synthetic gradient steps wants full precision),
    with one CPU thread (see :meth:`metagmvae.runtime.device.Runtime.one_cpu_thread`).
    Returns ``{"steps", "best_val_accuracy" (%), "train_seconds"}``.
    """
    with rt.one_cpu_thread(), resume_folders(resume_root, out_path, cfg, ("sib",), rt) as (resume,):
        torch.manual_seed(cfg.seed)
        pool = data["train"].flatten(2)
        model = rt.prepare(build_model(cfg, pool.shape[-1]))
        optimizer = make_optimizer(cfg, model.parameters())
        schedule = torch.optim.lr_scheduler.MultiStepLR(optimizer, cfg.lr_drop_steps, cfg.lr_drop_factor)
        rng = NumpyGenerator(episode_rng(cfg.seed, "train", cfg.way, cfg.shot))

        def step_fn(step: int) -> Step:
            model.train()
            episodes = sample_episodes(rng.rng, cfg.batch, pool.shape[0], pool.shape[1], cfg.way, cfg.shot, cfg.query)
            support, y_support, query, y_query = gather(pool, episodes)
            logits = model(support, y_support, query, cfg.way)
            loss = F.cross_entropy(logits.flatten(0, 1), y_query.flatten())
            return Step(loss, {"loss": loss, "accuracy": (logits.argmax(-1) == y_query).float().mean()})

        def validate(step: int) -> dict[str, float]:
            return {"accuracy": mean_accuracy(model_predictor(model), data["val"], val_episodes, len(val_episodes))}

        return fit_best_accuracy(
            cfg,
            name="sib",
            model=model,
            optimizer=optimizer,
            step_fn=step_fn,
            validate=validate,
            resume=resume,
            stateful={"episodes_rng": rng},
            out_path=out_path,
            run=run,
            progress=progress,
            scheduler=schedule,
        )


def predictor(path: Path, rt: Runtime) -> Predictor:
    """Rebuild the model of a checkpoint written by :func:`train` (eval mode, on ``rt.device``)."""
    state = checkpoint.load(path, rt.device)
    model = rt.prepare(build_model(state["config"], state["model"]["init_weight"].shape[0]))
    model.load_state_dict(state["model"])
    return model_predictor(model)
