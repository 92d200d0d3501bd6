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
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from deepmr_kipoi.errors import DeepMRInputError
from deepmr_kipoi.run.config import SEQUENCE_SOURCES, RunConfig

logger = logging.getLogger(__name__)


def select_features(patterns: Sequence[str], names: Sequence[str], role: str) -> list[int]:
    """Indices of the features matched by names or fnmatch globs, in model order of first match.

    Parameters
    ----------
    patterns : sequence of str
        Exact feature names or globs (``*``, ``?``, ``[...]``); empty selects every feature.
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
        if any(c in pattern for c in "*?["):
            hits = [i for i, n in enumerate(names) if fnmatch.fnmatchcase(n, pattern)]
        else:
            hits = [names.index(pattern)] if pattern in names else []
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


def _load_factory(spec: str, config: RunConfig):
    target, _, attr = spec.rpartition(":")
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_file():
            raise DeepMRInputError(f"model factory file not found: {target}; check the --model path")
        name = "deepmr_factory_" + hashlib.md5(str(path.resolve()).encode()).hexdigest()[:12]
        mod_spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(mod_spec)
        mod_spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as err:
            raise DeepMRInputError(f"cannot import model factory module {target!r}: {err}") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise DeepMRInputError(f"{spec!r}: {attr!r} is not a function in {target}")
    accepted = inspect.signature(factory).parameters
    kwargs = {
        k: v
        for k, v in (
            ("seed", config.seed),
            ("n_samples", config.n_samples),
            ("uncertainty", config.uncertainty),
        )
        if k in accepted and v is not None
    }
    return factory(**kwargs)


def load_model(config: RunConfig):
    """Load the model a config names, and describe its identity.

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
    if _is_factory_spec(spec):
        model = _load_factory(spec, config)
        identity["source"] = "python"
        target = spec.rpartition(":")[0]
        if target.endswith(".py"):
            identity["factory_md5"] = _md5(Path(target))
    else:
        from deepmr_kipoi import kipoi_models

        weights = list(config.weight_files) or None
        model = kipoi_models.load_model(
            spec,
            source=config.source,
            alphabet=config.alphabet,
            uncertainty=config.uncertainty,
            n_samples=config.n_samples,
            seed=config.seed,
            weight_files=weights,
            adapter=config.adapter,
        )
        if weights:
            identity["weights"] = [{"path": str(w), "md5": _md5(Path(w))} for w in weights]
        try:
            desc = kipoi_models.describe_model(spec, source=config.source)
        except Exception as err:  # noqa: BLE001 - the description is provenance only
            logger.debug("describe_model(%s) failed: %s", spec, err)
            desc = None
        if desc is not None:
            identity.update(source=desc.source, model_dir=desc.model_dir, model_type=desc.model_type)
            if not weights:
                identity["weights"] = [
                    {"arg": w.arg, "path": w.path, "md5": w.md5 or (_md5(Path(w.path)) if w.present else None)}
                    for w in desc.weight_files
                ]
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


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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
                raise DeepMRInputError("the model does not declare its input length; pass --sequence-length")
            ids, onehot = seqmod.read_fasta_bed(fasta, bed, int(length), n=n, seed=config.seed)
        else:
            ids, onehot = _read_fasta_checked(seqmod, fasta, length)
            if n is not None:
                ids, onehot = ids[: int(n)], onehot[: int(n)]
    elif source == "dataloader":
        ids, onehot = _dataloader_sequences(config, n)
    else:
        if length is None:
            raise DeepMRInputError("the model does not declare its input length; pass --sequence-length")
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


def _read_fasta_checked(seqmod, fasta: Path, length: int | None):
    try:
        return seqmod.read_fasta(fasta)
    except ValueError as err:
        if "different lengths" in str(err):
            want = f"{length} bp each" if length else "one length"
            raise DeepMRInputError(
                f"the sequences in {fasta} have different lengths; give sequences of {want}"
            ) from None
        raise


def _dataloader_sequences(config: RunConfig, n: int | None):
    """Reference sequences from the model's default Kipoi dataloader, converted to ACGT (N, L, 4).

    The dataloader gets ``config.dataloader_args`` on top of its ``model.yaml`` defaults (e.g.
    ``intervals_file`` and ``fasta_file`` for kipoiseq's interval dataloaders); the first ``n``
    sequences it yields are used, named ``chrom:start-end`` where it reports ranges.
    """
    from deepmr_kipoi import kipoi_models
    from deepmr_kipoi import sequences as seqmod
    from deepmr_kipoi._kipoi_compat import import_kipoi, kipoi_output_to_log

    if not config.model or _is_factory_spec(config.model):
        raise DeepMRInputError("--sequences dataloader needs a Kipoi model (--model NAME or DIR)")
    desc = kipoi_models.describe_model(config.model, source=config.source)
    if desc.dataloader is None or desc.layout is None:
        raise DeepMRInputError(
            f"{config.model} has no default dataloader of one-hot sequences; pass --fasta (with --bed)"
        )
    kipoi = import_kipoi()
    with kipoi_output_to_log():
        dl = kipoi.get_model_descr(desc.model_dir, source="dir").default_dataloader
        if hasattr(dl, "get"):
            factory = dl.get()
        else:
            path = os.path.normpath(os.path.join(desc.model_dir, dl))
            factory = kipoi.get_dataloader_factory(path, source="dir")
    try:
        loader = factory(**dict(config.dataloader_args or {}))
    except TypeError as err:
        raise DeepMRInputError(
            f"the dataloader of {config.model} rejected its arguments ({err}); give them as "
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
        raise DeepMRInputError(f"the dataloader of {config.model} yielded no sequences")
    x = np.concatenate(parts)[: n if n is not None else None]
    onehot = seqmod.reorder_alphabet(seqmod.from_layout(x, desc.layout), desc.alphabet, "ACGT")
    return ids[: len(onehot)], onehot


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
    from deepmr_kipoi import calibration

    n_feat = len(feature_names)
    if config.calibrator:
        path = Path(config.calibrator)
        if not path.is_file():
            raise DeepMRInputError(f"calibrator file not found: {path}; check the --calibrator path")
        cal = calibration.load(path)
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
    y = table[cols].to_numpy(dtype=np.float64)
    return fit_calibration(model, seqmod.one_hot(seqs), y, cols, feature_names,
                           method=config.calibration_method, source=str(config.calibration_table),
                           batch_size=config.batch_size,
                           aleatoric_variance=config.aleatoric_variance)  # fmt: skip


def fit_calibration(model, onehot: np.ndarray, labels: np.ndarray, columns: Sequence[str],
                    feature_names: Sequence[str], *, method: str = "quantile",
                    source: str = "labelled sequences", batch_size: int = 512,
                    aleatoric_variance: float = 0.0, seed: int = 0) -> Calibration:  # fmt: skip
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
    after = (calibration.cross_fitted_metrics(pred_mean, pred_sd, y, method, seed=seed,
                                              feature_names=cols, **options)
             if len(y) >= 4 else calibration.metrics(pred_mean, pred_sd, y, calibrator=cal))  # fmt: skip
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
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    sep = "\t" if path.suffix in (".tsv", ".txt") else ","
    return pd.read_csv(path, sep=sep)
