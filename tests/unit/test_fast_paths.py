"""Numerical honesty of the fast paths: bf16 autocast and channels-last against plain fp32, and
batched evaluation against one episode at a time, on CPU."""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from metagmvae.data.episodes import gather, sample_episodes
from metagmvae.methods.meta_gmvae import train_step
from metagmvae.models import build_model
from metagmvae.runtime.device import Runtime

PIXELS = {"kind": "pixels", "latent": 64, "hidden": 64, "heads": 4, "blocks": 2}
CPU = torch.device("cpu")
RUNTIMES = {
    "fp32": Runtime(CPU, "fp32", channels_last=False),
    "fp32_channels_last": Runtime(CPU, "fp32", channels_last=True),
    "bf16_channels_last": Runtime(CPU, "bf16", channels_last=True),
}


def what_ran(model: torch.nn.Module) -> tuple[set, list]:
    """Forward hooks recording, during a step, the output dtype of every convolution and linear
    layer and, for the image encoder's convolutions, whether their output is channels-last."""
    dtypes, layouts = set(), []

    def record(module, args, output):
        dtypes.add(output.dtype)
        if isinstance(module, torch.nn.Conv2d):
            layouts.append(output.is_contiguous(memory_format=torch.channels_last) and not output.is_contiguous())

    for module in model.modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear)):
            module.register_forward_hook(record)
    return dtypes, layouts


def one_step(rt: Runtime, x: torch.Tensor, state: dict):
    """Loss terms and gradients of one training step from the same weights and noise; checks that
    the step ran in the runtime's precision and memory format."""
    model = build_model(PIXELS)
    model.load_state_dict(state)
    model = rt.prepare(model).train()
    dtypes, layouts = what_ran(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)  # keep the weights: compare gradients
    losses = train_step(
        model,
        optimizer,
        x,
        way=5,
        samples=4,
        samples_decoder=4,
        em_iters=10,
        fix_pi=False,
        rt=rt,
        generator=torch.Generator().manual_seed(1),
        step=1,
    )
    grads = torch.cat([p.grad.flatten().float() for p in model.parameters()])
    assert dtypes == {torch.bfloat16 if rt.precision == "bf16" else torch.float32}, (rt, dtypes)
    assert len(layouts) == 4 and set(layouts) == {rt.channels_last}, (rt, layouts)  # the encoder's 4 convolutions
    # (a weight with one input channel is both layouts at once)
    conv_weights = [m.weight for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.in_channels > 1]
    assert [w.is_contiguous(memory_format=torch.channels_last) for w in conv_weights] == [rt.channels_last] * 3
    assert losses.kl.dtype == losses.rec.dtype == torch.float32  # the loss terms stay float32
    return {k: getattr(losses, k).item() for k in ("loss", "rec", "kl")}, grads


def test_channels_last_and_bf16_training_steps_match_fp32():
    torch.manual_seed(0)
    state = build_model(PIXELS).state_dict()
    x = (torch.rand(2, 30, 1, 28, 28, generator=torch.Generator().manual_seed(2)) > 0.8).float()
    ref_losses, ref_grads = one_step(RUNTIMES["fp32"], x, state)
    cl_losses, cl_grads = one_step(RUNTIMES["fp32_channels_last"], x, state)
    for key, value in ref_losses.items():  # a different memory layout, the same arithmetic
        assert abs(cl_losses[key] - value) <= 1e-4 * abs(value) + 1e-4, key
    assert F.cosine_similarity(cl_grads, ref_grads, dim=0) > 0.9999
    bf_losses, bf_grads = one_step(RUNTIMES["bf16_channels_last"], x, state)
    # stated tolerance for bf16 autocast (8-bit mantissa in conv/linear, fp32 EM): loss terms
    # within 1% and the gradient direction within cos > 0.99
    for key, value in ref_losses.items():
        assert abs(bf_losses[key] - value) <= 0.01 * abs(value) + 0.05, (key, bf_losses[key], value)
    assert F.cosine_similarity(bf_grads, ref_grads, dim=0) > 0.99


def test_batched_evaluation_gives_the_same_predictions_as_one_episode_at_a_time():
    torch.manual_seed(0)
    model = build_model(PIXELS).eval()
    data = (torch.rand(12, 20, 1, 28, 28, generator=torch.Generator().manual_seed(3)) > 0.8).float()
    with torch.no_grad():
        tokens = model.encode(data)
    eps = sample_episodes(np.random.default_rng(0), 8, 12, 20, 5, 1, 5)
    support, y_support, query, _ = gather(tokens, eps)
    noise = torch.randn(8, support.shape[1] + query.shape[1], 16, 64, generator=torch.Generator().manual_seed(4))
    setting = {"way": 5, "samples": 16, "em_iters": 10}
    batched = model.predict(support, y_support, query, **setting, noise=noise)
    single = torch.cat(
        [
            model.predict(support[e : e + 1], y_support[e : e + 1], query[e : e + 1], **setting, noise=noise[e : e + 1])
            for e in range(8)
        ]
    )
    assert torch.equal(batched, single)
    # and the test has teeth: other noise changes some predictions of this untrained model
    other = model.predict(support, y_support, query, **setting, noise=torch.randn_like(noise))
    assert not torch.equal(other, batched)
