"""Generic adapter: any Kipoi ``PyTorchModel`` or ``KerasModel`` whose outputs are vectors.

The framework model is taken from Kipoi's model object (``kipoi_model.model``: the ``torch.nn.Module``
or the Keras model) and wrapped with ``from_torch`` / ``from_keras`` using the input layout and alphabet
read from the model's description. Several outputs (a list or dict of vectors) are concatenated in the
schema's target order, matching ``ModelDescription.feature_names``. Uncertainty: MC dropout when the
network has dropout layers, an ensemble when several ``weight_files`` are given.

The helpers here (:func:`torch_members`, :func:`keras_members`) are shared by the family adapters.
"""

from __future__ import annotations

import logging

from deepmr_kipoi.adapters import LoadRequest, with_uncertainty
from deepmr_kipoi.errors import DeepMRInputError
from deepmr_kipoi.registry import register_adapter

logger = logging.getLogger(__name__)


class ConcatOutputs:
    """Output hook: a list/tuple/dict of ``(N, F_k)`` outputs -> one ``(N, sum F_k)`` array (a single
    array passes through).

    Parameters
    ----------
    names : tuple of str
        Output names in schema order; dict outputs are read by these keys, lists by position.
    """

    def __init__(self, names: tuple[str, ...]):
        self.names = tuple(names)

    def __call__(self, raw):
        if isinstance(raw, dict):
            missing = [n for n in self.names if n not in raw]
            if missing:
                raise DeepMRInputError(
                    f"model output has keys {sorted(raw)} but the schema names {missing}; fix the "
                    "targets in model.yaml"
                )
            parts = [raw[n] for n in self.names]
        elif isinstance(raw, list | tuple):
            # one schema target may be the model's several outputs side by side (DeepSTARR: a
            # target of shape (2,), two Dense(1) outputs); their total width is checked later
            if len(raw) != len(self.names) and len(self.names) != 1:
                raise DeepMRInputError(
                    f"model returned {len(raw)} outputs but the schema has {len(self.names)} targets"
                )
            parts = list(raw)
        else:
            return raw
        first = parts[0]
        n = first.shape[0]
        if type(first).__module__.startswith("torch"):
            import torch

            return torch.cat([p.reshape(n, -1) for p in parts], dim=1)
        import numpy as np

        return np.concatenate([np.asarray(p).reshape(n, -1) for p in parts], axis=1)


def _check_vector_model(request: LoadRequest) -> None:
    desc = request.description
    if desc.layout is None:
        raise DeepMRInputError(
            f"input {desc.input_name!r} of {desc.name} has shape {desc.input_shape}, not a one-hot DNA "
            "layout (L,4), (4,L), (4,1,L), (4,L,1) or (L,4,1); register an adapter for this model"
        )
    if desc.extra_inputs:
        raise DeepMRInputError(
            f"{desc.name} takes inputs besides the DNA sequence ({', '.join(desc.extra_inputs)}), which "
            "the generic adapter cannot supply; register an adapter that does (see "
            "examples/custom_adapter.py)"
        )
    if not desc.vector_outputs:
        shapes = dict(zip(desc.output_names, desc.output_shapes))
        raise DeepMRInputError(
            f"outputs of {desc.name} are not all vectors ({shapes}); register an adapter that turns "
            "them into scalar features (see examples/custom_adapter.py)"
        )


def check_family_model(request: LoadRequest, expected: str, family: str) -> None:
    """Raise a clear error when a model is not of a family adapter's shape (layout, one output vector)."""
    desc = request.description
    if desc.layout != expected:
        raise DeepMRInputError(
            f"the {family} adapter expects a {expected} input, but {desc.name} has input shape "
            f"{desc.input_shape}; load it with adapter='kipoi-generic'"
        )
    if len(desc.output_names) != 1:
        raise DeepMRInputError(
            f"the {family} adapter expects one output vector, but {desc.name} has outputs "
            f"{desc.output_names}; load it with adapter='kipoi-generic'"
        )


def _output_hook(request: LoadRequest):
    """Several outputs (schema targets, or a Keras model's output list) as one ``(N, F)`` array."""
    return ConcatOutputs(request.description.output_names)


def torch_members(request: LoadRequest, transforms=None) -> tuple[list, bool]:
    """Predictive members for a Kipoi ``PyTorchModel``: one per weight file.

    Parameters
    ----------
    request : LoadRequest
    transforms : None, str or dict
        Output transform passed to ``from_torch`` (e.g. ``"logit"`` for sigmoid outputs).

    Returns
    -------
    members : list
        ``from_torch`` members (ACGT ``(N, L, 4)`` in, ``(N, F)`` out).
    has_dropout : bool
        Whether the network has dropout layers MC dropout can mask.
    """
    _check_vector_model(request)
    desc = request.description
    module = request.kipoi_model().model

    import copy

    import torch

    from deepmr_kipoi.predictive import from_torch

    modules = [module]
    if request.weight_files is not None:
        modules = []
        for path in request.weight_files:
            clone = copy.deepcopy(module)
            try:
                state = torch.load(path, map_location="cpu", weights_only=True)
                clone.load_state_dict(state)
            except Exception as err:  # noqa: BLE001 - one message for every way a weight file can be wrong
                raise DeepMRInputError(
                    f"weight file {path} is not a state dict for {desc.name}: {type(err).__name__}: {err}"
                ) from err
            clone.eval()
            modules.append(clone)
    return _wrap_members(from_torch, modules, request, transforms)


def _wrap_members(factory, models: list, request: LoadRequest, transforms) -> tuple[list, bool]:
    """``factory`` (from_torch / from_keras) members for ``models`` with the model's description."""
    desc = request.description
    hook = _output_hook(request)
    members = [
        factory(
            m,
            feature_names=list(desc.feature_names),
            layout=desc.layout,
            alphabet=request.model_alphabet,
            output=hook,
            transforms=transforms,
            sequence_length=desc.sequence_length,
        )
        for m in models
    ]
    return members, bool(members[0].dropout_layers)


def keras_members(request: LoadRequest, transforms=None) -> tuple[list, bool]:
    """Predictive members for a Kipoi ``KerasModel``: one per user model, else the model itself.

    The user's ``weight_files`` are read as members by :func:`keras_member_files` (weights for the
    model's own architecture, an architecture JSON followed by its weights, or a whole-model h5);
    each member is loaded through Kipoi with those files in place of the model's own.
    """
    _check_vector_model(request)
    desc = request.description

    from deepmr_kipoi.predictive import from_keras

    if request.weight_files is None:
        return _wrap_members(from_keras, [request.kipoi_model().model], request, transforms)
    args = {w.arg for w in desc.weight_files}
    models = []
    for files in keras_member_files(request.weight_files):
        for path in files.values():
            if path:
                _refuse_keras3(path)
        if "arch" not in args and not files.get("arch"):
            files.pop("arch", None)
        # an architecture JSON is passed as Kipoi's ``arch`` argument even where the model's own
        # file is a whole model: Kipoi's KerasModel then builds the architecture and loads weights
        models.append(request.kipoi_model(files).model)
    return _wrap_members(from_keras, models, request, transforms)


def keras_member_files(paths) -> list[dict[str, str | None]]:
    """The user's Keras files as members: for each, the model arguments they replace.

    * ``arch.json weights.h5`` (a JSON file and the file after it): ``{"arch": ..., "weights": ...}``;
    * a whole-model h5 (it holds the architecture, ``model_config``): ``{"arch": None, "weights": ...}``;
    * other weight files (h5 of weights only): ``{"weights": ...}`` with the model's own architecture.

    Raises
    ------
    DeepMRInputError
        A JSON architecture that is not followed by a weights file.
    """
    members, paths, i = [], list(paths), 0
    while i < len(paths):
        path = paths[i]
        if _is_json(path):
            if i + 1 >= len(paths) or _is_json(paths[i + 1]):
                raise DeepMRInputError(
                    f"architecture {path} is not followed by its weights file; give each Keras "
                    "member as ARCH.json WEIGHTS.h5"
                )
            members.append({"arch": path, "weights": paths[i + 1]})
            i += 2
            continue
        members.append(
            {"arch": None, "weights": path} if _is_whole_model(path) else {"weights": path}
        )
        i += 1
    return members


def keras3_file(path: str) -> str | None:
    """How a file shows it was written by Keras 3 (which tf_keras cannot read), or None.

    A ``.keras`` archive; an h5 whose ``keras_version`` is 3.x; a Keras 3 weights file (groups
    ``layers``/``vars``, no ``layer_names``); an architecture JSON naming Keras 3.
    """
    import zipfile

    import h5py

    path = str(path)
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            if "config.json" in archive.namelist():
                return "a Keras 3 '.keras' archive"
        return None
    if h5py.is_hdf5(path):
        with h5py.File(path, "r") as handle:
            version = handle.attrs.get("keras_version")
            version = version.decode() if isinstance(version, bytes) else version
            if isinstance(version, str) and version.startswith("3."):
                return f"saved by Keras {version}"
            if {"layers", "vars"} <= set(handle) and "layer_names" not in handle.attrs:
                return "a Keras 3 weights file"
        return None
    if _is_json(path):
        with open(path, encoding="utf-8", errors="replace") as handle:
            text = handle.read()
        # Keras 1/2 and tf_keras write their version at the top; Keras 3 does not, and writes
        # every layer's dtype as a DTypePolicy object
        head = text.lstrip()[:1] == "{" and '"keras_version"' not in text[:200] + text[-200:]
        if head and '"DTypePolicy"' in text:
            return "an architecture written by Keras 3"
    return None


def _refuse_keras3(path: str) -> None:
    why = keras3_file(path)
    if why is not None:
        raise DeepMRInputError(
            f"{path} is {why}; Kipoi's Keras models are read with tf_keras (Keras 2), which cannot "
            "read Keras 3 files: save the network with tf_keras (tf_keras.models.save_model, or "
            "to_json + save_weights) and give those files"
        )


def _is_json(path: str) -> bool:
    """A Keras architecture file: JSON text (by extension, else by its first character)."""
    if str(path).lower().endswith(".json"):
        return True
    with open(path, "rb") as handle:
        return handle.read(64).lstrip()[:1] == b"{"


def _is_whole_model(path: str) -> bool:
    """An HDF5 file written by ``model.save`` (it carries the architecture as ``model_config``)."""
    import h5py

    if not h5py.is_hdf5(path):
        return False
    with h5py.File(path, "r") as handle:
        return "model_config" in handle.attrs


@register_adapter(
    "kipoi-generic",
    description="any Kipoi PyTorchModel/KerasModel with vector outputs (used when no other adapter "
    "matches); MC dropout if it has dropout, an ensemble over weight_files",
    patterns=(),
)
def load_generic(request: LoadRequest):
    """Load a Kipoi PyTorchModel or KerasModel with vector outputs as a predictive model."""
    desc = request.description
    if desc.model_type == "PyTorchModel":
        members, has_dropout = torch_members(request)
    elif desc.model_type == "KerasModel":
        members, has_dropout = keras_members(request)
    else:
        raise DeepMRInputError(
            f"{desc.name} is a Kipoi {desc.model_type} model ({desc.defined_as}); the generic adapter "
            "handles PyTorchModel and KerasModel: register an adapter for it"
        )
    return with_uncertainty(members, request, has_dropout=has_dropout)
