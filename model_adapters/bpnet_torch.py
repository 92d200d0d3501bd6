"""BPNet (Avsec et al. 2021) in PyTorch, built from Keras weights read by
:func:`model_adapters.bpnet_weights.read_bpnet_h5`.

Keras semantics reproduced exactly:

* ``Conv1D(padding='same')`` with kernel k and dilation d pads ``d*(k-1)//2`` on the left and the rest
  on the right; Keras kernels ``(k, in, out)`` become PyTorch ``(out, in, k)`` (both cross-correlate).
* ``Conv2DTranspose(kernel=(k, 1), padding='same', strides=1)`` is the transpose of a 'same'
  convolution: ``out[j] = sum_m x[j + p - m] W[m]`` with ``p = (k-1)//2``; Keras kernels
  ``(k, 1, out, in)`` become PyTorch transposed-convolution weights ``(in, out, k)``.
* ``GlobalAveragePooling1D`` is the mean over positions; ``Dense`` kernels ``(in, out)`` become
  ``Linear`` weights ``(out, in)``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from deepmr_kipoi.errors import DeepMRInputError
from model_adapters.bpnet_weights import BPNetWeights


def _param(array: np.ndarray) -> nn.Parameter:
    return nn.Parameter(
        torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)), requires_grad=False
    )


class BPNet(nn.Module):
    """BPNet body + profile and counts heads.

    Parameters
    ----------
    weights : BPNetWeights
        Weights in Keras layout.
    output : {"counts", "log_counts", "profile"}
        What :meth:`forward` returns: ``"counts"`` the strand-mean log total counts per task
        ``(N, T)`` (the Deep MR features); ``"log_counts"`` per strand ``(N, T, S)``; ``"profile"`` the
        profile logits ``(N, T, L, S)``.

    Notes
    -----
    Input is one-hot ``(N, L, 4)`` (Keras channels-last, layout NLC) in ACGT order. The bias
    (control-track) inputs of the Keras model are taken as zero, as Kipoi's BPNet-OSKN wrapper does.
    """

    def __init__(self, weights: BPNetWeights, output: str = "counts"):
        super().__init__()
        if output not in ("counts", "log_counts", "profile"):
            raise DeepMRInputError(
                f"output must be 'counts', 'log_counts' or 'profile', got {output!r}"
            )
        self.output = output
        self.tasks = tuple(weights.tasks)
        self.dilation_rates = tuple(int(d) for d in weights.dilation_rates)
        self.conv1_weight = _param(np.transpose(weights.conv1_kernel, (2, 1, 0)))
        self.conv1_bias = _param(weights.conv1_bias)
        self.dil_weights = nn.ParameterList(
            [_param(np.transpose(k, (2, 1, 0))) for k in weights.dilated_kernels]
        )
        self.dil_biases = nn.ParameterList([_param(b) for b in weights.dilated_biases])
        # (k, 1, out, in) -> (in, out, k)
        self.profile_weights = nn.ParameterList(
            [_param(np.transpose(k[:, 0], (2, 1, 0))) for k in weights.profile_kernels]
        )
        self.profile_biases = nn.ParameterList([_param(b) for b in weights.profile_biases])
        self.counts_weights = nn.ParameterList([_param(k.T) for k in weights.counts_kernels])
        self.counts_biases = nn.ParameterList([_param(b) for b in weights.counts_biases])

    @staticmethod
    def _same_conv(
        x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, dilation: int
    ) -> torch.Tensor:
        total = dilation * (weight.shape[-1] - 1)
        left = total // 2
        return F.conv1d(F.pad(x, (left, total - left)), weight, bias, dilation=dilation)

    def body(self, onehot: torch.Tensor) -> torch.Tensor:
        """Bottleneck activations ``(N, F, L)`` from one-hot ``(N, L, 4)``."""
        x = onehot.transpose(1, 2)
        h = torch.relu(self._same_conv(x, self.conv1_weight, self.conv1_bias, 1))
        for weight, bias, rate in zip(self.dil_weights, self.dil_biases, self.dilation_rates):
            h = h + torch.relu(self._same_conv(h, weight, bias, rate))
        return h

    def log_counts(self, onehot: torch.Tensor, h: torch.Tensor | None = None) -> torch.Tensor:
        """Log total counts per task and strand ``(N, T, S)``."""
        h = self.body(onehot) if h is None else h
        pooled = h.mean(dim=2)
        return torch.stack(
            [F.linear(pooled, w, b) for w, b in zip(self.counts_weights, self.counts_biases)], dim=1
        )

    def profile_logits(self, onehot: torch.Tensor, h: torch.Tensor | None = None) -> torch.Tensor:
        """Profile logits per task, position and strand ``(N, T, L, S)`` (softmax over L gives the
        profile shape)."""
        h = self.body(onehot) if h is None else h
        length = h.shape[2]
        outs = []
        for w, b in zip(self.profile_weights, self.profile_biases):
            k = w.shape[-1]
            y = F.conv_transpose1d(h, w, b, padding=(k - 1) // 2)[:, :, :length]
            outs.append(y.transpose(1, 2))
        return torch.stack(outs, dim=1)

    def forward(self, onehot: torch.Tensor) -> torch.Tensor:
        if self.output == "profile":
            return self.profile_logits(onehot)
        log_counts = self.log_counts(onehot)
        return log_counts if self.output == "log_counts" else log_counts.mean(dim=2)
