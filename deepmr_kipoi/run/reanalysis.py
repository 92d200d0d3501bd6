"""Analyse a finished run's stored ISM effects again with other analysis settings, running no model.

A run keeps every chunk's raw ISM effects (the per-sample paired differences, exact float32) in its
chunk folder, keyed by what they depend on (the settings marked ``"effects"``, the model, the
inputs). :func:`stored_plan` rebuilds a run's plan from its folder alone -- the feature names,
sequences and spreads in the store's run-level file, the model's identity and calibration from
``run.json`` -- with new analysis settings (``z``, instrument rules, MR methods, pairs among the
stored features, the inference, a saved calibrator), and :func:`reanalyze` runs stages 3-4 and the
outputs on it. A setting that changes the effects, or a calibration table (fitted on the model's
predictions), needs the model: ``deepmr run``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from deepmr_kipoi import results, validation
from deepmr_kipoi._files import file_md5
from deepmr_kipoi.errors import DeepMRInputError
from deepmr_kipoi.run import inputs
from deepmr_kipoi.run.chunk_store import ANALYSIS_INPUTS, CHUNKS, MANIFEST, RUN_EFFECTS
from deepmr_kipoi.run.config import (
    GROUP_OF,
    RunConfig,
    config_hash,
    effects_hash,
    fields_affecting,
    validate,
)
from deepmr_kipoi.run.plan import RunPlan, chunking
from deepmr_kipoi.run.runner import DeepMRResult, run_plan

#: Settings a reanalysis may change: those of the analysis and those that change no number.
REANALYSIS_SETTINGS = tuple(
    k for k in GROUP_OF if k not in fields_affecting("effects") and k != "calibration_table"
)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise DeepMRInputError(
            f"{path} does not read ({type(err).__name__}); run that run again"
        ) from None


def _stored_calibration(info: dict, old: RunConfig, config: RunConfig, names: list[str]):
    """The run's own calibration (its SE scales from ``run.json``), or a newly named calibrator."""
    if (config.calibrator, config.calibration_table) != (old.calibrator, old.calibration_table):
        return inputs.load_calibration(config, None, names)
    cal = info.get("calibration")
    if not cal:
        return None
    scale = np.ones(len(names))
    items = dict(cal.get("se_scale") or {})
    for name, value in items.items():
        scale[names.index(name)] = float(value)
    return inputs.Calibration(
        scale, tuple(items), None, None, None, None, str(cal.get("source", "")), tuple(names)
    )


def _check_changes(changes: dict, old: RunConfig) -> None:
    for key, value in changes.items():
        if key not in GROUP_OF:
            raise DeepMRInputError(f"unknown setting {key!r}; reanalysis takes analysis settings")
        if key == "calibration_table" and value != old.calibration_table:
            raise DeepMRInputError(
                "a new calibration table is fitted on the model's predictions; run the model "
                "again (deepmr run --calibration-table ...), or give a saved --calibrator"
            )
        if key not in REANALYSIS_SETTINGS and value != getattr(old, key):
            raise DeepMRInputError(
                f"{key} changes the ISM effects, so it needs the model; run it again with "
                f"deepmr run (reanalysis changes only analysis settings such as z, methods, pairs)"
            )


def _pairs(config: RunConfig, names) -> tuple[list[int], list[int]]:
    ex = inputs.select_features(config.exposures, names, "exposure")
    oc = inputs.select_features(config.outcomes, names, "outcome")
    if not any(e != o for e in ex for o in oc):
        raise DeepMRInputError(
            f"exposure and outcome are the same feature ({names[ex[0]]}); choose different ones"
        )
    return ex, oc


def stored_plan(run_dir, changes: dict) -> tuple[RunPlan, object]:
    """The plan of a finished run with new analysis settings, built from its folder alone.

    Parameters
    ----------
    run_dir : path-like
        A finished run folder that kept its ISM effects (every run of this version does).
    changes : dict
        Settings to change (``REANALYSIS_SETTINGS``; an effects setting given its old value is
        accepted), including ``out``.

    Returns
    -------
    plan : RunPlan
        With ``model`` None.
    truth : DataFrame or None
        The run's known truth (demo and simulations).

    Raises
    ------
    DeepMRInputError
        The folder holds no finished run or no stored effects, or a change needs the model.
    """
    import pandas as pd

    run_dir = Path(run_dir)
    info = results.read_run(run_dir).run_info
    old = RunConfig.from_dict(info.get("config") or {})
    _check_changes(changes, old)
    config = validate(old.replace(**changes))
    store = run_dir / CHUNKS
    if not (store / RUN_EFFECTS).exists():
        raise DeepMRInputError(
            f"{run_dir} holds no stored ISM effects (a run of an older deepmr); run it again to "
            "reanalyse it"
        )
    meta = results.read_npz(store / RUN_EFFECTS)
    names = tuple(str(f) for f in meta["feature_names"])
    ids, onehot = [str(i) for i in meta["seq_ids"]], meta["onehot"].astype(np.float32)
    ex, oc = _pairs(config, names)
    identity = dict(info.get("model") or {})
    if config.sample_split and int(identity.get("n_samples") or 0) < 4:
        raise DeepMRInputError("sample splitting needs at least 4 model samples; drop it")
    window = validation.window(config.window, onehot.shape[1], "ISM window")
    used = tuple(sorted(set(ex) | set(oc)))
    save_effects, chunk_size, bounds = chunking(config, len(ids), window, len(used))
    key = _read_json(store / MANIFEST)
    # the effects' inputs as recorded; the analysis inputs (calibration files) as they are now
    kept = {k: v for k, v in (key.get("inputs") or {}).items() if k not in ANALYSIS_INPUTS}
    for label, path in (
        ("calibration table", config.calibration_table),
        ("calibrator", config.calibrator),
    ):
        if path:
            kept[label] = file_md5(path)
    n = len(ids)
    plan = RunPlan(
        config,
        None,
        identity,
        names,
        tuple(ex),
        tuple(oc),
        used,
        tuple(ids),
        onehot,
        window,
        _stored_calibration(info, old, config, list(names)),
        chunk_size,
        bounds,
        save_effects,
        config_hash(config.replace(chunk_size=chunk_size), identity, names, n),
        meta["spread"],
        kept,
        str((info.get("sequences") or {}).get("source", "")),
        effects_hash(config, identity, names, n),
    )
    truth = info.get("truth")
    return plan, (None if not truth else pd.DataFrame(truth))


def reanalyze(run_dir, **changes) -> DeepMRResult:
    """Analyse a finished run's stored ISM effects with new analysis settings; no model runs.

    Parameters
    ----------
    run_dir : path-like
        The finished run folder.
    **changes
        Analysis settings (``z``, ``methods``, ``exposures``, ``outcomes``, ``min_instruments``,
        ``calibrator``, ...) and output settings (``out``: a new run folder, default in memory;
        ``figures``, ``report``, ``force``, ``progress``).

    Returns
    -------
    DeepMRResult
        The tables a full run with these settings gives (the same effects, analysed the same way).

    Raises
    ------
    DeepMRInputError
        As :func:`stored_plan`; also when the store lacks a chunk's effects.
    """
    started = time.time()
    tick = time.perf_counter()
    changes.setdefault("out", None)
    changes.setdefault("force", False)
    plan, truth = stored_plan(run_dir, changes)
    return run_plan(
        plan,
        truth=truth,
        effects_from=Path(run_dir) / CHUNKS,
        timings={"plan": time.perf_counter() - tick},
        started=started,
    )
