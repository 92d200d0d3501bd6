"""Multi-task BPNet in PyTorch (Avsec et al. 2021), one counts head and one profile head per task.

This file is self-contained (it imports only torch) because it is copied into the Kipoi model
directory the experiment writes, as that model's ``module_file``.

Architecture, as the zoo's BPNet-OSKN: a first convolution (ReLU, 'same'), ``n_dilated`` residual
dilated convolutions (kernel 3, dilation 2, 4, 8, ..., ReLU, output added to the input); per task a
profile head (transposed convolution, 'same', one channel per strand: logits over positions) and a
counts head (global average pooling, then a dense layer: log(1 + reads) per strand). Unlike
bpnet-lite's BPNet, whose counts head sums the reads of all tasks, every task has its own counts
head, so the per-task log counts are separate outputs.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class MultiTaskBPNet(nn.Module):
    """BPNet with per-task counts heads.

    Parameters
    ----------
    n_tasks : int
    filters : int
    conv1_kernel : int
        Width of the first convolution (odd).
    n_dilated : int
    profile_kernel : int
        Width of the profile heads (odd).
    n_strands : int

    Notes
    -----
    ``forward(onehot (N, L, 4) ACGT) -> (N, T)``: the strand-mean log counts per task (the Deep MR
    features, as the zoo adapter reports them).
    """

    def __init__(
        self,
        n_tasks: int = 4,
        filters: int = 16,
        conv1_kernel: int = 25,
        n_dilated: int = 9,
        profile_kernel: int = 25,
        n_strands: int = 2,
    ):
        super().__init__()
        if conv1_kernel % 2 == 0 or profile_kernel % 2 == 0:
            raise ValueError("conv1_kernel and profile_kernel must be odd")
        self.dilations = tuple(2 ** (i + 1) for i in range(n_dilated))
        self.conv1 = nn.Conv1d(4, filters, conv1_kernel, padding=(conv1_kernel - 1) // 2)
        self.dilated = nn.ModuleList(
            [nn.Conv1d(filters, filters, 3, dilation=d, padding=d) for d in self.dilations]
        )
        self.profile = nn.ModuleList(
            [
                nn.ConvTranspose1d(
                    filters, n_strands, profile_kernel, padding=(profile_kernel - 1) // 2
                )
                for _ in range(n_tasks)
            ]
        )
        self.counts = nn.ModuleList([nn.Linear(filters, n_strands) for _ in range(n_tasks)])

    def body(self, onehot: torch.Tensor) -> torch.Tensor:
        """Bottleneck activations ``(N, F, L)`` of one-hot ``(N, L, 4)``."""
        h = torch.relu(self.conv1(onehot.transpose(1, 2)))
        for conv in self.dilated:
            h = h + torch.relu(conv(h))
        return h

    def heads(self, onehot: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Log counts ``(N, T, S)`` and profile logits ``(N, T, L, S)``."""
        h = self.body(onehot)
        pooled = h.mean(dim=2)
        log_counts = torch.stack([head(pooled) for head in self.counts], dim=1)
        profile = torch.stack([head(h).transpose(1, 2) for head in self.profile], dim=1)
        return log_counts, profile

    def forward(self, onehot: torch.Tensor) -> torch.Tensor:
        h = self.body(onehot)
        pooled = h.mean(dim=2)
        return torch.stack([head(pooled) for head in self.counts], dim=1).mean(dim=2)


def profile_nll(logits: torch.Tensor, reads: torch.Tensor) -> torch.Tensor:
    """Multinomial negative log-likelihood of read profiles, without the count-only constant.

    Parameters
    ----------
    logits : Tensor, shape (N, T, L, S)
    reads : Tensor, shape (N, T, L, S)

    Returns
    -------
    Tensor, shape ()
        ``-sum reads * log_softmax(logits over L)``, summed over tasks, strands and positions,
        averaged over sequences.
    """
    return -(reads * F.log_softmax(logits, dim=2)).sum(dim=(1, 2, 3)).mean()
