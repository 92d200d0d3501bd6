"""The truths a simulation round's estimates are scored against: per sequence and pair, from the
oracle (:mod:`deepmr_kipoi.simulate.oracle`), learnable and the paper's, with the sums the pooled
truths are ratios of; cached per job next to its model (:mod:`deepmr_kipoi.simulate.cache`).
"""

from __future__ import annotations

import numpy as np

from deepmr_kipoi.simulate import cache as _cache
from deepmr_kipoi.simulate import generative as gen
from deepmr_kipoi.simulate import oracle as orc
from deepmr_kipoi.simulate import scoring
from deepmr_kipoi.simulate.config import ExperimentConfig


def true_locals(params, config: ExperimentConfig, ms, an, regime: str, learnable: bool):
    """True local effects of every ordered feature pair.

    ``learnable``: the oracle keeps the sequence confounder's terms and averages the random
    confounder (what the regime's labels average to); otherwise the paper's unconfounded truth.
    The regime's causal structure (pleiotropy, reverse causation) is in both.

    Returns
    -------
    pandas.DataFrame
        Columns id, exposure, outcome, value (the per-sequence slope), sxy, sxx (its two sums,
        ``oracle.true_local_sums``: the pooled global truth is ``sum sxy / sum sxx``).
    """
    import pandas as pd

    seq_conf, rand_conf = gen.regime_flags(regime)
    oracle = orc.Oracle(
        params,
        config.simulation,
        ms,
        scale=config.oracle_scale,
        averaged_random_confounder=learnable and rand_conf,
        sequence_confounder=learnable and seq_conf,
        regime=regime,
    )
    eff = orc.oracle_effects(oracle, an.onehot)
    features = config.simulation.features
    starts = {
        "exposure": an.exposure_start,
        "outcome": an.outcome_start,
        "confounder": an.confounder_start,
    }
    widths = {
        "exposure": ms.exposure.length,
        "outcome": ms.outcome.length,
        "confounder": ms.confounder.length,
    }
    frames = []
    for i, x in enumerate(features):
        motif = scoring.MOTIF_OF[x]
        for j, y in enumerate(features):
            if i != j:
                sxy, sxx = orc.true_local_sums(eff[..., [i, j]], starts[motif], widths[motif])
                with np.errstate(divide="ignore", invalid="ignore"):
                    values = np.where(sxx > 0, sxy / sxx, np.nan)
                frames.append(
                    pd.DataFrame(
                        {
                            "id": an.ids,
                            "exposure": x,
                            "outcome": y,
                            "value": values,
                            "sxy": sxy,
                            "sxx": sxx,
                        }
                    )
                )
    return pd.concat(frames, ignore_index=True)


def cached_truth_table(params, config: ExperimentConfig, ms, an, job):
    """:func:`truth_table`, read from the job cache ``(cache_dir, round_index, regime)`` when
    computed before (and written there otherwise)."""
    cache_dir, round_index, regime = job
    if cache_dir is None:
        return truth_table(params, config, ms, an, regime)
    simulation = config.to_dict()["simulation"]
    key = _cache.truth_key(an, params, simulation, regime, config.oracle_scale)
    truth = _cache.load_truth(cache_dir, round_index, regime, key)
    if truth is None:
        truth = truth_table(params, config, ms, an, regime)
        _cache.save_truth(cache_dir, round_index, regime, key, truth)
    return truth


def truth_table(params, config: ExperimentConfig, ms, an, regime: str):
    """Learnable and paper truths per (id, exposure, outcome), with their sums."""
    key = ["id", "exposure", "outcome"]
    truth = true_locals(params, config, ms, an, regime, learnable=True).rename(
        columns={"value": "true_local", "sxy": "true_sxy", "sxx": "true_sxx"}
    )
    paper = true_locals(params, config, ms, an, regime, learnable=False).rename(
        columns={"value": "true_local_paper", "sxy": "true_sxy_paper", "sxx": "true_sxx_paper"}
    )
    return truth.merge(paper, on=key, validate="one_to_one")
