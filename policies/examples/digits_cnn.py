"""The architecture of the image example's model (``model.architecture: digits_cnn:DigitsCNN``)."""

from __future__ import annotations

import torch
from torch import nn


class DigitsCNN(nn.Module):
    """A small CNN for 16x16 grey digits: two convolution blocks with batch norm, dropout, two linear layers.

    Parameters
    ----------
    n_classes : int
        Output logits.
    width : int
        Channels of the first convolution (the second has twice as many).
    dropout : float
        Dropout probability before each linear layer (MC dropout needs dropout layers).
    """

    def __init__(self, n_classes: int = 10, width: int = 16, dropout: float = 0.25):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Dropout(dropout), nn.Linear(2 * width * 4 * 4, 64), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(64, n_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits, shape ``(N, n_classes)``, for inputs ``(N, 1, 16, 16)``."""
        return self.classifier(self.features(x))
