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
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from deepmr_kipoi._kipoi_compat import (
    WeightsNotFoundError,
    file_md5,
    import_kipoi,
    kipoi_output_to_log,
    legacy_keras,
    missing_file_message,
    network_guard,
    prepare_source,
)

logger = logging.getLogger(__name__)

__all__ = [
    "LAYOUTS",
    "UNCERTAINTY_METHODS",
    "DEFAULT_MC_SAMPLES",
    "LoadRequest",
    "ModelDescription",
    "WeightFile",
    "WeightsNotFoundError",
    "add_local_source",
    "describe_model",
    "load_model",
    "with_uncertainty",
]

#: input layouts ``from_torch``/``from_keras`` understand, by the model's input shape (batch axis first)
LAYOUTS = ("NLC", "NCL", "NC1L", "NCL1")
#: accepted values of ``uncertainty`` (None: the adapter's default)
UNCERTAINTY_METHODS = ("mc_dropout", "ensemble", "none")
#: MC-dropout samples when ``n_samples`` is not given
DEFAULT_MC_SAMPLES = 30

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

    def verify(self, model: str) -> str:
        """Return the path after checking that the file is there with the expected md5.

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
                missing_file_message(model, self.arg, self.url, self.md5, self.path)
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
        for ``(4, L, 1)``; None when the input is not a one-hot sequence in one of these layouts.
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
        raise ValueError(f"model must be a Kipoi model name or directory, got {name_or_dir!r}")
    name = os.fspath(name_or_dir)
    if isinstance(source, Source):
        return name, getattr(source, "name", None) or type(source).__name__, source
    if source is None:
        if _is_model_dir(name):
            return os.path.abspath(name), "dir", kipoi.config.get_source("dir")
        if os.path.isdir(name):
            raise ValueError(f"{name} is a directory without model.yaml; point at a Kipoi model directory")
        source = "kipoi"
    if source == "dir":
        path = os.path.abspath(name)
        if not _is_model_dir(path):
            raise ValueError(f"{path} is not a Kipoi model directory (no model.yaml)")
        return path, "dir", kipoi.config.get_source("dir")
    sources = kipoi.config.model_sources()
    if source in sources:
        return name, source, sources[source]
    if os.path.isdir(os.fspath(source)):
        path = os.path.abspath(os.fspath(source))
        return name, path, LocalSource(path, name=path)
    raise ValueError(
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
        raise ValueError("'dir' is reserved by Kipoi for model directories; choose another name")
    if not os.path.isdir(path):
        raise ValueError(f"local model source {path} is not a directory")
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
        Input shape as in the schema, e.g. ``(1000, 4)``, ``(4, 1, 1000)``, ``(4, 600, 1)``.
    alphabet_axis, dummy_axis : int or None
        Default-dataloader arguments; they decide only where the shape alone is ambiguous (a length-4
        sequence, or an unknown length).

    Returns
    -------
    str or None
        ``"NLC"`` (L, 4), ``"NCL"`` (4, L), ``"NC1L"`` (4, 1, L), ``"NCL1"`` (4, L, 1), or None when
        the shape is none of these.
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
    return None


def _length_from_shape(shape: tuple, layout: str | None) -> int | None:
    if layout is None:
        return None
    axis = {"NLC": 0, "NCL": 1, "NC1L": 2, "NCL1": 1}[layout]
    return _as_int(shape[axis])


def _labels(schema, n: int | None, model_dir: str, target: str) -> list[str] | None:
    labels = list(schema.column_labels or [])
    if not labels:
        return None
    if len(labels) == 1 and (n is None or n > 1):
        # Kipoi reads a single-entry label list as a file path relative to the model directory
        path = os.path.normpath(os.path.join(model_dir, labels[0]))
        if not os.path.isfile(path):
            raise ValueError(
                f"label file {labels[0]!r} of output '{target}' not found at {path}; restore it in "
                "the model's source folder"
            )
        with open(path, encoding="utf-8") as handle:
            labels = [line.rstrip("\r\n") for line in handle if line.strip()]
    if n is not None and len(labels) != n:
        raise ValueError(
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
                raise ValueError(
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


def describe_model(name_or_dir: str, source=None, *, download: bool = False) -> ModelDescription:
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

    Returns
    -------
    ModelDescription

    Raises
    ------
    ValueError
        Unknown model or source, or a description that contradicts itself (label count vs shape).
    """
    import_kipoi()
    name, source_label, source_obj = _resolve(name_or_dir, source)
    prepare_source(source_label, source_obj, download)
    with kipoi_output_to_log():
        if not source_obj._is_component(name, "model"):
            raise ValueError(f"Kipoi model {name!r} not found in source {source_label!r}")
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


@dataclass(frozen=True)
class LoadRequest:
    """Everything an adapter receives from :func:`load_model`.

    Attributes
    ----------
    name : str
        What the user asked for (model name, directory or adapter name).
    source : str, kipoi Source or None
        As passed to :func:`load_model`.
    alphabet : str or None
        Override of the model's one-hot channel order (None: the model's own).
    uncertainty : {"mc_dropout", "ensemble", "none"} or None
        None: the adapter's default.
    n_samples : int or None
        MC-dropout samples (None: :data:`DEFAULT_MC_SAMPLES`).
    seed : int
        Seed of the MC-dropout masks.
    weight_files : tuple of str or None
        Weight files to use instead of the model's own: one ensemble member per file.
    download : bool
        Whether Kipoi may download missing model files / clone its source.
    """

    name: str
    source: Any = None
    alphabet: str | None = None
    uncertainty: str | None = None
    n_samples: int | None = None
    seed: int = 0
    weight_files: tuple[str, ...] | None = None
    download: bool = False

    @cached_property
    def description(self) -> ModelDescription:
        """The Kipoi description of the requested model (read once)."""
        return describe_model(self.name, self.source, download=self.download)

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

        Raises
        ------
        WeightsNotFoundError
            When a file is not there (or has the wrong md5) and downloads are off.
        """
        if self.weight_files is not None:
            return self.weight_files
        files = [w for w in self.description.weight_files if arg is None or w.arg == arg]
        if not files:
            raise ValueError(f"model {self.description.name!r} names no model file argument {arg!r}")
        return tuple(w.verify(self.description.name) for w in files)

    def kipoi_model(self):
        """Load the model through ``kipoi.get_model`` (compatibility steps applied, no downloads
        unless ``download=True``); returns Kipoi's model object (``.model`` is the framework model).
        """
        kipoi = import_kipoi()
        desc = self.description
        if not self.download:
            for wf in desc.weight_files:
                if wf.url:
                    wf.verify(desc.name)
        _, source_label, source_obj = _resolve(self.name, self.source)
        keras = desc.model_type == "KerasModel"
        with contextlib.ExitStack() as stack:
            stack.enter_context(network_guard(desc.name, self.download))
            stack.enter_context(kipoi_output_to_log())
            if keras:
                stack.enter_context(legacy_keras())
            model = kipoi.get_model(desc.name, source=source_obj, with_dataloader=False)
        model.source_name = source_label
        return model


def _validate_alphabet(alphabet: str | None) -> str | None:
    if alphabet is None:
        return None
    if not isinstance(alphabet, str) or len(alphabet) != 4 or set(alphabet.upper()) != _DNA:
        raise ValueError(f"alphabet must be an order of the letters ACGT such as 'AGCT', got {alphabet!r}")
    return alphabet.upper()


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
):
    """Load a Kipoi model (or a registered custom model) as a predictive model with uncertainty.

    The adapter is the one registered for the model's name (see :mod:`deepmr_kipoi.registry`);
    models without one go through the generic adapter for Kipoi ``PyTorchModel`` / ``KerasModel``
    models with vector outputs.

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
        Weight files to load instead of the model's own, one ensemble member per file (same
        architecture, e.g. models trained on different folds).
    adapter : str, optional
        Use this registered adapter (``"kipoi-generic"`` for the generic one) instead of the one
        found by name.
    download : bool
        Let Kipoi download missing model files and clone/pull git sources (with timeouts). Default
        False: a missing file raises :class:`WeightsNotFoundError` naming the path to place it at.

    Returns
    -------
    PredictiveModel
        ``predict_samples(onehot (N, L, 4) ACGT) -> (S, N, F)``, with ``feature_names``.

    Raises
    ------
    ValueError
        Bad arguments, unknown model/source, outputs that are not scalar features.
    WeightsNotFoundError
        Model files missing and downloads off (a ``ValueError`` too).
    """
    from deepmr_kipoi import registry

    if uncertainty is not None and uncertainty not in UNCERTAINTY_METHODS:
        raise ValueError(f"uncertainty must be one of {UNCERTAINTY_METHODS} or None, got {uncertainty!r}")
    if n_samples is not None and (isinstance(n_samples, bool) or int(n_samples) != n_samples or n_samples < 2):
        raise ValueError(f"n_samples must be an integer >= 2, got {n_samples!r}")
    if weight_files is not None:
        if isinstance(weight_files, str | os.PathLike):
            weight_files = [weight_files]
        weight_files = tuple(os.path.abspath(os.fspath(w)) for w in weight_files)
        for path in weight_files:
            if not os.path.isfile(path):
                raise ValueError(f"weight file {path} does not exist")
        if not weight_files:
            raise ValueError("weight_files is empty; pass at least one file or None")
    request = LoadRequest(
        name=os.fspath(name_or_dir),
        source=source,
        alphabet=_validate_alphabet(alphabet),
        uncertainty=uncertainty,
        n_samples=None if n_samples is None else int(n_samples),
        seed=int(seed),
        weight_files=weight_files,
        download=bool(download),
    )
    if adapter is not None:
        info = registry.get_adapter_by_name(adapter)
    else:
        info = None
        for candidate in _lookup_names(request.name):
            info = registry.get_adapter(candidate)
            if info is not None:
                break
    if info is None:
        # imported here too so the fallback exists even where the entry points are not installed
        import model_adapters.generic  # noqa: F401

        info = registry.get_adapter_by_name("kipoi-generic")
    logger.info("loading %s with adapter '%s'", request.name, info.name)
    return info.load(request)


# ---------------------------------------------------------------------------------------------
# helpers for adapters


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
            raise ValueError(
                "uncertainty='ensemble' needs at least two members: pass weight_files=[...] with one "
                "file per ensemble member"
            )
        return DeepEnsemble(list(members))
    if len(members) > 1:
        raise ValueError(
            f"uncertainty={method!r} takes one model but {len(members)} weight files were given; use "
            "uncertainty='ensemble'"
        )
    if method == "mc_dropout":
        if not has_dropout:
            raise ValueError(
                f"model {request.name!r} has no dropout layers, so MC dropout cannot give uncertainty; "
                "pass several weight_files with uncertainty='ensemble'"
            )
        return MCDropout(members[0], n_samples=request.n_samples or DEFAULT_MC_SAMPLES, seed=request.seed)
    logger.warning(
        "model %r runs without uncertainty (one deterministic sample): effect standard errors are "
        "undefined; give several weight_files for an ensemble",
        request.name,
    )
    return Deterministic(members[0])
