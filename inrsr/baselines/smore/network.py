"""The 2D residual super-resolution network of our SMORE implementation (EDSR-style, no batch norm).

The network never changes the image size: it receives an image that was already brought to the
high-resolution size by cubic interpolation along one axis (the *degraded* axis, always the image
rows, tensor dimension -2) and returns that image plus a learned residual. "Super-resolution along
one axis" is therefore the cubic pre-interpolation followed by this network.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ResidualBlock", "ResidualSR"]


class ResidualBlock(nn.Module):
    """``x + conv3×3(relu(conv3×3(x)))`` with ``features`` channels (EDSR's block without batch norm)."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, padding=1)
        self.conv2 = nn.Conv2d(features, features, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(torch.relu(self.conv1(x)))


class ResidualSR(nn.Module):
    """Pre-interpolated image → same image + residual.

    ``head`` (1 → ``features`` channels), ``blocks`` residual blocks with a long skip around them
    (EDSR), ``tail`` (``features`` → 1). The tail starts at zero, so an untrained network returns
    its input (the cubic interpolation) and training only ever learns a correction to it.

    Parameters
    ----------
    features : channels of every hidden layer.
    blocks : number of :class:`ResidualBlock`.
    generator : torch random generator for the weight initialisation (Kaiming-uniform for ReLU);
        a seeded generator makes the initial weights reproducible without touching torch's global
        random state.

    Input and output: ``(batch, 1, H, W)`` float tensors in normalised intensity units.
    """

    def __init__(self, features: int = 32, blocks: int = 8, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.features, self.n_blocks = int(features), int(blocks)
        self.head = nn.Conv2d(1, features, 3, padding=1)
        self.body = nn.Sequential(*[ResidualBlock(features) for _ in range(blocks)])
        self.body_out = nn.Conv2d(features, features, 3, padding=1)
        self.tail = nn.Conv2d(features, 1, 3, padding=1)
        self.reset_parameters(generator)

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Kaiming-uniform (ReLU gain) weights, zero biases, zero tail (output = input at start)."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_uniform_(module.weight, nonlinearity="relu", generator=generator)
                nn.init.zeros_(module.bias)
        for block in self.body:  # keep the residual branches small at first, as EDSR's residual scaling does
            block.conv2.weight.mul_(0.1)
        nn.init.zeros_(self.tail.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.head(x)
        h = h + self.body_out(self.body(h))
        return x + self.tail(h)
