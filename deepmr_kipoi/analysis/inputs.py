"""What :func:`~deepmr_kipoi.analysis.analyze` is handed, made into what a run takes: any model
form as a ``PredictiveModel`` and its identity (:func:`resolve_model`), any sequence form as run
settings or an in-memory one-hot array (:func:`resolve_sequences`). The frameworks are imported
only when a model object of theirs is handed over.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from deepmr_kipoi.errors import DeepMRInputError

logger = logging.getLogger(__name__)

#: Settings of :func:`resolve_model` (how a model object is wrapped), not of ``RunConfig``.
MODEL_KEYWORDS = ("layout", "feature_names", "alphabet", "sequence_length", "name")

_NO_UNCERTAINTY = (
    "a single deterministic {kind} gives one prediction per input, so mutation effects have no "
    "standard error; pass a list of independently trained models (a deep ensemble: "
    "analyze([model_1, model_2, model_3], ...)), or a model with dropout layers (MC dropout)"
)


def _framework(obj) -> str | None:
    """``"torch"``, ``"keras"``, ``"kipoi"`` or None, read from the object's classes (no import)."""
    roots = {c.__module__.split(".")[0] for c in type(obj).__mro__}
    if "torch" in roots and any(c.__name__ == "Module" for c in type(obj).__mro__):
        return "torch"
    if roots & {"keras", "tf_keras", "tensorflow"} and hasattr(obj, "layers"):
        return "keras"
    if "kipoi" in roots and hasattr(obj, "schema") and hasattr(obj, "model"):
        return "kipoi"
    return None


def _params_md5(models: Sequence, framework: str) -> list[dict]:
    """md5 of each framework model's weights, so that a run folder tells two ensembles apart."""
    out = []
    for i, m in enumerate(models):
        h = hashlib.md5()
        if framework == "torch":
            for key, tensor in m.state_dict().items():
                h.update(key.encode())
                h.update(np.ascontiguousarray(tensor.detach().cpu().numpy()).tobytes())
        else:
            for w in m.get_weights():
                h.update(np.ascontiguousarray(np.asarray(w)).tobytes())
        out.append({"path": f"<in-memory {framework} model {i}>", "md5": h.hexdigest()})
    return out


def _members(models: Sequence, framework: str, kw: dict) -> list:
    from deepmr_kipoi.predictive import from_keras, from_torch

    layout = kw.get("layout") or ("NCL" if framework == "torch" else "NLC")
    wrap = from_torch if framework == "torch" else from_keras
    names = kw.get("feature_names")
    length = kw.get("sequence_length")
    members = []
    for m in models:
        if names is None and length is None and framework == "torch":
            raise DeepMRInputError(
                "a PyTorch model's outputs need names or a length to count them; pass "
                "feature_names=[...] or sequence_length=L (or sequences, whose length is used)"
            )
        members.append(
            wrap(
                m,
                feature_names=None if names is None else [str(n) for n in names],
                layout=layout,
                alphabet=kw.get("alphabet") or "ACGT",
                sequence_length=length,
            )
        )
    return members


def _framework_model(obj, framework: str, kw: dict, seed: int, n_samples: int | None):
    from deepmr_kipoi.predictive import DeepEnsemble, MCDropout

    models = list(obj) if isinstance(obj, (list, tuple)) else [obj]
    members = _members(models, framework, kw)
    kind = "PyTorch module" if framework == "torch" else "Keras model"
    if len(members) > 1:
        model = DeepEnsemble(members)
    elif members[0].dropout_layers:
        model = MCDropout(members[0], n_samples=n_samples or 30, seed=seed)
    else:
        raise DeepMRInputError(_NO_UNCERTAINTY.format(kind=kind))
    n = len(members)
    what = f"deep ensemble of {n} {kind}s" if n > 1 else f"{kind} with MC dropout"
    identity = {
        "name": kw.get("name") or what,
        "source": "python",
        "weights": _params_md5(models, framework),
    }
    return model, identity


class _GivenKipoiModel:
    """A Kipoi backend that hands out a model object already loaded by ``kipoi.get_model``."""

    def __init__(self, kipoi_model):
        from deepmr_kipoi.kipoi_models import KipoiBackend

        self.obj = kipoi_model
        self.backend = KipoiBackend(None)

    def describe(self, request):
        return self.backend.describe(request)

    def model_files(self, request, arg=None):
        return self.backend.model_files(request, arg)

    def kipoi_model(self, request, replacements=None):
        if replacements:
            return self.backend.kipoi_model(request, replacements)
        return self.obj


def _kipoi_object(obj, kw: dict, seed: int, n_samples: int | None, uncertainty: str | None):
    from deepmr_kipoi import registry
    from deepmr_kipoi.adapters import LoadRequest
    from deepmr_kipoi.kipoi_models.load import _lookup_names

    where = getattr(obj, "source_dir", None)
    if not where or not os.path.isdir(where):
        raise DeepMRInputError(
            "this Kipoi model object has no source_dir to read its description from; load it with "
            "kipoi.get_model(name_or_dir) or pass the name or folder instead"
        )
    request = LoadRequest(
        name=os.path.abspath(where),
        source="dir",
        alphabet=kw.get("alphabet"),
        uncertainty=uncertainty,
        n_samples=n_samples,
        seed=int(seed),
        backend=_GivenKipoiModel(obj),
    )
    model = registry.find_adapter(_lookup_names(request.name)).load(request)
    if kw.get("feature_names") is not None:
        model.rename_features([str(n) for n in kw["feature_names"]])
    desc = request.description
    identity = {
        "name": str(getattr(obj, "name", None) or where),
        "source": desc.source,
        "model_dir": desc.model_dir,
        "model_type": desc.model_type,
        "weights": [
            {"arg": w.arg, "path": w.path, "md5": w.md5 or _md5_or_none(w.path)}
            for w in desc.weight_files
        ],
    }
    return model, identity


def _md5_or_none(path: str | None) -> str | None:
    from deepmr_kipoi._files import file_md5

    return file_md5(Path(path)) if path and os.path.isfile(path) else None


def resolve_model(
    obj,
    *,
    seed: int = 0,
    n_samples: int | None = None,
    uncertainty: str | None = None,
    **kw,
):
    """Any model form :func:`analyze` takes, as a ``PredictiveModel`` and its identity.

    Parameters
    ----------
    obj : PredictiveModel, torch.nn.Module, keras.Model, list of either, or a Kipoi model object
        A list is a deep ensemble (one member each); a single module or Keras model with dropout
        layers gets MC dropout (``n_samples`` masks, default 30); a Kipoi object (as
        ``kipoi.get_model`` returns) is wrapped by the adapter its folder's name finds, with layout,
        alphabet, length and feature names from its description. Strings are not taken here: a
        name, folder or factory is loaded by the run itself (``RunConfig.model``).
    seed : int
        Seed of the MC-dropout masks.
    n_samples : int, optional
        MC-dropout samples.
    uncertainty : {"ensemble", "mc_dropout"}, optional
        For a Kipoi object: the uncertainty method (default: the adapter's).
    **kw
        ``layout`` (the input layout of a raw framework model: ``"NCL"``, (N, 4, L), for PyTorch by
        default, ``"NLC"`` for Keras), ``feature_names`` (default ``feature_0, ...`` for raw models,
        the description's for Kipoi objects), ``alphabet`` (the model's channel order, default
        ACGT), ``sequence_length`` and ``name`` (for ``run.json``).

    Returns
    -------
    model : PredictiveModel
        ``predict_samples(onehot (N, L, 4) ACGT) -> (S, N, F)``, S >= 2.
    identity : dict
        ``name``, ``source``, ``weights`` (md5 per member) for ``run.json`` and resume.

    Raises
    ------
    DeepMRInputError
        An object of no known form, or a single deterministic model (with the Python way to add
        uncertainty).
    """
    unknown = sorted(set(kw) - set(MODEL_KEYWORDS))
    if unknown:
        raise DeepMRInputError(
            f"unknown model setting {unknown[0]!r}; resolve_model takes {', '.join(MODEL_KEYWORDS)}"
        )
    items = list(obj) if isinstance(obj, (list, tuple)) else None
    if items is not None and not items:
        raise DeepMRInputError("the model list is empty; pass one model or a list of several")
    frameworks = {_framework(m) for m in (items or [obj])}
    if len(frameworks) == 1 and frameworks <= {"torch", "keras"}:
        return _framework_model(obj, frameworks.pop(), kw, seed, n_samples)
    if items is None and _framework(obj) == "kipoi":
        return _kipoi_object(obj, kw, seed, n_samples, uncertainty)
    if items is None and hasattr(obj, "predict_samples") and hasattr(obj, "feature_names"):
        if int(getattr(obj, "n_samples", 0) or 0) < 2:
            raise DeepMRInputError(_NO_UNCERTAINTY.format(kind="model"))
        if kw.get("feature_names") is not None:
            obj.rename_features([str(n) for n in kw["feature_names"]])
        return obj, {"name": kw.get("name") or type(obj).__name__, "source": "python"}
    what = ", ".join(sorted(type(m).__name__ for m in (items or [obj])))
    raise DeepMRInputError(
        f"cannot analyse a model of type {what}; pass a Kipoi name or folder, a kipoi.get_model "
        "object, a torch.nn.Module or Keras model (or a list of them), or a PredictiveModel"
    )


def _array_layout(shape: tuple, layout: str | None) -> str:
    if len(shape) != 3:
        raise DeepMRInputError(
            f"a one-hot array must have 3 axes, (N, L, 4) or (N, 4, L); got shape {shape}"
        )
    if layout in ("NLC", "NCL"):
        want = (shape[2], "(N, L, 4)") if layout == "NLC" else (shape[1], "(N, 4, L)")
        if want[0] != 4:
            raise DeepMRInputError(
                f"layout={layout!r} means {want[1]} but the array has shape {shape}; fix layout="
            )
        return layout
    if shape[2] == 4:
        return "NLC"
    if shape[1] == 4:
        return "NCL"
    raise DeepMRInputError(
        f"a one-hot array has 4 channels on axis 1 or 2; got shape {shape} (transpose it)"
    )


def resolve_sequences(sequences, *, layout: str | None = None, bed: str | None = None):
    """Reference sequences in any form :func:`analyze` takes, as run settings or arrays.

    Parameters
    ----------
    sequences : None, str or path, sequence of str, or ndarray
        None (the run's default: random DNA, or the model's dataloader with
        ``sequences="dataloader"``); a FASTA path (with ``bed``: intervals sampled from a genome);
        DNA strings of one length (``N`` for unknown bases); or a one-hot array in ACGT order,
        (N, L, 4) or (N, 4, L) (read from the shape, or ``layout`` ``"NLC"``/``"NCL"``).
    layout : str, optional
        The array's layout where the shape does not tell (L = 4).
    bed : str, optional
        BED intervals of a genome FASTA.

    Returns
    -------
    settings : dict
        ``RunConfig`` settings (``fasta``, ``bed``) for files, else empty.
    given : (list of str, ndarray (N, L, 4) float32) or None
        Sequences held in memory (ids ``seq_0, seq_1, ...``).
    source : str or None
        Where in-memory sequences came from, in words.
    """
    from deepmr_kipoi import sequences as seqmod

    if sequences is None:
        return ({"bed": bed} if bed else {}), None, None
    if isinstance(sequences, (str, os.PathLike)) and (
        os.path.exists(sequences) or not set(str(sequences).upper()) <= set("ACGTN")
    ):
        return {"fasta": os.fspath(sequences), "bed": bed}, None, None
    if bed:
        raise DeepMRInputError("bed= needs sequences= to be the genome's FASTA path")
    if isinstance(sequences, str):
        sequences = [sequences]
    if isinstance(sequences, (list, tuple)) and all(isinstance(s, str) for s in sequences):
        lengths = {len(s) for s in sequences}
        if len(lengths) != 1:
            raise DeepMRInputError(
                f"DNA strings must share one length, got lengths {sorted(lengths)[:4]}; trim or pad"
            )
        onehot = seqmod.one_hot([s.upper() for s in sequences])
        return {}, ([f"seq_{i}" for i in range(len(sequences))], onehot), "DNA strings given"
    arr = np.asarray(sequences)
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.number):
        raise DeepMRInputError(
            f"sequences must be a FASTA path, DNA strings or a one-hot array, got {type(sequences).__name__}"
        )
    found = _array_layout(arr.shape, layout)
    onehot = np.ascontiguousarray(arr if found == "NLC" else arr.transpose(0, 2, 1), np.float32)
    seqmod.check_onehot(onehot, name="sequences")
    ids = [f"seq_{i}" for i in range(onehot.shape[0])]
    return {}, (ids, onehot), "one-hot array given"
