"""Stage 1 of a run, planning: every input check, then the frozen :class:`RunPlan` the stages share.

:func:`make_plan` validates the config, prepares the model (or takes the one given), selects the
exposure and outcome features, reads the reference sequences and the calibration, and fixes the
chunks (:func:`chunking`), before a file is written. :func:`run_key` is what the plan's results are
computed from: the key every chunk file carries, which decides what a rerun resumes.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import numpy as np

from deepmr_kipoi import instruments, validation
from deepmr_kipoi.errors import DeepMRInputError
from deepmr_kipoi.run import checks, effects_cache, inputs
from deepmr_kipoi.run.config import (
    AUTO_EFFECTS_LIMIT,
    RunConfig,
    config_hash,
    effects_hash,
    validate,
    weights_signature,
)
from deepmr_kipoi.run.fingerprint import input_fingerprint
from deepmr_kipoi.run.folder import RunKey

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunPlan:
    """What the stages of one run share, fixed before the first chunk.

    Attributes
    ----------
    config : RunConfig
        Validated.
    model : PredictiveModel
    identity : dict
        The model's identity for ``run.json``.
    feature_names : tuple of str, length F
    exposures, outcomes : tuple of int
        Feature indices, lengths E and O.
    used : tuple of int
        Sorted union of exposures and outcomes (features kept in ``effects.h5``).
    seq_ids : tuple of str, length N
    onehot : ndarray of float32, shape (N, L, 4)
    window : (int, int)
    calibration : Calibration or None
    chunk_size : int
        Sequences per chunk (all of them under the pooled instrument rule).
    bounds : tuple of (int, int)
        Half-open sequence ranges of the chunks.
    save_effects : bool
    config_hash : str
    spread : ndarray of float64, shape (F,)
        Every feature's spread over the reference sequences (``instruments.feature_spread``), the
        unit of the instrument floor and of the directionality check.
    inputs : dict
        Content md5 per input (:func:`~deepmr_kipoi.run.fingerprint.input_fingerprint`).
    sequence_source : str
        Where the reference sequences came from, in words (for ``run.json``).
    effects_hash : str
        ``config.effects_hash``: what the ISM effects depend on (the key of the effects store).
    """

    config: RunConfig
    model: object
    identity: dict
    feature_names: tuple[str, ...]
    exposures: tuple[int, ...]
    outcomes: tuple[int, ...]
    used: tuple[int, ...]
    seq_ids: tuple[str, ...]
    onehot: np.ndarray
    window: tuple[int, int]
    calibration: inputs.Calibration | None
    chunk_size: int
    bounds: tuple[tuple[int, int], ...]
    save_effects: bool
    config_hash: str
    spread: np.ndarray
    inputs: dict = dataclasses.field(default_factory=dict)
    sequence_source: str = ""
    effects_hash: str = ""

    @property
    def n_sequences(self) -> int:
        """N."""
        return int(self.onehot.shape[0])

    @property
    def se_scale(self) -> np.ndarray | None:
        """Calibration factor on the effect SEs, shape (F,), or None."""
        return None if self.calibration is None else self.calibration.se_scale


def make_plan(
    config: RunConfig,
    model=None,
    identity: dict | None = None,
    *,
    sequences: tuple | None = None,
    calibration: inputs.Calibration | None = None,
    sequence_source: str | None = None,
) -> RunPlan:
    """Validate a config, load its model and inputs, and fix the chunks.

    Parameters
    ----------
    config : RunConfig
    model : PredictiveModel, optional
        Use this model instead of loading ``config.model``.
    identity : dict, optional
        The model's identity when ``model`` is given.
    sequences : (list of str, ndarray (N, L, 4)), optional
        Reference sequences (ids, ACGT one-hot) instead of those ``config`` names (in-memory use,
        e.g. the simulation).
    calibration : Calibration, optional
        An already fitted calibration (``inputs.fit_calibration``) instead of the config's.
    sequence_source : str, optional
        Where ``sequences`` came from, in words (``run.json``; default: from the config).

    Returns
    -------
    RunPlan

    Raises
    ------
    DeepMRInputError
        Any user mistake in the config or the inputs it names.
    """
    config = validate(config)
    model, identity = inputs.prepare_model(config, model, identity)
    feature_names = _checked_features(config, model)
    exposures, outcomes = _pairs(config, feature_names)
    if sequences is None:
        seq_ids, onehot = inputs.load_sequences(config, getattr(model, "sequence_length", None))
    else:
        seq_ids, onehot = list(sequences[0]), np.asarray(sequences[1], dtype=np.float32)
    n_seq, length = onehot.shape[:2]
    window = validation.window(config.window, length, "ISM window")
    cal = calibration or inputs.load_calibration(config, model, list(feature_names))
    used = tuple(sorted(set(exposures) | set(outcomes)))
    save_effects, chunk_size, bounds = chunking(config, n_seq, window, len(used))
    fingerprint = input_fingerprint(config, identity, seq_ids, onehot)
    cached = effects_cache.engines(config, model, identity, fingerprint)
    reference = checks.reference_predictions(
        model if cached is None else effects_cache.CachedReference(model, cached),
        onehot,
        config.batch_size,
        mask=config.mask_nonfinite,
    )
    return RunPlan(
        config=config,
        model=model,
        identity=identity,
        feature_names=feature_names,
        exposures=exposures,
        outcomes=outcomes,
        used=used,
        seq_ids=tuple(seq_ids),
        onehot=onehot,
        window=window,
        calibration=cal,
        chunk_size=chunk_size,
        bounds=bounds,
        save_effects=save_effects,
        config_hash=config_hash(
            config.replace(chunk_size=chunk_size), identity, feature_names, n_seq
        ),
        spread=instruments.feature_spread(reference),
        inputs=fingerprint,
        sequence_source=sequence_source or inputs.sequence_source(config),
        effects_hash=effects_hash(config, identity, feature_names, n_seq),
    )


def _checked_features(config: RunConfig, model) -> tuple[str, ...]:
    """The model's feature names, after the checks that the run can use the model: more than one
    output, at least two model samples (four with sample splitting), an applicable model."""
    feature_names = tuple(str(f) for f in model.feature_names)
    if len(feature_names) == 1:
        raise DeepMRInputError(
            f"this model has one output ({feature_names[0]}); put it in a panel with another "
            "model: --model a=... --model b=..."
        )
    s = int(getattr(model, "n_samples", 0) or 0)
    if s < 2:
        hint = getattr(model, "uncertainty_hint", None) or (
            "an ensemble (--uncertainty ensemble, several members) or MC dropout "
            "(--uncertainty mc_dropout --n-samples 30)"
        )
        raise DeepMRInputError(
            f"the model gives {s} prediction per input, so mutation effects have no standard error; "
            f"add uncertainty: {hint}"
        )
    if config.sample_split and s < 4:
        raise DeepMRInputError(
            f"sample splitting needs at least 4 model samples (2 to select, 2 to estimate), the "
            f"model has {s}; drop --sample-split or use more samples"
        )
    inputs.check_applicable(config, model)
    return feature_names


def _pairs(config: RunConfig, feature_names) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Exposure and outcome feature indices; refused when no pair of two features is left."""
    exposures = inputs.select_features(config.exposures, feature_names, "exposure")
    outcomes = inputs.select_features(config.outcomes, feature_names, "outcome")
    if not any(e != o for e in exposures for o in outcomes):
        raise DeepMRInputError(
            f"exposure and outcome are the same feature ({feature_names[exposures[0]]}); choose "
            "different --exposures and --outcomes"
        )
    return tuple(exposures), tuple(outcomes)


def chunking(config: RunConfig, n_seq: int, window, n_used: int):
    """Whether ``effects.h5`` is written, the chunk size and the chunks' half-open bounds."""
    save_effects = config.save_effects
    if save_effects == "auto":
        save_effects = n_seq * (window[1] - window[0]) * 3 * n_used <= AUTO_EFFECTS_LIMIT
    chunk_size = config.chunk_size
    if config.instrument_rule == "pooled" and chunk_size < n_seq:
        logger.info(
            "pooled instrument rule: one chunk of all %d sequences (pooled statistics)", n_seq
        )
        chunk_size = n_seq
    bounds = tuple((a, min(n_seq, a + chunk_size)) for a in range(0, n_seq, chunk_size))
    return bool(save_effects), chunk_size, bounds


def run_key(plan: RunPlan) -> RunKey:
    """What the plan's results are computed from (the key every chunk file carries)."""
    weights = weights_signature(plan.identity)
    return RunKey(
        plan.config_hash,
        None if weights is None else tuple(weights),
        dict(plan.inputs),
        plan.effects_hash or None,
    )
