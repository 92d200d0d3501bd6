"""The Deep MR run: reference sequences -> ISM effects -> instruments -> local MR -> global effects.

``run(config)`` does the whole job for one model, chunk of sequences by chunk of sequences:

1. *predict*: saturation ISM through the model's uncertainty samples (``ism.saturation_effects``):
   paired effect means and SEs, shape (n, W, 3, F);
2. *calibrate* (optional): effect SE x ``Calibrator.se_scale`` per feature;
3. *instruments* per (sequence, exposure) (``instruments.select``);
4. *local MR* per (sequence, exposure, outcome, method) with ``mr.run_batched``: exposures form the
   second-to-last-but-one axis and outcomes the next, ``bx (n, E, 1, M)`` against ``by (n, 1, O, M)``,
   in blocks of exposures so memory stays bounded for models with hundreds of features;
5. the chunk's local table is written atomically (resume skips finished chunks);

then the *global* effect of every (exposure, outcome, method) is the random-effects meta-analysis of
its local estimates over sequences (``meta.random_effects_batched``), and the run folder gets its
tables, ``effects.h5``, figures, ``report.html`` and ``run.json``.

Model-aware interval. The meta-analysis CI treats the local estimates as independent, but they all
come from one trained model, whose error every sequence shares (the simulation experiment measures
how far that CI undercovers). For a deep ensemble of at least ``JACKKNIFE_MIN_MEMBERS`` members the
run also reports ``model_se = sqrt(se^2 + var_jk)`` and ``model_ci_low/high = estimate -/+ z
model_se``, where ``var_jk = (S - 1) / S * sum_s (theta_(-s) - mean theta_(-))^2`` is the
leave-one-member-out jackknife variance of the global estimate: every step (effects, instruments,
local MR, meta-analysis) is repeated without member s. Approximation: the jackknife sees how much the
global effect moves with the ensemble's composition, a proxy for the model's epistemic error; a bias
every member shares stays invisible. Only for methods with analytic SEs (``JACKKNIFE_METHODS``);
NaN for MC dropout (its samples are draws of one model, not models) and for the others.

Assumptions the results rest on (repeated in the report): local linearity of the model around each
reference sequence; MR's exclusion restriction (a mutation acting on the outcome other than through
the exposure biases IVW; Egger/median/mode relax it); the model's quality and inherited biases; the
calibration of its uncertainty; and no causal direction from the data alone.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import hashlib
import importlib
import importlib.util
import inspect
import json
import logging
import os
import platform
import shutil
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from deepmr_kipoi import __version__, instruments, results

logger = logging.getLogger(__name__)

#: MR fields copied from ``mr.run_batched`` results into the local table (NaN where not defined).
LOCAL_FIELDS = (
    "estimate", "se", "ci_low", "ci_high", "pvalue", "q", "q_pvalue", "residual_se",
    "intercept", "intercept_se", "intercept_pvalue", "i2_gx",
)  # fmt: skip
#: Cells (sequences x exposures x outcomes) per ``mr.run_batched`` call: bounds the memory of its
#: result arrays; ``run_batched`` itself never materialises cells x instruments (matrix products for
#: IVW/Egger, chunked gathers for the sorting methods), and few large calls beat many small ones.
MR_BLOCK_CELLS = 2_000_000
#: ``save_effects="auto"`` writes effects.h5 when N x W x 3 x F stays below this many values.
AUTO_EFFECTS_LIMIT = 20_000_000
SEQUENCE_SOURCES = ("random", "fasta", "dataloader")
#: Reason code of ``mr.REASONS`` for cells with too few instruments.
TOO_FEW = 1
#: Deep ensembles of at least this many members get the model-aware (jackknife) interval.
JACKKNIFE_MIN_MEMBERS = 3
#: MR methods whose leave-one-member-out estimates are computed (analytic SEs, no bootstrap).
JACKKNIFE_METHODS = ("ivw", "ivw_fe", "egger")
#: Global-table columns of the model-aware interval.
MODEL_INTERVAL_COLUMNS = ("jackknife_se", "model_se", "model_ci_low", "model_ci_high")


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a Deep MR run (the resolved config is written to ``run.json``).

    Attributes
    ----------
    model : str
        Kipoi model name (``"DeepSEA/predict"``), Kipoi model directory, registered adapter name, or a
        Python factory ``"package.module:function"`` / ``"path/file.py:function"`` returning a
        ``PredictiveModel`` (called with the ``seed``/``n_samples``/``uncertainty`` it accepts).
    source : str, optional
        Kipoi source of ``model``.
    alphabet : str, optional
        Override of the model's input alphabet order.
    uncertainty : {"ensemble", "mc_dropout"}, optional
        Uncertainty method (default: the model's or adapter's own).
    n_samples : int, optional
        Number of MC-dropout samples.
    weight_files : tuple of str
        Weight files loaded instead of the model's own, one ensemble member each.
    adapter : str, optional
        Registered adapter to use instead of the one found by the model's name.
    sequences : {"random", "fasta", "dataloader"}
        Reference sequences: seeded random sequences, ``fasta`` (with ``bed``: intervals sampled from
        a genome; without: the sequences of the FASTA), or the model's Kipoi dataloader.
    fasta, bed : str, optional
        Input files; ``fasta`` given implies ``sequences="fasta"``.
    dataloader_args : dict, optional
        Arguments for the model's default Kipoi dataloader (``sequences="dataloader"``), on top of
        its ``model.yaml`` defaults, e.g. ``{"intervals_file": ..., "fasta_file": ...}``.
    n_sequences : int, optional
        Number of reference sequences (default 20 random ones; all of a FASTA; all BED intervals).
    sequence_length : int, optional
        Sequence length (default: the model's input length).
    exposures, outcomes : tuple of str
        Feature names or fnmatch globs; empty = all features. Pairs with exposure == outcome are
        skipped.
    window : (int, int), optional
        Half-open ISM window within the sequence (default: the whole sequence).
    batch_size : int
        Mutants per forward pass.
    calibrator : str, optional
        A saved calibrator (``calibration.load``) whose SE scale is applied.
    calibration_table : str, optional
        CSV/TSV/Parquet with a ``sequence`` column and one column of observed labels per feature to
        calibrate; a calibrator is fitted on it (``calibration_method``).
    calibration_method : {"quantile", "sigma"}
    z : float
        Instrument threshold (``instruments.select``).
    instrument_rule : {"wald", "pooled"}
        ``"pooled"`` standardises over all sequences at once, so the run uses one chunk (no
        resume within it).
    one_per_position : bool
    min_instruments : int
    methods : tuple of str
        MR methods (``mr.METHODS``).
    n_boot : int
        Bootstrap replicates of the median/mode methods.
    meta_method : {"REML", "DL", "PM"}
    meta_test : {"z", "knha"}
    level : float
        Confidence level of CIs; significance marks use BH q-values below ``1 - level``.
    seed : int
        Seed of random sequences, BED sampling, MC dropout and bootstraps.
    chunk_size : int
        Sequences per chunk (unit of progress, memory and resume).
    out : str, optional
        Run folder; None keeps everything in memory (no files, no figures).
    save_effects : {"auto", True, False}
        Write ``effects.h5`` with the effects of the exposure and outcome features (``"auto"``:
        when it stays below ``AUTO_EFFECTS_LIMIT`` values).
    n_examples : int
        Sequences shown in MR scatter plots.
    figures, report : bool
        Draw figures / write ``report.html`` (needs ``out``).
    progress : bool
        tqdm progress bars.
    force : bool
        Replace chunk files of a different configuration in ``out`` instead of refusing.
    model_interval : bool
        For a deep ensemble of at least ``JACKKNIFE_MIN_MEMBERS`` members, also compute the
        model-aware (leave-one-member-out jackknife) interval of every global effect (module
        docstring); costs one extra local MR per member, no extra predictions.
    """

    model: str | None = None
    source: str | None = None
    alphabet: str | None = None
    uncertainty: str | None = None
    n_samples: int | None = None
    weight_files: tuple[str, ...] = ()
    adapter: str | None = None
    sequences: str = "random"
    fasta: str | None = None
    bed: str | None = None
    dataloader_args: dict | None = None
    n_sequences: int | None = None
    sequence_length: int | None = None
    exposures: tuple[str, ...] = ()
    outcomes: tuple[str, ...] = ()
    window: tuple[int, int] | None = None
    batch_size: int = 512
    calibrator: str | None = None
    calibration_table: str | None = None
    calibration_method: str = "quantile"
    z: float = 1.96
    instrument_rule: str = "wald"
    one_per_position: bool = False
    min_instruments: int = 3
    methods: tuple[str, ...] = ("ivw", "egger")
    n_boot: int = 1000
    meta_method: str = "REML"
    meta_test: str = "z"
    level: float = 0.95
    seed: int = 0
    chunk_size: int = 16
    out: str | None = None
    save_effects: str | bool = "auto"
    n_examples: int = 3
    figures: bool = True
    report: bool = True
    progress: bool = True
    force: bool = False
    model_interval: bool = True

    def to_dict(self) -> dict:
        """The config as plain JSON/YAML-friendly values."""
        d = dataclasses.asdict(self)
        for key, value in d.items():
            if isinstance(value, tuple):
                d[key] = list(value)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> RunConfig:
        """Build a config from a mapping (YAML file, ``run.json``); dashes in keys are accepted.

        Raises
        ------
        ValueError
            On an unknown key (with close matches).
        """
        names = [f.name for f in dataclasses.fields(cls)]
        kwargs = {}
        for key, value in d.items():
            k = str(key).replace("-", "_")
            if k not in names:
                close = difflib.get_close_matches(k, names, n=3)
                hint = f"; did you mean {', '.join(close)}?" if close else ""
                raise ValueError(f"unknown config key {key!r}{hint}")
            kwargs[k] = value
        for k in ("exposures", "outcomes", "methods", "weight_files"):
            if k in kwargs:
                v = kwargs[k]
                kwargs[k] = (v,) if isinstance(v, str) else tuple(v or ())
        if kwargs.get("window") is not None:
            kwargs["window"] = tuple(int(x) for x in kwargs["window"])
        return cls(**kwargs)

    def replace(self, **changes) -> RunConfig:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class DeepMRResult:
    """The outcome of ``run``.

    Attributes
    ----------
    global_effects : DataFrame
        One row per (exposure, outcome, method): meta-analysis fields (estimate, se, ci_low,
        ci_high, pvalue, qvalue, significant, tau2, i2, q, q_pvalue, pi_low, pi_high, k), the
        model-aware interval (jackknife_se, model_se, model_ci_low, model_ci_high; NaN where not
        computed) and diagnostics (n_sequences, median_instruments, Egger intercept and I^2_GX
        summaries).
    local_effects : DataFrame
        One row per (sequence, exposure, outcome, method): MR fields, ``n_instruments``, ``reason``.
    config : RunConfig
        The resolved config.
    run_info : dict
        What ``run.json`` holds (versions, model identity, seeds, timings, chunks, warnings).
    warnings : tuple of str
        Plain-words warnings about the results.
    out_dir : Path or None
    """

    global_effects: pd.DataFrame
    local_effects: pd.DataFrame
    config: RunConfig
    run_info: dict
    warnings: tuple[str, ...]
    out_dir: Path | None


# ----------------------------------------------------------------------------------------------
# inputs


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
    ValueError
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
            raise ValueError(f"unknown {role} feature {pattern!r}; {hint}")
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
            raise ValueError(f"model factory file not found: {target}; check the --model path")
        name = "deepmr_factory_" + hashlib.md5(str(path.resolve()).encode()).hexdigest()[:12]
        mod_spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(mod_spec)
        mod_spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as err:
            raise ValueError(f"cannot import model factory module {target!r}: {err}") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ValueError(f"{spec!r}: {attr!r} is not a function in {target}")
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
    ValueError
        When no model is named or it cannot be loaded.
    """
    spec = config.model
    if not spec:
        raise ValueError(
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
    ValueError
        Missing files, BED intervals off the chromosome, sequences of the wrong length, ...
    """
    from deepmr_kipoi import sequences as seqmod

    source = "fasta" if config.fasta else config.sequences
    if source not in SEQUENCE_SOURCES:
        raise ValueError(
            f"unknown sequence source {config.sequences!r}; use one of {', '.join(SEQUENCE_SOURCES)}"
        )
    if config.bed and not config.fasta:
        raise ValueError("--bed needs --fasta (the genome the intervals refer to)")
    length = config.sequence_length or model_length
    if config.sequence_length and model_length and config.sequence_length != model_length:
        raise ValueError(
            f"--sequence-length {config.sequence_length} differs from the model's input length "
            f"{model_length}; drop --sequence-length"
        )
    n = config.n_sequences
    if n is not None and int(n) < 1:
        raise ValueError(f"n_sequences must be >= 1, got {n}")
    if source == "fasta":
        fasta = Path(config.fasta)
        if not fasta.is_file():
            raise ValueError(f"FASTA file not found: {fasta}; check the --fasta path")
        if config.bed:
            bed = Path(config.bed)
            if not bed.is_file():
                raise ValueError(f"BED file not found: {bed}; check the --bed path")
            if length is None:
                raise ValueError("the model does not declare its input length; pass --sequence-length")
            ids, onehot = seqmod.read_fasta_bed(fasta, bed, int(length), n=n, seed=config.seed)
        else:
            ids, onehot = _read_fasta_checked(seqmod, fasta, length)
            if n is not None:
                ids, onehot = ids[: int(n)], onehot[: int(n)]
    elif source == "dataloader":
        ids, onehot = _dataloader_sequences(config, n)
    else:
        if length is None:
            raise ValueError("the model does not declare its input length; pass --sequence-length")
        n_random = 20 if n is None else int(n)
        onehot = seqmod.random_sequences(n_random, int(length), seed=config.seed)
        ids = [f"random_{i}" for i in range(n_random)]
    ids = [str(i) for i in ids]
    onehot = np.asarray(onehot, dtype=np.float32)
    if onehot.ndim != 3 or onehot.shape[-1] != 4 or len(onehot) == 0:
        raise ValueError(f"no usable sequences were read (array shape {onehot.shape})")
    if model_length is not None and onehot.shape[1] != model_length:
        raise ValueError(
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
            raise ValueError(
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
        raise ValueError("--sequences dataloader needs a Kipoi model (--model NAME or DIR)")
    desc = kipoi_models.describe_model(config.model, source=config.source)
    if desc.dataloader is None or desc.layout is None:
        raise ValueError(
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
        raise ValueError(
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
        raise ValueError(f"the dataloader of {config.model} yielded no sequences")
    x = np.concatenate(parts)[: n if n is not None else None]
    onehot = seqmod.reorder_alphabet(seqmod.from_layout(x, desc.layout), desc.alphabet, "ACGT")
    return ids[: len(onehot)], onehot


# ----------------------------------------------------------------------------------------------
# calibration


@dataclass(frozen=True)
class _Calibration:
    se_scale: np.ndarray  # (F,)
    features: tuple[str, ...]  # features actually calibrated
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


def _calibration(config: RunConfig, model, feature_names: list[str]) -> _Calibration | None:
    if config.calibrator and config.calibration_table:
        raise ValueError("give either --calibrator or --calibration-table, not both")
    if not (config.calibrator or config.calibration_table):
        return None
    from deepmr_kipoi import calibration

    n_feat = len(feature_names)
    if config.calibrator:
        path = Path(config.calibrator)
        if not path.is_file():
            raise ValueError(f"calibrator file not found: {path}; check the --calibrator path")
        cal = calibration.load(path)
        scale = np.asarray(cal.se_scale, dtype=np.float64)
        names = getattr(cal, "feature_names", None)
        full = np.ones(n_feat)
        if names:
            unknown = [f for f in names if f not in feature_names]
            if unknown:
                raise ValueError(
                    f"calibrator {path} names features the model lacks: {', '.join(unknown[:5])}"
                )
            for f, s in zip(names, scale):
                full[feature_names.index(f)] = s
            used = tuple(names)
        elif scale.shape == (n_feat,):
            full, used = scale, tuple(feature_names)
        else:
            raise ValueError(
                f"calibrator {path} has {scale.size} SE scales but the model has {n_feat} features"
            )
        return _Calibration(full, used, None, None, None, None, str(path), tuple(feature_names))

    table = _read_table(Path(config.calibration_table))
    if "sequence" not in table.columns:
        raise ValueError(
            f"{config.calibration_table} needs a 'sequence' column plus one label column per feature"
        )
    cols = [c for c in table.columns if c in feature_names]
    if not cols:
        raise ValueError(
            f"{config.calibration_table} has no column named like a model feature "
            f"(e.g. {feature_names[0]!r})"
        )
    from deepmr_kipoi import sequences as seqmod

    seqs = table["sequence"].astype(str).tolist()
    lengths = {len(s) for s in seqs}
    model_length = getattr(model, "sequence_length", None)
    if len(lengths) != 1 or (model_length and lengths != {model_length}):
        raise ValueError(
            f"calibration sequences must all be {model_length or 'equally long'} bp, "
            f"got lengths {sorted(lengths)[:5]}"
        )
    onehot = seqmod.one_hot(seqs)
    samples = np.asarray(model.predict_samples(onehot, batch_size=config.batch_size))
    idx = [feature_names.index(c) for c in cols]
    pred_mean = samples.mean(axis=0)[:, idx]
    pred_sd = samples.std(axis=0, ddof=1)[:, idx]
    y = table[cols].to_numpy(dtype=np.float64)
    cal = calibration.fit(pred_mean, pred_sd, y, method=config.calibration_method, feature_names=cols)
    full = np.ones(n_feat)
    full[idx] = np.asarray(cal.se_scale, dtype=np.float64)
    return _Calibration(
        se_scale=full,
        features=tuple(cols),
        metrics_before=calibration.metrics(pred_mean, pred_sd, y),
        metrics_after=calibration.metrics(pred_mean, pred_sd, y, calibrator=cal),
        curve_before=calibration.curve(pred_mean, pred_sd, y),
        curve_after=calibration.curve(pred_mean, pred_sd, y, calibrator=cal),
        source=str(config.calibration_table),
        feature_names=tuple(feature_names),
    )


def _read_table(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise ValueError(f"table not found: {path}; check the path")
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    sep = "\t" if path.suffix in (".tsv", ".txt") else ","
    return pd.read_csv(path, sep=sep)


# ----------------------------------------------------------------------------------------------
# per-chunk computation


def local_mr(
    mean: np.ndarray,
    se: np.ndarray,
    exposures: Sequence[int],
    outcomes: Sequence[int],
    selection: instruments.InstrumentSelection,
    methods: Sequence[str],
    *,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    min_instruments: int = 3,
    block_cells: int = MR_BLOCK_CELLS,
) -> dict[str, dict[str, np.ndarray]]:
    """Local MR of every (sequence, exposure, outcome) for each method, as array code.

    Parameters
    ----------
    mean, se : ndarray, shape (n, W, 3, F)
        Paired ISM effects and (calibrated) SEs.
    exposures, outcomes : sequence of int
        Feature indices, lengths E and O.
    selection : InstrumentSelection
        Instruments with ``mask`` of shape (n, W, 3, E). The mask varies along the exposure side
        only, which keeps IVW/Egger on ``mr.run_batched``'s matrix-product path; instruments whose
        outcome effect or SE is unusable (non-finite, SE 0) are dropped per cell
        (``drop_invalid=True``).
    methods : sequence of str
        Names in ``mr.METHODS``.
    n_boot, seed, level
        Passed to ``mr.run_batched``; each exposure block gets its own seed derived from ``seed``.
    min_instruments : int
        Cells with fewer usable instruments (after dropping unusable outcome effects) are NaN with
        reason "too few instruments", on top of each method's own minimum.
    block_cells : int
        Bound on n x E_block x O cells per ``mr.run_batched`` call.

    Returns
    -------
    dict
        ``{method: {field: ndarray (n, E, O)}}`` with the fields of :data:`LOCAL_FIELDS` plus
        ``n_instruments`` and ``reason``. Cells with exposure == outcome are computed like any other
        and dropped by the caller.
    """
    from deepmr_kipoi import mr

    n = mean.shape[0]
    m = mean.shape[1] * 3
    ex, oc = list(exposures), list(outcomes)
    n_e, n_o = len(ex), len(oc)

    def flat(a, idx):  # (n, W, 3, F) -> (n, k, M)
        return np.ascontiguousarray(a[..., idx].reshape(n, m, len(idx)).transpose(0, 2, 1))

    bx, sx = flat(mean, ex), flat(se, ex)
    by, sy = flat(mean, oc), flat(se, oc)
    mask_x = selection.mask.reshape(n, m, n_e).transpose(0, 2, 1)

    block = max(1, int(block_cells) // max(1, n * n_o))
    out: dict[str, dict[str, np.ndarray]] = {}
    seeds = np.random.SeedSequence(int(seed)).generate_state(len(methods) * n_e + 1)
    for mi, method in enumerate(methods):
        fields = {f: np.full((n, n_e, n_o), np.nan) for f in LOCAL_FIELDS}
        fields["n_instruments"] = np.zeros((n, n_e, n_o), dtype=np.int64)
        fields["reason"] = np.zeros((n, n_e, n_o), dtype=np.int64)
        for start in range(0, n_e, block):
            sl = slice(start, min(n_e, start + block))
            r = mr.run_batched(
                method,
                bx[:, sl, None, :],
                by[:, None, :, :],
                sx[:, sl, None, :],
                sy[:, None, :, :],
                mask=mask_x[:, sl, None, :],
                drop_invalid=True,
                n_boot=n_boot,
                seed=int(seeds[mi * n_e + start]),
                level=level,
            )
            for f in LOCAL_FIELDS:
                value = getattr(r, f, None)
                if value is not None:
                    fields[f][:, sl, :] = np.broadcast_to(value, fields[f][:, sl, :].shape)
            fields["n_instruments"][:, sl, :] = r.n_instruments
            fields["reason"][:, sl, :] = r.reason
        few = (fields["reason"] == 0) & (fields["n_instruments"] < int(min_instruments))
        for f in LOCAL_FIELDS:
            fields[f][few] = np.nan
        fields["reason"][few] = TOO_FEW
        out[method] = fields
    return out


def _local_table(
    mr_out: dict[str, dict[str, np.ndarray]],
    seq_index: np.ndarray,
    all_ids: Sequence[str],
    exposures: Sequence[int],
    outcomes: Sequence[int],
    feature_names: Sequence[str],
    methods: Sequence[str],
) -> pd.DataFrame:
    """Local MR arrays (n, E, O) as rows; names are categoricals (tables of 10^7 rows stay small)."""
    n, n_e, n_o = len(seq_index), len(exposures), len(outcomes)
    si, ei, oi = np.meshgrid(np.arange(n), np.arange(n_e), np.arange(n_o), indexing="ij")
    e_feat = np.asarray(exposures)[ei.ravel()]
    o_feat = np.asarray(outcomes)[oi.ravel()]
    keep = e_feat != o_feat
    cats = pd.CategoricalDtype(list(feature_names))
    # ids may repeat (FASTA records of one name): categories are the distinct ids
    distinct = list(dict.fromkeys(all_ids))
    code_of = {name: i for i, name in enumerate(distinct)}
    id_codes = np.array([code_of[all_ids[g]] for g in seq_index])[si.ravel()][keep]
    id_dtype = pd.CategoricalDtype(distinct)
    frames = []
    for method in methods:
        fields = mr_out[method]
        frame = {
            "sequence_index": seq_index[si.ravel()][keep].astype(np.int64),
            "sequence_id": pd.Categorical.from_codes(id_codes, dtype=id_dtype),
            "exposure": pd.Categorical.from_codes(e_feat[keep], dtype=cats),
            "outcome": pd.Categorical.from_codes(o_feat[keep], dtype=cats),
            "method": pd.Categorical([method] * int(keep.sum()), categories=list(methods)),
        }
        for f in (*LOCAL_FIELDS, "n_instruments", "reason"):
            frame[f] = fields[f].ravel()[keep]
        frames.append(pd.DataFrame(frame))
    return pd.concat(frames, ignore_index=True)


# ----------------------------------------------------------------------------------------------
# global effects


def _loo_columns(local: pd.DataFrame) -> list[int]:
    """Member indices s of the ``loo_estimate_{s}`` columns of a local table."""
    return sorted(int(c.rsplit("_", 1)[1]) for c in local.columns if c.startswith("loo_estimate_"))


def _model_interval(ordered, grid, mb, method: str, test: str, level: float) -> dict:
    """Jackknife SE and model-aware interval per global effect (NaN without leave-one-out columns)."""
    from scipy import stats

    from deepmr_kipoi import meta

    n_pairs = len(mb.estimate)
    out = {name: np.full(n_pairs, np.nan) for name in MODEL_INTERVAL_COLUMNS}
    members = _loo_columns(ordered)
    if len(members) < JACKKNIFE_MIN_MEMBERS:
        return out
    thetas = []
    for s in members:
        est, se = grid(f"loo_estimate_{s}"), grid(f"loo_se_{s}")
        ok = np.isfinite(est) & np.isfinite(se) & (se > 0)
        thetas.append(meta.random_effects_batched(est, se, mask=ok, method=method, test=test,
                                                  level=level).estimate)  # fmt: skip
    theta = np.stack(thetas)
    n = theta.shape[0]
    with np.errstate(invalid="ignore"):
        var_jk = (n - 1) / n * ((theta - theta.mean(axis=0)) ** 2).sum(axis=0)
    z = stats.norm.ppf(0.5 + level / 2)
    out["jackknife_se"] = np.sqrt(var_jk)
    out["model_se"] = np.sqrt(np.asarray(mb.se) ** 2 + var_jk)
    out["model_ci_low"] = mb.estimate - z * out["model_se"]
    out["model_ci_high"] = mb.estimate + z * out["model_se"]
    return out


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q-values); NaN stays NaN and is not counted.

    Parameters
    ----------
    p : ndarray, shape (P,)

    Returns
    -------
    ndarray, shape (P,)
    """
    p = np.asarray(p, dtype=np.float64)
    q = np.full_like(p, np.nan)
    ok = np.isfinite(p)
    m = int(ok.sum())
    if m == 0:
        return q
    order = np.argsort(p[ok])
    ranked = p[ok][order] * m / np.arange(1, m + 1)
    ranked = np.minimum.accumulate(ranked[::-1])[::-1]
    vals = np.empty(m)
    vals[order] = np.minimum(ranked, 1.0)
    q[ok] = vals
    return q


def global_effects(
    local: pd.DataFrame,
    n_sequences: int,
    *,
    method: str = "REML",
    test: str = "z",
    level: float = 0.95,
) -> pd.DataFrame:
    """Random-effects meta-analysis of the local effects of every (exposure, outcome, method).

    Parameters
    ----------
    local : DataFrame
        The full local table: exactly ``n_sequences`` rows per (exposure, outcome, method).
    n_sequences : int
    method, test, level
        Passed to ``meta.random_effects_batched``.

    Returns
    -------
    DataFrame
        One row per (exposure, outcome, method). A local estimate enters when its MR reason is 0
        ("ok") and its estimate and SE are finite with SE > 0.
    """
    from deepmr_kipoi import meta

    key = ["method", "exposure", "outcome"]
    ordered = local.sort_values([*key, "sequence_index"], kind="stable")
    n_pairs, rem = divmod(len(ordered), n_sequences)
    if rem:
        raise ValueError(
            f"local table has {len(ordered)} rows, not a multiple of {n_sequences} sequences"
        )

    def grid(col, dtype=np.float64):
        return ordered[col].to_numpy(dtype=dtype).reshape(n_pairs, n_sequences)

    est, se = grid("estimate"), grid("se")
    reason = grid("reason", np.int64)
    ok = (reason == 0) & np.isfinite(est) & np.isfinite(se) & (se > 0)
    mb = meta.random_effects_batched(est, se, mask=ok, method=method, test=test, level=level)
    first = ordered.iloc[::n_sequences]
    table = pd.DataFrame(
        {
            "exposure": first["exposure"].astype(str).to_numpy(),
            "outcome": first["outcome"].astype(str).to_numpy(),
            "method": first["method"].astype(str).to_numpy(),
        }
    )
    for f in ("estimate", "se", "ci_low", "ci_high", "pvalue"):
        table[f] = getattr(mb, f)
    table["qvalue"] = np.nan
    for name in table["method"].unique():
        sel = table["method"].to_numpy() == name
        table.loc[sel, "qvalue"] = benjamini_hochberg(table.loc[sel, "pvalue"].to_numpy())
    table["significant"] = table["qvalue"].to_numpy() < (1.0 - level)
    for f in ("tau2", "i2", "q", "q_pvalue", "pi_low", "pi_high"):
        table[f] = getattr(mb, f)
    table["k"] = mb.k
    for name, values in _model_interval(ordered, grid, mb, method, test, level).items():
        table[name] = values
    table["n_sequences"] = n_sequences
    table["converged"] = mb.converged
    table["meta_reason"] = mb.reason.astype(np.int64)

    n_inst = np.where(ok, grid("n_instruments"), np.nan)
    intercept_p = np.where(ok, grid("intercept_pvalue"), np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: median NaN is right
        table["median_instruments"] = np.nanmedian(n_inst, axis=1)
        table["egger_intercept_median"] = np.nanmedian(np.where(ok, grid("intercept"), np.nan), axis=1)
        n_int = np.isfinite(intercept_p).sum(axis=1)
        frac = (np.nan_to_num(intercept_p, nan=1.0) < 1.0 - level).sum(axis=1) / np.maximum(n_int, 1)
        table["egger_intercept_sig_frac"] = np.where(n_int > 0, frac, np.nan)
        table["i2_gx_median"] = np.nanmedian(np.where(ok, grid("i2_gx"), np.nan), axis=1)
    return table


def plain_warnings(
    glob: pd.DataFrame, *, calibrated: bool, n_masked: int, level: float = 0.95
) -> list[str]:
    """Warnings about a run's results, in plain words, for the report and the log.

    Parameters
    ----------
    glob : DataFrame
        Global effects (``global_effects``).
    calibrated : bool
        Whether effect SEs were calibrated.
    n_masked : int
        Number of sequence positions holding N (never mutated).
    level : float

    Returns
    -------
    list of str
    """
    out = []
    alpha = 1.0 - level
    if not calibrated:
        out.append(
            "The model's uncertainty was not calibrated (no --calibration-table or --calibrator): "
            "ensemble and MC-dropout spreads are often too narrow, which makes p-values too small."
        )
    if n_masked:
        out.append(f"{n_masked} sequence positions hold N; they were not mutated.")
    few = glob["k"] < 3
    if few.any():
        out.append(
            f"{int(few.sum())} of {len(glob)} global effects rest on fewer than 3 sequences with "
            "enough instruments; treat them as anecdotes (lower --z, widen the window, or add "
            "sequences)."
        )
    sig = glob["significant"].fillna(False).to_numpy(dtype=bool)
    high_het = sig & (glob["i2"].to_numpy() > 75)
    if high_het.any():
        out.append(
            f"{int(high_het.sum())} significant global effects vary strongly between sequences "
            "(I^2 > 75%): the average hides sequence-specific effects; see the forest plots."
        )
    egger = glob[glob["method"] == "egger"]
    if len(egger):
        weak = egger["i2_gx_median"].to_numpy() < 90
        if np.any(weak):
            out.append(
                f"For {int(np.sum(weak))} pairs the median I^2_GX is below 90%: Egger slopes are "
                "diluted toward zero there (weak-instrument regression dilution)."
            )
        pleio = egger["egger_intercept_sig_frac"].to_numpy() > 2 * alpha
        if np.any(pleio):
            out.append(
                f"For {int(np.sum(pleio))} pairs the Egger intercept differs from zero in more "
                f"sequences than the {alpha:.0%} expected by chance: mutations act on the outcome "
                "other than through the exposure (pleiotropy), which biases IVW."
            )
    methods = glob["method"].unique()
    if "ivw" in methods and "egger" in methods:
        j = glob[glob["method"] == "ivw"].merge(
            glob[glob["method"] == "egger"], on=["exposure", "outcome"], suffixes=("_ivw", "_egger")
        )
        flip = j["significant_ivw"].fillna(False).astype(bool) & (
            np.sign(j["estimate_ivw"]) != np.sign(j["estimate_egger"])
        )
        if flip.any():
            out.append(
                f"IVW and Egger disagree in sign for {int(flip.sum())} pairs that IVW calls "
                "significant; do not trust their direction without further checks."
            )
    ivw = glob[glob["method"] == glob["method"].iloc[0]] if len(glob) else glob
    sig_pairs = {
        (e, o) for e, o, s in zip(ivw["exposure"], ivw["outcome"], ivw["significant"]) if s
    }
    both = {tuple(sorted(p)) for p in sig_pairs if (p[1], p[0]) in sig_pairs}
    if both:
        out.append(
            f"{len(both)} feature pairs are significant in both directions: MR on one model cannot "
            "tell which feature drives the other from these data alone."
        )
    return out


# ----------------------------------------------------------------------------------------------
# the run


def config_hash(config: RunConfig, identity: dict, feature_names: Sequence[str], n_seq: int) -> str:
    """Hash of everything that determines the chunk results (not the output or display options).

    Of the model it takes the name, sample count and features: the same model loaded through
    another route (the demo, or ``deepmr run --config`` of its written config) keeps its hash.
    Weight files are compared separately by md5 where known (:func:`weights_signature`).
    """
    d = config.to_dict()
    for k in ("out", "progress", "force", "figures", "report", "n_examples", "save_effects"):
        d.pop(k, None)
    payload = {
        "config": d,
        "model": {k: identity.get(k) for k in ("name", "n_samples", "n_features")},
        "features": list(feature_names),
        "n_sequences": n_seq,
        "version": __version__,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def weights_signature(identity: dict) -> list[str] | None:
    """Sorted md5s of the model's weight files, or None where they are not known."""
    md5s = [w.get("md5") for w in identity.get("weights") or []]
    return sorted(md5s) if md5s and all(md5s) else None


def _validate(config: RunConfig) -> None:
    from deepmr_kipoi import mr

    bad = [m for m in config.methods if m not in mr.METHODS]
    if bad or not config.methods:
        raise ValueError(
            f"unknown MR method {', '.join(bad) or '(none)'}; choose from {', '.join(mr.METHODS)}"
        )
    if config.meta_method.upper() not in ("REML", "DL", "PM"):
        raise ValueError(f"unknown meta-analysis method {config.meta_method!r}; use REML, DL or PM")
    if config.meta_test not in ("z", "knha"):
        raise ValueError(f"unknown meta-analysis test {config.meta_test!r}; use z or knha")
    if not 0 < config.level < 1:
        raise ValueError(f"level must lie in (0, 1), got {config.level}")
    if config.instrument_rule not in instruments.RULES:
        raise ValueError(
            f"unknown instrument rule {config.instrument_rule!r}; use {' or '.join(instruments.RULES)}"
        )
    if int(config.chunk_size) < 1 or int(config.batch_size) < 1:
        raise ValueError("chunk_size and batch_size must be >= 1")
    if config.save_effects not in ("auto", True, False):
        raise ValueError(f"save_effects must be auto, true or false, got {config.save_effects!r}")


def _check_window(window, length: int) -> tuple[int, int]:
    if window is None:
        return 0, length
    start, end = (int(x) for x in window)
    if not 0 <= start < end <= length:
        raise ValueError(
            f"ISM window {start}-{end} does not fit sequences of {length} bp; give 0 <= start < "
            f"end <= {length}"
        )
    return start, end


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version(), "deepmr_kipoi": __version__}
    for pkg in ("numpy", "scipy", "pandas", "pyarrow", "h5py", "matplotlib", "kipoi", "torch",
                "tensorflow"):  # fmt: skip
        if pkg in ("torch", "tensorflow") and pkg not in sys.modules:
            continue
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            continue
    return out


def run(
    config: RunConfig,
    *,
    model=None,
    identity: dict | None = None,
    truth: pd.DataFrame | None = None,
    on_chunk: Callable[[int, int], None] | None = None,
) -> DeepMRResult:
    """Run Deep MR end to end.

    Parameters
    ----------
    config : RunConfig
    model : PredictiveModel, optional
        Use this model instead of loading ``config.model`` (``identity`` then describes it).
    identity : dict, optional
        Model identity for ``run.json`` when ``model`` is given.
    truth : DataFrame, optional
        Known global effects (columns exposure, outcome, true_effect) for the report's headline
        (the demo and simulations).
    on_chunk : callable, optional
        Called as ``on_chunk(chunk_index, n_chunks)`` after each computed chunk is written.

    Returns
    -------
    DeepMRResult

    Raises
    ------
    ValueError
        On bad input, with a one-line reason. Files this call created are removed first (the run
        folder itself when this call created it), so nothing half-written is left behind.
    """
    started = time.time()
    timings: dict[str, float] = {}
    tick = time.perf_counter()
    _validate(config)
    if model is None:
        model, identity = load_model(config)
    else:
        identity = dict(identity or {"name": config.model or type(model).__name__})
        identity.setdefault("n_samples", int(getattr(model, "n_samples", 0) or 0))
        identity.setdefault("n_features", len(model.feature_names))
    feature_names = [str(f) for f in model.feature_names]
    s = int(getattr(model, "n_samples", 0) or 0)
    if s < 2:
        raise ValueError(
            f"the model gives {s} prediction per input, so mutation effects have no standard error; "
            "add uncertainty: an ensemble (--uncertainty ensemble, several members) or MC dropout "
            "(--uncertainty mc_dropout --n-samples 30)"
        )
    exposures = select_features(config.exposures, feature_names, "exposure")
    outcomes = select_features(config.outcomes, feature_names, "outcome")
    if not any(e != o for e in exposures for o in outcomes):
        raise ValueError(
            f"exposure and outcome are the same feature ({feature_names[exposures[0]]}); choose "
            "different --exposures and --outcomes"
        )
    timings["load_model"] = time.perf_counter() - tick

    tick = time.perf_counter()
    seq_ids, onehot = load_sequences(config, getattr(model, "sequence_length", None))
    n_seq, length = onehot.shape[:2]
    window = _check_window(config.window, length)
    cal = _calibration(config, model, feature_names)
    timings["inputs_and_calibration"] = time.perf_counter() - tick

    used = sorted(set(exposures) | set(outcomes))
    n_win = window[1] - window[0]
    save_effects = config.save_effects
    if save_effects == "auto":
        save_effects = n_seq * n_win * 3 * len(used) <= AUTO_EFFECTS_LIMIT
    chunk_size = int(config.chunk_size)
    if config.instrument_rule == "pooled" and chunk_size < n_seq:
        logger.info("pooled instrument rule: one chunk of all %d sequences (pooled statistics)", n_seq)
        chunk_size = n_seq
    bounds = [(a, min(n_seq, a + chunk_size)) for a in range(0, n_seq, chunk_size)]
    chash = config_hash(config.replace(chunk_size=chunk_size), identity, feature_names, n_seq)

    out_dir = Path(config.out) if config.out else None
    created: list[Path] = []
    made_dir = False
    store = None
    try:
        if out_dir is not None:
            if out_dir.exists() and not out_dir.is_dir():
                raise ValueError(f"--out {out_dir} exists and is not a folder; choose another --out")
            if not out_dir.exists():
                out_dir.mkdir(parents=True)
                made_dir = True
            store = results.ChunkStore(out_dir, chash, weights=weights_signature(identity))
            if config.force and not store.matches():
                results.clear_outputs(out_dir)
            created += store.prepare(len(bounds), force=config.force)

        result = _run_chunks(
            config, model, onehot, seq_ids, bounds, exposures, outcomes, used, window, cal,
            store, created, save_effects, on_chunk, timings,
        )  # fmt: skip
        local, arrays, resumed = result
        if not ((local["reason"] == 0) & np.isfinite(local["estimate"])).any():
            raise ValueError(
                f"no sequence had at least {config.min_instruments} instruments for any pair; "
                "lower --z, widen --window, or use more or other sequences"
            )
        tick = time.perf_counter()
        glob = global_effects(
            local, n_seq, method=config.meta_method, test=config.meta_test, level=config.level
        )
        timings["meta"] = time.perf_counter() - tick
        # the leave-one-member-out estimates live on in the chunk files (for resuming), not in
        # the local table users read
        local = local.drop(columns=[c for c in local.columns if c.startswith("loo_")])
        n_masked = int(arrays.get("n_masked", 0))
        warns = plain_warnings(
            glob, calibrated=cal is not None, n_masked=n_masked, level=config.level
        )
        for w in warns:
            logger.warning(w)
        run_info = {
            "deepmr_kipoi_version": __version__,
            "config": config.to_dict(),
            "config_hash": chash,
            "model": identity,
            "features": {
                "exposures": [feature_names[i] for i in exposures],
                "outcomes": [feature_names[i] for i in outcomes],
            },
            "sequences": {"n": n_seq, "length": int(length), "window": list(window),
                          "ids": seq_ids if n_seq <= 1000 else seq_ids[:1000]},  # fmt: skip
            "seeds": {"sequences": config.seed, "model": config.seed, "bootstrap": config.seed},
            "chunks": {"n": len(bounds), "size": chunk_size, "resumed": resumed},
            "calibration": None if cal is None else {
                "source": cal.source, "method": config.calibration_method,
                "se_scale": dict(cal.scale_items()),
            },  # fmt: skip
            "warnings": warns,
            "truth": None if truth is None else truth.to_dict(orient="records"),
            "versions": _versions(),
            "platform": platform.platform(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
        }
        if out_dir is not None:
            _write_outputs(
                out_dir, config, glob, local, arrays, run_info, feature_names, used, seq_ids,
                cal, truth, save_effects, timings, created, started,
            )  # fmt: skip
        else:
            timings["total"] = time.time() - started
            run_info["timings_s"] = timings
    except ValueError:
        _clean_up(out_dir, made_dir, created)
        raise
    return DeepMRResult(
        global_effects=glob,
        local_effects=local,
        config=config,
        run_info=run_info,
        warnings=tuple(warns),
        out_dir=out_dir,
    )


def _clean_up(out_dir: Path | None, made_dir: bool, created: list[Path]) -> None:
    if out_dir is None:
        return
    if made_dir:
        shutil.rmtree(out_dir, ignore_errors=True)
        return
    for p in reversed(created):
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        elif p.exists():
            p.unlink()


def _run_chunks(
    config, model, onehot, seq_ids, bounds, exposures, outcomes, used, window, cal, store,
    created, save_effects, on_chunk, timings,
):  # fmt: skip
    """Compute (or read back) every chunk; return the local table, kept arrays, resumed chunks."""
    from tqdm.auto import tqdm


    feature_names = [str(f) for f in model.feature_names]
    n_seq = len(onehot)
    frames: list[pd.DataFrame] = []
    kept: dict[int, dict[str, np.ndarray]] = {}
    resumed: list[int] = []
    n_masked = 0
    timings.setdefault("ism", 0.0)
    timings.setdefault("mr", 0.0)
    bar = tqdm(total=n_seq, unit="seq", desc="Deep MR", disable=not config.progress, leave=False)
    per_member = _jackknife_members(model, config)
    try:
        for ci, (a, b) in enumerate(bounds):
            if store is not None and store.is_done(ci):
                resumed.append(ci)
                frames.append(store.read_local(ci))
                arrs = store.read_arrays(ci)
                if arrs is not None:
                    kept[ci] = arrs
                    n_masked += int(arrs["n_masked"])
                bar.update(b - a)
                continue
            tick = time.perf_counter()
            eff = _chunk_effects(model, onehot[a:b], window, config, bar, per_member=per_member)
            timings["ism"] += time.perf_counter() - tick
            tick = time.perf_counter()
            mean = np.asarray(eff["mean"], dtype=np.float64)
            idx = np.arange(a, b)
            labels = (idx, seq_ids, exposures, outcomes, feature_names)
            frame, sel, se = _local_step(mean, eff["se"], cal, config, ci, labels, config.methods)
            if "member_means" in eff:
                frame = _add_leave_one_out(frame, eff["member_means"], cal, config, ci, labels)
            timings["mr"] += time.perf_counter() - tick
            is_n = eff["is_n"]
            chunk_masked = int(is_n.sum())
            n_masked += chunk_masked
            keep = idx if save_effects else idx[idx < config.n_examples]
            arrs = None
            if len(keep):
                rows = keep - a
                arrs = {
                    "sequence_index": keep,
                    "mean": mean[rows][..., used].astype(np.float32),
                    "se": se[rows][..., used].astype(np.float32),
                    "instrument_mask": sel.mask[rows],
                    "reference": eff["reference"][:, rows][..., used].astype(np.float32),
                    "alt_bases": eff["alt_bases"][rows],
                    "positions": eff["positions"],
                    "n_masked": np.asarray(chunk_masked),
                }
            else:
                arrs = {"n_masked": np.asarray(chunk_masked)}
            if store is not None:
                created += store.write(ci, frame, arrs)
                frame = store.read_local(ci)
            frames.append(frame)
            kept[ci] = arrs
            if on_chunk is not None:
                on_chunk(ci, len(bounds))
    finally:
        bar.close()
    local = pd.concat(frames, ignore_index=True)
    merged = _merge_arrays([kept[k] for k in sorted(kept)])
    merged["n_masked"] = n_masked
    return local, merged, resumed


def _jackknife_members(model, config: RunConfig) -> bool:
    """Whether this run computes the model-aware interval (a deep ensemble of enough members)."""
    from deepmr_kipoi.predictive import DeepEnsemble

    return (bool(config.model_interval) and isinstance(model, DeepEnsemble)
            and model.n_samples >= JACKKNIFE_MIN_MEMBERS
            and any(m in JACKKNIFE_METHODS for m in config.methods))  # fmt: skip


def _chunk_effects(model, onehot, window, config, bar, per_member: bool = False) -> dict:
    """ISM effects of a chunk, a few sequences per call so the progress bar moves with ETA.

    Each call gets enough sequences to fill about four mutant batches; the effects are exact per
    sequence, so splitting changes nothing but the progress updates. ``per_member``: run ISM member
    by member (the same forward passes) and also return their effects, ``member_means`` (S, n, W,
    3, F); the ensemble's mean and SD (ddof = 1) are then taken over them, as the engine does.
    """
    from deepmr_kipoi import ism
    from deepmr_kipoi.predictive import Deterministic

    n, length = onehot.shape[:2]
    width = window[1] - window[0]
    step = max(1, -(-4 * int(config.batch_size) // (3 * width)))
    kwargs = {"window": None if window == (0, length) else window,
              "batch_size": int(config.batch_size), "progress": False}  # fmt: skip
    parts, members = [], []
    for i in range(0, n, step):
        part = onehot[i : i + step]
        if per_member:
            each = [ism.saturation_effects(Deterministic(m), part, **kwargs) for m in model.members]
            members.append(np.stack([e.mean for e in each]))
            eff = dataclasses.replace(
                each[0], mean=members[-1].mean(axis=0, dtype=np.float64),
                se=members[-1].std(axis=0, ddof=1, dtype=np.float64),
                reference=np.concatenate([e.reference for e in each]), n_samples=len(each),
            )  # fmt: skip
        else:
            eff = ism.saturation_effects(model, part, **kwargs)
        parts.append(eff)
        bar.update(min(step, n - i))
    out = {
        "mean": np.concatenate([p.mean for p in parts]),
        "se": np.concatenate([p.se for p in parts]),
        "reference": np.concatenate([np.asarray(p.reference) for p in parts], axis=1),
        "alt_bases": np.concatenate([np.asarray(p.alt_bases) for p in parts]),
        "is_n": np.concatenate([np.asarray(p.is_n) for p in parts]),
        "positions": np.asarray(parts[0].positions),
    }
    if per_member:
        out["member_means"] = np.concatenate(members, axis=1)
    return out


def _local_step(mean, se, cal, config, chunk, labels, methods):
    """Calibration, instrument selection and local MR of a chunk's effects.

    ``labels``: (sequence indices, all sequence ids, exposures, outcomes, feature names).
    Returns the local table, the instrument selection and the calibrated SEs.
    """
    idx, seq_ids, exposures, outcomes, feature_names = labels
    se = np.asarray(se, dtype=np.float64)
    if cal is not None:
        se = se * cal.se_scale
    sel = instruments.select(mean[..., exposures], se[..., exposures], z=config.z,
                             rule=config.instrument_rule, one_per_position=config.one_per_position,
                             min_count=config.min_instruments)  # fmt: skip
    out = local_mr(mean, se, exposures, outcomes, sel, methods, n_boot=config.n_boot,
                   seed=_chunk_seed(config.seed, chunk), level=config.level,
                   min_instruments=config.min_instruments)  # fmt: skip
    return _local_table(out, idx, seq_ids, exposures, outcomes, feature_names, methods), sel, se


def _add_leave_one_out(frame, member_means, cal, config, chunk, labels) -> pd.DataFrame:
    """Local MR without each member in turn: columns ``loo_estimate_{s}``, ``loo_se_{s}``.

    Every step after prediction is repeated on the other S - 1 members (their mean and SD,
    calibration, instrument selection, local MR); cells whose MR failed are NaN.
    """
    methods = [m for m in config.methods if m in JACKKNIFE_METHODS]
    rows = frame["method"].isin(methods).to_numpy()
    frame = frame.copy()
    for s in range(member_means.shape[0]):
        rest = np.delete(member_means, s, axis=0)
        table, _, _ = _local_step(rest.mean(axis=0, dtype=np.float64),
                                  rest.std(axis=0, ddof=1, dtype=np.float64), cal, config, chunk,
                                  labels, methods)  # fmt: skip
        good = table["reason"].to_numpy() == 0
        for column, field in ((f"loo_estimate_{s}", "estimate"), (f"loo_se_{s}", "se")):
            values = np.full(len(frame), np.nan)
            values[rows] = np.where(good, table[field].to_numpy(), np.nan)
            frame[column] = values
    return frame


def _chunk_seed(seed: int, chunk: int) -> int:
    return int(np.random.SeedSequence([int(seed), int(chunk)]).generate_state(1)[0])


def _merge_arrays(parts: list[dict[str, np.ndarray]]) -> dict:
    parts = [p for p in parts if "mean" in p]
    if not parts:
        return {}
    out = {k: np.concatenate([p[k] for p in parts], axis=0)
           for k in ("sequence_index", "mean", "se", "instrument_mask", "alt_bases")}  # fmt: skip
    out["reference"] = np.concatenate([p["reference"] for p in parts], axis=1)
    out["positions"] = parts[0]["positions"]
    return out


def _write_outputs(
    out_dir, config, glob, local, arrays, run_info, feature_names, used, seq_ids, cal, truth,
    save_effects, timings, created, started,
):  # fmt: skip
    from deepmr_kipoi import report

    tick = time.perf_counter()
    for name in ("global_effects.csv", "global_effects.parquet", "local_effects.parquet"):
        path = out_dir / name
        if not path.exists():
            created.append(path)
        results.write_table(glob if name.startswith("global") else local, path)
    if save_effects and "mean" in arrays:
        path = out_dir / "effects.h5"
        if not path.exists():
            created.append(path)
        results.write_effects_h5(
            path,
            mean=arrays["mean"],
            se=arrays["se"],
            reference=arrays["reference"],
            alt_bases=arrays["alt_bases"],
            positions=arrays["positions"],
            sequence_ids=[seq_ids[i] for i in arrays["sequence_index"]],
            feature_names=[feature_names[i] for i in used],
            attrs={"se_calibrated": cal is not None, "model": run_info["model"].get("name")},
        )
    timings["tables"] = time.perf_counter() - tick
    tick = time.perf_counter()
    figures = []
    if config.figures:
        figures = report.make_figures(
            out_dir, glob, local, arrays, feature_names=feature_names, used=used,
            seq_ids=seq_ids, exposures=run_info["features"]["exposures"], calibration=cal,
            truth=truth, level=config.level,
            n_examples=config.n_examples, created=created,
        )  # fmt: skip
    timings["figures"] = time.perf_counter() - tick
    run_info["figures"] = [str(f.path.relative_to(out_dir)) for f in figures]
    if config.report:
        tick = time.perf_counter()
        path = out_dir / "report.html"
        if not path.exists():
            created.append(path)
        report.write_report(path, run_info, glob, figures, calibration=cal, truth=truth)
        timings["report"] = time.perf_counter() - tick
    import yaml

    path = out_dir / "config.yaml"
    if not path.exists():
        created.append(path)
    results.write_text(path, "# resolved Deep MR config: deepmr run --config config.yaml\n"
                       + yaml.safe_dump(config.to_dict(), sort_keys=False))  # fmt: skip
    timings["total"] = time.time() - started
    run_info["timings_s"] = {k: round(v, 3) for k, v in timings.items()}
    run_info["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    path = out_dir / "run.json"
    if not path.exists():
        created.append(path)
    results.write_json(path, run_info)


# ----------------------------------------------------------------------------------------------
# compare


@dataclass(frozen=True)
class CompareResult:
    """Several runs' global effects aligned on their shared (exposure, outcome, method) triples.

    Attributes
    ----------
    labels : tuple of str
        One label per run (model name, or folder name where names repeat).
    table : DataFrame
        One row per shared triple: ``estimate_<label>``, ``pvalue_<label>``,
        ``significant_<label>`` for every run.
    summary : DataFrame
        One row per (method, run other than the first): shared pairs, Spearman rank correlation of
        the estimates with the first run's (and its p-value), share of pairs with the same sign.
    disagreements : DataFrame
        Shared triples whose estimates differ in sign or whose significance differs between runs.
    out_dir : Path or None
    """

    labels: tuple[str, ...]
    table: pd.DataFrame
    summary: pd.DataFrame
    disagreements: pd.DataFrame
    out_dir: Path | None


def _run_labels(runs) -> list[str]:
    labels = [r.label for r in runs]
    if len(set(labels)) < len(labels):
        labels = [r.path.name or r.label for r in runs]
    if len(set(labels)) < len(labels):
        labels = [f"{lab}#{i + 1}" for i, lab in enumerate(labels)]
    return labels


def compare(run_dirs: Sequence[str | os.PathLike], out: str | os.PathLike | None = None,
            *, figures: bool = True) -> CompareResult:  # fmt: skip
    """Compare the global causal effects of several finished runs.

    Parameters
    ----------
    run_dirs : sequence of path-like, length >= 2
        Run folders written by ``run``.
    out : path-like, optional
        Folder for ``compare_table.csv``, ``compare_summary.csv``, ``disagreements.csv``,
        ``figures/compare_<method>.png`` and ``report.html``; None writes nothing.
    figures : bool
        Draw the side-by-side figures (with ``out``).

    Returns
    -------
    CompareResult

    Raises
    ------
    ValueError
        Fewer than two runs, a folder without a finished run, or no shared pairs.
    """
    from scipy.stats import spearmanr

    if len(run_dirs) < 2:
        raise ValueError("compare needs at least two run folders")
    runs = [results.read_run(d) for d in run_dirs]
    labels = _run_labels(runs)
    key = ["exposure", "outcome", "method"]
    table = None
    for run_data, label in zip(runs, labels):
        g = run_data.global_effects.astype({k: str for k in key})
        g = g[[*key, "estimate", "pvalue", "significant"]].rename(
            columns={c: f"{c}_{label}" for c in ("estimate", "pvalue", "significant")}
        )
        table = g if table is None else table.merge(g, on=key, how="inner")
    if table is None or not len(table):
        raise ValueError(
            "the runs share no (exposure, outcome, method); compare runs with common feature names"
        )
    table = table.reset_index(drop=True)  # the first run's order (model order of its features)
    rows = []
    for method, sub in table.groupby("method", sort=False):
        x = sub[f"estimate_{labels[0]}"].to_numpy(float)
        for label in labels[1:]:
            y = sub[f"estimate_{label}"].to_numpy(float)
            ok = np.isfinite(x) & np.isfinite(y)
            if ok.sum() >= 3 and np.ptp(x[ok]) > 0 and np.ptp(y[ok]) > 0:
                rho, p = spearmanr(x[ok], y[ok])
            else:
                rho, p = np.nan, np.nan
            rows.append({
                "method": method, "run": label, "reference": labels[0], "shared_pairs": int(ok.sum()),
                "spearman_rho": float(rho), "spearman_pvalue": float(p),
                "same_sign": float(np.mean(np.sign(x[ok]) == np.sign(y[ok]))) if ok.any() else np.nan,
            })  # fmt: skip
    summary = pd.DataFrame(rows)
    est = np.column_stack([table[f"estimate_{lab}"].to_numpy(float) for lab in labels])
    sig = np.column_stack([table[f"significant_{lab}"].fillna(False).to_numpy(bool) for lab in labels])
    signs = np.sign(est)
    sign_diff = np.isfinite(est).all(axis=1) & (signs.min(axis=1) != signs.max(axis=1))
    sig_diff = sig.any(axis=1) & ~sig.all(axis=1)
    what = np.where(sign_diff & sig_diff, "sign and significance",
                    np.where(sign_diff, "sign", "significance"))  # fmt: skip
    dis = table[sign_diff | sig_diff].copy()
    dis.insert(3, "disagreement", what[sign_diff | sig_diff])
    result = CompareResult(tuple(labels), table, summary, dis.reset_index(drop=True), None)
    if out is None:
        return result
    out_dir = Path(out)
    made = not out_dir.exists()
    created: list[Path] = []
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        for name, df in (("compare_table.csv", table), ("compare_summary.csv", summary),
                         ("disagreements.csv", result.disagreements)):  # fmt: skip
            created.append(results.write_table(df, out_dir / name))
        figs = _compare_figures(out_dir, runs, labels, table, created) if figures else []
        from deepmr_kipoi import report

        created.append(report.write_compare_report(out_dir / "report.html", labels, summary,
                                                   result.disagreements, figs))  # fmt: skip
        created.append(results.write_json(out_dir / "compare.json", {
            "runs": [str(r.path) for r in runs], "labels": labels,
            "summary": summary.to_dict(orient="records"),
            "n_shared": int(len(table)), "n_disagreements": int(len(result.disagreements)),
            "deepmr_kipoi_version": __version__,
        }))  # fmt: skip
    except ValueError:
        _clean_up(out_dir, made, created)
        raise
    return dataclasses.replace(result, out_dir=out_dir)


def _compare_figures(out_dir, runs, labels, table, created):
    from deepmr_kipoi import plots, report

    fig_dir = out_dir / "figures"
    if not fig_dir.exists():
        fig_dir.mkdir()
        created.append(fig_dir)
    figs = []
    for method in dict.fromkeys(table["method"]):
        sub = table[table["method"] == method]
        rows = list(dict.fromkeys(sub["exposure"]))
        outcomes = set(sub["outcome"])
        cols = [f for f in dict.fromkeys([*rows, *sub["outcome"]]) if f in outcomes]
        mats, sigs = [], []
        for label in labels:
            m = sub.pivot_table(index="exposure", columns="outcome", values=f"estimate_{label}",
                                aggfunc="first", dropna=False)  # fmt: skip
            s = sub.assign(_s=sub[f"significant_{label}"].astype(float)).pivot_table(
                index="exposure", columns="outcome", values="_s", aggfunc="first", dropna=False)
            mats.append((label, m.reindex(index=rows, columns=cols)))
            sigs.append(s.reindex(index=rows, columns=cols))
        fig = plots.compare_figure(mats, sigs, method=method)
        path = plots.save(fig, fig_dir / f"compare_{report._slug(method)}.png")
        created.append(path)
        figs.append(report.FigureFile(path, f"Global effects side by side ({method})",
                                      "Top: each run's global effects on the shared pairs (common "
                                      "colour scale, * significant). Bottom: each run's estimates "
                                      f"against {labels[0]}'s."))  # fmt: skip
    return figs
