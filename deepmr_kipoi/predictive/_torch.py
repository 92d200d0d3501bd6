"""PyTorch backend: :func:`deepmr_kipoi.predictive.from_torch` members (imported lazily)."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from deepmr_kipoi import sequences
from deepmr_kipoi.errors import DeepMRInputError
from deepmr_kipoi.predictive._member import DropoutLayer, MaskFn, Member, output_to_2d
from deepmr_kipoi.predictive.transforms import apply_transforms

# AlphaDropout/FeatureAlphaDropout are not here: their dropped units take a non-zero value and the
# kept ones an affine correction, which a multiplicative mask does not reproduce
logger = logging.getLogger(__name__)

#: an optimized module must reproduce the eager one to this tolerance, relative to the largest output,
#: on the batch it was traced with (BatchNorm folding and fused kernels change float32 rounding only)
OPTIMIZE_RTOL = 1e-4

#: input layouts with receptive-field caching -> the sequence axis of the prepared input
_SEQUENCE_AXIS = {"NCL": 2, "NC1L": 3, "NCL1": 2, "NLC": 1}

_ELEMENT = (torch.nn.Dropout,)
_CHANNEL = (torch.nn.Dropout1d, torch.nn.Dropout2d, torch.nn.Dropout3d)


def _to_numpy(t) -> np.ndarray:
    if isinstance(t, torch.Tensor):
        # a float64 network keeps its precision (effects are differences of nearby outputs)
        dtype = torch.float64 if t.dtype == torch.float64 else torch.float32
        return t.detach().to(device="cpu", dtype=dtype).numpy()
    return np.asarray(t)


@dataclass(frozen=True)
class TorchOptions:
    """How a :class:`TorchMember` calls and runs its module: the options of
    :func:`deepmr_kipoi.predictive.from_torch` after ``feature_names`` (see it for each)."""

    layout: str = "NCL"
    alphabet: str = "ACGT"
    output: Callable | None = None
    transforms: object = None
    sequence_length: int | None = None
    device: object = None
    optimize: bool = False
    fast_ism: bool = True


class TorchMember(Member):
    """A ``torch.nn.Module`` as a deterministic member (see :func:`deepmr_kipoi.predictive.from_torch`)."""

    backend = "torch"

    def __init__(self, module, feature_names, options: TorchOptions | None = None):
        o = options or TorchOptions()
        layout, alphabet, output, device = o.layout, o.alphabet, o.output, o.device
        if not isinstance(module, torch.nn.Module):
            raise DeepMRInputError(
                f"from_torch needs a torch.nn.Module, got {type(module).__name__}"
            )
        if output is not None and not callable(output):
            raise DeepMRInputError(
                "output must be a callable mapping the raw model output to an (N, F) tensor"
            )
        # BatchNorm and every other layer stay in inference mode; MC dropout adds fixed masks by hooks
        module.eval()
        param = next(iter(module.parameters()), None)
        self.device = resolve_device(device, param.device if param is not None else None)
        if param is not None and param.device != self.device:
            module.to(self.device)
        self.dtype = (
            param.dtype if param is not None and param.is_floating_point() else torch.float32
        )
        self.module = module
        self.output = output
        self.optimize = bool(o.optimize)
        self._optimized = None
        self._fast_ism_requested = bool(o.fast_ism)
        self._plan = None
        self._plan_length = None
        self._plan_checked = False
        self._ism_reason = "not decided yet: the first mutants decide"
        super().__init__(feature_names, alphabet, layout, o.sequence_length, o.transforms)
        self._dropout = [
            (mod, DropoutLayer(name or type(mod).__name__, float(mod.p), isinstance(mod, _CHANNEL)))
            for name, mod in module.named_modules()
            if isinstance(mod, _ELEMENT + _CHANNEL)
        ]

    @property
    def dropout_layers(self) -> tuple[DropoutLayer, ...]:
        return tuple(info for _, info in self._dropout)

    @property
    def fast_ism(self) -> bool:
        """True when the module traces into a plan with convolutions (and, once used, windowed ones)."""
        return self._fast_plan() is not None

    @property
    def ism_path(self) -> str:
        """``"cached"`` when mutants run through the receptive-field cache, else ``"full"``."""
        return "cached" if self._fast_plan() is not None else "full"

    @property
    def ism_reason(self) -> str:
        """Why :attr:`ism_path` is what it is (one line, for run records)."""
        self._fast_plan()
        return self._ism_reason

    def _off(self, reason: str, level: int = logging.WARNING) -> None:
        """Switch the cache off for good, saying why."""
        self._plan = False
        self._ism_reason = reason
        logger.log(level, "fast ISM off (%s); mutants run as full forward passes", reason)

    def _fast_plan(self, length: int | None = None):
        """The receptive-field plan for inputs of ``length`` (default: the member's own length).

        With a known length the module is traced with an example input, so shape queries in its
        ``forward`` (``len(x.size())``, ``range(x.size(1))``) are resolved; without one, plain
        ``torch.fx`` tracing must succeed.
        """
        length = length or self.sequence_length
        if self._plan is not None and (self._plan is False or self._plan_length in (None, length)):
            return self._plan or None
        self._plan, self._plan_length = False, length
        if not self._fast_ism_requested:
            self._ism_reason = "fast_ism=False"
            return None
        if self.layout not in _SEQUENCE_AXIS:
            self._ism_reason = f"layout {self.layout} has no receptive-field cache"
            return None
        from deepmr_kipoi.predictive._torch_fastism import FastISMPlan, Unsupported

        example = None
        if length is not None:
            example = self.prepare(np.zeros((1, int(length), 4), dtype=np.float32))
        try:
            plan = FastISMPlan(
                self.module,
                [mod for mod, _ in self._dropout],
                axis=_SEQUENCE_AXIS[self.layout],
                example=example,
            )
        except Unsupported as err:
            self._off(str(err))
            return None
        if not plan.has_convolution:
            if plan.opaque:
                self._off(
                    "; ".join(
                        f"{'the model' if k == 'module' else 'layer ' + k}'s forward cannot be traced ({v})"
                        for k, v in plan.opaque.items()
                    )
                )
            else:
                self._off("the model has no convolution", logging.INFO)
            return None
        self._plan = plan
        self._ism_reason = "receptive-field cache traced; checked on the first mutants"
        return plan

    def predict_mutants(self, reference, mutants, masks: MaskFn | None = None) -> np.ndarray:
        """Predict mutants of one reference with receptive-field caching (``_torch_fastism``).

        The first call checks the cached computation against full forward passes on four of its
        mutants (relative tolerance ``OPTIMIZE_RTOL``) and switches to full passes, with a logged
        warning, if they disagree or the cached propagation fails.

        Parameters
        ----------
        reference : array_like, shape (L, 4)
        mutants : array_like, shape (M, L, 4)
        masks : callable, optional

        Returns
        -------
        numpy.ndarray, shape (M, F), float32
        """
        return self.predict_mutants_samples(reference, mutants, [masks])[0]

    def predict_mutants_samples(self, reference, mutants, masks_list) -> np.ndarray:
        """Predict mutants of one reference under several MC-dropout mask sets at once.

        With the receptive-field cache, the layers before the first dropout layer run once for all
        mask sets (:meth:`FastISMPlan.mutants_samples`); without it, one full pass per mask set.

        Parameters
        ----------
        reference : array_like, shape (L, 4)
        mutants : array_like, shape (M, L, 4)
        masks_list : sequence of callable or None, length S

        Returns
        -------
        numpy.ndarray, shape (S, M, F), float32
        """
        x = sequences.check_onehot(mutants, name="mutants")
        plan = self._fast_plan(x.shape[1])
        n = x.shape[0]
        prepared = self.prepare(x)

        def full():
            return np.stack([self.predict_prepared(prepared, n, m) for m in masks_list])

        if plan is None:
            return full()
        try:
            with torch.inference_mode():
                ref = self.prepare(np.asarray(reference, dtype=np.float32)[None])
                raw = plan.mutants_samples(ref, prepared, masks_list)
                pred = np.stack([self._to_2d(r, n) for r in raw])
        except Exception as err:  # noqa: BLE001 - any failure of the cached path: run in full
            self._off(f"the cached propagation failed: {type(err).__name__}: {err}")
            return full()
        if not self._plan_checked:
            if plan.windowed_convolutions == 0:
                where = f" (windows stop at {plan.unfollowed[0]})" if plan.unfollowed else ""
                self._off(f"no convolution of the model can run on windows{where}")
                return full()
            rows = np.unique(np.linspace(0, n - 1, 4).round().astype(int))
            want = self._forward(
                prepared[torch.from_numpy(rows).to(prepared.device)], rows.size, masks_list[0]
            )
            err = float(np.abs(pred[0][rows] - want).max())
            if err > OPTIMIZE_RTOL * (float(np.abs(want).max()) or 1.0):
                self._off(f"the cache differs from full passes by {err:.3g}")
                return full()
            self._plan_checked = True
            self._ism_reason = f"{plan.windowed_convolutions} convolutions run on windows"
            if plan.dense_from_change:
                self._ism_reason += (
                    f", {plan.dense_from_change} dense layer(s) after a flatten "
                    "from the change only"
                )
            if plan.unfollowed:
                layers = ", ".join(dict.fromkeys(plan.unfollowed))
                self._ism_reason += f"; full activations from layer(s) {layers} on"
                logger.warning(
                    "fast ISM: windows cannot pass layer(s) %s; the convolutions after "
                    "them run on full activations",
                    layers,
                )
            logger.info("fast ISM on: %s", self._ism_reason)
        return np.stack([apply_transforms(p, self.transforms) for p in pred])

    def _to_2d(self, raw, n: int) -> np.ndarray:
        """The module's raw output as the member's ``(n, F)`` float32 predictions (before transforms)."""
        out = self.output(raw) if self.output is not None else raw
        return output_to_2d(out, n, len(self.feature_names), _to_numpy)

    @property
    def input_key(self) -> tuple:
        return (self.backend, self.alphabet, self.layout, str(self.device), str(self.dtype))

    def prepare(self, onehot: np.ndarray):
        return torch.from_numpy(super().prepare(onehot)).to(device=self.device, dtype=self.dtype)

    def _optimized_module(self, x):
        """The TorchScript-optimized module, built and checked against eager mode on the first batch.

        Checked on the first batch and on its first row alone; falls back to the eager module (logged)
        when tracing fails or the outputs disagree.
        """
        if self._optimized is None:
            self._optimized = self.module
            try:
                fast = _optimize(self.module, x)
                # a second batch size catches batch sizes that tracing froze into the graph
                pairs = [
                    (w, g)
                    for batch in (x, x[:1])
                    for w, g in zip(
                        _flatten(self.module(batch)), _flatten(fast(batch)), strict=True
                    )
                    if w.shape == g.shape or _raise_shape(w, g)
                ]
                scale = max(float(w.abs().max()) for w, _ in pairs) or 1.0
                err = max(float((w - g).abs().max()) for w, g in pairs)
                if err <= OPTIMIZE_RTOL * scale:
                    self._optimized = fast
                else:
                    logger.warning(
                        "optimize=True: the optimized module differs by %.3g; using eager mode", err
                    )
            except Exception as err:  # noqa: BLE001 - any tracing failure means: run eagerly
                logger.warning(
                    "optimize=True: tracing failed (%s: %s); using eager mode",
                    type(err).__name__,
                    err,
                )
        return self._optimized

    def _forward(self, x, n: int, masks: MaskFn | None) -> np.ndarray:
        handles = []
        if masks is not None:
            for k, (mod, info) in enumerate(self._dropout):
                handles.append(mod.register_forward_hook(_mask_hook(k, info, masks)))
        try:
            with torch.inference_mode():
                raw = (
                    self._optimized_module(x)(x)
                    # with the cached mutant path the references must come from the same (eager)
                    # module, so that effects pair predictions computed the same way
                    if masks is None and self.optimize and not self.fast_ism
                    else self.module(x)
                )
                return self._to_2d(raw, n)
        finally:
            for h in handles:
                h.remove()


def resolve_device(device, default=None) -> torch.device:
    """``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``, ``"cuda:1"``, a ``torch.device``, or
    None (``default``: the module's parameters' device, else CPU)."""
    if device is None:
        return torch.device(default if default is not None else "cpu")
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise DeepMRInputError(
            f"device must be 'auto', 'cpu' or 'cuda' (got {device!r}); pick one of them"
        ) from err
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise DeepMRInputError(
            f"device {device!r} was asked for but torch sees no CUDA device; use device='auto' or 'cpu'"
        )
    return resolved


def _mask_hook(k: int, info: DropoutLayer, masks: MaskFn):
    def hook(module, inputs, out):
        # in eval mode the dropout module passes its input through: out is the pre-dropout activation
        shape = tuple(out.shape[1:])
        mask_shape = (shape[0],) + (1,) * (len(shape) - 1) if info.channelwise else shape
        mask = torch.from_numpy(masks(k, mask_shape, info.rate)).to(
            device=out.device, dtype=out.dtype
        )
        return out * mask

    return hook


def _optimize(module, x):
    """Trace, freeze and optimize ``module`` for CPU inference on example batch ``x`` (TorchScript)."""
    with warnings.catch_warnings():
        # TorchScript is deprecated in favour of torch.compile, whose compile time per ensemble member
        # (weights are frozen constants) costs more than an ISM run saves; it still works in torch 2.x
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(module, x, check_trace=False)
        return torch.jit.optimize_for_inference(torch.jit.freeze(traced))


def _flatten(out) -> list:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        out = list(out.values())
    return [t for o in out for t in _flatten(o)]


def _raise_shape(want, got):
    raise ValueError(f"optimized output has shape {tuple(got.shape)}, eager {tuple(want.shape)}")
