"""The BPNet experiment: simulate, train the ensemble, save it as a Kipoi model, write the truth.

Outputs in ``out_dir``:

* ``kipoi_model/``: the trained ensemble as a Kipoi model directory (:mod:`.export`);
* ``bpnet_oskn/member_<m>.h5``: every member in the zoo's BPNet-OSKN h5 layout;
* ``analysis.fa``: the analysed sequences (every factor's motif embedded once);
* ``truth.csv``: the true global effect of every ordered factor pair on those sequences
  (columns ``exposure, outcome, true_effect, planted_gamma, n_sequences``);
* ``truth_local.csv``: the true local effects (``sequence_id, exposure, outcome, true_local``);
* ``calibration.tsv``: held-out labelled sequences (never trained on) with each factor's label on
  the network's output scale, for ``--calibration-table``;
* ``experiment.json``: configuration, training records and timings.

Analyse with ``deepmr run --model OUT/kipoi_model --weights OUT/kipoi_model/member_*.pth --fasta
OUT/analysis.fa --calibration-table OUT/calibration.tsv --calibration-method sigma
--aleatoric-variance A`` (the command, with A, is in ``experiment.json``).
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from deepmr_kipoi.sequences.encoding import decode
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
    n_calibration : int
        Held-out labelled sequences for the calibration (drawn like the training sequences).
    seed : int
    simulation : BPNetSimConfig
    training : BPNetTrainConfig
    """

    n_train: int = 8000
    n_analysis: int = 100
    n_calibration: int = 2000
    seed: int = 0
    simulation: BPNetSimConfig = field(default_factory=BPNetSimConfig)
    training: BPNetTrainConfig = field(default_factory=BPNetTrainConfig)

    @classmethod
    def quick(cls, seed: int = 0, threads: int = 1) -> BPNetExperimentConfig:
        """The ``--quick`` sizes: 3000 training sequences, 3 members, at most 8 epochs, 40 analysed."""
        return cls(
            n_train=3000,
            n_analysis=40,
            n_calibration=1000,
            seed=seed,
            training=BPNetTrainConfig(n_members=3, max_epochs=8, seed=seed, threads=threads),
        )


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
    calibration_table : str
    aleatoric_variance : float
        The labels' Poisson variance on the output scale (:func:`poisson_label_variance`).
    """

    out_dir: str
    kipoi_model_dir: str
    weight_files: tuple
    oskn_files: tuple
    fasta: str
    truth: pd.DataFrame
    seconds: float
    calibration_table: str
    aleatoric_variance: float

    def run_command(self) -> str:
        """The ``deepmr run`` command that analyses the saved ensemble."""
        return (
            f"deepmr run --model {self.kipoi_model_dir} --weights {' '.join(self.weight_files)} "
            f"--fasta {self.fasta} --calibration-table {self.calibration_table} "
            f"--calibration-method sigma --aleatoric-variance {self.aleatoric_variance:.6g} "
            f"--out {os.path.join(self.out_dir, 'deepmr_run')}"
        )


def poisson_label_variance(counts) -> float:
    """Aleatoric variance of the labels ``mean_s log(1 + Y_s)`` that sigma scaling removes.

    With ``Y_s ~ Poisson(m)`` per strand, the delta method gives ``Var log(1 + Y_s) ~ m / (1 + m)^2``
    and the mean of two strands half of it; ``m`` is estimated by each observed count.
    Approximation: first order in ``1 / m`` (poor below a few reads), averaged over sequences,
    strands and factors into one number, as the calibration takes one.

    Parameters
    ----------
    counts : array_like, shape (N, T, 2)
        Reads per sequence, factor and strand.

    Returns
    -------
    float
    """
    y = np.asarray(counts, dtype=np.float64)
    return float(np.mean(y / (1.0 + y) ** 2) / 2.0)


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
    from deepmr_kipoi.simulate.bpnet.train import train_bpnet_ensemble
    from deepmr_kipoi.validation import positive_int

    positive_int(config.n_train, "n_train", minimum=20)
    positive_int(config.n_analysis, "n_analysis")
    t0 = time.perf_counter()
    timings = {}
    os.makedirs(out_dir, exist_ok=True)
    sim = BPNetSimulator.default(config.simulation)
    seeds = np.random.SeedSequence(config.seed).generate_state(3)  # first two as before
    train = simulate_data(sim, config.n_train, int(seeds[0]))
    analysis = simulate_data(sim, config.n_analysis, int(seeds[1]), all_motifs=True)
    held_out = simulate_data(
        sim, positive_int(config.n_calibration, "n_calibration", minimum=10), int(seeds[2])
    )
    timings["simulate"] = time.perf_counter() - t0

    tick = time.perf_counter()
    members, records = train_bpnet_ensemble(
        train.onehot, train.counts, train.profiles, config.training
    )
    timings["train"] = time.perf_counter() - tick

    tick = time.perf_counter()
    saved = _save_inputs(config, out_dir, members, analysis, held_out)
    timings["save"] = time.perf_counter() - tick

    tick = time.perf_counter()
    truth = _write_truth(config, out_dir, sim, analysis, saved["ids"])
    timings["truth"] = time.perf_counter() - tick

    seconds = time.perf_counter() - t0
    result = BPNetExperimentResult(
        out_dir=out_dir,
        kipoi_model_dir=saved["kipoi_dir"],
        weight_files=tuple(saved["weight_files"]),
        oskn_files=tuple(saved["oskn"]),
        fasta=saved["fasta"],
        truth=truth,
        seconds=seconds,
        calibration_table=saved["calibration_table"],
        aleatoric_variance=poisson_label_variance(held_out.counts),
    )
    _write_info(config, out_dir, result, records, timings)
    return result


def _save_inputs(config: BPNetExperimentConfig, out_dir: str, members, analysis, held_out) -> dict:
    """The Kipoi model directory, the BPNet (OSKN) h5 files, the analysed sequences' FASTA and the
    calibration table of the held-out sequences; their paths (and the analysed sequences' ids)."""
    from deepmr_kipoi.simulate.bpnet.export import export_bpnet_oskn_h5, write_kipoi_model_dir

    length = config.simulation.sequence_length
    kipoi_dir = os.path.join(out_dir, "kipoi_model")
    weight_files = write_kipoi_model_dir(
        kipoi_dir, members, config.training.network_kwargs(len(TASKS)), TASKS, length
    )
    os.makedirs(os.path.join(out_dir, "bpnet_oskn"), exist_ok=True)
    oskn = [
        export_bpnet_oskn_h5(net, os.path.join(out_dir, "bpnet_oskn", f"member_{m}.h5"), length)
        for m, net in enumerate(members, start=1)
    ]
    ids = [f"seq{i:04d}" for i in range(config.n_analysis)]
    fasta = os.path.join(out_dir, "analysis.fa")
    _write_fasta(fasta, ids, analysis.onehot)
    labels = pd.DataFrame(np.log1p(held_out.counts).mean(axis=2), columns=list(TASKS))
    labels.insert(0, "sequence", decode(held_out.onehot))
    calibration_table = os.path.join(out_dir, "calibration.tsv")
    labels.to_csv(calibration_table, sep="\t", index=False)
    return {
        "kipoi_dir": kipoi_dir,
        "weight_files": weight_files,
        "oskn": oskn,
        "ids": ids,
        "fasta": fasta,
        "calibration_table": calibration_table,
    }


def _write_truth(config: BPNetExperimentConfig, out_dir: str, sim, analysis, ids) -> pd.DataFrame:
    """``truth.csv`` (the true global effect of every ordered pair) and ``truth_local.csv`` (per
    analysed sequence); returns the global truth."""
    from deepmr_kipoi.simulate.bpnet.oracle import true_pair_effects

    local, global_ = true_pair_effects(sim, analysis.onehot, analysis.motif_start)
    gamma = config.simulation.gamma()
    truth = pd.DataFrame(
        [
            {
                "exposure": x,
                "outcome": y,
                "true_effect": global_[(x, y)],
                "planted_gamma": gamma[TASKS.index(x), TASKS.index(y)],
                "n_sequences": int(np.isfinite(local[(x, y)]).sum()),
            }
            for (x, y) in global_
        ]
    )
    truth.to_csv(os.path.join(out_dir, "truth.csv"), index=False)
    pd.DataFrame(
        [
            {"sequence_id": ids[i], "exposure": x, "outcome": y, "true_local": float(v[i])}
            for (x, y), v in local.items()
            for i in range(len(ids))
        ]
    ).to_csv(os.path.join(out_dir, "truth_local.csv"), index=False)
    return truth


def _write_info(config, out_dir: str, result: BPNetExperimentResult, records, timings) -> None:
    """``experiment.json``: the settings, each member's training record, timings, the command."""
    info = {
        "n_train": config.n_train,
        "n_analysis": config.n_analysis,
        "n_calibration": config.n_calibration,
        "seed": config.seed,
        "aleatoric_variance": result.aleatoric_variance,
        "simulation": config.simulation.to_dict(),
        "training": config.training.to_dict(),
        "members": [
            {
                "seed": r.seed,
                "best_epoch": r.best_epoch,
                "val_count_mse": list(r.val_count_mse),
                "seconds": r.seconds,
            }
            for r in records
        ],
        "timings_s": timings,
        "seconds": result.seconds,
        "run_command": result.run_command(),
    }
    with open(os.path.join(out_dir, "experiment.json"), "w") as fh:
        json.dump(info, fh, indent=2, default=list)
