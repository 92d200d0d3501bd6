"""The simulation's caches: each job's trained ensemble and calibration fit, and its analysis.

Training is most of a job's cost; the analysis (Deep MR, truths, scoring) is a few seconds. With
the cache a results folder's analyses can be recomputed when analysis code or settings change
without training again (``deepmr simulate --reanalyze``).

Files under ``OUT/models/``, per (round, regime) job ``rRRR_<regime>``:

* ``.pt``: the members' state dicts (a list of ``{name: tensor}``), read back with
  ``torch.load(weights_only=True)`` (no pickled code is executed);
* ``.json``: what rebuilds the ensemble around them (``ModelConfig``, feature names) and the
  training record (``TrainConfig``, per-member histories); written last, so its presence marks a
  complete model;
* ``.calibration.json``: the calibration fit's SE scales with the settings it was fitted under
  (refitted when they change; the fit itself is cheap);
* ``.effects.<key>.npz``: the saturation ISM effects of the analysed sequences (per-sample
  differences; ``key`` digests the sequences, window and features), so a reanalysis runs the
  model once per job, not once per analysis;
* ``.truth.<key>.parquet``: the oracle's per-sequence truths of the analysed sequences (``key``
  digests the sequences, the round's parameters, the simulation constants and the regime): the
  oracle's exact ISM costs more than a reanalysis and does not depend on the analysis.

Analysed jobs are checkpointed under ``OUT/jobs/`` with the *analysis key* they were computed
under (:func:`analysis_key`: the analysis settings and a digest of the analysis code), so a
resumed run tells "model trained" from "analysis done with these settings and this code".
"""

from __future__ import annotations

import json
import logging
import os

import numpy as np

from deepmr_kipoi import results

logger = logging.getLogger(__name__)


def _stem(cache_dir: str, round_index: int, regime: str) -> str:
    return os.path.join(cache_dir, f"r{round_index:03d}_{regime}")


def save_model(cache_dir: str, round_index: int, regime: str, ensemble) -> None:
    """Write a trained ensemble (``train.TrainedEnsemble``) of one job.

    Parameters
    ----------
    cache_dir : str
        The cache folder (created).
    round_index : int
    regime : str
    ensemble : TrainedEnsemble
    """
    import torch

    os.makedirs(cache_dir, exist_ok=True)
    stem = _stem(cache_dir, round_index, regime)
    tmp = stem + ".pt.tmp"
    torch.save(ensemble.state_dicts(), tmp)
    os.replace(tmp, stem + ".pt")
    meta = {
        "model_config": ensemble.model_config.to_dict(),
        "train_config": ensemble.train_config.to_dict(),
        "feature_names": list(ensemble.feature_names),
        "histories": [
            {
                "seed": h.seed,
                "best_epoch": h.best_epoch,
                "seconds": h.seconds,
                "val_loss": list(h.val_loss),
            }
            for h in ensemble.histories
        ],
    }
    results.write_text(stem + ".json", json.dumps(meta, indent=1, default=float))


def load_model(cache_dir: str, round_index: int, regime: str):
    """The cached ensemble of one job as a ``DeepEnsemble``, or None if it is not cached.

    Parameters
    ----------
    cache_dir : str
    round_index : int
    regime : str

    Returns
    -------
    deepmr_kipoi.predictive.DeepEnsemble or None
    """
    stem = _stem(cache_dir, round_index, regime)
    if not (os.path.exists(stem + ".json") and os.path.exists(stem + ".pt")):
        return None
    import torch

    from deepmr_kipoi.simulate.model import ModelConfig, build_cnn
    from deepmr_kipoi.simulate.train import to_predictive

    with open(stem + ".json") as fh:
        meta = json.load(fh)
    mc = ModelConfig.from_dict(meta["model_config"])
    members = []
    for state in torch.load(stem + ".pt", weights_only=True):
        module = build_cnn(mc)
        module.load_state_dict(state)
        members.append(module)
    return to_predictive(members, meta["feature_names"], mc.sequence_length)


def save_calibration(cache_dir: str, round_index: int, regime: str, key: dict, fit) -> None:
    """Write a job's calibration fit (``calibration.Calibration``) under its settings ``key``."""
    os.makedirs(cache_dir, exist_ok=True)
    doc = {
        "key": key,
        "se_scale": [float(v) for v in fit.se_scale],
        "features": list(fit.features),
        "feature_names": list(fit.feature_names),
        "source": fit.source,
    }
    path = _stem(cache_dir, round_index, regime) + ".calibration.json"
    results.write_text(path, json.dumps(doc, indent=1))


def load_calibration(cache_dir: str, round_index: int, regime: str, key: dict):
    """The cached calibration of a job fitted under settings ``key``, or None.

    Returns
    -------
    calibration.Calibration or None
        SE scales only (the metrics and curves of the fit are not cached: the analysis does not
        use them).
    """
    from deepmr_kipoi.calibration import Calibration

    path = _stem(cache_dir, round_index, regime) + ".calibration.json"
    if not os.path.exists(path):
        return None
    with open(path) as fh:
        doc = json.load(fh)
    if doc.get("key") != json.loads(json.dumps(key)):
        return None
    return Calibration(
        se_scale=np.asarray(doc["se_scale"], dtype=np.float64),
        features=tuple(doc["features"]),
        metrics_before=None,
        metrics_after=None,
        curve_before=None,
        curve_after=None,
        source=doc["source"],
        feature_names=tuple(doc["feature_names"]),
    )


def effects_key(onehot: np.ndarray, window, features) -> str:
    """What a job's ISM effects depend on besides its model: the analysed sequences (their
    one-hot bytes), the mutated window and the features, as a short SHA-256 digest."""
    import hashlib

    digest = hashlib.sha256(np.ascontiguousarray(onehot, dtype=np.float32).tobytes())
    digest.update(json.dumps([list(map(int, window)), list(map(int, features))]).encode())
    return digest.hexdigest()[:16]


def save_effects(cache_dir: str, round_index: int, regime: str, key: str, arrays: dict) -> None:
    """Write a job's raw ISM effects (``run.chunk.effects_arrays``) under ``key``, atomically."""
    os.makedirs(cache_dir, exist_ok=True)
    path = _stem(cache_dir, round_index, regime) + f".effects.{key}.npz"
    tmp = path + ".tmp.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def load_effects(cache_dir: str, round_index: int, regime: str, key: str) -> dict | None:
    """The cached raw ISM effects of a job under ``key`` (arrays), or None."""
    path = _stem(cache_dir, round_index, regime) + f".effects.{key}.npz"
    if not os.path.exists(path):
        return None
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def truth_key(an, params, simulation: dict, regime: str, oracle_scale: str) -> str:
    """What a job's oracle truths depend on: the analysed sequences with their motif starts, the
    round's parameters, the simulation constants, the regime and the oracle's scale (a digest)."""
    import dataclasses
    import hashlib

    digest = hashlib.sha256(np.ascontiguousarray(an.onehot, dtype=np.float32).tobytes())
    for starts in (an.exposure_start, an.outcome_start, an.confounder_start):
        digest.update(np.ascontiguousarray(starts, dtype=np.int64).tobytes())
    doc = [dataclasses.asdict(params), simulation, regime, oracle_scale]
    digest.update(json.dumps(doc, sort_keys=True, default=float).encode())
    return digest.hexdigest()[:16]


def save_truth(cache_dir: str, round_index: int, regime: str, key: str, table) -> None:
    """Write a job's per-sequence truth table (``experiment._truth_table``) under ``key``."""
    os.makedirs(cache_dir, exist_ok=True)
    path = _stem(cache_dir, round_index, regime) + f".truth.{key}.parquet"
    tmp = path + ".tmp"
    table.to_parquet(tmp, index=False)
    os.replace(tmp, path)


def load_truth(cache_dir: str, round_index: int, regime: str, key: str):
    """The cached truth table of a job under ``key``, or None."""
    import pandas as pd

    path = _stem(cache_dir, round_index, regime) + f".truth.{key}.parquet"
    return pd.read_parquet(path) if os.path.exists(path) else None


#: Keys of ``ExperimentConfig.to_dict()`` a job's trained model depends on.
MODEL_SETTINGS = ("seed", "n_train", "simulation", "model", "training")
#: Modules the analysis does not run (every other module of the package is in the analysis-code
#: digest: a change of it makes earlier analyses stale).
_NOT_ANALYSIS = (
    "simulate/train.py",
    "simulate/model.py",
    "simulate/cli.py",
    "simulate/demo_model.py",
    "simulate/bpnet/",
    "report",
    "figure",
    "cli.py",
)


def _resume_key(settings: dict, defaults: dict) -> dict:
    """The settings a finished job depends on (not ``rounds``, ``regimes``, ``workers`` or thread
    counts).

    ``settings``: ``ExperimentConfig.to_dict()`` or a saved ``config.json``; settings it lacks
    (added since it was written) take their ``defaults``.
    """
    defaults = json.loads(json.dumps(defaults, default=str))
    key = json.loads(json.dumps(settings, default=str))
    for name, value in defaults.items():
        if isinstance(value, dict) and isinstance(key.get(name), dict):
            key[name] = {**value, **key[name]}
        else:
            key.setdefault(name, value)
    for name in ("rounds", "workers", "regimes"):
        key.pop(name)
    key["training"].pop("threads", None)
    return key


def _code_digest() -> str:
    """SHA-256 of the package's analysis code (every module but ``_NOT_ANALYSIS``)."""
    import hashlib

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the package folder
    digest = hashlib.sha256()
    for folder, _, files in sorted(os.walk(root)):
        for name in sorted(files):
            rel = os.path.relpath(os.path.join(folder, name), root).replace(os.sep, "/")
            if name.endswith(".py") and not any(p in rel for p in _NOT_ANALYSIS):
                digest.update(rel.encode())
                with open(os.path.join(folder, name), "rb") as fh:
                    digest.update(fh.read())
    return digest.hexdigest()


def analysis_key(settings: dict, defaults: dict) -> str:
    """Hash of what a job's analysis depends on beyond its model: the analysis settings (every
    setting but ``MODEL_SETTINGS``, rounds, regimes and workers) and the analysis code.

    ``settings``, ``defaults``: ``ExperimentConfig.to_dict()`` of the run and of the defaults.
    """
    import hashlib

    key = {k: v for k, v in _resume_key(settings, defaults).items() if k not in MODEL_SETTINGS}
    text = json.dumps(key, sort_keys=True, default=str) + _code_digest()
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def check_resumable(settings: dict, defaults: dict, out_dir: str) -> None:
    """Refuse ``out_dir`` if it holds jobs whose models were trained under other model settings
    (ValueError); log the analysis settings that changed (those jobs are reanalysed)."""
    path = os.path.join(out_dir, "config.json")
    if not os.path.exists(path) or not os.path.isdir(os.path.join(out_dir, "jobs")):
        return
    with open(path) as fh:
        previous = _resume_key(json.load(fh), defaults)
    current = _resume_key(settings, defaults)
    changed = sorted(k for k in set(previous) | set(current) if previous.get(k) != current.get(k))
    model_changed = [k for k in changed if k in MODEL_SETTINGS]
    if model_changed:
        raise ValueError(
            f"{out_dir} holds a simulation run with other model settings "
            f"({', '.join(model_changed)}); use a new --out folder or the same settings to resume it"
        )
    if changed:
        logger.info(
            "analysis settings changed (%s): jobs are reanalysed from the cached models",
            ", ".join(changed),
        )


def _job_paths(out_dir: str, round_index: int, regime: str) -> tuple[str, str]:
    stem = os.path.join(out_dir, "jobs", f"r{round_index:03d}_{regime}")
    return stem + ".json", stem + ".parquet"


def save_job(
    out_dir: str, round_index: int, regime: str, records: list, locals_, akey: str
) -> None:
    """Checkpoint one analysed job: locals first, the JSON last (its presence marks the job done)."""
    json_path, parquet_path = _job_paths(out_dir, round_index, regime)
    results.write_table(locals_, parquet_path)
    results.write_text(
        json_path, json.dumps({"analysis_key": akey, "globals": records}, default=float)
    )


def load_job(out_dir: str, round_index: int, regime: str, akey: str):
    """(global records, locals) of a job analysed under analysis key ``akey``, or None."""
    import pandas as pd

    json_path, parquet_path = _job_paths(out_dir, round_index, regime)
    if not (os.path.exists(json_path) and os.path.exists(parquet_path)):
        return None
    with open(json_path) as fh:
        doc = json.load(fh)
    if doc.get("analysis_key") != akey:
        return None
    return doc["globals"], pd.read_parquet(parquet_path)
