"""LEO and SIB train in the one training loop: stopped mid-run, they resume to the same bytes."""

import numpy as np
import pytest
from conftest import related_config
from test_sib import CPU, hidden_classes

from metagmvae.data.episodes import sample_episodes
from metagmvae.methods import leo, sib
from metagmvae.runtime.tracking import Run


@pytest.mark.parametrize("method", ["sib", "leo"])
def test_interrupted_training_resumes_to_the_uninterrupted_bytes(method, tmp_path, monkeypatch):
    """Stopped mid-run (after its resume state at a log line) and called again with the same
    configuration, SIB or LEO continues from that state, not from step 0, and writes the same
    checkpoint as a run that was never stopped."""
    module = {"sib": sib, "leo": leo}[method]
    name = {"sib": "sib_mini_imagenet", "leo": "leo_mini_imagenet"}[method]
    extra = {"lr_drop_steps": [20]} if method == "sib" else {"latents": 8, "query": 5}
    cfg = related_config(name, steps=40, val_every=20, log_every=7, batch=4, **extra)
    splits = {"train": hidden_classes(40, 20, seed=0), "val": hidden_classes(10, 20, seed=1)}
    val = sample_episodes(np.random.default_rng(3), 10, 10, 20, 5, 1, 5)
    whole = tmp_path / "whole.pt"
    module.train(cfg, CPU, splits, val, whole, Run(None), progress=False, resume_root=tmp_path / "r0")

    calls, sample = [0], module.sample_episodes

    def stop_at_step_17(*args, **kwargs):
        calls[0] += 1
        if calls[0] == 17:
            raise KeyboardInterrupt
        return sample(*args, **kwargs)

    monkeypatch.setattr(module, "sample_episodes", stop_at_step_17)
    out = tmp_path / "model" / "m.pt"
    with pytest.raises(KeyboardInterrupt):
        module.train(cfg, CPU, splits, val, out, Run(None), progress=False, resume_root=tmp_path / "r1")
    assert not out.exists()
    resumed = []
    monkeypatch.setattr(module, "sample_episodes", lambda *a, **k: resumed.append(1) or sample(*a, **k))
    module.train(cfg, CPU, splits, val, out, Run(None), progress=False, resume_root=tmp_path / "r1")
    assert len(resumed) == 40 - 14, "resumed from the state at step 14, the last log line"
    assert out.read_bytes() == whole.read_bytes()
    assert not any((tmp_path / "r1").iterdir()), "resume state removed once finished"
