"""The effects cache: every model's per-sample ISM effects, stored once and shared across runs.

A run with ``effects_cache=DIR`` (``deepmr run --effects-cache DIR``) looks up each model -- the
model of a single run, or each member of a model panel -- in ``DIR`` before running its ISM, and
stores what it computes. A panel ``{a: M1, b: M2}`` after a panel ``{a: M1, c: M3}`` (or after a
single run of ``M1``) on the same sequences reads ``M1``'s effects and runs only ``M2``.

What an entry depends on, and so its key:

* the model, as the run's own resume key identifies it (:func:`model_descriptor`): its weight files'
  md5s (Kipoi models, ``--weights``, in-memory PyTorch/Keras models), its code (a factory's file and
  the project modules it imports, a Kipoi model's code), its Kipoi name, adapter or factory function
  name (a file or folder enters by its contents, not its path), the settings
  that load it (source, alphabet, feature names, uncertainty method, MC-dropout sample count), the
  seed (MC-dropout masks, factories; not for a deep ensemble), its features, input length and
  alphabet, the number of samples the run uses, and the package version. A model that cannot be
  identified by content (a ``PredictiveModel`` object handed over without weight files) is not
  cached: its ISM runs as without a cache, and the log says so;
* the sequence the model reads (md5 of its exact one-hot input, the member's centred window in a
  panel) and the mutated window in the model's own coordinates.

Layout: ``DIR/<model key>/model.json`` (the descriptor, for people), and per sequence
``<sequence md5>.ref.npy`` (reference predictions, ``(S, F)``) and
``<sequence md5>.<start>-<end>.npy`` (every sample's paired differences, ``(S, W, 3, F)`` float32,
as the ISM engine computed them). Files are written atomically; concurrent runs may share a folder.

Approximation, named: an entry holds the numbers of the run that computed it. A backend that
rounds the same sequence differently in batches of another size (BLAS, oneDNN, a GPU) could give a
fresh run effects that differ at float32 rounding level (~1e-7 relative); batch size and device are
not part of the key.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path

import numpy as np

from deepmr_kipoi import __version__, ism

logger = logging.getLogger(__name__)

#: The member settings that describe how a model is loaded (a panel member may set each).
LOAD_SETTINGS = ("source", "alphabet", "uncertainty", "n_samples", "feature_names", "adapter")


def sequence_md5(onehot: np.ndarray) -> str:
    """md5 of one sequence as the model reads it: shape and float32 bytes of ``(L, 4)``."""
    x = np.ascontiguousarray(onehot, dtype=np.float32)
    h = hashlib.md5(str(x.shape).encode())
    h.update(x.tobytes())
    return h.hexdigest()


class EffectsCache:
    """A folder of per-model ISM effects (see the module docstring).

    Parameters
    ----------
    root : str or Path
        Created on the first write.
    """

    def __init__(self, root):
        self.root = Path(os.path.expanduser(str(root)))

    def _folder(self, key: str) -> Path:
        return self.root / key

    def describe(self, key: str, descriptor: dict) -> None:
        """Write the model's descriptor once (``model.json``), for a person reading the folder."""
        path = self._folder(key) / "model.json"
        if not path.exists():
            _atomic(path, json.dumps(descriptor, indent=1, sort_keys=True, default=str).encode())

    def load(self, key: str, digest: str, window: tuple[int, int]):
        """``(samples (S, W, 3, F), reference (S, F))`` of one sequence, or None when not stored."""
        folder = self._folder(key)
        try:
            samples = np.load(folder / f"{digest}.{window[0]}-{window[1]}.npy")
            reference = np.load(folder / f"{digest}.ref.npy")
        except (OSError, ValueError):
            return None
        return samples, reference

    def load_reference(self, key: str, digest: str):
        """Reference predictions ``(S, F)`` of one sequence, or None."""
        try:
            return np.load(self._folder(key) / f"{digest}.ref.npy")
        except (OSError, ValueError):
            return None

    def save(self, key: str, digest: str, window: tuple[int, int], samples, reference) -> None:
        """Store one sequence's paired differences and reference predictions."""
        folder = self._folder(key)
        _atomic(folder / f"{digest}.ref.npy", _npy(reference))
        _atomic(folder / f"{digest}.{window[0]}-{window[1]}.npy", _npy(samples))


def _npy(array) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, np.asarray(array), allow_pickle=False)
    return buf.getvalue()


def _atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class CachedEngine:
    """One model's ISM through the cache: stored sequences are read, the others computed by
    :func:`deepmr_kipoi.ism.saturation_effects` and stored (the ``member_engines`` protocol of
    the ISM engine).

    Attributes
    ----------
    label : str
        The model's panel label ("" for a single model), for the log.
    reused, computed : int
        Sequences read from the cache and computed by the model, so far.
    """

    def __init__(self, cache: EffectsCache, key: str, label: str = ""):
        self.cache, self.key, self.label = cache, key, label
        self.reused = self.computed = 0

    def effects(self, model, onehot, window, batch_size: int, progress: bool = False):
        """Per-sample ISM effects of ``onehot`` (n, L, 4) in ``window``.

        Returns
        -------
        ISMEffects
            ``samples`` (S, n, W, 3, F) float32, ``reference`` (S, n, F), ``mean``/``se`` over the
            samples, bases and positions of the window, as ``saturation_effects(...,
            per_sample=True)`` returns them.
        """
        x = np.asarray(onehot)
        window = (int(window[0]), int(window[1]))
        digests = [sequence_md5(row) for row in x]
        stored = [self.cache.load(self.key, d, window) for d in digests]
        missing = [i for i, entry in enumerate(stored) if entry is None]
        if missing:
            part = ism.saturation_effects(
                model, x[missing], window, batch_size, progress, per_sample=True
            )
            for j, i in enumerate(missing):
                stored[i] = (part.samples[:, j], np.asarray(part.reference)[:, j])
                self.cache.save(self.key, digests[i], window, *stored[i])
        self.reused += len(x) - len(missing)
        self.computed += len(missing)
        samples = np.stack([entry[0] for entry in stored], axis=1)
        is_n, ref_bases, alt_bases = ism.window_bases(x, *window)
        with np.errstate(invalid="ignore"):
            mean = samples.mean(axis=0, dtype=np.float64)
            se = samples.std(axis=0, ddof=1, dtype=np.float64)
        return ism.ISMEffects(
            mean=mean.astype(np.float32),
            se=se.astype(np.float32),
            reference=np.stack([entry[1] for entry in stored], axis=1),
            positions=np.arange(*window, dtype=np.int64),
            alt_bases=alt_bases,
            ref_bases=ref_bases,
            is_n=is_n,
            feature_names=tuple(model.feature_names),
            n_samples=int(samples.shape[0]),
            samples=samples,
        )

    def reference(self, model, onehot, batch_size: int | None = None) -> np.ndarray:
        """Reference predictions ``(S, n, F)``: stored where the cache has them, else predicted
        (not stored: an entry's reference is the one its effects were taken against)."""
        x = np.asarray(onehot)
        found = [self.cache.load_reference(self.key, sequence_md5(row)) for row in x]
        missing = [i for i, ref in enumerate(found) if ref is None]
        if missing:
            pred = np.asarray(model.predict_samples(x[missing], batch_size=batch_size))
            for j, i in enumerate(missing):
                found[i] = pred[:, j]
        if not found:
            return np.asarray(model.predict_samples(x, batch_size=batch_size))
        return np.stack(found, axis=1)


def model_descriptor(model, identity: dict, load: dict | None, code: dict, seed: int):
    """What a model's ISM effects depend on, or None when its weights cannot be identified.

    Parameters
    ----------
    model : PredictiveModel
        As the run uses it (its samples restricted to the run's).
    identity : dict
        Its identity (``weights`` md5s, ``name``, ``factory_md5``), as the run records it.
    load : dict or None
        The spec and loading settings of a model the run loaded itself (``model`` and
        :data:`LOAD_SETTINGS`); None for a model handed over.
    code : dict
        md5s of the model's code (the run's input fingerprint entries ``model ...``).
    seed : int

    Returns
    -------
    dict or None
    """
    from deepmr_kipoi.predictive import DeepEnsemble
    from deepmr_kipoi.run.model import is_factory_spec
    from deepmr_kipoi.run.resume_key import is_path_model, weights_signature

    weights = weights_signature(identity)
    if weights is None and not code:
        return None
    spec = (load or {}).get("model")
    # the seed draws MC-dropout masks and reaches a factory; a deep ensemble loaded by name does
    # not depend on it
    factory = isinstance(spec, str) and is_factory_spec(spec)
    # a file.py:function factory enters by its code and its function's name, a model folder by
    # its code and weights: their paths do not count
    if factory and is_path_model(spec):
        spec = ":" + spec.rpartition(":")[2]
    elif spec is not None and is_path_model(spec):
        spec = None
    return {
        "spec": spec,
        "load": {k: v for k, v in (load or {}).items() if k != "model"},
        "weights": weights,
        "code": dict(sorted(code.items())),
        "seed": None if isinstance(model, DeepEnsemble) and not factory else int(seed),
        "type": type(model).__name__,
        "n_samples": int(getattr(model, "n_samples", 0) or 0),
        "features": [str(f) for f in model.feature_names],
        "sequence_length": getattr(model, "sequence_length", None),
        "alphabet": getattr(model, "alphabet", None),
        "version": __version__,
    }


def _key(descriptor: dict) -> str:
    text = json.dumps(descriptor, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _load_settings(config) -> dict:
    return {"model": config.model, **{k: getattr(config, k) for k in LOAD_SETTINGS}}


def engines(config, model, identity: dict, inputs: dict) -> list | None:
    """The cached engine of every model of a run (one for a single model, one per panel member; None
    for a model the cache cannot identify), or None when the run has no cache.

    Parameters
    ----------
    config : RunConfig
        ``effects_cache`` names the folder.
    model : PredictiveModel or ModelPanel
        As the run uses it.
    identity : dict
        The run's model identity (``panel``: each member's).
    inputs : dict
        The run's input fingerprint (:func:`~deepmr_kipoi.run.fingerprint.input_fingerprint`).

    Returns
    -------
    list of CachedEngine or None, or None
    """
    if not config.effects_cache or model is None:
        return None
    from deepmr_kipoi.run.config import panel_members

    cache = EffectsCache(config.effects_cache)
    if hasattr(model, "labels") and hasattr(model, "models"):
        loaded = dict(panel_members(config)) if isinstance(config.model, dict) else {}
        idents = identity.get("panel") or {}
        items = []
        for label, member in zip(model.labels, model.models):
            prefix = f"{label}: "
            code = {k[len(prefix) :]: v for k, v in inputs.items() if k.startswith(prefix)}
            load = _load_settings(loaded[label]) if label in loaded else None
            items.append((label, member, idents.get(label) or {}, load, code))
    else:
        code = {k: v for k, v in inputs.items() if k.startswith("model ")}
        load = _load_settings(config) if isinstance(config.model, str) else None
        items = [("", model, identity, load, code)]
    out = []
    for label, member, ident, load, code in items:
        descriptor = model_descriptor(member, ident, load, code, config.seed)
        if descriptor is None:
            logger.info(
                "effects cache: %s cannot be identified by its weights or code (a model object "
                "handed over); its ISM runs without the cache",
                f"panel member {label}" if label else "the model",
            )
            out.append(None)
            continue
        key = _key(descriptor)
        cache.describe(key, descriptor)
        out.append(CachedEngine(cache, key, label))
    return out


def use(found: list | None) -> tuple[tuple[str, int, int], ...]:
    """What the cache gave a chunk: ``(label, sequences reused, sequences computed)`` per cached
    model (label ``"model"`` for a single model), also logged in one line."""
    out = tuple(
        (e.label or "model", int(e.reused), int(e.computed)) for e in found or () if e is not None
    )
    if out:
        logger.info(
            "effects cache: %s", "; ".join(f"{lab}: {r} reused, {c} computed" for lab, r, c in out)
        )
    return out


def merge_use(parts) -> tuple[tuple[str, int, int], ...]:
    """Sum several chunks' :func:`use` per label (labels in first-seen order)."""
    total: dict[str, list[int]] = {}
    for part in parts:
        for label, reused, computed in part or ():
            counts = total.setdefault(label, [0, 0])
            counts[0] += int(reused)
            counts[1] += int(computed)
    return tuple((label, r, c) for label, (r, c) in total.items())


def record(identity: dict, config, cache_use) -> None:
    """Put into the model identity (``run.json``'s ``model.effects_cache``) the folder and, per
    model, the sequences this call read from it and computed; without a cache, remove the entry
    (a reanalysis rebuilds the identity from an earlier run's record)."""
    identity.pop("effects_cache", None)
    if config.effects_cache:
        folder = os.path.abspath(os.path.expanduser(config.effects_cache))
        models = {label: {"reused": r, "computed": c} for label, r, c in cache_use}
        identity["effects_cache"] = {"folder": folder, "models": models}


class CachedReference:
    """A run's model seen through the cache for its reference predictions (``predict_samples``
    only): what the plan's reference predictions read (the same values a fresh run's ISM uses)."""

    def __init__(self, model, found: list):
        self.model, self.found = model, found
        self.n_samples = model.n_samples
        self.feature_names = model.feature_names

    def predict_samples(self, onehot, batch_size: int | None = None) -> np.ndarray:
        """As the model's ``predict_samples``, members with a cache read from it.

        Returns
        -------
        ndarray, shape (S, N, F)
        """
        model, x = self.model, np.asarray(onehot)
        if not hasattr(model, "spans"):
            engine = self.found[0]
            if engine is None:
                return model.predict_samples(x, batch_size=batch_size)
            return engine.reference(model, x, batch_size)
        parts = []
        for member, (a, b), engine in zip(model.models, model.spans(x.shape[1]), self.found):
            if engine is None:
                pred = member.predict_samples(x[:, a:b], batch_size=batch_size)
            else:
                pred = engine.reference(member, x[:, a:b], batch_size)
            parts.append(np.asarray(pred)[: model.n_samples].astype(np.float32, copy=False))
        return np.concatenate(parts, axis=-1)
