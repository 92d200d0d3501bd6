"""Kipoi sources: which source and model directory a model name or path refers to.

A model is named by a zoo name (``"DeepSEA/predict"``) in a configured Kipoi source, by a Kipoi model
directory (source ``"dir"``), or by a name inside a local copy of the zoo (a folder given as the
source, or one registered with :func:`add_local_source`). Nothing here touches the network: git
sources are prepared (or refused) by :func:`deepmr_kipoi.kipoi_models.describe.describe_model`.
"""

from __future__ import annotations

import os
from typing import Any

from deepmr_kipoi.errors import DeepMRInputError
from deepmr_kipoi.kipoi_models._compat import import_kipoi, kipoi_output_to_log
from deepmr_kipoi.kipoi_models.files import check_source_config

__all__ = ["add_local_source", "is_model_dir", "resolve"]


def is_model_dir(path: str) -> bool:
    """True when ``path`` is a directory holding a ``model.yaml`` (or ``model.yml``)."""
    return os.path.isdir(path) and any(
        os.path.isfile(os.path.join(path, f"model.{ext}")) for ext in ("yaml", "yml")
    )


def resolve(name_or_dir: str, source, trust_model_code: bool = False) -> tuple[str, str, Any]:
    """The Kipoi source that serves a model name or model directory (see :func:`_resolve`).

    Kipoi's sources read a zoo copy's ``config.yaml`` when they are made (with PyYAML's unsafe
    loader) and check its dependencies: the file is scanned for Python tags first unless
    ``trust_model_code``; the ``pkg_resources`` warning that check raises and what Kipoi prints
    about it go to the log.
    """
    with kipoi_output_to_log():
        return _resolve(name_or_dir, source, trust_model_code)


def _resolve(name_or_dir: str, source, trust_model_code: bool = False) -> tuple[str, str, Any]:
    """The Kipoi source that serves a model name or model directory.

    Parameters
    ----------
    name_or_dir : str or os.PathLike
        Model name in the source (``"DeepSEA/predict"``) or a Kipoi model directory.
    source : str, kipoi Source or None
        ``None``: ``"dir"`` for model directories, else ``"kipoi"``; a configured source name,
        ``"dir"``, a Kipoi ``Source`` object, or the path of a local copy of the zoo.
    trust_model_code : bool
        False: a local copy's ``config.yaml`` with a Python tag is refused before Kipoi reads it.

    Returns
    -------
    name : str
        The model name for Kipoi (an absolute path for model directories).
    label : str
        Source label: its name, ``"dir"``, or the absolute path of a local zoo copy.
    source_obj : kipoi.sources.Source
        The source object Kipoi reads the model from.

    Raises
    ------
    DeepMRInputError
        Not a name or directory, a directory without ``model.yaml``, or an unknown source.
    """
    kipoi = import_kipoi(trust_model_code)
    from kipoi.sources import LocalSource, Source

    if not isinstance(name_or_dir, str | os.PathLike) or not str(name_or_dir):
        raise DeepMRInputError(
            f"model must be a Kipoi model name or directory, got {name_or_dir!r}"
        )
    name = os.fspath(name_or_dir)
    if isinstance(source, Source):
        return name, getattr(source, "name", None) or type(source).__name__, source
    if source is None:
        if is_model_dir(name):
            return os.path.abspath(name), "dir", kipoi.config.get_source("dir")
        if os.path.isdir(name):
            raise DeepMRInputError(
                f"{name} is a directory without model.yaml; point at a Kipoi model directory"
            )
        source = "kipoi"
    if source == "dir":
        path = os.path.abspath(name)
        if not is_model_dir(path):
            raise DeepMRInputError(f"{path} is not a Kipoi model directory (no model.yaml)")
        return path, "dir", kipoi.config.get_source("dir")
    sources = kipoi.config.model_sources()
    if source in sources:
        return name, source, sources[source]
    if os.path.isdir(os.fspath(source)):
        path = os.path.abspath(os.fspath(source))
        if not trust_model_code:
            check_source_config(path)
        return name, path, LocalSource(path, name=path)
    raise DeepMRInputError(
        f"unknown Kipoi source {source!r}: use one of {sorted(sources)} or the path of a local "
        "copy of the model zoo"
    )


def add_local_source(name: str, path: str, trust_model_code: bool = False):
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
    trust_model_code : bool
        False (default): its ``config.yaml``, which Kipoi reads as the source is made, is refused
        when it holds a Python tag.

    Returns
    -------
    kipoi.sources.LocalSource
        The registered source (also in ``kipoi.config.model_sources()`` for this process).
    """
    kipoi = import_kipoi(trust_model_code)
    from kipoi.sources import LocalSource

    if name == "dir":
        raise DeepMRInputError(
            "'dir' is reserved by Kipoi for model directories; choose another name"
        )
    if not os.path.isdir(path):
        raise DeepMRInputError(f"local model source {path} is not a directory")
    if not trust_model_code:
        check_source_config(path)
    with kipoi_output_to_log():
        src = LocalSource(os.path.abspath(path), name=name)
    kipoi.config.add_source(name, src)
    return src
