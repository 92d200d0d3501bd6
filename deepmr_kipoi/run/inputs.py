"""Stage 1, inputs: the features, the model, the reference sequences and the calibration of a run.

Every function here reads what a ``RunConfig`` names and checks it; a user mistake raises
:class:`~deepmr_kipoi.errors.DeepMRInputError` (missing or unreadable paths: ``OSError``/
``DeepMRInputError``) with one line naming the fix. Nothing here writes files.
"""

from __future__ import annotations

import difflib
import fnmatch
import hashlib
import importlib
import importlib.util
import inspect
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from deepmr_kipoi._files import file_md5
from deepmr_kipoi.errors import DeepMRInputError
from deepmr_kipoi.run import checks
from deepmr_kipoi.run.config import SEQUENCE_SOURCES, RunConfig

logger = logging.getLogger(__name__)


def select_features(patterns: Sequence[str], names: Sequence[str], role: str) -> list[int]:
    """Indices of the features matched by names or fnmatch globs, in model order of first match.

    Parameters
    ----------
    patterns : sequence of str
        Exact feature names or globs (``*``, ``?``, ``[...]``); empty selects every feature. A
        pattern that is itself a feature name selects that feature only (so a name holding glob
        characters, ``K562_*``, can be selected); to use it as a glob, write a glob that is not a
        name (``K562_[*]*`` matches the literal ``K562_*`` and what follows).
    names : sequence of str, length F
        The model's feature names.
    role : str
        ``"exposure"`` or ``"outcome"`` (for messages).

    Returns
    -------
    list of int

    Raises
    ------
    DeepMRInputError
        When a pattern matches nothing (lists close matches).
    """
    names = list(names)
    if not patterns:
        return list(range(len(names)))
    picked: list[int] = []
    for pattern in patterns:
        if pattern in names:  # an exact name wins, glob characters and all
            hits = [i for i, n in enumerate(names) if n == pattern]
        elif any(c in pattern for c in "*?["):
            hits = [i for i, n in enumerate(names) if fnmatch.fnmatchcase(n, pattern)]
        else:
            hits = []
        if not hits:
            close = difflib.get_close_matches(pattern, names, n=3, cutoff=0.4)
            if close:
                hint = "close matches: " + ", ".join(close)
            else:
                shown = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
                hint = f"the model's features are: {shown}"
            raise DeepMRInputError(f"unknown {role} feature {pattern!r}; {hint}")
        picked.extend(i for i in hits if i not in picked)
    return picked


def _is_factory_spec(spec: str) -> bool:
    if ":" not in spec or Path(spec).exists():
        return False
    target, _, attr = spec.rpartition(":")
    return attr.isidentifier() and (
        target.endswith(".py") or all(p.isidentifier() for p in target.split("."))
    )


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _factory_arguments(factory, spec: str, config: RunConfig) -> dict:
    """The run settings a factory accepts; refuse settings it cannot take and arguments it needs."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        params = {}
    offered = {
        "seed": config.seed,
        "n_samples": config.n_samples,
        "uncertainty": config.uncertainty,
    }
    for key, option in (("n_samples", "--n-samples"), ("uncertainty", "--uncertainty")):
        if offered[key] is not None and key not in params:
            raise DeepMRInputError(
                f"{option} does not apply to the model factory {spec} (it takes no {key!r} "
                f"argument); drop {option} or add the argument to the factory"
            )
    needed = [
        n
        for n, p in params.items()
        if p.default is inspect.Parameter.empty
        and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        and n not in offered
    ]
    if needed:
        raise DeepMRInputError(
            f"the model factory {spec} needs the argument(s) {', '.join(needed)}; give them "
            "defaults (it is called with only seed, n_samples and uncertainty where it accepts them)"
        )
    return {k: v for k, v in offered.items() if k in params and v is not None}


def _load_factory(spec: str, config: RunConfig):
    target, _, attr = spec.rpartition(":")
    try:
        if target.endswith(".py"):
            path = Path(target)
            if not path.is_file():
                raise DeepMRInputError(
                    f"model factory file not found: {target}; check the --model path"
                )
            name = "deepmr_factory_" + hashlib.md5(str(path.resolve()).encode()).hexdigest()[:12]
            mod_spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(mod_spec)
            # registered before it runs, as an import would: dataclasses and pickling look the
            # module up by name while its body executes
            sys.modules[name] = module
            try:
                mod_spec.loader.exec_module(module)
            except BaseException:
                sys.modules.pop(name, None)
                raise
        else:
            module = importlib.import_module(target)
    except DeepMRInputError:
        raise
    except SystemExit as err:
        raise DeepMRInputError(
            f"the model factory module {target} called sys.exit({err.code!r}) while being imported; "
            "a factory module must not exit"
        ) from err
    except Exception as err:  # noqa: BLE001 - the user's module failed to import; say which and why
        raise DeepMRInputError(
            f"cannot import the model factory module {target} ({_one_line(err)}); fix that file"
        ) from err
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise DeepMRInputError(f"{spec!r}: {attr!r} is not a function in {target}")
    kwargs = _factory_arguments(factory, spec, config)
    try:
        model = factory(**kwargs)
    except SystemExit as err:
        raise DeepMRInputError(
            f"the model factory {spec} called sys.exit({err.code!r}) instead of returning a model; "
            "return a PredictiveModel"
        ) from err
    except Exception as err:  # noqa: BLE001 - the user's factory failed; name it, not our code
        raise DeepMRInputError(
            f"the model factory {spec} raised {_one_line(err)}; fix the factory"
        ) from err
    if not (hasattr(model, "predict_samples") and hasattr(model, "feature_names")):
        raise DeepMRInputError(
            f"the model factory {spec} returned {type(model).__name__}, not a PredictiveModel (an "
            "object with feature_names and predict_samples, e.g. predictive.DeepEnsemble); return one"
        )
    return model


#: Options of models loaded by Kipoi or an adapter, which a factory (its own loader) cannot take.
_KIPOI_OPTIONS = (
    ("weight_files", "--weights"),
    ("source", "--source"),
    ("adapter", "--adapter"),
    ("alphabet", "--alphabet"),
    ("feature_names", "--feature-names"),
)


def _refuse_kipoi_options(config: RunConfig, spec: str) -> None:
    for field, option in _KIPOI_OPTIONS:
        if getattr(config, field):
            raise DeepMRInputError(
                f"{option} does not apply to the model factory {spec} (a factory loads and names "
                f"its own model, weights included); drop {option} or use it inside the factory"
            )


def check_applicable(config: RunConfig, model) -> None:
    """Refuse options that do not apply to the loaded model, instead of ignoring them.

    Raises
    ------
    DeepMRInputError
        ``n_samples`` for a deep ensemble (its sample count is its member count).
    """
    from deepmr_kipoi.predictive import DeepEnsemble

    if config.n_samples is not None and isinstance(model, DeepEnsemble):
        raise DeepMRInputError(
            f"--n-samples applies to MC dropout, but the model is a deep ensemble of "
            f"{model.n_samples} members; drop --n-samples"
        )


def sequence_source(config: RunConfig) -> str:
    """Where a run's reference sequences come from, in words (for ``run.json``)."""
    if config.fasta and config.bed:
        return "FASTA regions of BED intervals"
    if config.fasta:
        return "FASTA records"
    if config.sequences == "dataloader":
        return "the model's Kipoi dataloader"
    return "seeded random sequences"


def load_configured_model(config: RunConfig):
    """Load the model a config names, and describe its identity (``prepare_model`` also puts it on
    the configured device; this is the loading step alone).

    Parameters
    ----------
    config : RunConfig

    Returns
    -------
    model : PredictiveModel
    identity : dict
        ``name``, ``source``, ``weights_md5`` (where known) and the model's declared properties.

    Raises
    ------
    DeepMRInputError
        When no model is named or it cannot be loaded.
    """
    spec = config.model
    if not spec:
        raise DeepMRInputError(
            "no model given; pass --model with a Kipoi model name, a model directory, a registered "
            "adapter (see `deepmr adapters`) or a Python factory module:function"
        )
    identity: dict = {"name": spec, "source": config.source}
    if (
        spec.startswith(("./", "../", "/", "~"))
        and not _is_factory_spec(spec)
        and not Path(spec).expanduser().exists()
    ):
        raise DeepMRInputError(
            f"model folder not found: {spec}; check the --model path (a Kipoi model directory holds "
            "a model.yaml)"
        )
    if _is_factory_spec(spec):
        _refuse_kipoi_options(config, spec)
        model = _load_factory(spec, config)
        identity["source"] = "python"
        target = spec.rpartition(":")[0]
        if target.endswith(".py"):
            identity["factory_md5"] = file_md5(Path(target))
    else:
        model = _kipoi_model(spec, config, identity)
    for key in ("weights_md5", "identity"):
        value = getattr(model, key, None)
        if isinstance(value, dict):
            identity.update(value)
        elif isinstance(value, str):
            identity[key] = value
    identity.update(
        n_samples=int(getattr(model, "n_samples", 0) or 0),
        n_features=len(model.feature_names),
        sequence_length=getattr(model, "sequence_length", None),
        alphabet=getattr(model, "alphabet", None),
        type=type(model).__name__,
    )
    return model, identity


def _kipoi_model(spec: str, config: RunConfig, identity: dict):
    """A Kipoi model or registered adapter through ``kipoi_models.load_model``; its source, folder
    and weight files (path and md5) are added to ``identity``."""
    from deepmr_kipoi import kipoi_models

    weights = list(config.weight_files) or None
    names = config.feature_names
    model = kipoi_models.load_model(
        spec,
        source=config.source,
        alphabet=config.alphabet,
        uncertainty=config.uncertainty,
        n_samples=config.n_samples,
        seed=config.seed,
        weight_files=weights,
        adapter=config.adapter,
        download=config.download,
        trust_model_code=config.trust_model_code,
        download_option="--download",
        # one entry may be a file of names (kipoi_models.feature_names_from)
        feature_names=(names[0] if len(names) == 1 else list(names)) or None,
    )
    if weights:
        identity["weights"] = [{"path": str(w), "md5": file_md5(Path(w))} for w in weights]
    try:
        desc = kipoi_models.describe_model(
            spec, source=config.source, trust_model_code=config.trust_model_code
        )
    except Exception as err:  # noqa: BLE001 - the description is provenance only
        logger.debug("describe_model(%s) failed: %s", spec, err)
        desc = None
    if desc is not None:
        identity.update(source=desc.source, model_dir=desc.model_dir, model_type=desc.model_type)
        if not weights:
            identity["weights"] = [
                {
                    "arg": w.arg,
                    "path": w.path,
                    "md5": w.md5 or (file_md5(Path(w.path)) if w.present else None),
                }
                for w in desc.weight_files
            ]
    return model


def prepare_model(config: RunConfig, model=None, identity: dict | None = None):
    """The run's model, ready to predict: loaded (unless given) and put on ``config.device``.

    The one preparation of a model, used by the client (``runner.make_plan``) and by every Dask
    worker (``executors``), so that a worker's model runs where the client's would.

    Parameters
    ----------
    config : RunConfig
        Validated.
    model : PredictiveModel, optional
        A model handed to the run instead of ``config.model``.
    identity : dict, optional
        Its identity (default: its type name; samples and features are filled in).

    Returns
    -------
    model : PredictiveModel
    identity : dict
        As :func:`load_configured_model`'s, plus ``device``: where the model's PyTorch members run.

    Raises
    ------
    DeepMRInputError
        When no model is named or it cannot be loaded, or the device does not exist here.
    """
    from deepmr_kipoi.predictive import move_to_device

    if model is None:
        model, identity = load_configured_model(config)
    elif not (hasattr(model, "predict_samples") and hasattr(model, "feature_names")):
        raise DeepMRInputError(
            f"model= must be a PredictiveModel (feature_names, predict_samples), got {type(model).__name__}; "
            "to load one by name, set RunConfig(model=...)"
        )
    else:
        identity = dict(identity or {"name": config.model or type(model).__name__})
        identity.setdefault("n_samples", int(getattr(model, "n_samples", 0) or 0))
        identity.setdefault("n_features", len(model.feature_names))
    identity = dict(identity)
    identity["device"] = move_to_device(model, config.device)
    return model, identity


def load_sequences(config: RunConfig, model_length: int | None):
    """Reference sequences as ``(ids, onehot)``.

    Parameters
    ----------
    config : RunConfig
    model_length : int or None
        The model's input length (None: any length, then ``config.sequence_length`` or an error).
    Returns
    -------
    ids : list of str, length N
    onehot : ndarray of float32, shape (N, L, 4), ACGT

    Raises
    ------
    DeepMRInputError
        Missing files, BED intervals off the chromosome, sequences of the wrong length, ...
    """
    from deepmr_kipoi import sequences as seqmod

    source = "fasta" if config.fasta else config.sequences
    if source not in SEQUENCE_SOURCES:
        raise DeepMRInputError(
            f"unknown sequence source {config.sequences!r}; use one of {', '.join(SEQUENCE_SOURCES)}"
        )
    if config.bed and not config.fasta:
        raise DeepMRInputError("--bed needs --fasta (the genome the intervals refer to)")
    length = config.sequence_length or model_length
    if config.sequence_length and model_length and config.sequence_length != model_length:
        raise DeepMRInputError(
            f"--sequence-length {config.sequence_length} differs from the model's input length "
            f"{model_length}; drop --sequence-length"
        )
    n = config.n_sequences
    if n is not None and int(n) < 1:
        raise DeepMRInputError(f"n_sequences must be >= 1, got {n}")
    if source == "fasta":
        fasta = Path(config.fasta)
        if not fasta.is_file():
            raise DeepMRInputError(f"FASTA file not found: {fasta}; check the --fasta path")
        if config.bed:
            bed = Path(config.bed)
            if not bed.is_file():
                raise DeepMRInputError(f"BED file not found: {bed}; check the --bed path")
            if length is None:
                raise DeepMRInputError(
                    "the model does not declare its input length; pass --sequence-length"
                )
            ids, onehot = _text_input(
                seqmod.read_fasta_bed,
                (fasta, bed),
                int(length),
                n=n,
                seed=config.seed,
                iupac=config.iupac,
                duplicates=config.duplicates,
            )
        else:
            ids, onehot = _read_fasta_checked(seqmod, fasta, length, config.iupac)
            if n is not None:
                ids, onehot = ids[: int(n)], onehot[: int(n)]
    elif source == "dataloader":
        from deepmr_kipoi import kipoi_models

        if not config.model or _is_factory_spec(config.model):
            raise DeepMRInputError(
                "--sequences dataloader needs a Kipoi model (--model NAME or DIR)"
            )
        ids, onehot = kipoi_models.dataloader_sequences(
            config.model,
            source=config.source,
            dataloader_args=config.dataloader_args,
            n=n,
            trust_model_code=config.trust_model_code,
        )
    else:
        if length is None:
            raise DeepMRInputError(
                "the model does not declare its input length; pass --sequence-length"
            )
        n_random = 20 if n is None else int(n)
        onehot = seqmod.random_sequences(n_random, int(length), seed=config.seed)
        ids = [f"random_{i}" for i in range(n_random)]
    ids = [str(i) for i in ids]
    onehot = np.asarray(onehot, dtype=np.float32)
    if onehot.ndim != 3 or onehot.shape[-1] != 4 or len(onehot) == 0:
        raise DeepMRInputError(f"no usable sequences were read (array shape {onehot.shape})")
    if model_length is not None and onehot.shape[1] != model_length:
        raise DeepMRInputError(
            f"the sequences are {onehot.shape[1]} bp but the model takes {model_length} bp; "
            f"give sequences of length {model_length}"
        )
    return ids, onehot


def _text_input(reader, paths, *args, **kwargs):
    """Call ``reader(*paths, *args)``; a binary or mis-encoded file is named in one line."""
    try:
        return reader(*paths, *args, **kwargs)
    except UnicodeDecodeError:
        for p in paths:
            try:
                with open(p, "rb") as fh:
                    head = fh.read(2)
                if head != b"\x1f\x8b":  # gzip is read as such
                    Path(p).read_text()
            except UnicodeDecodeError:
                raise DeepMRInputError(
                    f"{p} is not a text file (binary or not UTF-8); give a plain or gzipped text file"
                ) from None
        raise DeepMRInputError(
            f"{', '.join(map(str, paths))}: not readable as text; give plain or gzipped text files"
        ) from None


def _read_fasta_checked(seqmod, fasta: Path, length: int | None, iupac: str = "refuse"):
    try:
        return _text_input(seqmod.read_fasta, (fasta,), iupac=iupac)
    except DeepMRInputError:
        raise
    except ValueError as err:
        if "different lengths" in str(err):
            want = f"{length} bp each" if length else "one length"
            raise DeepMRInputError(
                f"the sequences in {fasta} have different lengths; give sequences of {want}"
            ) from None
        raise


@dataclass(frozen=True)
class Calibration:
    """The calibration a run applies to its effect SEs.

    Attributes
    ----------
    se_scale : ndarray, shape (F,)
        Factor on the SE of every model feature (1 where not calibrated).
    features : tuple of str
        The features actually calibrated.
    metrics_before, metrics_after : CalibrationMetrics or None
        Calibration metrics on the calibration table (fitted here only).
    curve_before, curve_after : CalibrationCurve or None
        Calibration curves on the calibration table (fitted here only).
    source : str
        The calibrator file or calibration table.
    feature_names : tuple of str, length F
    """

    se_scale: np.ndarray
    features: tuple[str, ...]
    metrics_before: object | None
    metrics_after: object | None
    curve_before: object | None
    curve_after: object | None
    source: str
    feature_names: tuple[str, ...] = ()

    def scale_items(self) -> list[tuple[str, float]]:
        """(feature, SE scale) of the calibrated features."""
        names = list(self.feature_names)
        return [(f, float(self.se_scale[names.index(f)])) for f in self.features]


def load_calibration(config: RunConfig, model, feature_names: list[str]) -> Calibration | None:
    """The calibration ``config`` asks for: a saved calibrator, or one fitted on a labelled table.

    Parameters
    ----------
    config : RunConfig
    model : PredictiveModel
        Predicts the calibration table's sequences (``calibration_table`` only).
    feature_names : list of str, length F

    Returns
    -------
    Calibration or None
        None when the config names no calibration.

    Raises
    ------
    DeepMRInputError
        Both or unreadable sources, features the model lacks, sequences of the wrong length.
    """
    if config.calibrator and config.calibration_table:
        raise DeepMRInputError("give either --calibrator or --calibration-table, not both")
    if not (config.calibrator or config.calibration_table):
        return None
    if config.calibrator:
        return _saved_calibration(Path(config.calibrator), feature_names)
    return _table_calibration(config, model, feature_names)


def _saved_calibration(path: Path, feature_names: list[str]) -> Calibration:
    """A calibrator saved by ``calibration.save``, its SE scales spread over the model's features."""
    from deepmr_kipoi import calibration

    n_feat = len(feature_names)
    if not path.is_file():
        raise DeepMRInputError(f"calibrator file not found: {path}; check the --calibrator path")
    try:
        cal = calibration.load(path)
    except (ValueError, KeyError, TypeError) as err:
        raise DeepMRInputError(
            f"{path} is not a saved calibrator ({_one_line(err)[:120]}); give a file written by "
            "calibration.save"
        ) from None
    scale = np.asarray(cal.se_scale, dtype=np.float64)
    names = getattr(cal, "feature_names", None)
    full = np.ones(n_feat)
    if names:
        unknown = [f for f in names if f not in feature_names]
        if unknown:
            raise DeepMRInputError(
                f"calibrator {path} names features the model lacks: {', '.join(unknown[:5])}"
            )
        for f, s in zip(names, scale):
            full[feature_names.index(f)] = s
        used = tuple(names)
    elif scale.shape == (n_feat,):
        full, used = scale, tuple(feature_names)
    else:
        raise DeepMRInputError(
            f"calibrator {path} has {scale.size} SE scales but the model has {n_feat} features"
        )
    return Calibration(full, used, None, None, None, None, str(path), tuple(feature_names))


def _table_calibration(config: RunConfig, model, feature_names: list[str]) -> Calibration:
    """A calibration fitted on the config's labelled table (sequences predicted by ``model``)."""
    table = _read_table(Path(config.calibration_table))
    if "sequence" not in table.columns:
        raise DeepMRInputError(
            f"{config.calibration_table} needs a 'sequence' column plus one label column per feature"
        )
    cols = [c for c in table.columns if c in feature_names]
    if not cols:
        raise DeepMRInputError(
            f"{config.calibration_table} has no column named like a model feature "
            f"(e.g. {feature_names[0]!r})"
        )
    from deepmr_kipoi import sequences as seqmod

    seqs = table["sequence"].astype(str).tolist()
    lengths = {len(s) for s in seqs}
    model_length = getattr(model, "sequence_length", None)
    if len(lengths) != 1 or (model_length and lengths != {model_length}):
        raise DeepMRInputError(
            f"calibration sequences must all be {model_length or 'equally long'} bp, "
            f"got lengths {sorted(lengths)[:5]}"
        )
    y = checks.numeric_columns(table, cols, str(config.calibration_table))
    return fit_calibration(
        model,
        seqmod.one_hot(seqs),
        y,
        cols,
        feature_names,
        method=config.calibration_method,
        source=str(config.calibration_table),
        batch_size=config.batch_size,
        aleatoric_variance=config.aleatoric_variance,
    )


def fit_calibration(
    model,
    onehot: np.ndarray,
    labels: np.ndarray,
    columns: Sequence[str],
    feature_names: Sequence[str],
    *,
    method: str = "quantile",
    source: str = "labelled sequences",
    batch_size: int = 512,
    aleatoric_variance: float = 0.0,
    seed: int = 0,
) -> Calibration:
    """Fit the calibration of some model features on labelled sequences.

    Parameters
    ----------
    model : PredictiveModel
    onehot : ndarray, shape (n, L, 4)
        Labelled held-out sequences (ACGT one-hot).
    labels : ndarray, shape (n, C)
        Observed labels of the features named in ``columns``.
    columns : sequence of str, length C
        Feature names of the label columns.
    feature_names : sequence of str, length F
        All the model's features.
    method : {"quantile", "sigma"}
    source : str
        Where the labels came from, for the record.
    batch_size : int
    aleatoric_variance : float
        Label noise variance removed by sigma scaling (``calibration.fit``).
    seed : int
        Seed of the folds of the cross-fitted "after" metrics.

    Returns
    -------
    Calibration
        ``metrics_after`` are cross-fitted (``calibration.cross_fitted_metrics``, 2 folds): each
        labelled sequence is scored by a map fitted on the others, so they are not optimistic.
    """
    from deepmr_kipoi import calibration

    cols, names = list(columns), list(feature_names)
    samples = np.asarray(model.predict_samples(onehot, batch_size=batch_size))
    idx = [names.index(c) for c in cols]
    pred_mean = samples.mean(axis=0)[:, idx]
    pred_sd = samples.std(axis=0, ddof=1)[:, idx]
    y = np.asarray(labels, dtype=np.float64)
    options = {"aleatoric_variance": aleatoric_variance} if aleatoric_variance else {}
    cal = calibration.fit(pred_mean, pred_sd, y, method=method, feature_names=cols, **options)
    after = (
        calibration.cross_fitted_metrics(
            pred_mean, pred_sd, y, method, seed=seed, feature_names=cols, **options
        )
        if len(y) >= 4
        else calibration.metrics(pred_mean, pred_sd, y, calibrator=cal)
    )
    full = np.ones(len(names))
    full[idx] = np.asarray(cal.se_scale, dtype=np.float64)
    return Calibration(
        se_scale=full,
        features=tuple(cols),
        metrics_before=calibration.metrics(pred_mean, pred_sd, y),
        metrics_after=after,
        curve_before=calibration.curve(pred_mean, pred_sd, y),
        curve_after=calibration.curve(pred_mean, pred_sd, y, calibrator=cal),
        source=source,
        feature_names=tuple(names),
    )


def _read_table(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise DeepMRInputError(f"table not found: {path}; check the path")
    try:
        if path.suffix == ".parquet":
            return pd.read_parquet(path)
        sep = "\t" if path.suffix in (".tsv", ".txt") else ","
        return pd.read_csv(path, sep=sep)
    except (ValueError, OSError) as err:  # a parser's or pyarrow's complaint about the file
        raise DeepMRInputError(
            f"{path} is not a readable table ({_one_line(err)[:120]}); give CSV, TSV or Parquet"
        ) from None
