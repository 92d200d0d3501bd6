"""Kipoi models as :class:`~deepmr_kipoi.predictive.PredictiveModel` s.

``load_model`` accepts a model-zoo name (``"DeepSEA/predict"``), a local Kipoi model directory, or the
name of a registered adapter, and returns a predictive model that takes ACGT one-hot input of shape
``(N, L, 4)``. Everything model-specific is read from the model's Kipoi description (``model.yaml``)
rather than guessed: the input shape and layout, the alphabet order and axes from the default
dataloader's arguments (including the defaults of kipoiseq dataloaders), the sequence length, the
output names (schema targets and their ``column_labels``, label files included) and the model files
Kipoi downloads.

Kipoi is imported lazily, after the compatibility steps of :mod:`deepmr_kipoi._kipoi_compat`; no model
file is ever downloaded unless ``download=True`` is passed, so a run never hangs on the network.
Every YAML file Kipoi would read for a model is first read with ``yaml.safe_load``; one with Python
tags is refused unless ``trust_model_code=True`` (Kipoi's own reader would run them).

The adapter API (:class:`~deepmr_kipoi.adapters.LoadRequest`, :func:`~deepmr_kipoi.adapters.with_uncertainty`)
lives in :mod:`deepmr_kipoi.adapters`; this module supplies the Kipoi side of a request
(:class:`KipoiBackend`) and asks :mod:`deepmr_kipoi.registry` which adapter loads a model.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from deepmr_kipoi import registry
from deepmr_kipoi._kipoi_compat import (
    WeightsNotFoundError,
    check_safe_yaml,
    file_md5,
    import_kipoi,
    kipoi_output_to_log,
    legacy_keras,
    missing_file_message,
    network_guard,
    prepare_source,
)
from deepmr_kipoi.adapters import (
    DEFAULT_MC_SAMPLES,
    UNCERTAINTY_METHODS,
    LoadRequest,
    with_uncertainty,
)
from deepmr_kipoi.errors import DeepMRInputError

logger = logging.getLogger(__name__)

__all__ = [
    "LAYOUTS",
    "UNCERTAINTY_METHODS",
    "DEFAULT_MC_SAMPLES",
    "DOWNLOAD_OPTION",
    "KipoiBackend",
    "LoadRequest",
    "ModelDescription",
    "WeightFile",
    "WeightsNotFoundError",
    "add_local_source",
    "dataloader_sequences",
    "describe_model",
    "kipoi_request",
    "load_model",
    "with_uncertainty",
]

#: input layouts read from a model's input shape (batch axis first)
LAYOUTS = ("NLC", "NCL", "NC1L", "NCL1", "NLC1")
#: how the Python API turns downloads on; the command line passes its own spelling (``--download``)
#: or None where it offers none, so that messages suggest only what the user can do
DOWNLOAD_OPTION = "download=True"

_DNA = frozenset("ACGT")


@dataclass(frozen=True)
class WeightFile:
    """A model file named in ``model.yaml``.

    Attributes
    ----------
    arg : str
        The model argument it is passed as (e.g. ``"weights"``).
    path : str
        Where Kipoi reads it: ``<model dir>/downloaded/model_files/<arg>/<md5>`` for remote files.
    url : str
        Download address ("" for files that ship with the model directory).
    md5 : str
        Expected md5 ("" when ``model.yaml`` gives none).
    """

    arg: str
    path: str
    url: str = ""
    md5: str = ""

    @property
    def present(self) -> bool:
        """True when the file exists (its md5 is checked by :meth:`verify`)."""
        return os.path.isfile(self.path)

    def verify(self, model: str, download_option: str | None = DOWNLOAD_OPTION) -> str:
        """Return the path after checking that the file is there with the expected md5.

        Parameters
        ----------
        model : str
            Model name for the message.
        download_option : str or None
            How the caller turns downloads on (named in the message; None: not mentioned).

        Raises
        ------
        WeightsNotFoundError
            Naming the model, the path Kipoi looks at and where the file comes from.
        """
        if not self.present or (self.md5 and file_md5(self.path) != self.md5):
            if not self.url:
                raise WeightsNotFoundError(
                    f"model file of '{model}' (argument '{self.arg}') is missing: {self.path}; "
                    "restore it in the model directory"
                )
            raise WeightsNotFoundError(
                missing_file_message(model, self.arg, self.url, self.md5, self.path, download_option)
            )
        return self.path


@dataclass(frozen=True)
class ModelDescription:
    """What Deep MR needs to know about a Kipoi model, read from its description.

    Attributes
    ----------
    name : str
        Model name in its source (an absolute path for model directories).
    source : str
        Source name (``"kipoi"``, ``"dir"``, a configured source) or the path of a local zoo copy.
    model_dir : str
        Local directory holding ``model.yaml``.
    model_type : str
        Kipoi model class: ``"PyTorchModel"``, ``"KerasModel"``, ... or ``"custom"``.
    defined_as : str
        The ``defined_as`` (or legacy ``type``) entry of ``model.yaml``.
    doc : str
        The model's ``info.doc``.
    input_name : str or None
        Name of the DNA sequence input.
    input_shape : tuple
        Shape of that input without the batch axis, as in the schema (e.g. ``(4, 1, 1000)``).
    layout : str or None
        ``"NLC"`` for ``(L, 4)``, ``"NCL"`` for ``(4, L)``, ``"NC1L"`` for ``(4, 1, L)``, ``"NCL1"``
        for ``(4, L, 1)``, ``"NLC1"`` for ``(L, 4, 1)``; None when the input is not a one-hot
        sequence in one of these layouts.
    alphabet : str
        One-hot channel order the model expects (default dataloader's ``alphabet``; ``"ACGT"`` when
        unspecified).
    alphabet_axis, dummy_axis, auto_resize_len : int or None
        The default dataloader's arguments (with the dataloader's own defaults filled in).
    sequence_length : int or None
        Input length in bases (from the schema shape, else ``auto_resize_len``).
    output_names : tuple of str
        Schema target names, in order.
    output_shapes : tuple of tuple
        Schema target shapes without the batch axis.
    feature_names : tuple of str
        One name per scalar output of the vector (1-d) targets, in output order: the target's
        ``column_labels`` (a single target) or ``"<target>/<label>"`` (several targets); index
        numbers where a target has no labels. Labels that occur more than once become
        ``"<label>#1"``, ``"<label>#2"``, ... in column order, so that every name selects one column.
    weight_files : tuple of WeightFile
        Files Kipoi downloads for the model (remote ``model.yaml`` arguments), and a local
        ``weights`` argument.
    dataloader : str or None
        The default dataloader (``defined_as`` or path).
    """

    name: str
    source: str
    model_dir: str
    model_type: str
    defined_as: str
    doc: str
    input_name: str | None
    input_shape: tuple
    layout: str | None
    alphabet: str
    alphabet_axis: int | None
    dummy_axis: int | None
    auto_resize_len: int | None
    sequence_length: int | None
    output_names: tuple[str, ...]
    output_shapes: tuple[tuple, ...]
    feature_names: tuple[str, ...]
    weight_files: tuple[WeightFile, ...] = field(default=())
    dataloader: str | None = None

    @property
    def vector_outputs(self) -> bool:
        """True when every target is a vector (shape ``(F,)``), i.e. outputs are scalar features."""
        return all(len(shape) == 1 for shape in self.output_shapes)


# ---------------------------------------------------------------------------------------------
# resolving names and sources


def _is_model_dir(path: str) -> bool:
    return os.path.isdir(path) and any(
        os.path.isfile(os.path.join(path, f"model.{ext}")) for ext in ("yaml", "yml")
    )


def _resolve(name_or_dir: str, source) -> tuple[str, str, Any]:
    """(model name for Kipoi, source label, kipoi Source object)."""
    kipoi = import_kipoi()
    from kipoi.sources import LocalSource, Source

    if not isinstance(name_or_dir, str | os.PathLike) or not str(name_or_dir):
        raise DeepMRInputError(f"model must be a Kipoi model name or directory, got {name_or_dir!r}")
    name = os.fspath(name_or_dir)
    if isinstance(source, Source):
        return name, getattr(source, "name", None) or type(source).__name__, source
    if source is None:
        if _is_model_dir(name):
            return os.path.abspath(name), "dir", kipoi.config.get_source("dir")
        if os.path.isdir(name):
            raise DeepMRInputError(
                f"{name} is a directory without model.yaml; point at a Kipoi model directory"
            )
        source = "kipoi"
    if source == "dir":
        path = os.path.abspath(name)
        if not _is_model_dir(path):
            raise DeepMRInputError(f"{path} is not a Kipoi model directory (no model.yaml)")
        return path, "dir", kipoi.config.get_source("dir")
    sources = kipoi.config.model_sources()
    if source in sources:
        return name, source, sources[source]
    if os.path.isdir(os.fspath(source)):
        path = os.path.abspath(os.fspath(source))
        return name, path, LocalSource(path, name=path)
    raise DeepMRInputError(
        f"unknown Kipoi source {source!r}: use one of {sorted(sources)} or the path of a local "
        "copy of the model zoo"
    )


def add_local_source(name: str, path: str):
    """Register a local folder laid out like the Kipoi model zoo as the Kipoi source ``name``.

    After this, ``load_model("DeepSEA/predict", source=name)`` reads
    ``<path>/DeepSEA/predict/model.yaml`` and weight files pre-placed under
    ``<path>/DeepSEA/predict/downloaded/model_files/<arg>/<md5>``.

    Parameters
    ----------
    name : str
        Source name (not ``"dir"``, which Kipoi reserves).
    path : str
        Folder with model sub-folders.

    Returns
    -------
    kipoi.sources.LocalSource
        The registered source (also in ``kipoi.config.model_sources()`` for this process).
    """
    kipoi = import_kipoi()
    from kipoi.sources import LocalSource

    if name == "dir":
        raise DeepMRInputError("'dir' is reserved by Kipoi for model directories; choose another name")
    if not os.path.isdir(path):
        raise DeepMRInputError(f"local model source {path} is not a directory")
    src = LocalSource(os.path.abspath(path), name=name)
    kipoi.config.add_source(name, src)
    return src


# ---------------------------------------------------------------------------------------------
# reading the description


def _model_type(md) -> tuple[str, str]:
    from kipoi.model import AVAILABLE_MODELS

    if md.defined_as:
        cls_name = md.defined_as.rsplit(".", 1)[-1]
        is_builtin = md.defined_as.startswith("kipoi.model.")
        return (cls_name if is_builtin else "custom"), md.defined_as
    if md.type in AVAILABLE_MODELS:
        cls = AVAILABLE_MODELS[md.type]
        if md.type == "pytorch" and "module_obj" not in md.args and "module_class" not in md.args:
            return "OldPyTorchModel", "type: pytorch"
        return cls.__name__, f"type: {md.type}"
    return "custom", f"type: {md.type}"


def _dataloader_defaults(md, model_name: str, source_obj, model_dir: str) -> tuple[dict, str | None]:
    """Default arguments of the model's default dataloader (class defaults + model.yaml overrides)."""
    from kipoi.specs import DataLoaderImport
    from kipoi_utils.external.related.fields import UNSPECIFIED
    from kipoi_utils.utils import cd, load_obj

    dl = md.default_dataloader
    if isinstance(dl, DataLoaderImport):
        args: dict = {}
        try:
            with cd(model_dir), kipoi_output_to_log():
                obj = load_obj(dl.defined_as)
            target = obj.__init__ if inspect.isclass(obj) else obj
            for pname, param in inspect.signature(target).parameters.items():
                if param.default is not inspect.Parameter.empty:
                    args[pname] = param.default
        except Exception as err:  # noqa: BLE001 - a dataloader we cannot import still has its overrides
            logger.debug("could not import dataloader %s: %s", dl.defined_as, err)
        args.update(dict(dl.default_args or {}))
        return args, dl.defined_as
    if isinstance(dl, str) and dl:
        path = os.path.normpath(os.path.join(model_dir, dl))
        if not any(os.path.isfile(os.path.join(path, f"dataloader.{ext}")) for ext in ("yaml", "yml")):
            # Kipoi's default '.' when model.yaml names no dataloader
            return {}, None
        try:
            import kipoi

            with kipoi_output_to_log():
                descr = kipoi.get_dataloader_descr(path, source="dir")
        except Exception as err:  # noqa: BLE001 - no dataloader description: fall back to the schema
            logger.debug("could not read dataloader %s of %s: %s", path, model_name, err)
            return {}, dl
        args = {
            k: v.default
            for k, v in descr.args.items()
            if v.default is not None and not isinstance(v.default, UNSPECIFIED)
        }
        return args, dl
    return {}, None


def _as_int(value) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _named_schemas(schema) -> list[tuple[str | None, Any]]:
    if schema is None:
        return []
    if isinstance(schema, dict):
        return list(schema.items())
    if isinstance(schema, list | tuple):
        return [(s.name, s) for s in schema]
    return [(schema.name, schema)]


def _pick_sequence_input(inputs: list[tuple[str | None, Any]]) -> tuple[str | None, Any]:
    from kipoi.specs import ArraySpecialType

    if len(inputs) == 1:
        return inputs[0]
    for name, s in inputs:
        if s.special_type == ArraySpecialType.DNASeq:
            return name, s
    for name, s in inputs:
        if name == "seq":
            return name, s
    return inputs[0] if inputs else (None, None)


def derive_layout(
    shape: tuple, alphabet_axis: int | None = None, dummy_axis: int | None = None
) -> str | None:
    """Layout of a one-hot input from its shape (without batch axis) and the dataloader's axes.

    Parameters
    ----------
    shape : tuple
        Input shape as in the schema, e.g. ``(1000, 4)``, ``(4, 1, 1000)``, ``(4, 600, 1)``,
        ``(249, 4, 1)``.
    alphabet_axis, dummy_axis : int or None
        Default-dataloader arguments; they decide only where the shape alone is ambiguous (a length-4
        sequence, or an unknown length).

    Returns
    -------
    str or None
        ``"NLC"`` (L, 4), ``"NCL"`` (4, L), ``"NC1L"`` (4, 1, L), ``"NCL1"`` (4, L, 1), ``"NLC1"``
        (L, 4, 1, e.g. DeepSTARR's ``(249, 4, 1)``), or None when the shape is none of these.
    """
    shape = tuple(shape)
    if len(shape) == 2:
        first, last = shape
        if last == 4 and first != 4:
            return "NLC"
        if first == 4 and last != 4:
            return "NCL"
        if first == 4 and last == 4:
            return "NCL" if alphabet_axis == 0 else "NLC"
        return None
    if len(shape) == 3 and shape[0] == 4:
        if shape[1] == 1 and shape[2] != 1:
            return "NC1L"
        if shape[2] == 1 and shape[1] != 1:
            return "NCL1"
        if shape[1] == 1 and shape[2] == 1:
            return "NC1L" if dummy_axis == 1 else "NCL1"
        if shape[1] is None and shape[2] == 1:
            return "NCL1"
        if shape[1] == 1 and shape[2] is None:
            return "NC1L"
        if dummy_axis == 1:
            return "NC1L"
        if dummy_axis == 2:
            return "NCL1"
    if len(shape) == 3 and shape[0] != 4 and shape[1] == 4 and shape[2] == 1:
        return "NLC1"
    return None


def _length_from_shape(shape: tuple, layout: str | None) -> int | None:
    if layout is None:
        return None
    axis = {"NLC": 0, "NCL": 1, "NC1L": 2, "NCL1": 1, "NLC1": 0}[layout]
    return _as_int(shape[axis])


def _labels(schema, n: int | None, model_dir: str, target: str) -> list[str] | None:
    labels = list(schema.column_labels or [])
    if not labels:
        return None
    if len(labels) == 1 and (n is None or n > 1):
        # Kipoi reads a single-entry label list as a file path relative to the model directory
        path = os.path.normpath(os.path.join(model_dir, labels[0]))
        if not os.path.isfile(path):
            raise DeepMRInputError(
                f"label file {labels[0]!r} of output '{target}' not found at {path}; restore it in "
                "the model's source folder"
            )
        with open(path, encoding="utf-8") as handle:
            labels = [line.rstrip("\r\n") for line in handle if line.strip()]
    if n is not None and len(labels) != n:
        raise DeepMRInputError(
            f"output '{target}' has shape ({n},) but {len(labels)} column labels; fix column_labels "
            "in model.yaml"
        )
    return labels


def _unique_names(names: list[str]) -> tuple[str, ...]:
    counts: dict[str, int] = {}
    for name in names:
        counts[name] = counts.get(name, 0) + 1
    seen: dict[str, int] = {}
    out = []
    for name in names:
        if counts[name] > 1:
            seen[name] = seen.get(name, 0) + 1
            out.append(f"{name}#{seen[name]}")
        else:
            out.append(name)
    n_dup = sum(1 for c in counts.values() if c > 1)
    if n_dup:
        logger.info("%d output labels occur more than once; they are numbered '<label>#k'", n_dup)
    return tuple(out)


def _feature_names(targets: list[tuple[str | None, Any]], model_dir: str) -> tuple[str, ...]:
    names: list[str] = []
    several = len(targets) > 1
    for i, (tname, schema) in enumerate(targets):
        tname = tname or schema.name or f"output{i}"
        shape = tuple(schema.shape)
        if len(shape) != 1:
            continue
        n = _as_int(shape[0])
        labels = _labels(schema, n, model_dir, tname)
        if labels is None:
            if n is None:
                raise DeepMRInputError(
                    f"output '{tname}' has an unknown width and no column_labels; add column_labels"
                )
            labels = [str(j) for j in range(n)]
            names.extend(f"{tname}/{lab}" for lab in labels)
        else:
            names.extend(f"{tname}/{lab}" if several else lab for lab in labels)
    return _unique_names(names)


def _weight_files(md, model_name: str, source_obj, model_dir: str) -> tuple[WeightFile, ...]:
    from kipoi.specs import RemoteFile

    files = []
    download_dir = None
    for arg, value in md.args.items():
        if isinstance(value, RemoteFile):
            if download_dir is None:
                download_dir = source_obj.get_model_download_dir(model_name)
            path = os.path.join(download_dir, arg, value.md5 or "file")
            files.append(WeightFile(arg=arg, path=path, url=value.url, md5=value.md5 or ""))
        elif arg == "weights" and isinstance(value, str):
            files.append(WeightFile(arg=arg, path=os.path.normpath(os.path.join(model_dir, value))))
    return tuple(files)


def _yaml_files_kipoi_reads(name: str, source_obj, source_label: str) -> list[str]:
    """The YAML files Kipoi may read for model ``name``: those of its directory (model, dataloader)
    and, in a zoo-like source, the ``model-template`` files of the folders above it."""
    root = None if source_label == "dir" else getattr(source_obj, "local_path", None)
    model_dir = name if os.path.isabs(name) else os.path.join(root or "", name)
    model_dir = os.path.abspath(model_dir)
    found = []
    if os.path.isdir(model_dir):
        found += [
            os.path.join(model_dir, f)
            for f in sorted(os.listdir(model_dir))
            if f.endswith((".yaml", ".yml"))
        ]
    if root:
        root = os.path.abspath(root)
        folder = os.path.dirname(model_dir)
        while folder.startswith(root) and len(folder) >= len(root):
            found += [os.path.join(folder, f"model-template.{ext}") for ext in ("yaml", "yml")]
            if folder == root:
                break
            folder = os.path.dirname(folder)
    return [f for f in found if os.path.isfile(f)]


def describe_model(
    name_or_dir: str,
    source=None,
    *,
    download: bool = False,
    trust_model_code: bool = False,
    download_option: str | None = DOWNLOAD_OPTION,
) -> ModelDescription:
    """Read a Kipoi model's description without loading its weights.

    Parameters
    ----------
    name_or_dir : str
        Model name in the source (``"DeepSEA/predict"``) or a Kipoi model directory.
    source : str, kipoi Source or None
        ``None``: ``"dir"`` when ``name_or_dir`` is a model directory, else ``"kipoi"`` (the zoo).
        A configured Kipoi source name, ``"dir"``, or the path of a local copy of the zoo.
    download : bool
        Allow cloning/pulling a git source that has no local copy (default False: never touches the
        network).
    trust_model_code : bool
        Let Kipoi read YAML files with Python tags (``!!python/...``), which run code as they are
        read. Default False: such a file is refused before Kipoi opens it.
    download_option : str or None
        How the caller turns downloads on, named in messages (None: not mentioned).

    Returns
    -------
    ModelDescription

    Raises
    ------
    DeepMRInputError
        Unknown model or source, a model YAML with Python tags (unless trusted), or a description
        that contradicts itself (label count vs shape).
    """
    import_kipoi()
    name, source_label, source_obj = _resolve(name_or_dir, source)
    prepare_source(source_label, source_obj, download, download_option)
    if not trust_model_code:
        for path in _yaml_files_kipoi_reads(name, source_obj, source_label):
            check_safe_yaml(path)
    with kipoi_output_to_log():
        if not source_obj._is_component(name, "model"):
            raise DeepMRInputError(f"Kipoi model {name!r} not found in source {source_label!r}")
        md = source_obj.get_model_descr(name)
        model_dir = source_obj.get_model_dir(name)
    model_type, defined_as = _model_type(md)
    dl_args, dataloader = _dataloader_defaults(md, name, source_obj, model_dir)

    alphabet = dl_args.get("alphabet") or "ACGT"
    if not isinstance(alphabet, str):
        alphabet = "".join(alphabet)
    alphabet = alphabet.upper()
    alphabet_axis = _as_int(dl_args.get("alphabet_axis"))
    dummy_axis = _as_int(dl_args.get("dummy_axis"))
    auto_resize_len = _as_int(dl_args.get("auto_resize_len"))

    input_name, input_schema = _pick_sequence_input(_named_schemas(md.schema.inputs))
    input_shape = tuple(input_schema.shape) if input_schema is not None else ()
    layout = derive_layout(input_shape, alphabet_axis, dummy_axis)
    sequence_length = _length_from_shape(input_shape, layout) or auto_resize_len

    targets = _named_schemas(md.schema.targets)
    return ModelDescription(
        name=name,
        source=source_label,
        model_dir=model_dir,
        model_type=model_type,
        defined_as=defined_as,
        doc=(md.info.doc or "").strip(),
        input_name=input_name,
        input_shape=input_shape,
        layout=layout,
        alphabet=alphabet,
        alphabet_axis=alphabet_axis,
        dummy_axis=dummy_axis,
        auto_resize_len=auto_resize_len,
        sequence_length=sequence_length,
        output_names=tuple((n or s.name or f"output{i}") for i, (n, s) in enumerate(targets)),
        output_shapes=tuple(tuple(s.shape) for _, s in targets),
        feature_names=_feature_names(targets, model_dir),
        weight_files=_weight_files(md, name, source_obj, model_dir),
        dataloader=dataloader,
    )


# ---------------------------------------------------------------------------------------------
# loading


def _replaced_arg(desc: ModelDescription) -> str | None:
    """The ``model.yaml`` argument that user weight files replace: ``weights`` when the model has
    it, else its only model file; None when it names no model file."""
    args = [w.arg for w in desc.weight_files]
    if "weights" in args:
        return "weights"
    if len(args) == 1:
        return args[0]
    if not args:
        return None
    raise DeepMRInputError(
        f"model {desc.name} has several model files ({', '.join(args)}) and none is called 'weights'; "
        "register an adapter that says which one the given weight files replace"
    )


class _ReplacedArgsSource:
    """A Kipoi source that hands out the model description with some arguments replaced (user weight
    files instead of the model's own), so Kipoi neither downloads nor checks the replaced files."""

    def __init__(self, source, replacements: Mapping[str, str]):
        self._source = source
        self._replacements = dict(replacements)

    def get_model_descr(self, model):
        md = copy.copy(self._source.get_model_descr(model))
        md.args = {**dict(md.args), **self._replacements}
        return md

    def __getattr__(self, name):
        return getattr(self._source, name)


@dataclass(frozen=True)
class KipoiBackend:
    """The Kipoi side of a :class:`~deepmr_kipoi.adapters.LoadRequest`: description, model files and
    Kipoi's model object.

    Attributes
    ----------
    download_option : str or None
        How the caller turns downloads on (``"download=True"`` in Python, ``"--download"`` on the
        command line); named in missing-file messages, None where there is no such option.
    """

    download_option: str | None = DOWNLOAD_OPTION

    def describe(self, request: LoadRequest) -> ModelDescription:
        """The model's description (see :func:`describe_model`)."""
        return describe_model(
            request.name,
            request.source,
            download=request.download,
            trust_model_code=request.trust_model_code,
            download_option=self.download_option,
        )

    def model_files(self, request: LoadRequest, arg: str | None = None) -> tuple[str, ...]:
        """The model's own file(s), verified (present, right md5).

        Raises
        ------
        WeightsNotFoundError
            When a file is not there (or has the wrong md5) and downloads are off.
        """
        desc = request.description
        files = [w for w in desc.weight_files if arg is None or w.arg == arg]
        if not files:
            raise DeepMRInputError(f"model {desc.name!r} names no model file argument {arg!r}")
        return tuple(w.verify(desc.name, self.download_option) for w in files)

    def kipoi_model(self, request: LoadRequest):
        """Load the model through ``kipoi.get_model`` (compatibility steps applied, no downloads
        unless ``request.download``). With ``request.weight_files`` the first file stands in for the
        model's own weight file (see :func:`_replaced_arg`), which then need not exist.

        Returns
        -------
        kipoi.model.BaseModel
            Kipoi's model object; ``.model`` is the framework model.
        """
        kipoi = import_kipoi()
        desc = request.description
        replaced = _replaced_arg(desc) if request.weight_files else None
        if not request.download:
            for wf in desc.weight_files:
                if wf.url and wf.arg != replaced:
                    wf.verify(desc.name, self.download_option)
        _, source_label, source_obj = _resolve(request.name, request.source)
        if replaced is not None:
            source_obj = _ReplacedArgsSource(source_obj, {replaced: request.weight_files[0]})
        with contextlib.ExitStack() as stack:
            stack.enter_context(network_guard(desc.name, request.download, self.download_option))
            stack.enter_context(kipoi_output_to_log())
            if desc.model_type == "KerasModel":
                stack.enter_context(legacy_keras())
            try:
                model = kipoi.get_model(desc.name, source=source_obj, with_dataloader=False)
            except Exception as err:
                if replaced is None:
                    raise
                first = " ".join(str(err).split())[:300]
                raise DeepMRInputError(
                    f"weight file {request.weight_files[0]} does not fit {desc.name} "
                    f"({type(err).__name__}: {first}); give weights of this model's architecture"
                ) from err
        model.source_name = source_label
        return model


def kipoi_request(
    name_or_dir: str,
    source=None,
    *,
    download_option: str | None = DOWNLOAD_OPTION,
    **fields,
) -> LoadRequest:
    """A :class:`~deepmr_kipoi.adapters.LoadRequest` served by Kipoi (what :func:`load_model` builds).

    Parameters
    ----------
    name_or_dir : str
        Kipoi model name or model directory.
    source : str, kipoi Source or None
        As in :func:`describe_model`.
    download_option : str or None
        How the caller turns downloads on (see :class:`KipoiBackend`).
    **fields
        Other ``LoadRequest`` fields (``weight_files``, ``download``, ``trust_model_code``, ...).

    Returns
    -------
    LoadRequest
    """
    return LoadRequest(
        name=os.fspath(name_or_dir), source=source, backend=KipoiBackend(download_option), **fields
    )


def _validate_alphabet(alphabet: str | None) -> str | None:
    if alphabet is None:
        return None
    if not isinstance(alphabet, str) or len(alphabet) != 4 or set(alphabet.upper()) != _DNA:
        raise DeepMRInputError(
            f"alphabet must be an order of the letters ACGT such as 'AGCT', got {alphabet!r}"
        )
    return alphabet.upper()


def _validate_weight_files(weight_files) -> tuple[str, ...] | None:
    if weight_files is None:
        return None
    if isinstance(weight_files, str | os.PathLike):
        weight_files = [weight_files]
    paths = tuple(os.path.abspath(os.fspath(w)) for w in weight_files)
    if not paths:
        raise DeepMRInputError("weight_files is empty; pass at least one file or None")
    for path in paths:
        if not os.path.isfile(path):
            raise DeepMRInputError(f"weight file {path} does not exist; give the path of a weight file")
    return paths


def _lookup_names(name: str) -> list[str]:
    """The requested name, and for a model directory its trailing path components (most specific
    first), so that a directory ``.../DeepSEA/predict`` finds the ``DeepSEA/predict`` adapter."""
    names = [name]
    if os.path.isdir(name):
        parts = os.path.abspath(name).strip(os.sep).split(os.sep)
        names += ["/".join(parts[-k:]) for k in range(min(3, len(parts)), 0, -1)]
    return names


def load_model(
    name_or_dir: str,
    source=None,
    alphabet: str | None = None,
    uncertainty: str | None = None,
    n_samples: int | None = None,
    seed: int = 0,
    *,
    weight_files: Sequence[str] | None = None,
    adapter: str | None = None,
    download: bool = False,
    trust_model_code: bool = False,
    download_option: str | None = DOWNLOAD_OPTION,
):
    """Load a Kipoi model (or a registered custom model) as a predictive model with uncertainty.

    The adapter is the one :func:`deepmr_kipoi.registry.find_adapter` finds for the model's name
    (the generic Kipoi adapter for models no other adapter serves).

    Parameters
    ----------
    name_or_dir : str
        Kipoi model name (``"DeepSEA/predict"``), a Kipoi model directory, or a registered adapter
        name.
    source : str, kipoi Source or None
        Kipoi source: a configured name (``"kipoi"``, ``"dir"``, one added with
        :func:`add_local_source`) or the path of a local copy of the zoo. None: ``"dir"`` for
        directories, ``"kipoi"`` otherwise.
    alphabet : str or None
        The model's one-hot channel order, e.g. ``"AGCT"``; None reads it from the model's default
        dataloader. Callers always pass ACGT one-hot ``(N, L, 4)``; conversion is the model's.
    uncertainty : {"mc_dropout", "ensemble", "none"} or None
        None picks the adapter's default (MC dropout for models with dropout, an ensemble when
        several ``weight_files`` are given).
    n_samples : int or None
        Number of MC-dropout samples (default :data:`DEFAULT_MC_SAMPLES`).
    seed : int
        Seed of the MC-dropout masks.
    weight_files : sequence of str, optional
        Weight files that replace the model's own, one ensemble member per file (same
        architecture, e.g. models trained on different folds). The model's own file need not be
        present and its md5 is not checked; the given files' md5s are in the returned model's
        ``identity["weights"]``.
    adapter : str, optional
        Use this registered adapter (``"kipoi-generic"`` for the generic one) instead of the one
        found by name.
    download : bool
        Let Kipoi download missing model files and clone/pull git sources (with timeouts). Default
        False: a missing file raises :class:`WeightsNotFoundError` naming the path to place it at.
    trust_model_code : bool
        Let Kipoi read a ``model.yaml`` with Python tags (they run code as the file is read).
        Default False: such a file is refused with one line before Kipoi opens it.
    download_option : str or None
        How the caller turns downloads on, named in missing-file messages (``"--download"`` on the
        command line; None where the caller offers no way).

    Returns
    -------
    PredictiveModel
        ``predict_samples(onehot (N, L, 4) ACGT) -> (S, N, F)``, with ``feature_names``; with
        ``weight_files``, ``identity = {"weights": [{"path", "md5", "replaces"}, ...]}``.

    Raises
    ------
    DeepMRInputError
        Bad arguments, unknown model/source, a model YAML with Python tags, outputs that are not
        scalar features.
    WeightsNotFoundError
        Model files missing and downloads off (a ``ValueError`` too).
    """
    from deepmr_kipoi import validation

    if uncertainty is not None:
        uncertainty = validation.choice(uncertainty, UNCERTAINTY_METHODS, "uncertainty")
    if n_samples is not None:
        n_samples = validation.positive_int(n_samples, "n_samples", minimum=2)
    request = kipoi_request(
        name_or_dir,
        source,
        download_option=download_option,
        alphabet=_validate_alphabet(alphabet),
        uncertainty=uncertainty,
        n_samples=n_samples,
        seed=int(seed),
        weight_files=_validate_weight_files(weight_files),
        download=bool(download),
        trust_model_code=bool(trust_model_code),
    )
    info = registry.find_adapter(_lookup_names(request.name), adapter)
    logger.info("loading %s with adapter '%s'", request.name, info.name)
    model = info.load(request)
    if request.weight_files is not None:
        _record_weight_files(model, request)
    return model


def _record_weight_files(model, request: LoadRequest) -> None:
    """Put the user's weight files (path, md5, the model argument they replace) into the model's
    ``identity``, which a run writes to ``run.json``."""
    try:
        replaced = _replaced_arg(request.description)
    except Exception as err:  # noqa: BLE001 - a custom adapter's model may have no Kipoi description
        logger.debug("no Kipoi description for %s: %s", request.name, err)
        replaced = None
    weights = [{"path": p, "md5": file_md5(p), "replaces": replaced} for p in request.weight_files]
    identity = getattr(model, "identity", None)
    identity = dict(identity) if isinstance(identity, dict) else {}
    identity["weights"] = weights
    try:
        model.identity = identity
    except AttributeError:
        logger.warning("model %s cannot record its weight files (read-only attributes)", request.name)


# ---------------------------------------------------------------------------------------------
# sequences from the model's own dataloader


def dataloader_sequences(
    name_or_dir: str,
    source=None,
    dataloader_args: Mapping[str, Any] | None = None,
    n: int | None = None,
    *,
    trust_model_code: bool = False,
) -> tuple[list[str], np.ndarray]:
    """Reference sequences from the model's default Kipoi dataloader, as ACGT one-hot ``(N, L, 4)``.

    The dataloader gets ``dataloader_args`` on top of its ``model.yaml`` defaults (e.g.
    ``intervals_file`` and ``fasta_file`` for kipoiseq's interval dataloaders). Deep MR never uses
    targets, so a dataloader with an ``ignore_targets`` argument gets ``ignore_targets=True`` (and
    ``label_dtype=str``) unless the caller sets it: a BED file with extra columns (a name column) is
    read as intervals only.

    Parameters
    ----------
    name_or_dir : str
        Kipoi model name or model directory.
    source : str, kipoi Source or None
        As in :func:`describe_model`.
    dataloader_args : mapping, optional
        Arguments of the dataloader.
    n : int or None
        Use only the first ``n`` sequences.
    trust_model_code : bool
        As in :func:`describe_model`.

    Returns
    -------
    ids : list of str
        ``chrom:start-end`` where the dataloader reports ranges, else ``dataloader_<i>``.
    onehot : numpy.ndarray, shape (N, L, 4)
        ACGT one-hot.

    Raises
    ------
    DeepMRInputError
        No one-hot dataloader, arguments it rejects, or no sequences.
    """
    from deepmr_kipoi import sequences as seqmod

    desc = describe_model(name_or_dir, source=source, trust_model_code=trust_model_code)
    if desc.dataloader is None or desc.layout is None:
        raise DeepMRInputError(
            f"{name_or_dir} has no default dataloader of one-hot sequences; pass --fasta (with --bed)"
        )
    kipoi = import_kipoi()
    with kipoi_output_to_log():
        dl = kipoi.get_model_descr(desc.model_dir, source="dir").default_dataloader
        if hasattr(dl, "get"):
            factory = dl.get()
        else:
            factory = kipoi.get_dataloader_factory(os.path.normpath(os.path.join(desc.model_dir, dl)), source="dir")
    args = dict(dataloader_args or {})
    target = getattr(factory, "__init__", factory)
    try:
        accepts = set(inspect.signature(target).parameters)
    except (TypeError, ValueError):
        accepts = set()
    if "ignore_targets" in accepts and "ignore_targets" not in args:
        args["ignore_targets"] = True
        if "label_dtype" in accepts:
            # kipoiseq parses every column after the third with label_dtype (float) even when
            # targets are ignored; as text, a name column reads too
            args.setdefault("label_dtype", str)
    try:
        loader = factory(**args)
    except TypeError as err:
        raise DeepMRInputError(
            f"the dataloader of {name_or_dir} rejected its arguments ({err}); give them as "
            "--dataloader-args KEY=VALUE (e.g. intervals_file=peaks.bed fasta_file=genome.fa)"
        ) from None
    ids: list[str] = []
    parts: list[np.ndarray] = []
    total = 0
    for batch in loader.batch_iter(batch_size=64):
        x = batch["inputs"]
        if isinstance(x, dict):
            x = x[desc.input_name]
        x = np.asarray(x)
        meta = batch.get("metadata") or {}
        ranges = meta.get("ranges", meta) if isinstance(meta, dict) else {}
        if all(k in ranges for k in ("chr", "start", "end")):
            ids += [f"{c}:{s}-{e}" for c, s, e in zip(ranges["chr"], ranges["start"], ranges["end"])]
        else:
            ids += [f"dataloader_{total + i}" for i in range(len(x))]
        parts.append(x)
        total += len(x)
        if n is not None and total >= n:
            break
    if not parts:
        raise DeepMRInputError(f"the dataloader of {name_or_dir} yielded no sequences; check its intervals file")
    x = np.concatenate(parts)[: n if n is not None else None]
    onehot = seqmod.reorder_alphabet(seqmod.from_layout(x, desc.layout), desc.alphabet, "ACGT")
    return ids[: len(onehot)], onehot
