"""Reading a Kipoi model's description (``model.yaml``) without loading its weights.

:func:`describe_model` returns a :class:`ModelDescription`: the input shape and layout, the alphabet
order and axes from the default dataloader's arguments (including the defaults of kipoiseq
dataloaders), the sequence length, the output names (schema targets and their ``column_labels``,
label files included) and the model files Kipoi downloads (:class:`WeightFile`).

Every YAML text Kipoi would read for a model (its own, its dataloader's, a group's rendered template)
is first scanned (:func:`deepmr_kipoi.kipoi_models.files.check_model_yaml`); one with Python tags is
refused unless ``trust_model_code=True`` (Kipoi's own reader would run them). A member of a
templated group (``model-template.yaml`` + ``models.tsv``, :mod:`deepmr_kipoi.kipoi_models.groups`) is
described from its rendered template, checked the same way. Nothing is downloaded unless
``download=True``.
"""

from __future__ import annotations

import inspect
import logging
import os
from dataclasses import dataclass, field
from typing import Any

from deepmr_kipoi.errors import DeepMRInputError
from deepmr_kipoi.kipoi_models._compat import (
    WeightsNotFoundError,
    file_md5,
    import_kipoi,
    kipoi_output_to_log,
    missing_file_message,
    prepare_source,
)
from deepmr_kipoi.kipoi_models.files import check_model_yaml
from deepmr_kipoi.kipoi_models.groups import checked_description
from deepmr_kipoi.kipoi_models.sources import resolve

logger = logging.getLogger(__name__)

__all__ = [
    "DOWNLOAD_OPTION",
    "LAYOUTS",
    "ModelDescription",
    "WeightFile",
    "derive_layout",
    "describe_model",
]

#: input layouts read from a model's input shape (batch axis first)
LAYOUTS = ("NLC", "NCL", "NC1L", "NCL1", "NLC1")
#: how the Python API turns downloads on; the command line passes its own spelling (``--download``)
#: or None where it offers none, so that messages suggest only what the user can do
DOWNLOAD_OPTION = "download=True"


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
                missing_file_message(
                    model, self.arg, self.url, self.md5, self.path, download_option
                )
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
    extra_inputs : tuple of str
        Names of the model's inputs other than the DNA sequence (e.g. rbp_eclip's distances to
        genomic landmarks), in schema order.
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
    extra_inputs: tuple[str, ...] = ()

    @property
    def vector_outputs(self) -> bool:
        """True when every target is a vector (shape ``(F,)``), i.e. outputs are scalar features."""
        return all(len(shape) == 1 for shape in self.output_shapes)


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


def _dataloader_defaults(
    md, model_name: str, source_obj, model_dir: str
) -> tuple[dict, str | None]:
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
        if not any(
            os.path.isfile(os.path.join(path, f"dataloader.{ext}")) for ext in ("yaml", "yml")
        ):
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
    """(name, array schema) of every input or target; nested groups of inputs (MMSplice's
    ``seq: {acceptor: ..., donor: ...}``) as ``group/name``."""
    if schema is None:
        return []
    if isinstance(schema, dict):
        out = []
        for name, value in schema.items():
            if isinstance(value, dict):
                out += [(f"{name}/{n}" if n else name, s) for n, s in _named_schemas(value)]
            else:
                out.append((name, value))
        return out
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
    name, source_label, source_obj = _open_model(
        name_or_dir, source, download, trust_model_code, download_option
    )
    md = checked_description(source_obj, name, trust_model_code)
    with kipoi_output_to_log():
        model_dir = source_obj.get_model_dir(name)
    model_type, defined_as = _model_type(md)
    dl_args, dataloader = _dataloader_defaults(md, name, source_obj, model_dir)
    inputs = _named_schemas(md.schema.inputs)
    sequence_input = _sequence_input(inputs, dl_args)
    targets = _named_schemas(md.schema.targets)
    return ModelDescription(
        name=name,
        source=source_label,
        model_dir=model_dir,
        model_type=model_type,
        defined_as=defined_as,
        doc=(md.info.doc or "").strip(),
        **sequence_input,
        output_names=tuple((n or s.name or f"output{i}") for i, (n, s) in enumerate(targets)),
        output_shapes=tuple(tuple(s.shape) for _, s in targets),
        feature_names=_feature_names(targets, model_dir),
        weight_files=_weight_files(md, name, source_obj, model_dir),
        dataloader=dataloader,
    )


def _open_model(name_or_dir, source, download: bool, trust_model_code: bool, download_option):
    """``(name, source label, Kipoi source)`` of a model that exists, its YAML checked for Python
    tags unless trusted."""
    import_kipoi(trust_model_code)
    name, source_label, source_obj = resolve(name_or_dir, source, trust_model_code)
    prepare_source(source_label, source_obj, download, download_option)
    if not trust_model_code:
        check_model_yaml(name, source_obj, source_label)
    with kipoi_output_to_log():
        try:
            found = source_obj._is_component(name, "model")
        except ValueError as err:  # e.g. a group whose models.tsv has no 'model' column
            problem = " ".join(str(err).split())
            raise DeepMRInputError(
                f"Kipoi cannot read the model group of {name!r} in source {source_label!r} "
                f"({problem}); the definition is incomplete, so the model cannot be described"
            ) from None
        if not found:
            raise DeepMRInputError(f"Kipoi model {name!r} not found in source {source_label!r}")
    return name, source_label, source_obj


def _sequence_input(inputs: list, dl_args: dict) -> dict:
    """The fields of :class:`ModelDescription` about the sequence input: its name and shape, the
    alphabet and its axes (from the default dataloader's arguments), layout, length and the other
    inputs."""
    alphabet = dl_args.get("alphabet") or "ACGT"
    if not isinstance(alphabet, str):
        alphabet = "".join(alphabet)
    alphabet_axis = _as_int(dl_args.get("alphabet_axis"))
    dummy_axis = _as_int(dl_args.get("dummy_axis"))
    auto_resize_len = _as_int(dl_args.get("auto_resize_len"))
    input_name, input_schema = _pick_sequence_input(inputs)
    input_shape = tuple(input_schema.shape) if input_schema is not None else ()
    layout = derive_layout(input_shape, alphabet_axis, dummy_axis)
    return dict(
        input_name=input_name,
        input_shape=input_shape,
        layout=layout,
        alphabet=alphabet.upper(),
        alphabet_axis=alphabet_axis,
        dummy_axis=dummy_axis,
        auto_resize_len=auto_resize_len,
        sequence_length=_length_from_shape(input_shape, layout) or auto_resize_len,
        extra_inputs=tuple(
            str(n or s.name or f"input{i}")
            for i, (n, s) in enumerate(inputs)
            if s is not input_schema
        ),
    )
