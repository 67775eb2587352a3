"""Running means of loss terms and the periodic-action schedule shared by the training loops."""

import torch

from metagmvae.training.loop import RunningMeans, due


def test_running_means_average_since_the_last_pop_and_survive_a_resume():
    means = RunningMeans()
    for loss, kl in [(1.0, 0.5), (2.0, 1.5), (6.0, 1.0)]:
        means.add(loss=torch.tensor(loss), kl=kl)
    assert means.pop("train") == {"train/loss": 3.0, "train/kl": 1.0}
    means.add(loss=torch.tensor(4.0))
    resumed = RunningMeans()
    resumed.load_state_dict(means.state_dict())
    resumed.add(loss=torch.tensor(8.0))
    assert resumed.pop("vae") == {"vae/loss": 6.0}
    assert means.state_dict() == {"sums": {"loss": 4.0}, "count": 1}, "the saved state is a copy"


def test_due_every_n_steps_and_at_the_last():
    assert [s for s in range(1, 11) if due(s, 4, 10)] == [4, 8, 10]
    assert [s for s in range(1, 7) if due(s, 10, 6)] == [6]
