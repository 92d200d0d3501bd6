"""The simulation experiment with known truth, and the embedded demo model.

Modules: ``motifs`` (JASPAR matrices, log-odds, occupancy), ``generative`` (sequences, counts,
labels, regimes), ``oracle`` (noise-free truth under ISM), ``model`` and ``train`` (small CNN,
deep-ensemble training; torch imported lazily), ``config`` (``ExperimentConfig``: the
experiment's settings), ``experiment`` (rounds, evaluation, outputs), ``cli`` (``deepmr
simulate``) and ``demo_model`` (the shipped demo model and its truth).

Example
-------
>>> from deepmr_kipoi import simulate
>>> model = simulate.load_demo_model()            # DeepEnsemble, features GATA1, TAL1, SOX2
>>> ids, onehot = simulate.demo_sequences(n=16)    # seeded demo references
>>> truth = simulate.demo_truth(n=16)              # true global effect per ordered pair
"""

from deepmr_kipoi.simulate.cli import add_arguments, run_from_args
from deepmr_kipoi.simulate.config import ExperimentConfig
from deepmr_kipoi.simulate.demo_model import (
    FEATURES as DEMO_FEATURES,
)
from deepmr_kipoi.simulate.demo_model import (
    demo_calibration_data,
    demo_sequences,
    demo_truth,
    load_demo_model,
)
from deepmr_kipoi.simulate.experiment import run_experiment
from deepmr_kipoi.simulate.generative import REGIMES, SimulationConfig

__all__ = [
    "DEMO_FEATURES",
    "REGIMES",
    "ExperimentConfig",
    "SimulationConfig",
    "add_arguments",
    "demo_calibration_data",
    "demo_sequences",
    "demo_truth",
    "load_demo_model",
    "run_experiment",
    "run_from_args",
]
