"""Conditioner networks for coupling layers."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import pairwise

from torch import nn


class MLP(nn.Sequential):
    """Fully connected network whose last layer starts at zero.

    A zero last layer makes a freshly built coupling layer the identity map, so a deep flow
    starts as the identity and trains stably (as in Glow, Kingma & Dhariwal, 2018).

    Args:
        in_features: input size.
        out_features: output size.
        hidden: sizes of the hidden layers (may be empty: a single linear map).
        activation: factory of the activation module placed after each hidden layer.

    Example:
        >>> net = MLP(3, 10, hidden=(64, 64))
        >>> net(torch.randn(8, 3)).shape
        torch.Size([8, 10])
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        hidden: Sequence[int] = (64, 64),
        activation: Callable[[], nn.Module] = nn.SiLU,
    ):
        sizes = [in_features, *hidden, out_features]
        if any(int(s) != s or s < 1 for s in sizes):
            raise ValueError(
                f"MLP sizes must be positive integers, got in_features={in_features}, "
                f"hidden={tuple(hidden)}, out_features={out_features}"
            )
        layers: list[nn.Module] = []
        for a, b in pairwise(sizes[:-1]):
            layers += [nn.Linear(a, b), activation()]
        last = nn.Linear(sizes[-2], sizes[-1])
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        super().__init__(*layers, last)
