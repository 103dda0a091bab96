"""Compiled spline kernels (``train.compile``): the same map and gradients as the eager ones,
a fallback where compiling fails, and the training loop runs inside them when asked."""

from __future__ import annotations

from contextlib import contextmanager

import pytest
import torch

from boltzflow import runs
from boltzflow.errors import ConfigError
from boltzflow.models import parse_config
from boltzflow.transforms import SplineCoupling, splines


def layer() -> SplineCoupling:
    """A coupling with interval and circular coordinates and a non-identity conditioner."""
    torch.manual_seed(0)
    c = SplineCoupling(5, [True, False, False, True, False], circular=[2], hidden=(16,),
                       n_bins=6)
    with torch.no_grad():
        for p in c.parameters():
            p.normal_(0.0, 0.3)
    return c


def evaluate(c: SplineCoupling, x: torch.Tensor):
    c.zero_grad()
    z, ld = c.inverse(x)
    (z.sum() + ld.sum()).backward()
    return z.detach(), ld.detach(), [p.grad.clone() for p in c.parameters()]


def other_shapes() -> None:
    """Both kernels on two other shapes first, as a bigger flow's layers would call them (with
    dynamic-shape recompiles torch 2.13's backward went wrong on the small layer below)."""
    for n, d in ((128, 20), (128, 30)):
        for name, k_der in (("interval", 7), ("circle", 8)):
            w, h = torch.randn(n, d, 8), torch.randn(n, d, 8)
            der = torch.randn(n, d, k_der, requires_grad=True)
            x = torch.rand(n, d) * 6 - 3
            kwargs = {"bound": 5.0} if name == "interval" else {}
            y, ld = splines.kernel(name)(x, w, h, der, inverse=True, **kwargs)
            (y.sum() + ld.sum()).backward()


def test_compiled_splines_match_eager_values_and_gradients():
    c, x = layer(), torch.randn(64, 5)
    x[:, 2] = torch.rand(64) * 6.2 - 3.1
    eager = evaluate(c, x)
    with splines.compiled_splines():
        assert splines.kernel("interval") is not splines.rational_quadratic_spline
        other_shapes()
        compiled = evaluate(c, x)
    assert splines.kernel("interval") is splines.rational_quadratic_spline  # restored
    torch.testing.assert_close(compiled[0], eager[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(compiled[1], eager[1], atol=1e-5, rtol=1e-5)
    for a, b in zip(compiled[2], eager[2]):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_compiled_splines_fall_back_to_eager_with_a_warning(monkeypatch):
    def broken(fn, **options):
        def call(*args, **kwargs):
            raise RuntimeError("no C++ compiler\nlong trace")
        return call

    monkeypatch.setattr(splines, "_compiled", {})
    monkeypatch.setattr(torch, "compile", broken)
    c, x = layer(), torch.randn(8, 5)
    eager = c.inverse(x)
    with splines.compiled_splines(), pytest.warns(RuntimeWarning, match="no C\\+\\+ compiler"):
        fallen = c.inverse(x)
    torch.testing.assert_close(fallen, eager)
    with splines.compiled_splines():  # once failed, eager for good without another warning
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("error")
            torch.testing.assert_close(c.inverse(x), eager)


def test_train_compile_wraps_the_training_loop(monkeypatch, tmp_path):
    seen = []

    @contextmanager
    def spy(enabled=True):
        seen.append(enabled)
        yield

    monkeypatch.setattr(runs, "compiled_splines", spy)
    for flag in (True, False):
        config = parse_config({
            "model": "coupling", "system": {"id": "double-well"},
            "train": {"steps": 2, "compile": flag, "checkpoint_every": 2},
            "coupling": {"n_layers": 2, "hidden": [8], "w_kl": 0.0},
        })
        runs.train(config, tmp_path / str(flag), progress=False)
    assert seen == [True, False]
    with pytest.raises(ConfigError, match="train.compile"):
        parse_config({"model": "coupling", "system": {"id": "double-well"},
                      "train": {"compile": "yes"}})
