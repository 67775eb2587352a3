"""The ``related`` sections: each related method's hyper-parameters and the keys all share."""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field, create_model, model_validator

from metagmvae.runtime.config import (
    Fraction,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    PositiveInts,
    Section,
    Way,
)
from metagmvae.schema.data import DATASETS
from metagmvae.schema.runtime import RuntimeSettings

STRATEGIES = ("N", "RO", "OC")


BN_STATISTICS = ("running", "episode")


class LasiumConfig(Section):
    """One ``related.<name>`` section's LASIUM hyper-parameters. "paper": the authors' LASIUM-VAE
    ProtoNets scripts (Omniglot / Mini-ImageNet, the latter on 84x84 pixels, not features)."""

    latent: PositiveInt  # VAE latent dimension d (paper: 20 Omniglot; 512 Mini-ImageNet pixel VAE)
    vae_hidden: PositiveInt  # VAE width: conv channels (images) or MLP units (features) (paper: 64 channels)
    vae_steps: PositiveInt  # VAE Adam steps before it is frozen (paper: 1000 / 500 epochs of 128 = 188k / 150k)
    vae_batch: PositiveInt  # unlabeled items per VAE step (paper: 128)
    vae_lr: PositiveFloat  # VAE Adam learning rate (paper: 0.001)
    strategy: Literal[STRATEGIES]  # in-class: "N" (anchor + noise) | "RO" (towards a random code) | "OC" (other anchor)
    sigma: PositiveFloat  # LASIUM-N noise std, latent units (paper's GAN scripts: 0.5 or 1.0)
    alpha: Annotated[float, Field(gt=0, lt=1)]  # LASIUM-RO/OC: fraction of the way to the other code (paper: 0.4)
    epsilon: NonNegativeFloat  # minimum distance between a task's anchors, and to RO's other code (paper: 0)
    max_tries: PositiveInt  # prior draws per task (or other code) before sampling gives up with an error
    way: Way  # N classes per generated task (paper: 5)
    shot: PositiveInt  # K support members per class (paper: 1)
    query: PositiveInt  # Q query members per class (paper: 5)
    batch: PositiveInt  # generated tasks per ProtoNet step (paper: 4)
    steps: PositiveInt  # ProtoNet Adam steps (paper: 8000 / 60000)
    lr: PositiveFloat  # ProtoNet Adam learning rate (paper: 0.001)
    embed_hidden: PositiveInt  # ProtoNet width: Conv4 channels (images, 64 -> 256-d) or MLP units (features)
    query_shift: NonNegativeInt  # generated query images shifted by up to this many pixels (official: 5; features: 0)
    bn_statistics: Literal[BN_STATISTICS]  # the embedding's BatchNorm at test: "running" | "episode" (official)
    val_every: PositiveInt  # ProtoNet steps between validations (and at the last step)
    val_episodes_per_call: PositiveInt  # validation episodes embedded together
    log_every: PositiveInt  # steps between logged training losses
    seed: NonNegativeInt


class LeoConfig(Section):
    """LEO's hyper-parameters (paper value in brackets: the official README's miniImageNet 1-shot
    / 5-shot table where it gives one, else the official ``config.py`` default; the values are in
    ``related.leo_mini_imagenet{,_5shot}`` of params.yaml and profiles/paper.yaml)."""

    way: Way  # classes per training episode [5]
    train_shot: PositiveInt  # support examples per class in training episodes [1 or 5: one model per shot]
    query: PositiveInt  # query examples per class in training episodes [15]
    batch: PositiveInt  # episodes per outer step [12]
    steps: PositiveInt  # outer (meta-training) steps [100000]
    latents: PositiveInt  # L, size of the latent code [64]
    inner_steps: NonNegativeInt  # gradient steps on the latent codes [5]
    inner_lr: PositiveFloat  # initial step size of the latent steps, meta-learned per latent dimension [1.0]
    finetune_steps: NonNegativeInt  # gradient steps on the decoded classifier weights [5]
    finetune_lr: PositiveFloat  # initial step size of the fine-tuning steps, meta-learned per feature [0.001]
    dropout: Fraction  # probability of dropping an input feature, in training [0.307651 / 0.300299]
    kl_weight: NonNegativeFloat  # beta, weight of the latent's KL to N(0, I) [0.756143 / 0.466387]
    encoder_penalty: NonNegativeFloat  # gamma, weight of ||stop_grad(z') - z||^2 [5.756821e-6 / 2.661608e-7]
    l2_penalty: NonNegativeFloat  # lambda_1, weight of sum(w^2) / 2 over the weights [3.623413e-10 / 8.540338e-9]
    orthogonality_penalty: NonNegativeFloat  # lambda_2, the decoder's orthogonality penalty [0.188103 / 1.523998e-3]
    lr: PositiveFloat  # Adam's learning rate [2.739071e-4 / 4.102361e-4]
    clip_value: PositiveFloat  # every gradient element is clipped to [-clip_value, clip_value] first [0.1]
    clip_norm: PositiveFloat  # then every gradient tensor to this L2 norm [0.1]
    val_every: PositiveInt  # validate on the fixed validation episodes every this many steps [1000]
    log_every: PositiveInt  # log the mean training terms every this many steps
    normalize: bool  # L2-normalise every feature vector [true: the official data pipeline does]
    seed: NonNegativeInt  # initialisation, training episodes, dropout and sampling


class SibConfig(Section):
    """SIB's ``related.<name>`` hyper-parameters (paper value in brackets: official configs
    ``config/miniImageNet_{1,5}shot.yaml`` and ``main.py``)."""

    way: Way  # classes per training episode [5]
    shot: PositiveInt  # support examples per class in training episodes [1 or 5: one model per shot]
    query: PositiveInt  # query examples per class in training episodes [15]
    batch: PositiveInt  # episodes per optimisation step [8]
    steps: PositiveInt  # optimisation steps (meta-training iterations) [40000]
    optimizer: Literal["sgd", "adam"]  # "sgd" (Nesterov) or "adam" [official code: sgd; paper: adam]
    lr: PositiveFloat  # learning rate of the meta-parameters [0.001]
    lr_drop_steps: list[PositiveInt]  # rate times lr_drop_factor after these steps [paper: epochs 10, 25, 50 of 60]
    lr_drop_factor: Annotated[float, Field(gt=0, le=1)]  # [paper: 0.1]
    momentum: Fraction  # SGD's Nesterov momentum, or Adam's beta1 [0.9]
    weight_decay: NonNegativeFloat  # L2 penalty on all meta-parameters [0.0005]
    theta_steps: NonNegativeInt  # K, synthetic gradient steps on the queries [3]
    lr_theta: PositiveFloat  # step size of the synthetic gradient steps [0.001: the official code passes the lr]
    dni_hidden: PositiveInt  # hidden channels per class of the synthetic gradient network [8: 8 W units for W classes]
    scale: PositiveFloat  # initial scale of the cosine logits [10]
    normalize: bool  # L2-normalise the support features before the class means [true]
    val_every: PositiveInt  # validate on the fixed validation episodes every this many steps [1000]
    log_every: PositiveInt  # log the training loss and accuracy every this many steps
    seed: NonNegativeInt  # model initialisation and training episodes

    @model_validator(mode="after")
    def _consistent(self) -> SibConfig:
        if self.optimizer == "sgd" and self.momentum == 0:
            raise ValueError(f"momentum = {self.momentum}: Nesterov SGD needs momentum > 0")
        drops = self.lr_drop_steps
        if drops != sorted(set(drops)) or any(step >= self.steps for step in drops):
            raise ValueError(
                f"lr_drop_steps = {drops}: must be strictly increasing integers in [1, steps = {self.steps})"
            )
        return self


METHOD_CONFIGS = {"lasium": LasiumConfig, "leo": LeoConfig, "sib": SibConfig}
"""Each related method's own hyper-parameters by name (its module's ``Config``; the methods
themselves: :data:`metagmvae.methods.registry.METHODS`)."""


class RelatedRun(RuntimeSettings):
    """The keys of a ``related.<name>`` section every method shares (``method`` names the method,
    see :data:`RelatedSection`)."""

    dataset: Literal[DATASETS]
    val_way: Way  # the validation setting that selects the checkpoint
    val_shot: PositiveInt
    test_ways: PositiveInts  # tested at every way x shot
    test_shots: PositiveInts
    episodes_per_call: PositiveInt  # test episodes predicted together

    def method_config(self) -> Section:
        """The method's own hyper-parameters, as its ``Config``."""
        config = METHOD_CONFIGS[self.method]
        return config.model_validate({key: getattr(self, key) for key in config.model_fields})


RelatedSection = Annotated[
    Union[  # noqa: UP007 (a union built from the registry)
        tuple(
            create_model(f"{name.capitalize()}Run", __base__=(RelatedRun, config), method=(Literal[name], ...))
            for name, config in METHOD_CONFIGS.items()
        )
    ],
    Field(discriminator="method"),
]
"""A ``related.<name>`` section: the shared keys and, chosen by ``method``, the method's own."""
