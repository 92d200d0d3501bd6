"""The small CNN of the simulation (3 convolutional, 2 dense layers); imports torch lazily.

Input: ACGT one-hot in ``"NCL"`` layout ``(N, 4, L)``. Output: ``(N, F)`` predictions on the scale
of the training targets (Anscombe-transformed counts): the last layer predicts standardised targets
and the module maps them back with the training mean and SD it stores as buffers, so every saved
state dict is a complete, self-describing predictor.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from deepmr_kipoi import validation
from deepmr_kipoi.errors import DeepMRInputError


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of :func:`build_cnn`.

    Attributes
    ----------
    sequence_length : int
        Input length L (the network itself is length-agnostic: global pooling).
    n_outputs : int
        Number of predicted features F.
    channels : tuple of 3 int
        Filters of the three convolutional layers.
    kernel_sizes : tuple of 3 int
        Their widths (odd; "same" padding). The first is a motif-width scanner.
    hidden : int
        Width of the first dense layer.
    dropout : float
        Dropout before the output layer (inactive in eval mode, i.e. at prediction time).
    """

    sequence_length: int = 100
    n_outputs: int = 2
    channels: tuple = (16, 16, 16)
    kernel_sizes: tuple = (15, 3, 3)
    hidden: int = 32
    dropout: float = 0.1

    def __post_init__(self):
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        object.__setattr__(self, "kernel_sizes", tuple(int(k) for k in self.kernel_sizes))
        if len(self.channels) != 3 or len(self.kernel_sizes) != 3:
            raise DeepMRInputError(
                f"channels and kernel_sizes need 3 values each (one per conv layer), got "
                f"{self.channels} and {self.kernel_sizes}; give three of each"
            )
        if any(k % 2 == 0 or k < 1 for k in self.kernel_sizes):
            raise DeepMRInputError(
                f"kernel_sizes must be odd positive integers such as (9, 5, 5), got {self.kernel_sizes}"
            )
        validation.finite_float(self.dropout, "dropout", low=0.0, high=1.0, high_open=True)

    def to_dict(self) -> dict:
        """Plain-dict form (JSON-serialisable)."""
        return {
            f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v)
            for f in fields(self)
        }

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        """Inverse of :meth:`to_dict`."""
        return cls(**d)


def build_cnn(config: ModelConfig):
    """Build the CNN (torch ``nn.Module``, randomly initialised by torch's current RNG).

    Layers: 3 x [Conv1d -> BatchNorm1d -> ReLU], global mean- and max-pooling over positions
    (concatenated), Linear -> ReLU -> Dropout -> Linear, then de-standardisation with the buffers
    ``target_mean`` and ``target_scale`` (shape (F,), set by the trainer).

    Parameters
    ----------
    config : ModelConfig

    Returns
    -------
    torch.nn.Module
        ``forward(x: (N, 4, L)) -> (N, F)``.
    """
    import torch
    from torch import nn

    class SimCNN(nn.Module):
        def __init__(self, cfg: ModelConfig):
            super().__init__()
            layers = []
            c_in = 4
            for c, k in zip(cfg.channels, cfg.kernel_sizes):
                layers += [nn.Conv1d(c_in, c, k, padding=k // 2), nn.BatchNorm1d(c), nn.ReLU()]
                c_in = c
            self.conv = nn.Sequential(*layers)
            self.dense = nn.Sequential(
                nn.Linear(2 * c_in, cfg.hidden),
                nn.ReLU(),
                nn.Dropout(cfg.dropout),
                nn.Linear(cfg.hidden, cfg.n_outputs),
            )
            self.register_buffer("target_mean", torch.zeros(cfg.n_outputs))
            self.register_buffer("target_scale", torch.ones(cfg.n_outputs))

        def standardized(self, x):
            h = self.conv(x)
            h = torch.cat([h.mean(dim=2), h.amax(dim=2)], dim=1)
            return self.dense(h)

        def forward(self, x):
            return self.standardized(x) * self.target_scale + self.target_mean

    return SimCNN(config)
