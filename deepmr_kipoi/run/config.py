"""Stage 0, config: what defines a run (``RunConfig``), its validation, and its portable form.

``RunConfig`` holds its settings in seven small frozen groups by concern (model source, sequence
source, instruments, MR, calibration, outputs, execution: :mod:`deepmr_kipoi.run.settings`, whose
names this module re-exports); the flat setting names (YAML keys, long CLI options) build and read
it too. Each setting's field metadata says whether it changes the ISM effects, only their analysis,
or no number (:func:`fields_affecting`), which is what the resume hashes take
(:mod:`deepmr_kipoi.run.resume_key`, re-exported here as well). The command line builds its
choices and defaults from the settings' metadata and defaults.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from dataclasses import dataclass

from deepmr_kipoi import validation
from deepmr_kipoi.errors import DeepMRInputError
from deepmr_kipoi.mr import METHODS as MR_METHODS
from deepmr_kipoi.run.resume_key import (
    config_hash,
    effects_hash,
    is_path_model,
    weights_signature,
)
from deepmr_kipoi.run.settings import (
    AUTO_EFFECTS_LIMIT,
    CALIBRATION_METHODS,
    DEVICES,
    DIRECTION_SCALES,
    DISPLAY_FIELDS,
    EXECUTORS,
    GROUP_OF,
    GROUPS,
    INSTRUMENT_RULES,
    META_METHODS,
    META_TESTS,
    PATH_FIELDS,
    SAMPLE_N_BOOT,
    SAVE_EFFECTS,
    SEQUENCE_SOURCES,
    SETTINGS,
    UNCERTAINTY_METHODS,
    CalibrationSettings,
    ExecutionSettings,
    InstrumentSettings,
    ModelSource,
    MRSettings,
    OutputSettings,
    SequenceSource,
    fields_affecting,
)
from deepmr_kipoi.sequences import DUPLICATE_OPTIONS, IUPAC_OPTIONS

__all__ = [
    "AUTO_EFFECTS_LIMIT",
    "CALIBRATION_METHODS",
    "DEVICES",
    "DIRECTION_SCALES",
    "DISPLAY_FIELDS",
    "EXECUTORS",
    "GROUPS",
    "GROUP_OF",
    "INSTRUMENT_RULES",
    "META_METHODS",
    "META_TESTS",
    "PANEL_MEMBER_SETTINGS",
    "PATH_FIELDS",
    "SAMPLE_N_BOOT",
    "SAVE_EFFECTS",
    "SEQUENCE_SOURCES",
    "SETTINGS",
    "UNCERTAINTY_METHODS",
    "CalibrationSettings",
    "ExecutionSettings",
    "InstrumentSettings",
    "MRSettings",
    "ModelSource",
    "OutputSettings",
    "RunConfig",
    "SequenceSource",
    "config_hash",
    "effects_hash",
    "fields_affecting",
    "is_path_model",
    "model_setting",
    "panel_members",
    "portable_config",
    "validate",
    "weights_signature",
]


@dataclass(frozen=True, init=False)
class RunConfig:
    """Everything that defines a Deep MR run (the resolved config is written to ``run.json``).

    The settings are grouped by concern, one small frozen dataclass each: ``model_source``
    (:class:`ModelSource`), ``sequence_source`` (:class:`SequenceSource`), ``instruments``
    (:class:`InstrumentSettings`), ``mr`` (:class:`MRSettings`), ``calibration``
    (:class:`CalibrationSettings`), ``outputs`` (:class:`OutputSettings`) and ``execution``
    (:class:`ExecutionSettings`). A config is built and read with the flat setting names as well
    (``RunConfig(model=..., fasta=..., z=..., out=...)``, ``config.z``), which are also the YAML keys
    and the long CLI options; a group may be given whole (``RunConfig(instruments=...)``), flat
    settings then apply on top of it. Every setting says in its field metadata whether it changes
    the ISM effects, only their analysis, or no number at all (:func:`fields_affecting`).

    Attributes (the flat settings)
    ------------------------------
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
        Weight files loaded instead of the model's own, one ensemble member each (for a Keras model
        also ``ARCH.json WEIGHTS.h5`` pairs or whole-model h5 files).
    feature_names : tuple of str
        New names of the model's outputs, one per output in order, or one file of them (one name
        per line, or ``current<TAB>new`` lines renaming some); empty keeps the model's names.
    download : bool
        Let Kipoi download a zoo model's missing weight files.
    trust_model_code : bool
        Load a Kipoi ``model.yaml`` that holds Python tags (runs code it names; see SECURITY.md).
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
    iupac : {"refuse", "n"}
        FASTA letters other than A, C, G, T, N: refused, or read as N (not mutated).
    duplicates : {"drop", "keep"}
        BED intervals that resize to the same region: analysed once (with a warning) or every time.
    n_sequences : int, optional
        Number of reference sequences (default 20 random ones; all of a FASTA; all BED intervals).
    sequence_length : int, optional
        Sequence length (default: the model's input length).
    exposures, outcomes : tuple of str
        Feature names or fnmatch globs; empty = all features; a single string is one name. Pairs
        with exposure == outcome are skipped.
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
    aleatoric_variance : float
        Label noise variance removed before sigma scaling (``calibration.fit``): effects are
        differences of predictions, in which label noise cancels (1 for Anscombe-transformed counts).
    z : float
        Instrument threshold (``instruments.select``).
    instrument_rule : {"wald", "pooled"}
        ``"pooled"`` standardises over all sequences at once, so the run uses one chunk (no
        resume within it).
    one_per_position : bool
        Keep at most one allele per position (the strongest), so the three mutants of a position,
        which share the lost reference base, do not enter one fit as three instruments.
    floor : float
        Drop exposure effects smaller than ``floor`` times the exposure's spread over the reference
        sequences (noise-level effects that pass ``z`` by chance); 0 switches it off.
    directional : bool
        Directionality check (``instruments.directional``): an instrument counts for X -> Y only
        where it moves X more than Y, each in units of its spread.
    direction_scale : {"effects", "reference"}
        The spread of the directionality check: of each feature's mutation effects within the
        reference sequence (``instruments.effect_spread``) or of its predictions over the
        reference sequences (``instruments.feature_spread``).
    direction_z : float
        One-sided threshold of the directionality test on the standardized difference of an
        instrument's exposure and outcome effects, in standard errors (0: the plain comparison).
    min_sequences : int
        A pair is called causal or not causal only with at least this many sequences with a local
        fit (the between-sequence variation needs them); with fewer its verdict is undetermined,
        it enters no multiple-testing adjustment and no estimator is marked significant.
    min_effect : float
        Smallest effect of interest on the standardized scale ``effect x sd_exposure /
        sd_outcome`` (each feature's spread over the reference sequences): a causal verdict needs
        the headline intervals to exclude ``[-min_effect, min_effect]``, a not-causal verdict
        needs the primary interval inside it (``deepmr_kipoi.verdict``).
    sample_split : bool
        Select instruments on the first half of the model's samples and estimate on the others, so
        the noise that selects an instrument does not also enter its estimate (winner's curse);
        halves the samples the inference has.
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
        Recompute when ``out`` holds results of another configuration or other inputs; the new
        run replaces the old one only once it has succeeded.
    device : {"auto", "cpu", "cuda"}
        Where PyTorch members run (``"auto"``: a GPU when torch sees one). Not part of the resume
        key: a run started on the CPU may resume on a GPU.
    mask_nonfinite : bool
        Leave out mutants whose predictions are NaN or inf (counted in ``run.json`` and the report)
        instead of stopping the run.
    executor : {"local", "dask"}
        Where the chunks run: this process, or Dask tasks (:mod:`deepmr_kipoi.run.executors`).
    dask_workers : int, optional
        With ``executor="dask"``: start a ``distributed.LocalCluster`` of this many single-threaded
        worker processes (default: one per CPU core when no ``dask_address`` is given).
    dask_address : str, optional
        With ``executor="dask"``: an existing scheduler, ``tcp://HOST:PORT`` or the path of a
        scheduler file.
    effects_cache : str, optional
        A folder of per-model ISM effects shared across runs (:mod:`deepmr_kipoi.run.effects_cache`):
        a model (or panel member) already run on the same sequences, ISM window and samples is read
        from it instead of run again. None (the default): no cache.
    """

    model_source: ModelSource
    sequence_source: SequenceSource
    instruments: InstrumentSettings
    mr: MRSettings
    calibration: CalibrationSettings
    outputs: OutputSettings
    execution: ExecutionSettings

    def __init__(self, **settings):
        changes: dict[str, dict] = {group: {} for group in GROUPS}
        groups = {group: settings.pop(group, None) or cls() for group, cls in GROUPS.items()}
        for key, value in settings.items():
            if key not in GROUP_OF:
                close = difflib.get_close_matches(key, SETTINGS, n=3)
                hint = f"; did you mean {', '.join(close)}?" if close else ""
                raise TypeError(f"RunConfig got an unknown setting {key!r}{hint}")
            changes[GROUP_OF[key]][key] = value
        for group, values in changes.items():
            value = dataclasses.replace(groups[group], **values) if values else groups[group]
            object.__setattr__(self, group, value)

    def __getattr__(self, name: str):
        # flat reads (config.z): only called when the normal lookup fails
        group = GROUP_OF.get(name)
        if group is None:
            raise AttributeError(f"RunConfig has no setting {name!r}")
        return getattr(object.__getattribute__(self, group), name)

    def to_dict(self) -> dict:
        """The flat settings as plain JSON/YAML-friendly values, in group order."""
        d = {}
        for group in GROUPS:
            d.update(dataclasses.asdict(object.__getattribute__(self, group)))
        for key, value in d.items():
            if isinstance(value, tuple):
                d[key] = list(value)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> RunConfig:
        """Build a config from a mapping (YAML file, ``run.json``); dashes in keys are accepted.

        Values are checked by :func:`validate` when the run starts.

        Raises
        ------
        DeepMRInputError
            On an unknown key (with close matches).
        """
        names = list(SETTINGS)
        kwargs = {}
        for key, value in d.items():
            k = str(key).replace("-", "_")
            if k not in names:
                close = difflib.get_close_matches(k, names, n=3)
                hint = f"; did you mean {', '.join(close)}?" if close else ""
                raise DeepMRInputError(f"unknown config key {key!r}{hint}")
            if k in kwargs:
                raise DeepMRInputError(
                    f"the config key {k!r} is given twice (as {key!r} too); keep one"
                )
            kwargs[k] = value
        return cls(**kwargs)

    def replace(self, **changes) -> RunConfig:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def default(cls, name: str):
        """The default value of setting ``name`` (the command line's help text quotes it)."""
        return next(f.default for f in dataclasses.fields(GROUPS[GROUP_OF[name]]) if f.name == name)


#: Settings a panel member may set for itself in a ``model: {label: {model: ..., ...}}`` mapping.
PANEL_MEMBER_SETTINGS = (
    "model",
    "source",
    "alphabet",
    "uncertainty",
    "n_samples",
    "weight_files",
    "feature_names",
    "adapter",
)
#: Model settings that name one model's files or outputs: a panel takes them per member.
_PER_MEMBER_ONLY = (("weight_files", "--weights"), ("feature_names", "--feature-names"))


def _panel_item(item: str) -> tuple[str, str] | None:
    """``"LABEL=MODEL"`` -> (label, model); None for a plain model name (or an existing path)."""
    label, sep, spec = item.partition("=")
    if not sep or not spec or "/" in label or os.path.exists(item):
        return None
    return label, spec


def model_setting(value):
    """The ``model`` setting normalised: None, one model (str), or a panel ``{label: member}``.

    A list holds one model (``["NAME"]``, as ``--model NAME`` gives it; of several plain names the
    last counts, as for any repeated option) or ``LABEL=MODEL`` items (a panel, as
    ``--model a=X --model b=Y`` gives it); a mapping is a panel whose members are a
    model (str) or a mapping of :data:`PANEL_MEMBER_SETTINGS`.

    Raises
    ------
    DeepMRInputError
        Mixed or repeated labels, unknown member settings.
    """
    from deepmr_kipoi.predictive.panel import check_label

    if isinstance(value, (list, tuple)):
        items = [validation.optional_text(v, "model") for v in value]
        pairs = [_panel_item(v) for v in items]
        if items and all(p is None for p in pairs):
            return items[-1]  # one model; given again, the last one counts (as for any option)
        if not items or any(p is None for p in pairs):
            raise DeepMRInputError(
                "--model mixes LABEL=MODEL items with a plain model: for a model panel name every "
                "model as LABEL=MODEL (--model a=MODEL --model b=MODEL); for one model give "
                "--model MODEL"
            )
        labels = [p[0] for p in pairs]
        if len(set(labels)) < len(labels):
            raise DeepMRInputError(
                f"panel labels repeat ({', '.join(labels)}); give every model its own label"
            )
        value = dict(pairs)
    if not isinstance(value, dict):
        return validation.optional_text(value, "model")
    if not value:
        raise DeepMRInputError("the model panel is empty; give --model LABEL=MODEL at least twice")
    out = {}
    for label, member in value.items():
        check_label(label)
        if isinstance(member, dict):
            unknown = sorted(set(member) - set(PANEL_MEMBER_SETTINGS))
            if unknown or "model" not in member:
                raise DeepMRInputError(
                    f"panel member {label!r}: settings {', '.join(unknown) or '(no model)'} are not "
                    f"member settings; a member takes model and {', '.join(PANEL_MEMBER_SETTINGS[1:])}"
                )
            out[label] = dict(member)
        else:
            out[label] = validation.optional_text(member, f"model of panel member {label!r}")
    return out


def panel_members(config: RunConfig) -> list[tuple[str, RunConfig]]:
    """Each member of a panel config as ``(label, the config that loads it alone)``.

    A member's own settings (a mapping member) replace the run's; ``--weights`` and
    ``--feature-names`` name one model's files and outputs, so a panel takes them per member.

    Raises
    ------
    DeepMRInputError
        The config is not a panel, or sets a per-member setting for the whole panel.
    """
    panel = model_setting(config.model)
    if not isinstance(panel, dict):
        raise DeepMRInputError("the config names one model, not a panel")
    for field, option in _PER_MEMBER_ONLY:
        if getattr(config, field):
            raise DeepMRInputError(
                f"{option} names one model's {field.split('_')[0]}s; in a panel give each member "
                f"its own in the config file (model: {{LABEL: {{model: ..., {field}: [...]}}}})"
            )
    out = []
    for label, member in panel.items():
        member = {"model": member} if isinstance(member, str) else member
        out.append((label, validate(config.replace(**member))))
    return out


def _names(value, name: str) -> tuple[str, ...]:
    return tuple(validation.string_list(value if value is not None else [], name, allow_empty=True))


def _optional_int(value, name: str, minimum: int = 1) -> int | None:
    return None if value is None else validation.positive_int(value, name, minimum=minimum)


def _check_executor(c: RunConfig) -> None:
    if c.executor != "dask" and (c.dask_workers is not None or c.dask_address is not None):
        option = "--dask-workers" if c.dask_workers is not None else "--dask-address"
        raise DeepMRInputError(f"{option} needs the Dask executor; add --executor dask")
    if c.dask_workers is not None and c.dask_address is not None:
        raise DeepMRInputError(
            "--dask-workers starts a local cluster and --dask-address uses an existing one; give one"
        )


def validate(config: RunConfig) -> RunConfig:
    """Check every field's type and value; return the config with values normalised.

    Lists become tuples (a single string is one name, never its characters), numbers are checked
    as numbers (``level: high`` and ``chunk_size: null`` are refused), choices take their canonical
    spelling (``meta_method="reml"`` becomes ``"REML"``).

    Parameters
    ----------
    config : RunConfig

    Returns
    -------
    RunConfig

    Raises
    ------
    DeepMRInputError
        Naming the first bad field and what it accepts.
    """
    if not isinstance(config, RunConfig):
        raise DeepMRInputError(
            f"pipeline.run takes a RunConfig, got {type(config).__name__} {str(config)[:60]!r}; build one "
            "with RunConfig(...) or RunConfig.from_dict(...) (a YAML file: deepmr run --config FILE)"
        )
    _check_combinations(config)
    out = dataclasses.replace(
        config,
        **_model_fields(config),
        **_sequence_fields(config),
        **_analysis_fields(config),
        **_output_fields(config),
    )
    _check_executor(out)
    return out


def _check_combinations(c: RunConfig) -> None:
    """Settings that are wrong together, or of a kind the field checks below do not cover."""
    methods = _names(c.methods, "methods")
    if not methods:
        raise DeepMRInputError(f"no MR method given; choose from {', '.join(MR_METHODS)}")
    bad = [m for m in methods if m not in MR_METHODS]
    if bad:
        raise DeepMRInputError(
            f"unknown MR method {', '.join(bad)}; choose from {', '.join(MR_METHODS)}"
        )
    if c.aleatoric_variance and c.calibration_method != "sigma":
        raise DeepMRInputError(
            "aleatoric_variance applies to sigma scaling only; add --calibration-method sigma"
        )
    if c.dataloader_args is not None and not isinstance(c.dataloader_args, dict):
        raise DeepMRInputError(
            f"dataloader_args must be a mapping of argument names to values, got {c.dataloader_args!r}"
        )
    if c.save_effects not in SAVE_EFFECTS or not isinstance(c.save_effects, (str, bool)):
        raise DeepMRInputError(f"save_effects must be auto, true or false, got {c.save_effects!r}")


def _model_fields(c: RunConfig) -> dict:
    """The model's settings, checked and normalised."""
    v = validation
    return dict(
        model=model_setting(c.model),
        source=v.optional_text(c.source, "source"),
        alphabet=v.optional_text(c.alphabet, "alphabet"),
        uncertainty=None
        if c.uncertainty is None
        else v.choice(c.uncertainty, UNCERTAINTY_METHODS, "uncertainty method"),
        n_samples=_optional_int(c.n_samples, "n_samples"),
        weight_files=_names(c.weight_files, "weight_files"),
        feature_names=_names(c.feature_names, "feature_names"),
        download=v.boolean(c.download, "download"),
        trust_model_code=v.boolean(c.trust_model_code, "trust_model_code"),
        adapter=v.optional_text(c.adapter, "adapter"),
    )


def _sequence_fields(c: RunConfig) -> dict:
    """The reference sequences' settings, checked and normalised."""
    v = validation
    return dict(
        sequences=v.choice(c.sequences, SEQUENCE_SOURCES, "sequence source"),
        fasta=v.optional_text(c.fasta, "fasta"),
        bed=v.optional_text(c.bed, "bed"),
        iupac=v.choice(c.iupac, IUPAC_OPTIONS, "iupac option"),
        duplicates=v.choice(c.duplicates, DUPLICATE_OPTIONS, "duplicates option"),
        n_sequences=_optional_int(c.n_sequences, "n_sequences"),
        sequence_length=_optional_int(c.sequence_length, "sequence_length"),
    )


def _analysis_fields(c: RunConfig) -> dict:
    """The features, the ISM window and batches, calibration, instruments, MR and inference
    settings, checked and normalised (in the order of their first error)."""
    v = validation
    return dict(
        exposures=_names(c.exposures, "exposures"),
        outcomes=_names(c.outcomes, "outcomes"),
        window=v.window(c.window),
        batch_size=v.positive_int(c.batch_size, "batch_size"),
        calibrator=v.optional_text(c.calibrator, "calibrator"),
        calibration_table=v.optional_text(c.calibration_table, "calibration_table"),
        calibration_method=v.choice(
            c.calibration_method, CALIBRATION_METHODS, "calibration method"
        ),
        aleatoric_variance=v.finite_float(c.aleatoric_variance, "aleatoric_variance", low=0.0),
        z=v.finite_float(c.z, "z", low=0.0),
        instrument_rule=v.choice(c.instrument_rule, INSTRUMENT_RULES, "instrument rule"),
        one_per_position=v.boolean(c.one_per_position, "one_per_position"),
        floor=v.finite_float(c.floor, "floor", low=0.0),
        directional=v.boolean(c.directional, "directional"),
        direction_scale=v.choice(c.direction_scale, DIRECTION_SCALES, "direction scale"),
        direction_z=v.finite_float(c.direction_z, "direction_z", low=0.0),
        min_sequences=v.positive_int(c.min_sequences, "min_sequences"),
        min_effect=v.finite_float(c.min_effect, "min_effect", low=0.0),
        sample_split=v.boolean(c.sample_split, "sample_split"),
        min_instruments=v.positive_int(c.min_instruments, "min_instruments"),
        methods=_names(c.methods, "methods"),
        n_boot=v.positive_int(c.n_boot, "n_boot"),
        meta_method=v.choice(
            c.meta_method, META_METHODS, "meta-analysis method", case_sensitive=False
        ),
        meta_test=v.choice(c.meta_test, META_TESTS, "meta-analysis test"),
        level=v.level(c.level),
        seed=v.positive_int(c.seed, "seed", minimum=0),
    )


def _output_fields(c: RunConfig) -> dict:
    """The outputs' and execution's settings, checked and normalised."""
    v = validation
    return dict(
        chunk_size=v.positive_int(c.chunk_size, "chunk_size"),
        out=v.optional_text(c.out, "out"),
        n_examples=v.positive_int(c.n_examples, "n_examples", minimum=0),
        figures=v.boolean(c.figures, "figures"),
        report=v.boolean(c.report, "report"),
        progress=v.boolean(c.progress, "progress"),
        force=v.boolean(c.force, "force"),
        mask_nonfinite=v.boolean(c.mask_nonfinite, "mask_nonfinite"),
        device=v.choice(c.device, DEVICES, "device"),
        executor=v.choice(c.executor, EXECUTORS, "executor"),
        dask_workers=_optional_int(c.dask_workers, "dask_workers"),
        dask_address=v.optional_text(c.dask_address, "dask_address"),
        effects_cache=v.optional_text(c.effects_cache, "effects_cache"),
    )


def portable_config(config: RunConfig) -> dict:
    """The config as ``config.yaml`` holds it: paths absolute, so the file works from any folder
    (a relative ``--out dm`` would otherwise send ``dm/config.yaml`` to ``dm/dm/inputs/...``)."""
    d = config.to_dict()

    def absolute(value):
        return (
            os.path.abspath(os.path.expanduser(value))
            if isinstance(value, str) and value
            else value
        )

    for key in ("fasta", "bed", "calibrator", "calibration_table", "out", "effects_cache"):
        d[key] = absolute(d.get(key))
    d["weight_files"] = [absolute(w) for w in d.get("weight_files") or []]

    def absolute_model(model):
        if isinstance(model, dict):  # a panel: each member's model (and weights) made absolute
            return {
                label: absolute_model(m)
                if not isinstance(m, dict)
                else {
                    **m,
                    "model": absolute_model(m["model"]),
                    "weight_files": [absolute(w) for w in m.get("weight_files") or []],
                }
                for label, m in model.items()
            }
        if isinstance(model, str) and is_path_model(model):
            target, sep, attr = model.rpartition(":")
            return (
                f"{absolute(target)}:{attr}" if sep and target.endswith(".py") else absolute(model)
            )
        return model

    d["model"] = absolute_model(d.get("model"))
    return d
