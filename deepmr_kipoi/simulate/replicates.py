"""A replicate measurement of simulated sequences: the label noise no sequence model can predict."""

from __future__ import annotations

import numpy as np

from deepmr_kipoi.simulate.generative import (
    RoundParameters,
    SimulatedData,
    SimulationConfig,
    anscombe,
    expected_counts,
    regime_flags,
)


def replicate_labels(
    data: SimulatedData,
    params: RoundParameters,
    config: SimulationConfig,
    rng: np.random.Generator,
) -> np.ndarray:
    """A second measurement of the same sequences: fresh counting noise and confounder draw.

    The sequences (and so every occupancy) are those of ``data``; the sequence-independent
    confounder ``b`` (random-confounded regimes) and the Poisson counts are drawn again, as they
    would be in a replicate experiment, so ``labels - replicate`` holds exactly the variation no
    sequence model can predict (``calibration.replicate_noise_variance``).

    Parameters
    ----------
    data : SimulatedData
    params : RoundParameters
        The round's parameters ``data`` was simulated with.
    config : SimulationConfig
    rng : numpy.random.Generator

    Returns
    -------
    ndarray of float32, shape (N, F)
        Anscombe labels in the columns of ``data.labels``.
    """
    n, regime = len(data.ids), data.regime
    b = (
        (rng.random(n) < config.random_confounder_prob).astype(np.int8)
        if regime_flags(regime)[1]
        else np.zeros(n, dtype=np.int8)
    )
    c_exp, c_out = expected_counts(
        data.q_exp, data.q_out, data.q_conf, b, params, config, regime, q_shared=data.q_shared
    )
    columns = [anscombe(rng.poisson(c_exp)), anscombe(rng.poisson(c_out))]
    if data.c_byst is not None:
        columns.append(anscombe(rng.poisson(data.c_byst)))
    return np.stack(columns, axis=1).astype(np.float32)
