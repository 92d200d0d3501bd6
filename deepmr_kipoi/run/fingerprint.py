"""Content fingerprints of a run's inputs: what resume compares besides the config's settings.

A run folder's chunk manifest stores, per input, an md5 of its content: the reference sequences
actually read (ids and one-hot bytes: the FASTA regions used, whatever their file or dataloader),
the BED file, the calibration table or calibrator, the model factory file, a model folder's
``model.yaml`` and the weight files given (a model's own weight files are compared by md5 through
``config.weights_signature``; its name, sample and feature counts are in the config hash). A resumed run whose inputs differ in any of them is refused with a line naming
which changed (or recomputed under ``--force``); renaming or moving a file changes nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from deepmr_kipoi._files import file_md5


def sequences_md5(ids: Sequence[str], onehot: np.ndarray) -> str:
    """md5 of reference sequences as read: their ids and their one-hot array (N, L, 4) as uint8."""
    h = hashlib.md5()
    h.update("\n".join(map(str, ids)).encode())
    h.update(np.ascontiguousarray(np.asarray(onehot) > 0.5, dtype=np.uint8).tobytes())
    h.update(str(np.shape(onehot)).encode())
    return h.hexdigest()


def input_fingerprint(config, identity: Mapping, ids: Sequence[str], onehot: np.ndarray) -> dict:
    """Per-input md5s of a run (see the module docstring).

    Parameters
    ----------
    config : RunConfig
        Validated.
    identity : mapping
        The model's identity (``factory_md5`` of a ``file.py:function`` factory).
    ids : sequence of str, length N
    onehot : ndarray, shape (N, L, 4)

    Returns
    -------
    dict of str to str
        Keys name the input as messages show it (``"sequences"``, ``"BED file <path>"``, ...).
    """
    out = {"sequences": sequences_md5(ids, onehot)}
    if identity.get("factory_md5"):
        out["model factory file"] = str(identity["factory_md5"])
    model_yaml = Path(str(config.model or "")) / "model.yaml"
    if model_yaml.is_file():
        out["model.yaml"] = file_md5(model_yaml)
    for label, path in (("BED file", config.bed), ("calibration table", config.calibration_table),
                        ("calibrator", config.calibrator)):  # fmt: skip
        if path:
            out[label] = file_md5(path)
    for i, w in enumerate(config.weight_files):
        out[f"weight file {i + 1}"] = file_md5(w)
    return out


def changed(old: Mapping | None, new: Mapping) -> list[str]:
    """The inputs whose fingerprints differ (inputs an older manifest did not record are skipped)."""
    if not old:
        return []
    return [k for k in sorted(set(old) | set(new)) if k in old and old.get(k) != new.get(k)]
