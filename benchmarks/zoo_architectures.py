"""PyTorch reproductions of Kipoi zoo architectures, written for the fast-ISM tests and benchmarks.

They rebuild the constructs of the zoo's own module files (kipoi/models ``Basset``,
``DeepSEA/predict``, ``DeepSEA/variantEffects``, ``DeepSEA/beluga``), which the torch-to-pytorch
converter emitted and which plain ``torch.fx`` cannot trace:

* ``Lambda`` wrappers: an ``nn.Sequential`` subclass calling a stored function, among them the
  shape test ``x.view(1, -1) if 1 == len(x.size()) else x`` before every ``Linear``;
* an alphabet swap built from channel slices and ``torch.stack`` (ACGT -> AGCT);
* a reverse-complement concatenation that builds reversed indices with ``range(x.size(d))`` and
  ``index_select`` on the channel and sequence axes, and the averaging of the two halves that
  slices the batch at ``int(x.shape[0] / 2)``;
* the (N, 4, 1, L) DeepSEA and (N, 4, L, 1) Basset layouts with ``Conv2d``/``MaxPool2d`` kernels
  along the sequence axis, ``Threshold`` activations and dropout between convolutions.

``scale`` divides every channel count (1: the zoo's sizes); weights are random (``seed``).

:func:`deepstarr_keras` is the zoo's Keras DeepSTARR (de Almeida et al. 2022) in ``tf_keras``.
"""

from __future__ import annotations

import torch
from torch import nn


class Lambda(nn.Sequential):
    """Calls ``fn`` on the input (on the outputs of its children, when it has any)."""

    def __init__(self, fn, *children):
        super().__init__(*children)
        self.fn = fn

    def forward(self, x):
        inputs = [child(x) for child in self._modules.values()]
        return self.fn(inputs if inputs else x)


def _to_rows(x):
    return x.view(x.size(0), -1)


def _vector_to_row(x):
    # the converter's guard for unbatched input: written with len() of the size, as in the zoo
    return x.view(1, -1) if 1 == len(x.size()) else x


def _dense(n_in: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(Lambda(_vector_to_row), nn.Linear(n_in, n_out))


class SwapToAGCT(nn.Module):
    """ACGT -> AGCT channel order of (N, 4, ...) input, by channel slices and a stack."""

    def forward(self, x):
        return torch.stack([x[:, c, ...] for c in (0, 2, 1, 3)], dim=1)


class WithReverseComplement(nn.Module):
    """(N, 4, 1, L) -> (2N, 4, 1, L): the batch followed by its reverse complements (channels and
    positions reversed: in AGCT order the reversed channels are the complements)."""

    def forward(self, x):
        flipped = x
        for axis in (1, 3):
            order = torch.LongTensor([i for i in range(flipped.size(axis) - 1, -1, -1)])
            if flipped.is_cuda:
                order = order.cuda()
            flipped = flipped.index_select(axis, order)
        return torch.cat([x, flipped], dim=0)


class MeanOfStrands(nn.Module):
    """(2N, F) -> (N, F): the mean of forward and reverse-complement predictions."""

    def forward(self, x):
        half = int(x.shape[0] / 2)
        return x[:half] / 2 + x[half:] / 2


def _randomize_batchnorm(net: nn.Module) -> None:
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
                m.running_mean.uniform_(-0.3, 0.3)
                m.running_var.uniform_(0.5, 1.5)


def basset(seed: int = 0, scale: int = 1, length: int = 600) -> nn.Sequential:
    """Kipoi's Basset: input (N, 4, L, 1) ACGT, 164 sigmoid outputs (L = 600 in the zoo)."""
    torch.manual_seed(seed)
    c1, c2, c3, d = 300 // scale, 200 // scale, 200 // scale, 1000 // scale
    final = (((length - 18) // 3 - 10) // 4 - 6) // 4
    net = nn.Sequential(
        nn.Conv2d(4, c1, (19, 1)),
        nn.BatchNorm2d(c1),
        nn.ReLU(),
        nn.MaxPool2d((3, 1), (3, 1)),
        nn.Conv2d(c1, c2, (11, 1)),
        nn.BatchNorm2d(c2),
        nn.ReLU(),
        nn.MaxPool2d((4, 1), (4, 1)),
        nn.Conv2d(c2, c3, (7, 1)),
        nn.BatchNorm2d(c3),
        nn.ReLU(),
        nn.MaxPool2d((4, 1), (4, 1)),
        Lambda(_to_rows),
        _dense(c3 * final, d),
        nn.BatchNorm1d(d, 1e-05, 0.1, True),
        nn.ReLU(),
        nn.Dropout(0.3),
        _dense(d, d),
        nn.BatchNorm1d(d, 1e-05, 0.1, True),
        nn.ReLU(),
        nn.Dropout(0.3),
        _dense(d, 164),
        nn.Sigmoid(),
    )
    _randomize_batchnorm(net)
    return net.eval()


def _deepsea_trunk(scale: int, length: int) -> nn.Sequential:
    c1, c2, c3, d = 320 // scale, 480 // scale, 960 // scale, 925 // scale
    final = ((length - 7) // 4 - 7) // 4 - 7
    return nn.Sequential(
        nn.Conv2d(4, c1, (1, 8), (1, 1)),
        nn.Threshold(0, 1e-06),
        nn.MaxPool2d((1, 4), (1, 4)),
        nn.Dropout(0.2),
        nn.Conv2d(c1, c2, (1, 8), (1, 1)),
        nn.Threshold(0, 1e-06),
        nn.MaxPool2d((1, 4), (1, 4)),
        nn.Dropout(0.2),
        nn.Conv2d(c2, c3, (1, 8), (1, 1)),
        nn.Threshold(0, 1e-06),
        nn.Dropout(0.5),
        Lambda(_to_rows),
        _dense(c3 * final, d),
        nn.Threshold(0, 1e-06),
        _dense(d, 919),
        nn.Sigmoid(),
    )


def deepsea_variant_effects(seed: int = 0, scale: int = 1, length: int = 1000) -> nn.Sequential:
    """Kipoi's DeepSEA/variantEffects: input (N, 4, 1, L) ACGT, 919 outputs (L = 1000)."""
    torch.manual_seed(seed)
    return nn.Sequential(SwapToAGCT(), _deepsea_trunk(scale, length)).eval()


def deepsea_predict(seed: int = 0, scale: int = 1, length: int = 1000) -> nn.Sequential:
    """Kipoi's DeepSEA/predict: variantEffects averaged over both strands (L = 1000)."""
    torch.manual_seed(seed)
    trunk = _deepsea_trunk(scale, length)
    return nn.Sequential(SwapToAGCT(), WithReverseComplement(), trunk, MeanOfStrands()).eval()


class Beluga(nn.Module):
    """Kipoi's DeepSEA/beluga: input (N, 4, 1, L) ACGT, 2002 outputs (L = 2000)."""

    def __init__(self, seed: int = 0, scale: int = 1, length: int = 2000):
        super().__init__()
        torch.manual_seed(seed)
        a, b, c, d = 320 // scale, 480 // scale, 640 // scale, 2003 // scale
        final = ((length - 14) // 4 - 14) // 4 - 14
        self.model = nn.Sequential(
            nn.Sequential(
                nn.Conv2d(4, a, (1, 8)),
                nn.ReLU(),
                nn.Conv2d(a, a, (1, 8)),
                nn.ReLU(),
                nn.Dropout(0.2),
                nn.MaxPool2d((1, 4), (1, 4)),
                nn.Conv2d(a, b, (1, 8)),
                nn.ReLU(),
                nn.Conv2d(b, b, (1, 8)),
                nn.ReLU(),
                nn.Dropout(0.2),
                nn.MaxPool2d((1, 4), (1, 4)),
                nn.Conv2d(b, c, (1, 8)),
                nn.ReLU(),
                nn.Conv2d(c, c, (1, 8)),
                nn.ReLU(),
            ),
            nn.Sequential(
                nn.Dropout(0.5),
                Lambda(_to_rows),
                _dense(c * final, d),
                nn.ReLU(),
                _dense(d, 2002),
            ),
            nn.Sigmoid(),
        )
        self.eval()

    def forward(self, x):
        return self.model(x)


def deepstarr_keras(seed: int = 0, length: int = 249, scale: int = 1, dropout: float = 0.4):
    """DeepSTARR's layer structure and sizes in tf_keras (``scale`` divides the channel counts),
    input (L, 4): four blocks of ``Conv1D`` (``padding="same"``), batch normalisation, ReLU and max
    pooling; a flatten; two dense blocks with batch normalisation and dropout; two ``Dense(1)``
    heads (developmental, housekeeping). Batch-norm statistics are random, away from the identity."""
    import numpy as np
    import tf_keras as keras

    keras.utils.set_random_seed(seed)
    kl = keras.layers
    inp = kl.Input((length, 4), name="seq")
    h = inp
    for i, (filters, kernel) in enumerate(((246, 7), (60, 3), (60, 5), (120, 3))):
        h = kl.Conv1D(max(filters // scale, 2), kernel, padding="same", name=f"Conv1D_{i}")(h)
        h = kl.BatchNormalization(name=f"bn_conv_{i}")(h)
        h = kl.Activation("relu", name=f"relu_conv_{i}")(h)
        h = kl.MaxPooling1D(2, name=f"pool_{i}")(h)
    h = kl.Flatten(name="flatten")(h)
    for i in range(2):
        h = kl.Dense(max(256 // scale, 2), name=f"Dense_{i}")(h)
        h = kl.BatchNormalization(name=f"bn_dense_{i}")(h)
        h = kl.Activation("relu", name=f"relu_dense_{i}")(h)
        h = kl.Dropout(dropout, name=f"drop_{i}")(h)
    model = keras.Model(inp, [kl.Dense(1, name=f"Dense_{task}")(h) for task in ("Dev", "Hk")])
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if type(layer).__name__ == "BatchNormalization":
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, gamma.shape).astype(np.float32),
                    rng.normal(0, 0.1, beta.shape).astype(np.float32),
                    rng.normal(0, 0.3, mean.shape).astype(np.float32),
                    rng.uniform(0.5, 1.5, var.shape).astype(np.float32),
                ]
            )
    return model


#: name -> (builder, from_torch layout, zoo input length)
ZOO = {
    "Basset": (basset, "NCL1", 600),
    "DeepSEA/predict": (deepsea_predict, "NC1L", 1000),
    "DeepSEA/variantEffects": (deepsea_variant_effects, "NC1L", 1000),
    "DeepSEA/beluga": (Beluga, "NC1L", 2000),
}
