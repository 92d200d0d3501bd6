"""The resume keys of a run: hashes of the settings, the model and the inputs a result depends on.

:func:`config_hash` takes every setting that changes a number, :func:`effects_hash` only those the
ISM effects depend on (a reanalysis keeps the effects of a run whose effects hash it shares). Input
files enter through their contents (:mod:`deepmr_kipoi.run.fingerprint`), not their paths.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

from deepmr_kipoi import __version__
from deepmr_kipoi.run.settings import DISPLAY_FIELDS, PATH_FIELDS, fields_affecting


def config_hash(config, identity: dict, feature_names: Sequence[str], n_seq: int) -> str:
    """Hash of everything that determines the chunk results (not the output or display options).

    Of the model it takes the name, sample count and features: the same model loaded through
    another route (the demo, or ``deepmr run --config`` of its written config) keeps its hash.
    Input paths (``PATH_FIELDS``, and a model that is a file or folder) are left out: their
    contents are compared separately (:mod:`deepmr_kipoi.run.fingerprint`).

    Parameters
    ----------
    config : RunConfig
    identity : dict
        The model's identity (``name``, ``n_samples``, ``n_features``, ...).
    feature_names : sequence of str, length F
    n_seq : int

    Returns
    -------
    str
        16 hex digits.
    """
    d = config.to_dict()
    for k in DISPLAY_FIELDS + PATH_FIELDS:
        d.pop(k, None)
    return _settings_hash(d, config, identity, feature_names, n_seq)


def effects_hash(config, identity: dict, feature_names: Sequence[str], n_seq: int) -> str:
    """Hash of what the ISM effects depend on: the settings marked ``"effects"`` and the model, as
    in :func:`config_hash` (whose other settings change only the analysis of the effects).

    Returns
    -------
    str
        16 hex digits.
    """
    keep = set(fields_affecting("effects")) - set(PATH_FIELDS)
    d = {k: v for k, v in config.to_dict().items() if k in keep}
    return _settings_hash(d, config, identity, feature_names, n_seq)


def _settings_hash(d: dict, config, identity: dict, feature_names, n_seq: int) -> str:
    model = {k: identity.get(k) for k in ("name", "n_samples", "n_features")}
    if is_path_model(config.model):
        d.pop("model", None)
        model.pop("name")
    payload = {
        "config": d,
        "model": model,
        "features": list(feature_names),
        "n_sequences": n_seq,
        "version": __version__,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[
        :16
    ]


def weights_signature(identity: dict) -> list[str] | None:
    """Sorted md5s of the model's weight files, or None where they are not known."""
    md5s = [w.get("md5") for w in identity.get("weights") or []]
    return sorted(md5s) if md5s and all(md5s) else None


def is_path_model(spec: str | None) -> bool:
    """Whether ``spec`` names a model by a file or folder (``file.py:function`` or a directory)."""
    if not spec or not isinstance(spec, str):
        return False
    target = spec.rpartition(":")[0] if spec.rpartition(":")[0].endswith(".py") else spec
    return target.endswith(".py") or Path(target).is_dir()
