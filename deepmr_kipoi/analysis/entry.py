"""The notebook entry points: :func:`analyze` (any model object, any sequences, one call) and
:func:`load_run` (a finished run folder back as the same result object).

:func:`analyze` turns what it is given into what ``pipeline.run`` takes -- a ``RunConfig``, a
``PredictiveModel`` (:func:`~deepmr_kipoi.analysis.inputs.resolve_model`) and reference sequences
(:func:`~deepmr_kipoi.analysis.inputs.resolve_sequences`) -- and runs it: the command line's
``deepmr run`` goes through the same ``pipeline.run``, so a model named by a string gives the same
tables either way.
"""

from __future__ import annotations

import os
import warnings

from deepmr_kipoi.analysis.inputs import MODEL_KEYWORDS, resolve_model, resolve_sequences
from deepmr_kipoi.analysis.terms import python_terms
from deepmr_kipoi.errors import DeepMRInputError, DeepMRWarning


def _config_settings(model, model_kw: dict, settings: dict) -> dict:
    """``RunConfig`` settings for a model named by a string (its wrapping options become settings)."""
    if model_kw.get("layout"):
        raise DeepMRInputError(
            "layout= describes a model object's input; a model named by a string declares its own "
            "(drop layout=, or pass alphabet=)"
        )
    out = dict(settings, model=os.fspath(model))
    for key in ("alphabet", "sequence_length"):
        if model_kw.get(key) is not None:
            out[key] = model_kw[key]
    if model_kw.get("feature_names") is not None:
        names = model_kw["feature_names"]
        out["feature_names"] = [names] if isinstance(names, (str, os.PathLike)) else list(names)
    return out


def _panel(models: dict, settings: dict):
    """A model panel ``{label: model}``: names and folders loaded as ``deepmr run --model
    LABEL=MODEL`` loads them, model objects resolved as a single model is (:func:`resolve_model`).

    Returns
    -------
    settings : dict
        With ``model`` the panel mapping when every member is a name (the run loads them).
    model : ModelPanel or None
    identity : dict or None
    """
    from deepmr_kipoi.predictive.panel import ModelPanel
    from deepmr_kipoi.run import config as cfg
    from deepmr_kipoi.run import model as run_model

    if all(isinstance(m, (str, os.PathLike)) for m in models.values()):
        return dict(settings, model={k: os.fspath(m) for k, m in models.items()}), None, None
    resolved, idents = {}, {}
    for label, m in models.items():
        if isinstance(m, (str, os.PathLike)):
            keys = set(cfg.PANEL_MEMBER_SETTINGS) & set(settings)
            member = cfg.validate(
                cfg.RunConfig(**{k: settings[k] for k in keys}, model=os.fspath(m))
            )
            resolved[label], idents[label] = run_model.load_configured_model(member)
        else:
            resolved[label], idents[label] = resolve_model(
                m, seed=settings.get("seed", 0), n_samples=settings.get("n_samples")
            )
    panel = ModelPanel(resolved)
    name = "panel of " + ", ".join(f"{k} = {v.get('name')}" for k, v in idents.items())
    return settings, panel, {"name": name, "panel": run_model.panel_identity(panel, idents)}


def _run(config, model, identity, given, source):
    """``pipeline.run`` of an ``analyze`` call; its input errors in Python terms (the run names
    options as the command line does)."""
    from deepmr_kipoi import pipeline

    try:
        return pipeline.run(
            config, model=model, identity=identity, sequences=given, sequence_source=source
        )
    except DeepMRInputError as err:
        raise type(err)(python_terms(str(err))) from err


def analyze(model, sequences=None, *, exposures=None, outcomes=None, out=None, **settings):
    """Run Deep MR on a model and reference sequences, in one call.

    Parameters
    ----------
    model : str, path, Kipoi model object, torch.nn.Module, keras.Model, list, PredictiveModel, or dict
        A dict ``{label: model}`` is a model panel (each value any of these forms; features named
        ``label/feature``, see :mod:`deepmr_kipoi.predictive.panel`). A Kipoi model name (``"DeepSEA/predict"``), model directory, registered adapter name or
        factory ``"file.py:function"`` (loaded as ``deepmr run --model`` loads it); or a model
        object (:func:`resolve_model`: a list is a deep ensemble, a single model with dropout gets
        MC dropout).
    sequences : None, str or path, list of str, or ndarray, optional
        A FASTA path (with ``bed=``: intervals of a genome), DNA strings of one length, or a one-hot
        array in ACGT order, (N, L, 4) or (N, 4, L) (:func:`resolve_sequences`). None: random DNA
        (with a warning), or the model's Kipoi dataloader with ``sequences="dataloader"``.
    exposures, outcomes : str or list of str, optional
        Feature names or globs (default: all features).
    out : str or path, optional
        Run folder (figures, report, stored tables); None keeps the run in memory.
    **settings
        Any ``RunConfig`` setting (``z``, ``window``, ``methods``, ``n_sequences``, ``seed``,
        ``chunk_size``, ``force``, ...), ``bed``, and for model objects ``layout``,
        ``feature_names``, ``alphabet``, ``sequence_length``, ``name`` (:func:`resolve_model`).

    Returns
    -------
    Analysis
        Tables, verdicts, warnings, figures (:class:`deepmr_kipoi.analysis.Analysis`).

    Raises
    ------
    DeepMRInputError
        Bad input, in one line naming the fix (in this function's argument names:
        :func:`~deepmr_kipoi.analysis.terms.python_terms`).

    Warns
    -----
    DeepMRWarning
        Each caveat about the results (``Analysis.warnings``), through Python's ``warnings``, in
        this function's argument names.
    """
    from deepmr_kipoi import pipeline
    from deepmr_kipoi.analysis.result import Analysis

    settings = dict(settings)
    model_kw = {k: settings.pop(k) for k in MODEL_KEYWORDS if k in settings}
    file_settings, given, source = resolve_sequences(
        sequences, layout=model_kw.get("layout"), bed=settings.pop("bed", None)
    )
    settings.update(file_settings)
    for key, value in (("exposures", exposures), ("outcomes", outcomes)):
        if value is not None:
            settings[key] = [value] if isinstance(value, str) else list(value)
    pm = identity = None
    if isinstance(model, dict):
        settings, pm, identity = _panel(model, settings)
    elif isinstance(model, (str, os.PathLike)):
        settings = _config_settings(model, model_kw, settings)
    else:
        if given is not None and model_kw.get("sequence_length") is None:
            model_kw["sequence_length"] = int(given[1].shape[1])
        pm, identity = resolve_model(
            model,
            seed=settings.get("seed", 0),
            n_samples=settings.get("n_samples"),
            uncertainty=settings.get("uncertainty"),
            **model_kw,
        )
    try:
        config = pipeline.RunConfig(out=None if out is None else os.fspath(out), **settings)
    except TypeError as err:
        raise DeepMRInputError(str(err)) from None
    result = _run(config, pm, identity, given, source)
    analysis = Analysis.from_result(result)
    for text in analysis.warnings:
        warnings.warn(text, DeepMRWarning, stacklevel=2)
    return analysis


def load_run(path):
    """A finished run folder as an :class:`~deepmr_kipoi.analysis.Analysis`.

    Parameters
    ----------
    path : str or path
        Folder written by ``deepmr run``, ``deepmr demo``, ``deepmr reanalyze`` or ``analyze(out=)``.

    Returns
    -------
    Analysis

    Raises
    ------
    DeepMRInputError
        The folder is missing or holds no finished run.
    """
    from deepmr_kipoi.analysis.result import Analysis

    return Analysis.from_folder(path)
