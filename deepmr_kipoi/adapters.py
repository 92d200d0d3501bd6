"""The adapter API: what an adapter receives (:class:`LoadRequest`), what it is (:class:`Adapter`) and
the helper that wraps its deterministic members into a predictive model with uncertainty
(:func:`with_uncertainty`).

An adapter turns one model family into a :class:`~deepmr_kipoi.predictive.PredictiveModel`: it
decides how the model is loaded, its input layout and alphabet, how raw outputs become named scalar
features, the output transform and the uncertainty method. Adapters are registered by name in
:mod:`deepmr_kipoi.registry`; :func:`deepmr_kipoi.kipoi_models.load_model` builds the request and
calls the adapter the registry finds.

This module imports neither Kipoi nor a deep-learning framework, and no other module of the package
except :mod:`deepmr_kipoi.errors` and (inside :func:`with_uncertainty`) :mod:`deepmr_kipoi.predictive`:
the Kipoi side reaches a request through its ``backend`` (see :class:`ModelBackend`), so that
``kipoi_models`` may import this module and adapters may import both without an import circle.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Protocol, runtime_checkable

from deepmr_kipoi.errors import DeepMRInputError

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_MC_SAMPLES",
    "UNCERTAINTY_METHODS",
    "Adapter",
    "LoadRequest",
    "ModelBackend",
    "with_uncertainty",
]

#: accepted values of ``uncertainty`` (None: the adapter's default)
UNCERTAINTY_METHODS = ("mc_dropout", "ensemble", "none")
#: MC-dropout samples when ``n_samples`` is not given
DEFAULT_MC_SAMPLES = 30


@runtime_checkable
class ModelBackend(Protocol):
    """Where a request's model comes from (the Kipoi implementation is
    :class:`deepmr_kipoi.kipoi_models.KipoiBackend`).

    Every method takes the request, so one stateless backend serves all requests.
    """

    def describe(self, request: LoadRequest) -> Any:
        """The model's description (a :class:`~deepmr_kipoi.kipoi_models.ModelDescription`)."""

    def model_files(self, request: LoadRequest, arg: str | None) -> tuple[str, ...]:
        """Paths of the weight files to use (the user's, else the model's own, verified)."""

    def kipoi_model(self, request: LoadRequest, replacements: Mapping | None = None) -> Any:
        """The framework model wrapped by Kipoi (``.model`` is the ``nn.Module`` / Keras model);
        ``replacements`` maps model arguments to the files (or None) that replace the model's own."""


@runtime_checkable
class Adapter(Protocol):
    """An adapter: ``load(request) -> PredictiveModel``.

    The returned model maps ACGT one-hot ``(N, L, 4)`` to samples ``(S, N, F)`` and has
    ``feature_names`` (length F); see :class:`deepmr_kipoi.predictive.PredictiveModel`.
    """

    def __call__(self, request: LoadRequest) -> Any: ...


@dataclass(frozen=True)
class LoadRequest:
    """Everything an adapter receives from :func:`~deepmr_kipoi.kipoi_models.load_model`.

    Attributes
    ----------
    name : str
        What the user asked for (model name, directory or adapter name).
    source : str, kipoi Source or None
        As passed to ``load_model``.
    alphabet : str or None
        Override of the model's one-hot channel order (None: the model's own).
    uncertainty : {"mc_dropout", "ensemble", "none"} or None
        None: the adapter's default.
    n_samples : int or None
        MC-dropout samples (None: :data:`DEFAULT_MC_SAMPLES`).
    seed : int
        Seed of the MC-dropout masks.
    weight_files : tuple of str or None
        Weight files that replace the model's own: one ensemble member per file.
    download : bool
        Whether Kipoi may download missing model files / clone its source.
    trust_model_code : bool
        Whether a ``model.yaml`` with Python tags may be read (see ``SECURITY.md``).
    backend : ModelBackend or None
        Supplies the description, the weight files and Kipoi's model object; ``load_model`` sets
        the Kipoi backend. Adapters that build their network themselves from ``weight_files`` need
        none.
    """

    name: str
    source: Any = None
    alphabet: str | None = None
    uncertainty: str | None = None
    n_samples: int | None = None
    seed: int = 0
    weight_files: tuple[str, ...] | None = None
    download: bool = False
    trust_model_code: bool = False
    backend: Any = field(default=None, repr=False, compare=False)

    def _backend(self) -> ModelBackend:
        if self.backend is None:
            raise DeepMRInputError(
                f"the request for {self.name!r} has no model backend; build it with "
                "deepmr_kipoi.kipoi_models.kipoi_request(...) or load through load_model"
            )
        return self.backend

    @cached_property
    def description(self):
        """The model's description (read once), e.g. a Kipoi ``ModelDescription``."""
        return self._backend().describe(self)

    @property
    def model_alphabet(self) -> str:
        """The alphabet override, else the model's own from its description."""
        return self.alphabet or self.description.alphabet

    def model_files(self, arg: str | None = None) -> tuple[str, ...]:
        """Weight file paths: the user's ``weight_files``, else the model's own file(s), verified.

        Parameters
        ----------
        arg : str or None
            Only the model file passed as this ``model.yaml`` argument (e.g. ``"model_file"``).
        """
        if self.weight_files is not None:
            return self.weight_files
        return tuple(self._backend().model_files(self, arg))

    def kipoi_model(self, replacements: Mapping | None = None):
        """Kipoi's model object (``.model`` is the framework model).

        Parameters
        ----------
        replacements : mapping of str to str or None, optional
            Model arguments (``"weights"``, ``"arch"``) and the files that replace the model's own
            for this load (None: the argument is left out, e.g. no ``arch`` for a whole-model h5);
            the replaced files need not exist. Default: the first user weight file replaces the
            model's weight file.
        """
        return self._backend().kipoi_model(self, replacements)


def with_uncertainty(members: Sequence, request: LoadRequest, *, has_dropout: bool):
    """Wrap deterministic members into the predictive model the request asks for.

    Parameters
    ----------
    members : sequence of predictive members
        One per weight file (``from_torch`` / ``from_keras`` results).
    request : LoadRequest
        Supplies ``uncertainty`` (None: an ensemble when there are several members, else MC dropout
        when the network has dropout, else none), ``n_samples`` and ``seed``.
    has_dropout : bool
        Whether the network has dropout layers (MC dropout needs them).

    Returns
    -------
    DeepEnsemble, MCDropout or Deterministic
        ``predict_samples(onehot (N, L, 4)) -> (S, N, F)``. A ``Deterministic`` carries
        ``uncertainty_hint``: one clause saying how this model can get uncertainty (MC dropout only
        when it has dropout layers).

    Raises
    ------
    DeepMRInputError
        The requested method does not fit the members (an ensemble of one, MC dropout without
        dropout layers, one-model methods with several weight files).

    Notes
    -----
    ``"none"`` gives S = 1 sample: effects have no standard error, which MR needs; a warning says so.
    """
    from deepmr_kipoi.predictive import DeepEnsemble, Deterministic, MCDropout

    method = request.uncertainty
    if method is None:
        if len(members) > 1:
            method = "ensemble"
        else:
            method = "mc_dropout" if has_dropout else "none"
    if method == "ensemble":
        if len(members) < 2:
            raise DeepMRInputError(
                "uncertainty='ensemble' needs at least two members: pass weight_files=[...] with one "
                "file per ensemble member"
            )
        return DeepEnsemble(list(members))
    if len(members) > 1:
        raise DeepMRInputError(
            f"uncertainty={method!r} takes one model but {len(members)} weight files were given; use "
            "uncertainty='ensemble'"
        )
    if method == "mc_dropout":
        if not has_dropout:
            raise DeepMRInputError(
                f"model {request.name!r} has no dropout layers, so MC dropout cannot give uncertainty; "
                "pass several weight_files with uncertainty='ensemble'"
            )
        return MCDropout(
            members[0], n_samples=request.n_samples or DEFAULT_MC_SAMPLES, seed=request.seed
        )
    hint = (
        "use uncertainty='mc_dropout' (the network has dropout) or several weight files"
        if has_dropout
        else "the network has no dropout layers, so give several weight files, one per ensemble member"
    )
    logger.warning(
        "model %r runs without uncertainty (one deterministic sample): effect standard errors are "
        "undefined; %s",
        request.name,
        hint,
    )
    model = Deterministic(members[0])
    # read by a run that needs uncertainty, so its message suggests only what fits this model
    model.uncertainty_hint = hint
    return model
