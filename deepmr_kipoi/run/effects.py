"""Stage 2, effects: saturation-ISM effects of a chunk of reference sequences, through the engine.

``chunk_effects`` calls :func:`deepmr_kipoi.ism.saturation_effects` a few sequences at a time (so
progress moves with an ETA; the effects are exact per sequence, so splitting changes nothing) and
returns the chunk's effects on the features the run uses: every model sample's paired differences
``d_s`` (the per-sample local estimates need them) and their mean and SD taken in float64. Keeping
only the used features per engine call bounds memory for models with hundreds of outputs.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from deepmr_kipoi import ism


def chunk_effects(
    model,
    onehot: np.ndarray,
    window: tuple[int, int],
    *,
    batch_size: int = 512,
    features=None,
    on_progress: Callable[[int], None] | None = None,
    engines: list | None = None,
) -> ism.ISMEffects:
    """Saturation-ISM effects of a chunk of reference sequences.

    Parameters
    ----------
    model : PredictiveModel
        S >= 2 samples.
    onehot : ndarray, shape (n, L, 4)
        ACGT one-hot reference sequences.
    window : (int, int)
        Half-open ISM window (``(0, L)``: the whole sequence).
    batch_size : int
        Mutants per forward pass.
    features : sequence of int, optional
        Model features to keep (default: all).
    on_progress : callable, optional
        Called with the number of sequences done after each engine call.
    engines : list, optional
        The run's effects cache (:func:`deepmr_kipoi.run.effects_cache.engines`): one engine or
        None per model (the model of a single run, or each panel member).

    Returns
    -------
    ISMEffects
        The engine's effects type, restricted to ``features`` (U of them), with every sample's
        paired differences ``samples`` (S, n, W, 3, U) float32, and ``mean``/``se`` their mean and
        SD (ddof = 1) over the samples in float64 (not rounded to float32 as the engine's own).

    Notes
    -----
    Each engine call gets enough sequences to fill about four mutant batches.
    """
    n = onehot.shape[0]
    width = window[1] - window[0]
    step = max(1, -(-4 * int(batch_size) // (3 * width)))
    kwargs = {
        "window": window,
        "batch_size": int(batch_size),
        "progress": False,
        "per_sample": True,
    }
    keep = slice(None) if features is None else list(features)
    parts = []
    panel = hasattr(model, "labels") and hasattr(model, "models")
    single = None if panel or not engines else engines[0]
    for i in range(0, n, step):
        if single is not None:
            part = single.effects(model, onehot[i : i + step], window, int(batch_size))
        else:
            part = ism.saturation_effects(
                model, onehot[i : i + step], member_engines=engines if panel else None, **kwargs
            )
        parts.append((part.samples[..., keep], np.asarray(part.reference)[..., keep], part))
        if on_progress is not None:
            on_progress(min(step, n - i))
    samples = np.concatenate([p[0] for p in parts], axis=1)
    last = parts[-1][2]
    names = np.asarray(last.feature_names, dtype=object)[keep]
    return ism.ISMEffects(
        mean=samples.mean(axis=0, dtype=np.float64),
        se=samples.std(axis=0, ddof=1, dtype=np.float64),
        reference=np.concatenate([p[1] for p in parts], axis=1),
        positions=np.asarray(last.positions),
        alt_bases=np.concatenate([np.asarray(p[2].alt_bases) for p in parts]),
        ref_bases=np.concatenate([np.asarray(p[2].ref_bases) for p in parts]),
        is_n=np.concatenate([np.asarray(p[2].is_n) for p in parts]),
        feature_names=tuple(str(f) for f in np.atleast_1d(names)),
        n_samples=int(samples.shape[0]),
        samples=samples,
        outside=None if last.outside is None else np.asarray(last.outside)[:, keep],
    )
