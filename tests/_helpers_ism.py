"""Tiny torch networks for the predictive and ISM tests (built here, never downloaded)."""

import numpy as np

L = 16  # sequence length of the tiny models
K = 3  # conv kernel width


def conv_net(seed: int, n_out: int = 3, dropout=None, batchnorm: bool = False, length: int = L):
    """Conv1d(4->5, k=3) -> [BatchNorm1d] -> ReLU -> [dropout] -> Flatten -> Linear(5L -> n_out), NCL ACGT."""
    import torch

    torch.manual_seed(seed)
    layers = [torch.nn.Conv1d(4, 5, K, padding=1)]
    if batchnorm:
        bn = torch.nn.BatchNorm1d(5)
        with torch.no_grad():
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.2, 0.2)
        layers.append(bn)
    layers.append(torch.nn.ReLU())
    if dropout is not None:
        layers.append(dropout)
    layers += [torch.nn.Flatten(), torch.nn.Linear(5 * length, n_out)]
    return torch.nn.Sequential(*layers).eval()


def conv_weights(net):
    """(conv weight (5, 4, K), conv bias, linear weight, linear bias) as numpy float64."""
    conv, lin = net[0], net[-1]
    return tuple(
        p.detach().double().numpy() for p in (conv.weight, conv.bias, lin.weight, lin.bias)
    )


def numpy_conv_net(
    x_ncl: np.ndarray, weights, channel_mask=None, element_mask=None, bn=None
) -> np.ndarray:
    """Independent numpy forward of :func:`conv_net` on (N, 4, L) input, with optional fixed masks."""
    w, b, lw, lb = weights
    n, _, length = x_ncl.shape
    pad = np.pad(x_ncl.astype(np.float64), ((0, 0), (0, 0), (1, 1)))
    h = np.zeros((n, w.shape[0], length))
    for k in range(w.shape[2]):
        h += np.einsum("oc,ncl->nol", w[:, :, k], pad[:, :, k : k + length])
    h += b[None, :, None]
    if bn is not None:
        mean, var, gamma, beta, eps = bn
        h = (h - mean[None, :, None]) / np.sqrt(var[None, :, None] + eps) * gamma[
            None, :, None
        ] + beta[None, :, None]
    h = np.maximum(h, 0)
    if channel_mask is not None:
        h = h * channel_mask[None]
    if element_mask is not None:
        h = h * element_mask[None]
    return h.reshape(n, -1) @ lw.T + lb


class PositionBlind:
    """Factory of a net whose output ignores positions >= ``cut`` (crop, scale, ReLU, dropout, dot).

    Only elementwise operations and a reduction along the last axis: BLAS/oneDNN kernels may round
    one sequence differently in batches of different sizes, which would blur the exact zero that the
    pairing test asserts.
    """

    @staticmethod
    def build(seed: int, cut: int, p: float = 0.5):
        import torch

        class Net(torch.nn.Module):
            def __init__(self):
                super().__init__()
                gen = torch.Generator().manual_seed(seed)
                self.scale = torch.nn.Parameter(torch.randn(1, 4, 1, generator=gen))
                self.shift = torch.nn.Parameter(torch.randn(1, 4, 1, generator=gen))
                self.drop = torch.nn.Dropout(p)
                self.weight = torch.nn.Parameter(torch.randn(2, 4 * cut, generator=gen))

            def forward(self, x):
                h = self.drop(torch.relu(x[:, :, :cut] * self.scale + self.shift)).flatten(1)
                return (h[:, None, :] * self.weight[None]).sum(-1)

        return Net().eval()
