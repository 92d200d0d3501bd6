"""The embedded demo model: a tiny 3-task CNN ensemble with a planted causal structure.

Features (Anscombe-transformed Poisson counts, as in the simulation):

* ``GATA1``: ``c = 1 + alpha q_GATA1``;
* ``TAL1``:  ``c = 1 + beta q_GATA1 q_TAL1`` -- GATA1 causes TAL1 (``beta = alpha * effect``);
* ``SOX2``:  ``c = 1 + gamma q_SOX2`` -- unrelated to the other two.

So the only non-zero causal effect is GATA1 -> TAL1; every other ordered pair has true effect 0.
The truth per pair is the oracle's (noise-free function, ``oracle`` module): the mean over the demo
sequences of the slope through the origin of the outcome's change on the exposure's change over the
mutants of the exposure's embedded motif. Weights (5 members, numpy ``.npz``, a few hundred kB)
are trained by ``examples/simulation/train_demo_model.py`` with :func:`train_demo_model`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from importlib import resources

import numpy as np

from deepmr_kipoi import validation
from deepmr_kipoi.errors import DeepMRInputError
from deepmr_kipoi.simulate import generative as gen
from deepmr_kipoi.simulate import oracle as orc
from deepmr_kipoi.simulate.model import ModelConfig

FEATURES = ("GATA1", "TAL1", "SOX2")
_MOTIF_KEY = {"GATA1": "exposure", "TAL1": "outcome", "SOX2": "confounder"}
WEIGHTS_FILE = "demo_ensemble.npz"
META_FILE = "demo_model.json"


@dataclass(frozen=True)
class DemoSpec:
    """Planted parameters of the demo model.

    Attributes
    ----------
    alpha, effect, gamma : float
        Count scales: GATA1 ``alpha``, TAL1 ``beta = alpha * effect``, SOX2 ``gamma``.
    sequence_length : int
    n_train : int
        Training sequences.
    seed : int
    """

    alpha: float = 100.0
    effect: float = 4.0
    gamma: float = 100.0
    sequence_length: int = 100
    n_train: int = 8000
    seed: int = 7

    def simulation_config(self) -> gen.SimulationConfig:
        """Generative settings: SOX2 inserted in half the sequences, no confounder terms."""
        return gen.SimulationConfig(
            sequence_length=self.sequence_length, eta=0.0, nu=0.0, confounder_motif_prob=0.5
        )

    def round_parameters(self) -> gen.RoundParameters:
        """The alpha/beta of the GATA1 and TAL1 features."""
        return gen.RoundParameters(
            alpha=self.alpha, effect=self.effect, beta=self.alpha * self.effect, high=False
        )


def demo_counts(data: gen.SimulatedData, spec: DemoSpec) -> np.ndarray:
    """Poisson means of the three demo features, shape (N, 3)."""
    return np.stack(
        [
            1.0 + spec.alpha * data.q_exp,
            1.0 + spec.alpha * spec.effect * data.q_exp * data.q_out,
            1.0 + spec.gamma * data.q_conf,
        ],
        axis=1,
    )


def demo_training_data(spec: DemoSpec) -> tuple[np.ndarray, np.ndarray]:
    """Training sequences and Anscombe labels of the demo model.

    Returns
    -------
    onehot : ndarray, shape (n_train, L, 4)
    labels : ndarray of float32, shape (n_train, 3)
    """
    data, labels = _labelled_data(spec.n_train, [spec.seed, 0], spec, "demo_train")
    return data.onehot, labels.astype(np.float32)


def _labelled_data(n: int, entropy: list, spec: DemoSpec, id_prefix: str):
    """Sequences of the demo's generative process and their Anscombe labels, shape (n, 3)."""
    rng = np.random.default_rng(np.random.SeedSequence(entropy))
    data = gen.simulate(
        n, spec.round_parameters(), spec.simulation_config(), "sequence", rng, id_prefix=id_prefix
    )
    return data, gen.anscombe(rng.poisson(demo_counts(data, spec)))


def demo_sequences(
    n: int = 16, seed: int = 0, spec: DemoSpec | None = None
) -> tuple[list[str], np.ndarray]:
    """Seeded demo reference sequences: GATA1, TAL1 and SOX2 motifs embedded in each.

    Parameters
    ----------
    n : int
    seed : int
    spec : DemoSpec, optional

    Returns
    -------
    ids : list of str, length n
    onehot : ndarray of float32, shape (n, L, 4)
    """
    data = _demo_reference_data(n, seed, spec or DemoSpec())
    return list(data.ids), data.onehot


def demo_calibration_data(n: int = 2000, seed: int = 0, spec: DemoSpec | None = None):
    """Held-out labelled sequences of the demo's generative process, for calibrating its model.

    Drawn like the training data (the same mixture of embedded motifs, Poisson labels on the
    Anscombe scale) from a seed stream the training never used, as a user's held-out labelled
    sequences would be.

    Parameters
    ----------
    n : int
        Number of sequences.
    seed : int
    spec : DemoSpec, optional

    Returns
    -------
    pandas.DataFrame
        Column ``sequence`` (ACGT strings of length ``spec.sequence_length``) and one label column
        per feature of ``FEATURES``; n rows.
    """
    import pandas as pd

    from deepmr_kipoi import sequences

    spec = spec or DemoSpec()
    n = validation.positive_int(n, "n (number of calibration sequences)")
    data, labels = _labelled_data(n, [spec.seed, 2, seed], spec, "demo_cal")
    table = pd.DataFrame(labels, columns=list(FEATURES))
    table.insert(0, "sequence", sequences.decode(data.onehot))
    return table


def _demo_reference_data(n: int, seed: int, spec: DemoSpec) -> gen.SimulatedData:
    n = validation.positive_int(n, "n (number of demo sequences)")
    cfg = replace(spec.simulation_config(), confounder_motif_prob=1.0)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
    return gen.simulate(
        n, spec.round_parameters(), cfg, "sequence", rng, embedding="both", id_prefix="demo"
    )


def demo_truth(n: int = 16, seed: int = 0, spec: DemoSpec | None = None):
    """True global causal effect of every ordered feature pair on the demo sequences.

    Parameters
    ----------
    n, seed : int
        The demo sequences (:func:`demo_sequences` with the same arguments).
    spec : DemoSpec, optional

    Returns
    -------
    pandas.DataFrame
        Columns ``exposure``, ``outcome``, ``true_effect`` (mean of the per-sequence oracle
        slopes), ``true_effect_sd`` (their SD across sequences), ``n_sequences``; one row per
        ordered pair of ``FEATURES``, on the model's (Anscombe) scale.
    """
    import pandas as pd

    spec = spec or DemoSpec()
    data = _demo_reference_data(n, seed, spec)
    effects = demo_oracle_effects(data.onehot, spec)
    ms = gen.MotifSet.from_config(spec.simulation_config())
    widths = {
        "exposure": ms.exposure.length,
        "outcome": ms.outcome.length,
        "confounder": ms.confounder.length,
    }
    starts = {
        "exposure": data.exposure_start,
        "outcome": data.outcome_start,
        "confounder": data.confounder_start,
    }
    rows = []
    for i, e in enumerate(FEATURES):
        key = _MOTIF_KEY[e]
        for j, o in enumerate(FEATURES):
            if i == j:
                continue
            pair = effects[..., [i, j]]
            local = orc.true_local_effects(pair, starts[key], widths[key])
            rows.append(
                {
                    "exposure": e,
                    "outcome": o,
                    "true_effect": float(np.nanmean(local)),
                    "true_effect_sd": float(np.nanstd(local, ddof=1)),
                    "n_sequences": int(np.isfinite(local).sum()),
                }
            )
    return pd.DataFrame(rows)


def demo_oracle_effects(onehot: np.ndarray, spec: DemoSpec | None = None) -> np.ndarray:
    """Oracle ISM effects of the three demo features, shape (N, L, 3, 3), model scale."""
    spec = spec or DemoSpec()
    ms = gen.MotifSet.from_config(spec.simulation_config())

    def features(x):
        q_g = ms.occupancy("exposure", x)
        q_t = ms.occupancy("outcome", x)
        q_s = ms.occupancy("confounder", x)
        c = np.stack(
            [
                1.0 + spec.alpha * q_g,
                1.0 + spec.alpha * spec.effect * q_g * q_t,
                1.0 + spec.gamma * q_s,
            ],
            axis=1,
        )
        return orc.expected_anscombe(c)

    x = np.asarray(onehot)
    n, L = x.shape[:2]
    out = np.empty((n, L, 3, 3))
    for i in range(n):
        mutants, _ = orc.saturation_mutants(x[i])
        out[i] = (features(mutants) - features(x[i : i + 1])).reshape(L, 3, 3)
    return out


def train_demo_model(
    out_dir: str, spec: DemoSpec | None = None, n_members: int = 5, progress: bool = True
) -> dict:
    """Train the demo ensemble and write ``demo_ensemble.npz`` and ``demo_model.json``.

    Parameters
    ----------
    out_dir : str
    spec : DemoSpec, optional
    n_members : int
    progress : bool

    Returns
    -------
    dict
        The metadata written to ``demo_model.json``.
    """
    from deepmr_kipoi.simulate.train import TrainConfig, train_ensemble

    spec = spec or DemoSpec()
    x, y = demo_training_data(spec)
    mc = ModelConfig(
        sequence_length=spec.sequence_length,
        n_outputs=3,
        channels=(16, 16, 16),
        kernel_sizes=(15, 3, 3),
        hidden=32,
    )
    tc = TrainConfig(n_members=n_members, max_epochs=15, patience=3, seed=spec.seed)
    ens = train_ensemble(
        x, y, model_config=mc, train_config=tc, feature_names=FEATURES, progress=progress
    )
    os.makedirs(out_dir, exist_ok=True)
    arrays = {}
    for m, sd in enumerate(ens.state_dicts()):
        for k, v in sd.items():
            arrays[f"member{m}/{k}"] = v.numpy()
    np.savez_compressed(os.path.join(out_dir, WEIGHTS_FILE), **arrays)
    meta = {
        "features": list(FEATURES),
        "n_members": n_members,
        "model_config": mc.to_dict(),
        "spec": {k: getattr(spec, k) for k in spec.__dataclass_fields__},
        "training": tc.to_dict(),
        "best_epochs": [h.best_epoch for h in ens.histories],
        "val_mse": [float(min(h.val_loss)) for h in ens.histories],
    }
    with open(os.path.join(out_dir, META_FILE), "w") as fh:
        json.dump(meta, fh, indent=2)
    return meta


def load_demo_model(path: str | None = None):
    """The shipped demo ensemble as a PredictiveModel (DeepEnsemble of 5 torch CNNs).

    Parameters
    ----------
    path : str, optional
        Folder with ``demo_ensemble.npz`` and ``demo_model.json``; default the package data
        ``deepmr_kipoi/data/demo``.

    Returns
    -------
    deepmr_kipoi.predictive.DeepEnsemble
        Features ``("GATA1", "TAL1", "SOX2")``, sequence length 100, ACGT.
    """
    import torch

    from deepmr_kipoi.simulate.model import build_cnn
    from deepmr_kipoi.simulate.train import to_predictive

    if path is None:
        ref = resources.files("deepmr_kipoi").joinpath("data", "demo")
        with resources.as_file(ref) as p:
            return load_demo_model(str(p))
    weights = os.path.join(path, WEIGHTS_FILE)
    meta_path = os.path.join(path, META_FILE)
    if not (os.path.exists(weights) and os.path.exists(meta_path)):
        raise DeepMRInputError(
            f"no demo model in {path}; run examples/simulation/train_demo_model.py"
        )
    with open(meta_path) as fh:
        meta = json.load(fh)
    mc = ModelConfig.from_dict(meta["model_config"])
    arrays = np.load(weights)
    members = []
    for m in range(int(meta["n_members"])):
        module = build_cnn(mc)
        prefix = f"member{m}/"
        state = {
            k[len(prefix) :]: torch.from_numpy(arrays[k])
            for k in arrays.files
            if k.startswith(prefix)
        }
        module.load_state_dict(state)
        module.eval()
        members.append(module)
    return to_predictive(members, meta["features"], mc.sequence_length)
