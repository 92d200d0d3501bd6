"""The BPNet experiment: four ES-cell factors, ChIP-nexus-like reads, a multi-task BPNet ensemble.

Modules: ``data`` (motifs, binding, planted cooperativity, reads), ``oracle`` (the truth on the
network's scale), ``network`` (the PyTorch BPNet; imports torch), ``train``, ``export`` (Kipoi
directory, BPNet-OSKN h5) and ``experiment`` (``deepmr simulate --experiment bpnet``).
"""

from deepmr_kipoi.simulate.bpnet.data import COOPERATIVITY, TASKS, BPNetSimConfig, BPNetSimulator
from deepmr_kipoi.simulate.bpnet.experiment import (
    BPNetExperimentConfig,
    BPNetExperimentResult,
    run_bpnet_experiment,
)
from deepmr_kipoi.simulate.bpnet.train import BPNetTrainConfig

__all__ = [
    "COOPERATIVITY",
    "TASKS",
    "BPNetExperimentConfig",
    "BPNetExperimentResult",
    "BPNetSimConfig",
    "BPNetSimulator",
    "BPNetTrainConfig",
    "run_bpnet_experiment",
]
