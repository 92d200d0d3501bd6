"""The settings of a run: seven small frozen groups by concern, their metadata, accepted values.

Each setting is a field of one group (model source, sequence source, instruments, MR, calibration,
outputs, execution) whose metadata says whether it changes the ISM effects, only their analysis,
or no number (:func:`fields_affecting`, which the resume keys take), and holds its command-line
option (:func:`option`: flag, help, type), from which the command line builds the option
(:func:`cli_options`). The module constants are the accepted values of the choice fields.
:class:`~deepmr_kipoi.run.config.RunConfig` holds one instance of every group.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass

from deepmr_kipoi import instruments
from deepmr_kipoi.mr import METHODS as MR_METHODS
from deepmr_kipoi.sequences import DUPLICATE_OPTIONS, IUPAC_OPTIONS

#: Sources of reference sequences.
SEQUENCE_SOURCES = ("random", "fasta", "dataloader")
#: Uncertainty methods a model can be loaded with.
UNCERTAINTY_METHODS = ("ensemble", "mc_dropout")
#: Calibration methods of ``calibration.fit``.
CALIBRATION_METHODS = ("quantile", "sigma")
#: tau^2 estimators of the global meta-analysis.
META_METHODS = ("REML", "DL", "PM")
#: Tests of the global meta-analysis: normal z or Knapp-Hartung.
META_TESTS = ("z", "knha")
#: Instrument rules (``instruments.select``).
INSTRUMENT_RULES = tuple(instruments.RULES)
#: Spreads of the directionality check (``RunConfig.direction_scale``).
DIRECTION_SCALES = ("effects", "reference")
#: Accepted values of ``save_effects``.
SAVE_EFFECTS = ("auto", True, False)
#: ``save_effects="auto"`` writes effects.h5 when N x W x 3 x F stays below this many values.
AUTO_EFFECTS_LIMIT = 20_000_000
#: Per-sample local estimates of the sorting methods need only their point estimate: their
#: bootstrap (whose SE the headline inference does not use) runs with this many replicates.
SAMPLE_N_BOOT = 2
#: Where the chunks run (:mod:`deepmr_kipoi.run.executors`).
EXECUTORS = ("local", "dask")
#: Devices a run's PyTorch members may run on.
DEVICES = ("auto", "cpu", "cuda")
#: Config fields naming input files: their contents enter the resume key (``run.fingerprint``),
#: their paths do not, so a moved or renamed input resumes and an edited one does not.
PATH_FIELDS = ("fasta", "bed", "calibrator", "calibration_table", "weight_files")


def setting(default=None, affects: str | None = None, cli: dict | None = None):
    """A config field; ``affects`` is ``"effects"`` (the ISM effects depend on it), ``"analysis"``
    (only their analysis does) or None (no number does: output, display, where it runs); ``cli``
    is its command-line option (:func:`option`), None for a setting with none."""
    return dataclasses.field(default=default, metadata={"affects": affects, "cli": cli})


def option(flag: str, help: str | None = None, **argparse_kwargs) -> dict:
    """A setting's command-line option: its flag, help (``{default}`` is filled in with the
    setting's default) and further ``argparse`` keywords (type, nargs, choices, action, metavar)."""
    return {"flag": flag, "help": help, **argparse_kwargs}


def option_field(default, flag: str, help: str | None = None, **argparse_kwargs):
    """A dataclass field with a command-line option (:func:`option`) and no resume metadata: the
    settings of other commands (``deepmr simulate``) declare their options with it."""
    return dataclasses.field(
        default=default, metadata={"cli": option(flag, help, **argparse_kwargs)}
    )


_E, _A = "effects", "analysis"


@dataclass(frozen=True)
class ModelSource:
    """Which model, and how it is loaded (see :class:`RunConfig` for each setting)."""

    model: str | None = setting(
        None,
        _E,
        option(
            "--model",
            "Kipoi model name, model directory, registered adapter, or Python factory "
            "module:function / file.py:function returning a PredictiveModel; give it as "
            "LABEL=MODEL more than once for a model panel (features named LABEL/feature, "
            "exposures of one model against outcomes of another)",
            metavar="NAME_OR_DIR",
            action="append",
        ),
    )
    source: str | None = setting(None, _E, option("--source", "Kipoi source of the model"))
    alphabet: str | None = setting(
        None, _E, option("--alphabet", "the model's one-hot channel order, e.g. AGCT")
    )
    uncertainty: str | None = setting(
        None,
        _E,
        option(
            "--uncertainty",
            "uncertainty method (default: the adapter's)",
            choices=UNCERTAINTY_METHODS,
        ),
    )
    n_samples: int | None = setting(
        None, _E, option("--n-samples", "MC-dropout samples (default 30)", type=int)
    )
    weight_files: tuple[str, ...] = setting(
        (),
        _E,
        option(
            "--weights",
            "weight files, one ensemble member each; for a Keras model also ARCH.json "
            "WEIGHTS.h5 pairs or whole-model h5 files",
            nargs="+",
            metavar="FILE",
        ),
    )
    # no hash entry of its own: the names it gives enter the hash as the run's features
    feature_names: tuple[str, ...] = setting(
        (),
        None,
        option(
            "--feature-names",
            "names of the model's outputs, one per output in order, or a file of "
            "them (one per line, or 'current<TAB>new' lines renaming some)",
            nargs="+",
            metavar="NAME",
        ),
    )
    download: bool = setting(
        False,
        None,
        option(
            "--download",
            "let Kipoi download the model's missing weight files (default: never touch "
            "the network)",
            action="store_true",
        ),
    )
    trust_model_code: bool = setting(
        False,
        None,
        option(
            "--trust-model-code",
            "load a Kipoi model.yaml that holds Python tags (runs code; see SECURITY.md)",
            action="store_true",
        ),
    )
    adapter: str | None = setting(
        None, _E, option("--adapter", "use this registered adapter (see deepmr adapters)")
    )


@dataclass(frozen=True)
class SequenceSource:
    """The reference sequences and the window mutated in them."""

    sequences: str = setting(
        "random",
        _E,
        option(
            "--sequences",
            "source of reference sequences (default: fasta when --fasta is given, else random)",
            choices=SEQUENCE_SOURCES,
        ),
    )
    fasta: str | None = setting(
        None, _E, option("--fasta", "FASTA of sequences, or the genome with --bed")
    )
    bed: str | None = setting(
        None, _E, option("--bed", "BED intervals to sample from the --fasta genome")
    )
    dataloader_args: dict | None = setting(
        None,
        _E,
        option(
            "--dataloader-args",
            "arguments of the model's Kipoi dataloader (--sequences dataloader), "
            "e.g. intervals_file=peaks.bed fasta_file=genome.fa, or Kipoi's JSON form "
            '\'{{"intervals_file": "peaks.bed"}}\'',
            nargs="+",
            metavar="KEY=VALUE",
        ),
    )
    iupac: str = setting(
        "refuse",
        _E,
        option(
            "--iupac",
            "FASTA letters other than ACGTN: refuse them, or read them as N (default {default})",
            choices=IUPAC_OPTIONS,
        ),
    )
    duplicates: str = setting(
        "drop",
        _E,
        option(
            "--duplicates",
            "BED intervals that resize to the same region: analyse once (drop, with a "
            "warning) or every time (default {default})",
            choices=DUPLICATE_OPTIONS,
        ),
    )
    n_sequences: int | None = setting(
        None,
        _E,
        option(
            "--n-sequences",
            "number of reference sequences (default: 20 random / all of the file)",
            type=int,
        ),
    )
    sequence_length: int | None = setting(
        None,
        _E,
        option("--sequence-length", "sequence length when the model does not declare it", type=int),
    )
    window: tuple[int, int] | None = setting(
        None,
        _E,
        option(
            "--window",
            "half-open ISM window within the sequence (default: whole sequence)",
            nargs=2,
            type=int,
            metavar=("START", "END"),
        ),
    )


@dataclass(frozen=True)
class InstrumentSettings:
    """Which mutations are instruments."""

    z: float = setting(
        1.96, _A, option("--z", "instrument threshold (default {default})", type=float)
    )
    instrument_rule: str = setting(
        "wald",
        _A,
        option(
            "--instrument-rule",
            "wald: |b/se| >= z; pooled: the paper code's rule (default {default})",
            choices=INSTRUMENT_RULES,
        ),
    )
    one_per_position: bool = setting(
        True,
        _A,
        option(
            "--all-alleles",
            "let all three alleles of a position be instruments (default: only the "
            "strongest, as the three share the lost reference base)",
            action="store_false",
        ),
    )
    floor: float = setting(
        0.01,
        _A,
        option(
            "--floor",
            "drop exposure effects below this fraction of the exposure's spread over the "
            "reference sequences (default {default}; 0: off)",
            type=float,
        ),
    )
    directional: bool = setting(
        True,
        _A,
        option(
            "--no-directional",
            "skip the directionality check (an instrument counts for X -> Y only "
            "where it moves X more than Y, in units of their spreads)",
            action="store_false",
        ),
    )
    direction_scale: str = setting(
        "effects",
        _A,
        option(
            "--direction-scale",
            "spread of the directionality check: of each feature's mutation "
            "effects within the sequence, or of its predictions over the sequences (default "
            "{default})",
            choices=DIRECTION_SCALES,
        ),
    )
    direction_z: float = setting(
        0.0,
        _A,
        option(
            "--direction-z",
            "one-sided threshold of the directionality test: an instrument counts for "
            "X -> Y only where its standardized effect on X exceeds that on Y by this many standard "
            "errors (default {default}; 0: the plain comparison)",
            type=float,
        ),
    )
    sample_split: bool = setting(
        False,
        _A,
        option(
            "--sample-split",
            "select instruments on half of the model's samples and estimate on the "
            "other half (no winner's curse; fewer samples for the inference)",
            action="store_true",
        ),
    )
    min_instruments: int = setting(
        3,
        _A,
        option("--min-instruments", "minimum instruments per MR fit (default {default})", type=int),
    )


@dataclass(frozen=True)
class MRSettings:
    """The pairs analysed, the MR methods and the global inference."""

    exposures: tuple[str, ...] = setting(
        (),
        _A,
        option(
            "--exposures",
            "exposure feature names or globs (default: all)",
            nargs="+",
            metavar="NAME",
        ),
    )
    outcomes: tuple[str, ...] = setting(
        (),
        _A,
        option(
            "--outcomes", "outcome feature names or globs (default: all)", nargs="+", metavar="NAME"
        ),
    )
    methods: tuple[str, ...] = setting(
        ("ivw", "egger"),
        _A,
        option(
            "--methods",
            f"MR methods: {' '.join(MR_METHODS)} (default: {{default}})",
            nargs="+",
            metavar="METHOD",
        ),
    )
    n_boot: int = setting(
        1000,
        _A,
        option("--n-boot", "bootstrap replicates of median/mode SEs (default {default})", type=int),
    )
    meta_method: str = setting(
        "REML",
        _A,
        option(
            "--meta-method",
            "tau^2 estimator of the global meta-analysis (default {default})",
            choices=META_METHODS,
        ),
    )
    meta_test: str = setting(
        "z",
        _A,
        option("--meta-test", "z or knha (Knapp-Hartung; default {default})", choices=META_TESTS),
    )
    level: float = setting(
        0.95, _A, option("--level", "confidence level (default {default})", type=float)
    )
    min_sequences: int = setting(
        5,
        _A,
        option(
            "--min-sequences",
            "sequences with a local fit a pair needs for a causal or not-causal "
            "verdict (default {default})",
            type=int,
        ),
    )
    min_effect: float = setting(
        0.1,
        _A,
        option(
            "--min-effect",
            "smallest effect of interest, standardized (effect x sd_exposure / sd_outcome): a "
            "causal claim must exclude smaller effects, a not-causal verdict must exclude "
            "larger ones (default {default}; 0: judged against 0 alone)",
            type=float,
        ),
    )


@dataclass(frozen=True)
class CalibrationSettings:
    """How the model's uncertainty is calibrated."""

    calibrator: str | None = setting(
        None, _A, option("--calibrator", "a saved calibrator", metavar="JSON")
    )
    calibration_table: str | None = setting(
        None,
        _A,
        option(
            "--calibration-table",
            "CSV/TSV/Parquet: column 'sequence' plus observed labels per feature",
            metavar="TABLE",
        ),
    )
    calibration_method: str = setting(
        "quantile",
        _A,
        option("--calibration-method", "default {default}", choices=CALIBRATION_METHODS),
    )
    aleatoric_variance: float = setting(
        0.0,
        _A,
        option(
            "--aleatoric-variance",
            "label noise variance removed before sigma scaling, so effect SEs "
            "are not inflated by noise that cancels in differences (1 for Anscombe-transformed "
            "counts; default {default})",
            type=float,
        ),
    )


@dataclass(frozen=True)
class OutputSettings:
    """What the run writes and shows."""

    out: str | None = setting(None, None, option("--out", "results folder (required)"))
    save_effects: str | bool = setting(
        "auto",
        None,
        option(
            "--save-effects",
            "write effects.h5 (default auto: small runs)",
            choices=("auto", "yes", "no"),
        ),
    )
    n_examples: int = setting(
        3,
        None,
        option("--n-examples", "sequences in MR scatter plots (default {default})", type=int),
    )
    figures: bool = setting(
        True,
        None,
        option("--no-figures", "draw no figures (tables and report only)", action="store_false"),
    )
    report: bool = setting(
        True,
        None,
        option(
            "--no-report", "write no report.html (tables and figures only)", action="store_false"
        ),
    )
    progress: bool = setting(True)
    force: bool = setting(
        False,
        None,
        option(
            "--force",
            "recompute when --out holds results of another configuration or other inputs; "
            "the old results are replaced only once the new run has succeeded",
            action="store_true",
        ),
    )


@dataclass(frozen=True)
class ExecutionSettings:
    """How and where the work is done (``seed`` and ``batch_size`` reach the effects, the chunking
    and ``mask_nonfinite`` the analysis; the rest no number)."""

    batch_size: int = setting(
        512, _E, option("--batch-size", "mutants per forward pass (default {default})", type=int)
    )
    chunk_size: int = setting(
        16,
        _A,
        option("--chunk-size", "sequences per chunk: unit of resume (default {default})", type=int),
    )
    seed: int = setting(0, _E, option("--seed", "seed (default {default})", type=int))
    mask_nonfinite: bool = setting(
        False,
        _A,
        option(
            "--mask-nonfinite",
            "leave out mutants whose predictions are NaN or inf (counted in "
            "run.json and the report) instead of stopping",
            action="store_true",
        ),
    )
    device: str = setting(
        "auto",
        None,
        option(
            "--device",
            "where PyTorch members run (default {default}: a GPU when present)",
            choices=DEVICES,
        ),
    )
    executor: str = setting(
        "local",
        None,
        option(
            "--executor",
            "local: this process; dask: one Dask task per chunk, on a local cluster of "
            "one worker per core unless told otherwise (default {default})",
            choices=EXECUTORS,
        ),
    )
    dask_workers: int | None = setting(
        None,
        None,
        option(
            "--dask-workers",
            "run on a local Dask cluster of N single-threaded worker processes "
            "(implies --executor dask)",
            type=int,
            metavar="N",
        ),
    )
    dask_address: str | None = setting(
        None,
        None,
        option(
            "--dask-address",
            "run on an existing Dask cluster: its scheduler tcp://HOST:PORT or "
            "scheduler file (implies --executor dask)",
            metavar="ADDRESS",
        ),
    )
    effects_cache: str | None = setting(
        None,
        None,
        option(
            "--effects-cache",
            "folder of every model's stored ISM effects, shared by runs and panels: a model "
            "already run on the same sequences, window and samples is not run again "
            "(default: none)",
            metavar="DIR",
        ),
    )


#: The groups of a :class:`RunConfig`: attribute name -> settings class.
GROUPS = {
    "model_source": ModelSource,
    "sequence_source": SequenceSource,
    "instruments": InstrumentSettings,
    "mr": MRSettings,
    "calibration": CalibrationSettings,
    "outputs": OutputSettings,
    "execution": ExecutionSettings,
}
#: Flat setting name -> the group holding it.
GROUP_OF = {f.name: group for group, cls in GROUPS.items() for f in dataclasses.fields(cls)}
#: Every flat setting, in group order (the YAML keys and long CLI options).
SETTINGS = tuple(GROUP_OF)


def fields_affecting(kind: str | None) -> tuple[str, ...]:
    """The settings that change the ISM effects (``"effects"``), only their analysis
    (``"analysis"``), or no number (None): the one list the resume keys are built from."""
    return tuple(
        f.name
        for cls in GROUPS.values()
        for f in dataclasses.fields(cls)
        if f.metadata["affects"] == kind
    )


#: Config fields that change only the output, its display or where it is computed, never a number
#: (left out of the hash: a run started locally resumes on Dask or on a GPU, and vice versa).
DISPLAY_FIELDS = fields_affecting(None)


def default_text(value) -> str:
    """A setting's default as a command line's help quotes it (a tuple as its items)."""
    return " ".join(map(str, value)) if isinstance(value, tuple) else str(value)


def cli_options(settings_class) -> Iterator[tuple[str, str, dict]]:
    """The command-line options of a settings dataclass, read from its fields' metadata.

    Parameters
    ----------
    settings_class : dataclass type
        A class whose fields hold an ``option(...)`` under the metadata key ``"cli"`` (fields
        without one have no option).

    Yields
    ------
    (str, str, dict)
        The option's flag, its ``dest`` (the field's name) and the further ``argparse`` keywords,
        the help's ``{default}`` filled in with the field's default (:func:`default_text`).
    """
    for f in dataclasses.fields(settings_class):
        spec = f.metadata.get("cli")
        if spec is None:
            continue
        kwargs = {k: v for k, v in spec.items() if k != "flag"}
        if kwargs.get("help"):
            default = f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
            kwargs["help"] = kwargs["help"].format(default=default_text(default))
        yield spec["flag"], f.name, kwargs
