"""The BPNet experiment: simulate, train the ensemble, save it as a Kipoi model, write the truth.

Outputs in ``out_dir``:

* ``kipoi_model/``: the trained ensemble as a Kipoi model directory (:mod:`.export`);
* ``bpnet_oskn/member_<m>.h5``: every member in the zoo's BPNet-OSKN h5 layout;
* ``analysis.fa``: the analysed sequences (every factor's motif embedded once);
* ``truth.csv``: the true global effect of every ordered factor pair on those sequences
  (columns ``exposure, outcome, true_effect, planted_gamma, n_sequences``);
* ``truth_local.csv``: the true local effects (``sequence_id, exposure, outcome, true_local``);
* ``experiment.json``: configuration, training records and timings.

Analyse with ``deepmr run --model OUT/kipoi_model --weights OUT/kipoi_model/member_*.pth --fasta
OUT/analysis.fa`` (the command is also in ``experiment.json``).
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from deepmr_kipoi.simulate.bpnet.data import TASKS, BPNetSimConfig, BPNetSimulator, simulate_data
from deepmr_kipoi.simulate.bpnet.train import BPNetTrainConfig

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BPNetExperimentConfig:
    """Sizes and seeds of one BPNet experiment.

    Attributes
    ----------
    n_train : int
        Training sequences (each factor's motif embedded with ``simulation.embed_prob``).
    n_analysis : int
        Analysed sequences (all four motifs embedded).
    seed : int
    simulation : BPNetSimConfig
    training : BPNetTrainConfig
    """

    n_train: int = 8000
    n_analysis: int = 100
    seed: int = 0
    simulation: BPNetSimConfig = field(default_factory=BPNetSimConfig)
    training: BPNetTrainConfig = field(default_factory=BPNetTrainConfig)

    @classmethod
    def quick(cls, seed: int = 0, threads: int = 1) -> BPNetExperimentConfig:
        """The ``--quick`` sizes: 3000 training sequences, 3 members, at most 8 epochs, 40 analysed."""
        return cls(n_train=3000, n_analysis=40, seed=seed,
                   training=BPNetTrainConfig(n_members=3, max_epochs=8, seed=seed, threads=threads))


@dataclass(frozen=True)
class BPNetExperimentResult:
    """What :func:`run_bpnet_experiment` wrote.

    Attributes
    ----------
    out_dir : str
    kipoi_model_dir : str
    weight_files : tuple of str
        Kipoi member state dicts.
    oskn_files : tuple of str
        The members in BPNet-OSKN h5 layout.
    fasta : str
    truth : DataFrame
        ``truth.csv``.
    seconds : float
    """

    out_dir: str
    kipoi_model_dir: str
    weight_files: tuple
    oskn_files: tuple
    fasta: str
    truth: pd.DataFrame
    seconds: float

    def run_command(self) -> str:
        """The ``deepmr run`` command that analyses the saved ensemble."""
        return (f"deepmr run --model {self.kipoi_model_dir} --weights {' '.join(self.weight_files)} "
                f"--fasta {self.fasta} --out {os.path.join(self.out_dir, 'deepmr_run')}")


def _write_fasta(path: str, ids, onehot: np.ndarray) -> None:
    from deepmr_kipoi.sequences import decode

    with open(path, "w") as fh:
        for name, seq in zip(ids, decode(onehot)):
            fh.write(f">{name}\n{seq}\n")


def run_bpnet_experiment(config: BPNetExperimentConfig, out_dir: str) -> BPNetExperimentResult:
    """Simulate, train, save and compute the truth (see the module docstring for the files).

    Parameters
    ----------
    config : BPNetExperimentConfig
    out_dir : str
        Created if missing; files in it are overwritten.

    Returns
    -------
    BPNetExperimentResult
    """
    from deepmr_kipoi.simulate.bpnet.export import export_bpnet_oskn_h5, write_kipoi_model_dir
    from deepmr_kipoi.simulate.bpnet.oracle import true_pair_effects
    from deepmr_kipoi.simulate.bpnet.train import train_bpnet_ensemble
    from deepmr_kipoi.validation import positive_int

    positive_int(config.n_train, "n_train", minimum=20)
    positive_int(config.n_analysis, "n_analysis")
    t0 = time.perf_counter()
    timings = {}
    os.makedirs(out_dir, exist_ok=True)
    sim = BPNetSimulator.default(config.simulation)
    seeds = np.random.SeedSequence(config.seed).generate_state(2)
    train = simulate_data(sim, config.n_train, int(seeds[0]))
    analysis = simulate_data(sim, config.n_analysis, int(seeds[1]), all_motifs=True)
    timings["simulate"] = time.perf_counter() - t0

    tick = time.perf_counter()
    members, records = train_bpnet_ensemble(train.onehot, train.counts, train.profiles, config.training)
    timings["train"] = time.perf_counter() - tick

    tick = time.perf_counter()
    length = config.simulation.sequence_length
    kipoi_dir = os.path.join(out_dir, "kipoi_model")
    weight_files = write_kipoi_model_dir(kipoi_dir, members, config.training.network_kwargs(len(TASKS)),
                                         TASKS, length)
    os.makedirs(os.path.join(out_dir, "bpnet_oskn"), exist_ok=True)
    oskn = [export_bpnet_oskn_h5(net, os.path.join(out_dir, "bpnet_oskn", f"member_{m}.h5"), length)
            for m, net in enumerate(members, start=1)]
    ids = [f"seq{i:04d}" for i in range(config.n_analysis)]
    fasta = os.path.join(out_dir, "analysis.fa")
    _write_fasta(fasta, ids, analysis.onehot)
    timings["save"] = time.perf_counter() - tick

    tick = time.perf_counter()
    local, glob = true_pair_effects(sim, analysis.onehot, analysis.motif_start)
    gamma = config.simulation.gamma()
    truth = pd.DataFrame([
        {"exposure": x, "outcome": y, "true_effect": glob[(x, y)],
         "planted_gamma": gamma[TASKS.index(x), TASKS.index(y)],
         "n_sequences": int(np.isfinite(local[(x, y)]).sum())}
        for (x, y) in glob])  # fmt: skip
    truth.to_csv(os.path.join(out_dir, "truth.csv"), index=False)
    pd.DataFrame([
        {"sequence_id": ids[i], "exposure": x, "outcome": y, "true_local": float(v[i])}
        for (x, y), v in local.items() for i in range(len(ids))]).to_csv(  # fmt: skip
        os.path.join(out_dir, "truth_local.csv"), index=False)
    timings["truth"] = time.perf_counter() - tick

    seconds = time.perf_counter() - t0
    result = BPNetExperimentResult(out_dir=out_dir, kipoi_model_dir=kipoi_dir,
                                   weight_files=tuple(weight_files), oskn_files=tuple(oskn),
                                   fasta=fasta, truth=truth, seconds=seconds)
    info = {
        "n_train": config.n_train, "n_analysis": config.n_analysis, "seed": config.seed,
        "simulation": config.simulation.to_dict(), "training": config.training.to_dict(),
        "members": [{"seed": r.seed, "best_epoch": r.best_epoch, "val_count_mse": list(r.val_count_mse),
                     "seconds": r.seconds} for r in records],
        "timings_s": timings, "seconds": seconds, "run_command": result.run_command(),
    }
    with open(os.path.join(out_dir, "experiment.json"), "w") as fh:
        json.dump(info, fh, indent=2, default=list)
    return result
