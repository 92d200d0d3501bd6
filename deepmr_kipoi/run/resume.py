"""A fully resumed run without its model: the resume key checked before the model is loaded.

A rerun of ``deepmr run`` on a folder whose chunks are all finished computes nothing with the model:
stages 3-4 and the outputs read the chunk files. Loading the model (a Kipoi model, a TensorFlow
graph, a large ensemble) can be most of such a rerun's time. :func:`resumed_plan` rebuilds the
run's plan from the folder -- the feature names and spreads in its effects store, the model's
identity in ``run.json`` -- computes the key this config gives (the settings' hash, the weight
files' md5s computed again, the sequences and the model's code fingerprinted again) and returns the
plan, with no model, only when the folder's manifest holds exactly that key and every chunk's local
table carries it. Anything else (a changed setting, input, weight file or code file, a chunk
missing, a calibration table, which is fitted on the model's predictions) returns None and the run
loads its model as before. Approximation, named: what the key does not cover (a data file that a
factory reads by a path of its own) is as unchecked as on a run that loads the model; the model's
declared name, samples and features are taken from ``run.json`` rather than from the loaded model.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from deepmr_kipoi import results, validation
from deepmr_kipoi._files import file_md5
from deepmr_kipoi.run import inputs, runner
from deepmr_kipoi.run.chunk_store import (
    CHUNKS,
    FORMAT,
    MANIFEST,
    RUN_EFFECTS,
    ChunkStore,
    StoredChunksIncomplete,
)
from deepmr_kipoi.run.config import RunConfig, config_hash, effects_hash, validate
from deepmr_kipoi.run.fingerprint import input_fingerprint
from deepmr_kipoi.run.plan import RunPlan, chunking, run_key
from deepmr_kipoi.run.runner import DeepMRResult

logger = logging.getLogger(__name__)


def _read(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _weights_unchanged(identity: dict) -> bool:
    """Whether every weight file the identity names still has its recorded md5."""
    for w in identity.get("weights") or []:
        path = Path(str(w.get("path") or ""))
        if not (w.get("md5") and path.is_file() and file_md5(path) == w["md5"]):
            return False
    return True


def run(config: RunConfig, *, model=None, **kwargs) -> DeepMRResult:
    """Run Deep MR end to end (``runner.run``, same parameters), without loading the model when
    the folder holds every chunk under this config's key (:func:`resumed_plan`)."""
    started, tick = time.time(), time.perf_counter()
    plan = None
    if model is None and kwargs.get("sequences") is None:
        plan = resumed_plan(config)
    if plan is not None:
        try:
            return runner.run_plan(
                plan,
                truth=kwargs.get("truth"),
                on_chunk=kwargs.get("on_chunk"),
                timings={"plan": time.perf_counter() - tick},
                started=started,
            )
        except StoredChunksIncomplete:  # a chunk's files did not read back: the model computes it
            logger.info("a chunk of %s did not read back: loading the model", config.out)
    return runner.run(config, model=model, **kwargs)


def resumed_plan(config: RunConfig) -> RunPlan | None:
    """The plan of a run whose folder holds every chunk under this config's key, without a model.

    Parameters
    ----------
    config : RunConfig

    Returns
    -------
    RunPlan or None
        With ``model`` None; None when the model is needed (see the module docstring).
    """
    config = validate(config)
    if not config.out or config.force or config.calibration_table or isinstance(config.model, dict):
        return None
    out = Path(config.out)
    manifest = _read(out / CHUNKS / MANIFEST)
    info = _read(out / "run.json")
    if not (isinstance(manifest, dict) and isinstance(info, dict)) or not info.get("model"):
        return None
    identity = dict(info["model"])
    if not _weights_unchanged(identity):
        return None
    try:
        meta = results.read_npz(out / CHUNKS / RUN_EFFECTS)
        names = tuple(str(f) for f in meta["feature_names"])
        ids, onehot = inputs.load_sequences(config, identity.get("sequence_length"))
        ex = inputs.select_features(config.exposures, names, "exposure")
        oc = inputs.select_features(config.outcomes, names, "outcome")
        window = validation.window(config.window, onehot.shape[1], "ISM window")
        calibration = inputs.load_calibration(config, None, list(names))
    except (OSError, ValueError, KeyError):
        return None  # the run that loads the model says what is wrong, as it always did
    used = tuple(sorted(set(ex) | set(oc)))
    save_effects, chunk_size, bounds = chunking(config, len(ids), window, len(used))
    n = len(ids)
    plan = RunPlan(
        config=config,
        model=None,
        identity=identity,
        feature_names=names,
        exposures=tuple(ex),
        outcomes=tuple(oc),
        used=used,
        seq_ids=tuple(ids),
        onehot=onehot,
        window=window,
        calibration=calibration,
        chunk_size=chunk_size,
        bounds=bounds,
        save_effects=save_effects,
        config_hash=config_hash(config.replace(chunk_size=chunk_size), identity, names, n),
        spread=meta["spread"],
        inputs=input_fingerprint(config, identity, ids, onehot),
        sequence_source=inputs.sequence_source(config),
        effects_hash=effects_hash(config, identity, names, n),
    )
    key = run_key(plan)
    if manifest != {"format": FORMAT, **key.to_dict(), "n_chunks": len(bounds)}:
        return None
    store = ChunkStore(out / CHUNKS, key, bounds)
    if not all(
        store.file_key(store.local_path(i)) == store.chunk_key(i) for i in range(len(bounds))
    ):
        return None
    logger.info("every chunk of %s is finished under this run's key: not loading the model", out)
    return plan
