"""Members from a framework model or a function: :func:`from_torch`, :func:`from_keras`,
:func:`from_function` (the frameworks are imported only when these are called)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from deepmr_kipoi.errors import DeepMRInputError
from deepmr_kipoi.predictive._member import FunctionMember, Member


def _infer_feature_names(feature_names, sequence_length, probe: Callable[[np.ndarray], int]):
    if feature_names is not None:
        return feature_names
    if sequence_length is None:
        raise DeepMRInputError(
            "give feature_names=[...], or sequence_length= so the number of outputs can be read"
        )
    n_out = probe(np.zeros((1, int(sequence_length), 4), dtype=np.float32))
    return [f"feature_{i}" for i in range(n_out)]


def from_torch(
    module,
    feature_names: Sequence[str] | None = None,
    layout: str = "NCL",
    alphabet: str = "ACGT",
    output: Callable | None = None,
    transforms=None,
    sequence_length: int | None = None,
    device=None,
    optimize: bool = False,
    fast_ism: bool = True,
) -> Member:
    """Wrap a PyTorch module as a deterministic member (imports torch).

    Parameters
    ----------
    module : torch.nn.Module
        Put in eval mode. Input: one-hot in ``alphabet`` order and ``layout``.
    feature_names : sequence of str, length F, optional
        Output names; default ``feature_i`` (needs ``sequence_length`` to count the outputs).
    layout : {"NLC", "NCL", "NC1L", "NCL1", "N1LC"}
        The module's input layout.
    alphabet : str
        The module's channel order (e.g. ``"AGCT"``); callers still pass ACGT.
    output : callable, optional
        Maps the raw output (tensor, tuple, dict) to an ``(N, F)`` tensor, e.g. picking a head.
    transforms : None, str, mapping or sequence
        Per-feature output transform (``"identity"``, ``"logit"``, ``"log1p"``).
    sequence_length : int, optional
        The module's input length, when fixed.
    device : str or torch.device, optional
        Default: the device of the module's parameters.
    optimize : bool
        Run a TorchScript-traced, frozen and ``optimize_for_inference`` copy of the module (weights
        pre-packed for oneDNN, BatchNorm folded, conv+ReLU fused): often 1.2-2x faster on CPU. It is
        checked against eager mode on the first batch (relative tolerance 1e-4 of the largest output)
        and replaced by eager mode, with a logged warning, when tracing fails or they disagree.
        Outputs then differ from eager mode by float32 rounding. Data-dependent control flow in
        ``forward`` is frozen at tracing; MC-dropout samples always run eagerly, and so does a member
        whose receptive-field cache (``fast_ism``) is in use.
    fast_ism : bool
        Saturation ISM with receptive-field caching: the module is traced with ``torch.fx`` and each
        mutant recomputes only the stretch of every activation its mutation can reach (convolutions,
        pooling, element-wise layers, residual sums, cropping, global pooling; everything else sees
        full activations). Used for input layouts ``"NCL"``, ``"NC1L"``, ``"NCL1"`` and ``"NLC"``
        (transposed before the first convolution) when convolutions run on windows; checked against
        full forward passes on the first batch and replaced by them, with a logged warning, on
        disagreement or when no convolution can use windows. Results equal full passes up to
        float32 rounding.

    Returns
    -------
    Member
        ``member.predict(onehot (N, L, 4) ACGT) -> (N, F)`` float32.
    """
    from deepmr_kipoi.predictive._torch import TorchMember, TorchOptions

    options = TorchOptions(
        layout, alphabet, output, transforms, sequence_length, device, optimize, fast_ism
    )

    def probe(x):
        plain = TorchOptions(layout, alphabet, output, device=device)
        tmp = TorchMember(module, ["_"], plain)
        import torch

        with torch.inference_mode():
            raw = module(tmp.prepare(x))
            out = output(raw) if output is not None else raw
        return 1 if out.ndim == 1 else int(out.shape[-1])

    names = _infer_feature_names(feature_names, sequence_length, probe)
    return TorchMember(module, names, options)


def from_keras(
    model,
    feature_names: Sequence[str] | None = None,
    layout: str = "NLC",
    alphabet: str = "ACGT",
    output: Callable | None = None,
    transforms=None,
    sequence_length: int | None = None,
    fast_ism: bool = True,
) -> Member:
    """Wrap a Keras model (Keras 3 ``keras`` or Keras 2 ``tf_keras``) as a deterministic member.

    Parameters
    ----------
    model : keras.Model or tf_keras.Model
        Called with ``training=False``. Input: one-hot in ``alphabet`` order and ``layout``.
    feature_names : sequence of str, length F, optional
        Output names; default ``feature_i`` (needs ``sequence_length``).
    layout : {"NLC", "NCL", "NC1L", "NCL1", "N1LC", "NLC1"}
        The model's input layout (Keras models are usually ``"NLC"``).
    alphabet : str
        The model's channel order.
    output : callable, optional
        Maps the raw output (tensor, list, dict) to an ``(N, F)`` array.
    transforms : None, str, mapping or sequence
        Per-feature output transform (``"identity"``, ``"logit"``, ``"log1p"``).
    sequence_length : int, optional
        The model's input length, when fixed (default: read from ``model.input_shape`` when known).
    fast_ism : bool
        Rebuild the network in PyTorch (where installed and every layer has a counterpart) and
        predict mutants through its receptive-field cache; the rebuild is checked against the Keras
        model first. False: the Keras model runs every pass.

    Returns
    -------
    Member
    """
    from deepmr_kipoi.predictive._keras import KerasMember

    if sequence_length is None:
        sequence_length = _keras_length(model, layout)

    def probe(x):
        tmp = KerasMember(model, ["_"], layout, alphabet, output, None, None)
        raw = model(tmp.prepare(x), training=False)
        out = np.asarray(output(raw) if output is not None else raw)
        return 1 if out.ndim == 1 else int(out.shape[-1])

    names = _infer_feature_names(feature_names, sequence_length, probe)
    return KerasMember(
        model, names, layout, alphabet, output, transforms, sequence_length, fast_ism
    )


def _keras_length(model, layout: str) -> int | None:
    try:
        shape = tuple(model.input_shape)
    except (AttributeError, ValueError, TypeError):
        return None
    axis = {"NLC": 1, "NCL": 2, "NC1L": 3, "NCL1": 2, "N1LC": 2, "NLC1": 1}[layout]
    if len(shape) <= axis or not isinstance(shape[axis], int):
        return None
    return int(shape[axis])


def from_function(
    fn: Callable[[np.ndarray], np.ndarray],
    feature_names: Sequence[str],
    sequence_length: int | None = None,
    transforms=None,
) -> Member:
    """Wrap a numpy function of ACGT one-hot as a deterministic member.

    Parameters
    ----------
    fn : callable
        ``fn(onehot (N, L, 4) ACGT float32) -> (N, F)`` array.
    feature_names : sequence of str, length F
    sequence_length : int, optional
    transforms : None, str, mapping or sequence

    Returns
    -------
    Member
    """
    return FunctionMember(fn, feature_names, sequence_length, transforms)
