"""Loading Kipoi models as :class:`~deepmr_kipoi.predictive.PredictiveModel` s.

``load_model`` accepts a model-zoo name (``"DeepSEA/predict"``), a local Kipoi model directory, or the
name of a registered adapter, and returns a predictive model that takes ACGT one-hot input of shape
``(N, L, 4)``. Everything model-specific is read from the model's Kipoi description (``model.yaml``,
see :mod:`deepmr_kipoi.kipoi_models.describe`) rather than guessed.

Kipoi is imported lazily, after the compatibility steps of :mod:`deepmr_kipoi.kipoi_models._compat`; no model
file is ever downloaded unless ``download=True`` is passed, so a run never hangs on the network.

The adapter API (:class:`~deepmr_kipoi.adapters.LoadRequest`, :func:`~deepmr_kipoi.adapters.with_uncertainty`)
lives in :mod:`deepmr_kipoi.adapters`; this module supplies the Kipoi side of a request
(:class:`KipoiBackend`) and asks :mod:`deepmr_kipoi.registry` which adapter loads a model.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from deepmr_kipoi import registry
from deepmr_kipoi.adapters import (
    UNCERTAINTY_METHODS,
    LoadRequest,
)
from deepmr_kipoi.errors import DeepMRInputError
from deepmr_kipoi.kipoi_models._compat import (
    file_md5,
    import_kipoi,
    kipoi_output_to_log,
    legacy_keras,
    network_guard,
)
from deepmr_kipoi.kipoi_models.describe import (
    DOWNLOAD_OPTION,
    ModelDescription,
    describe_model,
)
from deepmr_kipoi.kipoi_models.groups import CheckedGroupSource
from deepmr_kipoi.kipoi_models.sources import resolve

logger = logging.getLogger(__name__)

_DNA = frozenset("ACGT")


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

    def kipoi_model(self, request: LoadRequest, replacements: Mapping | None = None):
        """Load the model through ``kipoi.get_model`` (compatibility steps applied, no downloads
        unless ``request.download``).

        Parameters
        ----------
        request : LoadRequest
        replacements : mapping of str to str or None, optional
            Model arguments and the files that replace the model's own (None: left out). Default:
            with ``request.weight_files`` the first file stands in for the model's own weight file
            (see :func:`_replaced_arg`). Replaced files need not exist.

        Returns
        -------
        kipoi.model.BaseModel
            Kipoi's model object; ``.model`` is the framework model.
        """
        kipoi = import_kipoi()
        desc = request.description
        if replacements is None:
            replaced = _replaced_arg(desc) if request.weight_files else None
            replacements = {} if replaced is None else {replaced: request.weight_files[0]}
        if not request.download:
            for wf in desc.weight_files:
                if wf.url and wf.arg not in replacements:
                    wf.verify(desc.name, self.download_option)
        _, source_label, source_obj = resolve(
            request.name, request.source, request.trust_model_code
        )
        source_obj = CheckedGroupSource(source_obj, request.trust_model_code)
        if replacements:
            source_obj = _ReplacedArgsSource(source_obj, replacements)
        with contextlib.ExitStack() as stack:
            stack.enter_context(network_guard(desc.name, request.download, self.download_option))
            stack.enter_context(kipoi_output_to_log())
            if desc.model_type == "KerasModel":
                stack.enter_context(legacy_keras())
            try:
                model = kipoi.get_model(desc.name, source=source_obj, with_dataloader=False)
            except Exception as err:
                if not replacements:
                    raise
                first = " ".join(str(err).split())[:300]
                files = " + ".join(str(v) for v in replacements.values() if v)
                raise DeepMRInputError(
                    f"weight file {files} does not fit {desc.name} ({type(err).__name__}: {first}); "
                    "give weights of this model's architecture"
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
            raise DeepMRInputError(
                f"weight file {path} does not exist; give the path of a weight file"
            )
    return paths


def feature_names_from(spec, current: Sequence[str]) -> tuple[str, ...]:
    """New output names from a list or a file.

    Parameters
    ----------
    spec : sequence of str, or str / os.PathLike of a file
        Names in output order (one per output), or a text file: one name per line in output order,
        or two tab- or comma-separated columns per line (current name, new name) renaming some
        outputs. Lines starting with ``#`` are comments. A single string that is not an existing
        file is one name.
    current : sequence of str
        The model's feature names now.

    Returns
    -------
    tuple of str, length F

    Raises
    ------
    DeepMRInputError
        A mapping that names an output the model does not have, or a file that is not text.
    """
    current = tuple(current)
    if isinstance(spec, str | os.PathLike) and os.path.isfile(spec):
        try:
            # utf-8-sig: a byte-order mark (as Windows editors write) is not part of the first name
            with open(spec, encoding="utf-8-sig") as handle:
                lines = [ln.strip("\r\n") for ln in handle if ln.strip() and not ln.startswith("#")]
        except UnicodeDecodeError:
            raise DeepMRInputError(f"feature names file {spec} is not a text file") from None
        rows = [ln.split("\t") if "\t" in ln else ln.split(",") for ln in lines]
        if rows and all(len(r) == 2 for r in rows):
            mapping = {old.strip(): new.strip() for old, new in rows}
            unknown = [old for old in mapping if old not in current]
            if unknown:
                raise DeepMRInputError(
                    f"{spec} renames {unknown[0]!r}, which is not an output of the model (outputs: "
                    f"{', '.join(current[:4])}{', ...' if len(current) > 4 else ''})"
                )
            return tuple(mapping.get(name, name) for name in current)
        return tuple(ln.strip() for ln in lines)
    if isinstance(spec, str | os.PathLike):
        return (os.fspath(spec),)
    return tuple(str(n) for n in spec)


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
    feature_names=None,
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
        ``identity["weights"]``. For a Keras model a member may also be an architecture JSON
        followed by its weights file, or a whole-model h5 (see
        :func:`model_adapters.generic.keras_member_files`).
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
    feature_names : sequence of str, or str / os.PathLike of a file, optional
        New names of the outputs (for models whose outputs have no names, e.g. ``output0/0``):
        one per output, or a file read by :func:`feature_names_from`.

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
    if feature_names is not None:
        rename = getattr(model, "rename_features", None)
        if rename is None:
            raise DeepMRInputError(f"the model {request.name} cannot rename its features")
        rename(feature_names_from(feature_names, model.feature_names))
    return model


def _record_weight_files(model, request: LoadRequest) -> None:
    """Put the user's weight files (path, md5, the model argument they replace) into the model's
    ``identity``, which a run writes to ``run.json``."""
    try:
        replaced = _replaced_arg(request.description)
    except Exception as err:  # noqa: BLE001 - a custom adapter's model may have no Kipoi description
        logger.debug("no Kipoi description for %s: %s", request.name, err)
        replaced = None
    args = {w.arg for w in getattr(request.description, "weight_files", ())} if replaced else set()
    weights = [
        {
            "path": p,
            "md5": file_md5(p),
            "replaces": "arch" if "arch" in args and _is_json(p) else replaced,
        }
        for p in request.weight_files
    ]
    identity = getattr(model, "identity", None)
    identity = dict(identity) if isinstance(identity, dict) else {}
    identity["weights"] = weights
    try:
        model.identity = identity
    except AttributeError:
        logger.warning(
            "model %s cannot record its weight files (read-only attributes)", request.name
        )


def _is_json(path: str) -> bool:
    """A Keras architecture file (JSON text), which replaces a model's ``arch`` argument."""
    if path.lower().endswith(".json"):
        return True
    with open(path, "rb") as handle:
        return handle.read(64).lstrip()[:1] == b"{"
