"""The settings of the simulation experiment (``ExperimentConfig``) and its rounds' true
parameters.

The settings that ``deepmr simulate`` offers as options carry them in their field metadata
(:func:`deepmr_kipoi.run.settings.option_field`), from which the command builds its parser.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

import numpy as np

from deepmr_kipoi.run.settings import option_field
from deepmr_kipoi.simulate import generative as gen
from deepmr_kipoi.simulate import oracle as orc
from deepmr_kipoi.simulate.model import ModelConfig
from deepmr_kipoi.simulate.train import TrainConfig

#: Local MR estimators the experiment can score; the robust weighted median is in the default set
#: because the sequence-confounded regimes make some instruments invalid (pleiotropic).
METHODS = ("ivw", "egger", "weighted_median")
CALIBRATIONS = ("none", "sigma", "quantile")
#: ``aleatoric_variance`` estimated from replicate labels of the calibration sequences.
REPLICATES = "replicates"


@dataclass(frozen=True)
class ExperimentConfig:
    """Settings of the whole experiment.

    Attributes
    ----------
    rounds : int
        Rounds per regime (each round has its own alpha, effect and data).
    regimes : tuple of str
        Subset of ``generative.REGIMES``.
    seed : int
        Root seed; round parameters depend only on (seed, round), data on (seed, round, regime).
    n_train : int
        Training sequences (a ``training.val_fraction`` share is the early-stopping split).
    n_calibration : int
        Held-out labelled sequences for the calibration fit (never trained on, never analysed).
    n_analysis : int
        Analysed reference sequences (both motifs embedded).
    calibration : {"none", "sigma", "quantile"}
        Recalibration of the effect SEs (``deepmr_kipoi.calibration``); ``"none"`` uses the raw
        ensemble SD.
    aleatoric_variance : float or "replicates"
        Label noise variance that sigma scaling removes: a number (1, the default: Poisson counts
        on the Anscombe scale; 0 fits the factor to the labels' whole residual variance), or
        ``"replicates"``, estimated per feature from a second measurement of the calibration
        sequences (fresh counting noise and sequence-independent confounder,
        ``replicates.replicate_labels``). The latter removes the random confounder's share of the
        label noise too; measured in ``examples/simulation/RESULTS.md``, it narrows the headline
        intervals below their coverage in the random-confounded regimes, so it is not the default.
    methods : tuple of str
        Local MR estimators (subset of ``METHODS``).
    meta_method : {"REML", "DL", "PM"}
    z : float
        Instrument threshold on ``|b_x / se_x|``.
    min_instruments : int
    oracle_scale : {"expected", "anscombe"}
        Scale of the truth (``oracle`` module docstring).
    floor, directional, one_per_position, sample_split
        Instrument rules of the run (``RunConfig``).
    min_effect : float
        Smallest effect of interest of the verdict, standardized (``RunConfig.min_effect``).
    workers : int
        (round, regime) jobs run in this many processes at once (each trains with
        ``training.threads`` torch threads); 2 uses both cores of a 2-core machine.
    simulation : SimulationConfig
    model : ModelConfig
    training : TrainConfig
    """

    rounds: int = option_field(
        10,
        "--rounds",
        "rounds per regime, each with its own true effect (default {default})",
        type=int,
    )
    regimes: tuple = option_field(
        gen.REGIMES,
        "--regimes",
        "regimes: confounding (none, sequence, random, both), pleiotropy, "
        "reverse causation (default: all six)",
        nargs="+",
        choices=gen.REGIMES,
    )
    seed: int = option_field(0, "--seed", "root seed (default {default})", type=int)
    n_train: int = option_field(
        6000, "--n-train", "training sequences per round (default {default})", type=int
    )
    n_calibration: int = option_field(
        2000, "--n-calibration", "held-out calibration sequences (default {default})", type=int
    )
    n_analysis: int = option_field(
        100, "--n-analysis", "analysed reference sequences (default {default})", type=int
    )
    calibration: str = option_field(
        "sigma",
        "--calibration",
        "recalibration of effect SEs (default {default})",
        choices=CALIBRATIONS,
    )
    aleatoric_variance: float | str = option_field(
        1.0,
        "--aleatoric-variance",
        "label noise variance removed by sigma scaling (default {default}: Poisson counts on "
        "the Anscombe scale), or 'replicates' to estimate it per feature from a second "
        "measurement of the calibration sequences",
        type=lambda text: text if text == REPLICATES else float(text),
        metavar="A|replicates",
    )
    methods: tuple = option_field(
        METHODS,
        "--methods",
        "local MR estimators (default: {default})",
        nargs="+",
        choices=METHODS,
    )
    meta_method: str = "REML"
    z: float = option_field(
        1.96, "--z", "instrument threshold on |b_x/se_x| (default {default})", type=float
    )
    min_instruments: int = 3
    oracle_scale: str = "expected"
    floor: float = option_field(
        0.01,
        "--floor",
        "instrument floor in units of the exposure's spread (default {default})",
        type=float,
    )
    directional: bool = option_field(
        True,
        "--no-directional",
        "skip the directionality check of instruments",
        action="store_false",
    )
    one_per_position: bool = option_field(
        True,
        "--all-alleles",
        "let all three alleles of a position be instruments",
        action="store_false",
    )
    sample_split: bool = option_field(
        False,
        "--sample-split",
        "select instruments on half of the members, estimate on the others",
        action="store_true",
    )
    min_effect: float = option_field(
        0.1,
        "--min-effect",
        "smallest effect of interest of the verdict, standardized "
        "(effect x sd_exposure / sd_outcome; default {default})",
        type=float,
    )
    workers: int = option_field(
        2,
        "--workers",
        "parallel (round, regime) jobs, one process each (default {default})",
        type=int,
    )
    simulation: gen.SimulationConfig = field(
        default_factory=lambda: gen.SimulationConfig(bystander_gamma=100.0)
    )
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self):
        object.__setattr__(self, "regimes", tuple(self.regimes))
        object.__setattr__(self, "methods", tuple(self.methods))
        for r in self.regimes:
            gen.regime_flags(r)
        for m in self.methods:
            if m not in METHODS:
                raise ValueError(f"unknown MR method {m!r}; use one of {', '.join(METHODS)}")
        if self.calibration not in CALIBRATIONS:
            raise ValueError(
                f"unknown calibration {self.calibration!r}; use one of {', '.join(CALIBRATIONS)}"
            )
        if self.aleatoric_variance and self.calibration != "sigma":
            object.__setattr__(self, "aleatoric_variance", 0.0)
        noise = self.aleatoric_variance
        if noise != REPLICATES and not (isinstance(noise, (int, float)) and noise >= 0):
            raise ValueError(f"aleatoric_variance={noise!r}: give a number >= 0 or {REPLICATES!r}")
        if self.oracle_scale not in orc.SCALES:
            raise ValueError(f"unknown oracle scale {self.oracle_scale!r}; use one of {orc.SCALES}")
        if self.rounds < 1 or self.n_analysis < 1 or self.n_train < 10 or self.workers < 1:
            raise ValueError("rounds, workers and n_analysis must be >= 1 and n_train >= 10")
        if (
            self.model.sequence_length != self.simulation.sequence_length
            or self.model.n_outputs != len(self.simulation.features)
        ):
            object.__setattr__(
                self,
                "model",
                replace(
                    self.model,
                    sequence_length=self.simulation.sequence_length,
                    n_outputs=len(self.simulation.features),
                ),
            )

    def to_dict(self) -> dict:
        """JSON-serialisable form (nested configs as dicts)."""
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            out[f.name] = (
                v.to_dict() if hasattr(v, "to_dict") else (list(v) if isinstance(v, tuple) else v)
            )
        return out


def round_parameters(config: ExperimentConfig) -> list[gen.RoundParameters]:
    """True parameters of every round (identical across regimes), from ``config.seed``."""
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, 0]))
    return [gen.draw_round_parameters(config.simulation, rng) for _ in range(config.rounds)]
