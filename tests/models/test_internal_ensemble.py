"""Several flows as one proposal (``internal.flows``): their equal mixture, exact density, its
weights bounded by each flow's; trained side by side on their own batches, saved and restored
as one model."""

from __future__ import annotations

import math

import pytest
import torch

import boltzflow as bf
from boltzflow import runs
from boltzflow.distributions import Distribution, Mixture
from boltzflow.errors import BoltzflowError
from boltzflow.flow import Flow
from boltzflow.models import parse_config
from boltzflow.models.internal import InternalKind


class _Shifted(Distribution):
    """N(mean, 1) in one dimension."""

    def __init__(self, mean: float):
        super().__init__((1,))
        self.mean = mean

    def log_prob(self, x):
        return -0.5 * (x[:, 0] - self.mean) ** 2 - 0.5 * math.log(2 * math.pi)

    def sample_and_log_prob(self, n):
        x = torch.randn(n, 1) + self.mean
        return x, self.log_prob(x)


def test_mixture_samples_both_components_with_the_mixture_density():
    q = Mixture([_Shifted(-5.0), _Shifted(5.0)])
    x, log_q = q.sample_and_log_prob(4000)
    left = (x[:, 0] < 0).float().mean()
    assert 0.46 < left < 0.54
    assert (x[:2000, 0] < 0).float().mean() > 0.4  # shuffled, not one component then the other
    expected = torch.logaddexp(-0.5 * (x[:, 0] + 5) ** 2, -0.5 * (x[:, 0] - 5) ** 2) \
        - 0.5 * math.log(2 * math.pi) - math.log(2)
    torch.testing.assert_close(log_q, expected)
    torch.testing.assert_close(q.log_prob(x), expected)
    # the bound that makes the mixture a safe proposal: q_mix >= q_k / K for every k
    for c in q.components:
        assert (log_q >= c.log_prob(x) - math.log(2) - 1e-6).all()
    two_d = _Shifted(0.0)
    two_d.event_shape = (2,)
    with pytest.raises(ValueError, match="event_shape"):
        Mixture([_Shifted(0.0), two_d])


def _config(flows: int, steps: int = 2) -> dict:
    return {
        "model": "internal", "system": {"id": "aldp-vacuum"},
        "internal": {"n_layers": 2, "hidden": [16], "w_nll": 0.0, "kl_batch_size": 16,
                     "flows": flows},
        "train": {"steps": steps, "batch_size": 32, "checkpoint_every": steps},
        "sample": {"n_samples": 64},
    }


def test_two_flows_train_save_load_and_sample_as_one_exact_mixture(tmp_path):
    run = runs.train(parse_config(_config(2)), tmp_path, progress=False)
    model = run.model
    assert isinstance(model.module, Mixture) and len(model.flows) == 2
    a, b = (dict(f.named_parameters()) for f in model.flows)
    assert any(not torch.equal(a[k], b[k]) for k in a)  # independently initialized
    assert model.metadata()["flows"] == 2
    assert model.describe().startswith("an equal mixture of 2 flows of 2 internal-coordinate")
    loaded = runs.load_run(tmp_path)
    assert isinstance(loaded.model.module, Mixture)
    for f, g in zip(model.flows, loaded.model.flows):
        for (k, p), (_, r) in zip(f.state_dict().items(), g.state_dict().items()):
            torch.testing.assert_close(p, r, msg=k)
    flow = loaded.model.flow_for(loaded.system).double()
    x, log_q = flow.sample_and_log_prob(64)
    ok = torch.isfinite(log_q)
    assert ok.float().mean() > 0.8
    torch.testing.assert_close(flow.log_prob(x[ok]), log_q[ok], atol=1e-6, rtol=1e-9)
    parts = torch.stack([f.log_prob(x[ok]) for f in loaded.model.flows])
    torch.testing.assert_close(log_q[ok], torch.logsumexp(parts, 0) - math.log(2))


def test_each_flow_learns_from_its_own_batches_and_the_loss_is_their_sum():
    system = bf.systems.get("aldp-vacuum")
    x0 = torch.as_tensor(system.positions, dtype=torch.float32).reshape(1, -1, 3)
    data = x0 + 0.002 * torch.randn(100, *x0.shape[1:])
    config = parse_config({**_config(3), "internal": {"n_layers": 2, "hidden": [16],
                                                      "w_kl": 0.0, "flows": 3}})
    kind = InternalKind.build(config, bf.models.TrainingSet(system, data))
    batches = kind.batch(7)
    assert len(batches) == 3
    assert not torch.equal(batches[0], batches[1]) and not torch.equal(batches[1], batches[2])
    torch.testing.assert_close(batches[1], kind.batch_of(7, config.train.seed + 1))
    parts = kind.loss(batches, 7)
    each = [kind.loss_of(f, b, 7, config.train.seed + k)
            for k, (f, b) in enumerate(zip(kind.flows, batches))]
    torch.testing.assert_close(parts["loss"], sum(e["loss"] for e in each))
    torch.testing.assert_close(parts["nll"], sum(e["nll"] for e in each) / 3)


def test_one_flow_keeps_its_checkpoint_layout_and_a_bad_count_is_one_line(tmp_path):
    run = runs.train(parse_config(_config(1)), tmp_path, progress=False)
    assert isinstance(run.model.module, Flow) and "flows" not in run.model.metadata()
    assert not any(k.startswith("components.") for k in run.model.module.state_dict())
    for bad in (0, 1.5):
        with pytest.raises(BoltzflowError, match="internal.flows") as err:
            parse_config({"model": "internal", "internal": {"flows": bad}})
        assert len(str(err.value).splitlines()) == 1
