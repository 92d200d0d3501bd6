"""The results folder of a Deep MR run: atomic writes, per-chunk files for resume, reading back.

Layout of a run folder::

    run.json                       resolved config, versions, model identity, seeds, timings
    global_effects.csv / .parquet  one row per (exposure, outcome, method)
    local_effects.parquet          one row per (sequence, exposure, outcome, method)
    effects.h5                     ISM effect means and SEs with labelled axes (optional)
    figures/*.png, report.html
    chunks/manifest.json           config hash the chunk files belong to
    chunks/local_00000.parquet     local effects of chunk 0 (written last: the "chunk done" marker)
    chunks/arrays_00000.npz        ISM arrays of chunk 0 kept for figures and effects.h5

Every file is written to a temporary name in the same folder and moved into place with
``os.replace``, so a killed run leaves either the old file, the new one, or a stray temporary
(removed on the next start), never a truncated table.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from deepmr_kipoi.errors import DeepMRInputError

logger = logging.getLogger(__name__)

_TMP_TAG = ".deepmr-tmp"
MANIFEST = "manifest.json"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; move it onto ``path`` when the block succeeds.

    Parameters
    ----------
    path : path-like
        Final destination. Its folder must exist.

    Yields
    ------
    Path
        Temporary file to write (same folder, so the final ``os.replace`` is atomic).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}{_TMP_TAG}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj) -> Path:
    """Write ``obj`` as indented JSON atomically (NaN written as ``null``)."""
    return write_text(path, json.dumps(_jsonable(obj), indent=2, sort_keys=False) + "\n")


def write_table(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write a table atomically as Parquet or CSV, chosen by the suffix of ``path``."""
    path = Path(path)
    with atomic_path(path) as tmp:
        if path.suffix == ".parquet":
            df.to_parquet(tmp, index=False)
        elif path.suffix == ".csv":
            df.to_csv(tmp, index=False)
        else:
            raise DeepMRInputError(f"unknown table format {path.suffix!r}; use .parquet or .csv")
    return path


def write_npz(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> Path:
    """Write named arrays to a compressed ``.npz`` atomically."""
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return write_bytes(path, buf.getvalue())


def read_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read every array of a ``.npz`` into memory."""
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def write_effects_h5(
    path: str | os.PathLike,
    *,
    mean: np.ndarray,
    se: np.ndarray,
    reference: np.ndarray,
    alt_bases: np.ndarray,
    positions: np.ndarray,
    sequence_ids: list[str],
    feature_names: list[str],
    attrs: dict | None = None,
) -> Path:
    """Write ISM effects with labelled axes to HDF5 atomically.

    Parameters
    ----------
    mean, se : ndarray, shape (N, W, 3, F)
        Paired effect means and SEs (SEs as used by MR, i.e. calibrated when calibration was on).
    reference : ndarray, shape (S, N, F)
        Reference predictions per uncertainty sample.
    alt_bases : ndarray of uint8, shape (N, W, 3)
        Alternative base codes into ``"ACGT"``.
    positions : ndarray of int, shape (W,)
        Mutated positions (0-based, within the sequence).
    sequence_ids : list of str, length N
    feature_names : list of str, length F
    attrs : dict, optional
        Extra file attributes (JSON-encoded when not scalar).

    Notes
    -----
    Datasets ``mean`` and ``se`` carry ``axes = ["sequence", "position", "allele", "feature"]`` and
    HDF5 dimension scales ``sequence_id``, ``position``, ``feature``; ``alt_base`` gives the base of
    each allele slot.
    """
    import h5py

    path = Path(path)
    str_dt = h5py.string_dtype()
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs["description"] = "Deep MR saturation-ISM effects (paired mean and SE over samples)"
            f.attrs["alphabet"] = "ACGT"
            for key, value in (attrs or {}).items():
                f.attrs[key] = value if isinstance(value, (int, float, str)) else json.dumps(value)
            sid = f.create_dataset("sequence_id", data=np.array(sequence_ids, dtype=object), dtype=str_dt)
            pos = f.create_dataset("position", data=np.asarray(positions, dtype=np.int64))
            feat = f.create_dataset("feature", data=np.array(feature_names, dtype=object), dtype=str_dt)
            f.create_dataset("alt_base", data=np.asarray(alt_bases, dtype=np.uint8))
            f["alt_base"].attrs["axes"] = ["sequence", "position", "allele"]
            f["alt_base"].attrs["codes"] = "ACGT"
            for name in ("sequence_id", "position", "feature"):
                f[name].make_scale(name)
            for name, arr in (("mean", mean), ("se", se)):
                ds = f.create_dataset(name, data=np.asarray(arr, dtype=np.float32), compression="gzip")
                ds.attrs["axes"] = ["sequence", "position", "allele", "feature"]
                for i, label in enumerate(ds.attrs["axes"]):
                    ds.dims[i].label = label
                ds.dims[0].attach_scale(sid)
                ds.dims[1].attach_scale(pos)
                ds.dims[3].attach_scale(feat)
            ref = f.create_dataset("reference", data=np.asarray(reference, dtype=np.float32))
            ref.attrs["axes"] = ["sample", "sequence", "feature"]
            for i, label in enumerate(ref.attrs["axes"]):
                ref.dims[i].label = label
    return path


class ChunkStore:
    """Per-chunk result files of one run folder, tied to one configuration hash.

    Parameters
    ----------
    out_dir : path-like
        The run folder.
    config_hash : str
        Hash of everything that determines the results; chunk files written under another hash
        are never mixed in.
    weights : list of str, optional
        md5s of the model's weight files where known; chunks of other weights are not mixed in
        either (where both runs know them).
    """

    def __init__(self, out_dir: str | os.PathLike, config_hash: str, weights: list | None = None,
                 inputs: dict | None = None):  # fmt: skip
        self.out_dir = Path(out_dir)
        self.dir = self.out_dir / "chunks"
        self.config_hash = config_hash
        self.weights = weights
        self.inputs = inputs

    def _manifest(self) -> dict | None:
        manifest = self.dir / MANIFEST
        if not manifest.exists():
            return None
        try:
            return json.loads(manifest.read_text())
        except ValueError:
            return None

    def has_chunks(self) -> bool:
        """Whether any chunk of an earlier run finished here."""
        return any(self.dir.glob("local_*.parquet"))

    def mismatch(self) -> str | None:
        """Why the chunks here are not this run's (None when they are, or when there are none).

        A manifest without any finished chunk (a run that stopped before its first chunk) never
        blocks: the next run takes it over.
        """
        from deepmr_kipoi.run.fingerprint import changed

        m = self._manifest()
        if m is None or not self.has_chunks():
            return None
        if m.get("config_hash") != self.config_hash:
            return "results of a different configuration"
        old_weights = m.get("weights")
        if old_weights and self.weights and old_weights != self.weights:
            return "results of other model weights"
        diff = changed(m.get("inputs"), self.inputs or {})
        if diff:
            return f"results of other inputs ({', '.join(diff)} changed)"
        return None

    def matches(self) -> bool:
        """True when the folder holds no chunks yet or chunks of this configuration and inputs."""
        return self.mismatch() is None

    def prepare(self, n_chunks: int, *, force: bool = False) -> list[Path]:
        """Create the chunk folder and manifest; remove stray temporaries of killed runs.

        Returns
        -------
        list of Path
            Files and folders this call created (for clean-up on a failed run).

        Raises
        ------
        DeepMRInputError
            When the folder holds chunks of another configuration or other inputs and ``force``
            is False.
        """
        created: list[Path] = []
        why = self.mismatch()
        if why is not None:
            if not force:
                raise DeepMRInputError(
                    f"{self.out_dir} holds {why}; choose another --out, or pass --force to "
                    "recompute and replace them"
                )
            self.clear()
        if not self.dir.exists():
            self.dir.mkdir(parents=True)
            created.append(self.dir)
        for stray in self.dir.glob(f".*{_TMP_TAG}"):
            stray.unlink()
        manifest = self.dir / MANIFEST
        m = self._manifest()
        if m is None or m.get("config_hash") != self.config_hash or m.get("inputs") != self.inputs:
            if not manifest.exists():
                created.append(manifest)
            write_json(manifest, {"config_hash": self.config_hash, "n_chunks": int(n_chunks),
                                  "weights": self.weights, "inputs": self.inputs})  # fmt: skip
        return created

    def clear(self) -> None:
        """Delete this store's chunk files (only files it names; other files are left alone)."""
        for pattern in ("local_*.parquet", "arrays_*.npz", MANIFEST):
            for p in self.dir.glob(pattern):
                p.unlink()

    def local_path(self, i: int) -> Path:
        return self.dir / f"local_{i:05d}.parquet"

    def arrays_path(self, i: int) -> Path:
        return self.dir / f"arrays_{i:05d}.npz"

    def is_done(self, i: int) -> bool:
        """Whether chunk ``i`` finished (its local table is written last)."""
        return self.local_path(i).exists()

    def write(self, i: int, local: pd.DataFrame, arrays: dict[str, np.ndarray] | None) -> list[Path]:
        """Write chunk ``i``: arrays first, then the local table that marks it done."""
        written = []
        if arrays:
            written.append(write_npz(self.arrays_path(i), arrays))
        written.append(write_table(local, self.local_path(i)))
        return written

    def read_local(self, i: int) -> pd.DataFrame:
        return pd.read_parquet(self.local_path(i))

    def read_arrays(self, i: int) -> dict[str, np.ndarray] | None:
        p = self.arrays_path(i)
        return read_npz(p) if p.exists() else None


#: Files a finished run writes into its folder (besides ``chunks/``).
OUTPUT_FILES = ("global_effects.csv", "global_effects.parquet", "local_effects.parquet",
                "effects.h5", "report.html", "run.json", "config.yaml")  # fmt: skip


@dataclass(frozen=True)
class RunData:
    """A finished run folder read back.

    Attributes
    ----------
    path : Path
    global_effects : DataFrame
        One row per (exposure, outcome, method).
    local_effects : DataFrame or None
        One row per (sequence, exposure, outcome, method), when present.
    run_info : dict
        Contents of ``run.json``.
    """

    path: Path
    global_effects: pd.DataFrame
    local_effects: pd.DataFrame | None
    run_info: dict

    @property
    def label(self) -> str:
        """A short name for the run: its model name, else its folder name."""
        model = (self.run_info.get("model") or {}).get("name")
        return str(model or self.path.name)


def read_run(run_dir: str | os.PathLike, *, local: bool = False) -> RunData:
    """Read a finished run folder.

    Parameters
    ----------
    run_dir : path-like
        Folder written by ``pipeline.run`` (``deepmr run``/``demo``).
    local : bool
        Also read ``local_effects.parquet``.

    Returns
    -------
    RunData

    Raises
    ------
    DeepMRInputError
        When the folder is missing or holds no finished run.
    """
    path = Path(run_dir)
    if not path.is_dir():
        raise DeepMRInputError(f"run folder not found: {path}")
    table = path / "global_effects.parquet"
    if not table.exists():
        table = path / "global_effects.csv"
    if not table.exists():
        raise DeepMRInputError(
            f"{path} holds no finished run (no global_effects.parquet); finish or re-run it first"
        )
    global_table = pd.read_parquet(table) if table.suffix == ".parquet" else pd.read_csv(table)
    info = json.loads((path / "run.json").read_text()) if (path / "run.json").exists() else {}
    loc = None
    if local and (path / "local_effects.parquet").exists():
        loc = pd.read_parquet(path / "local_effects.parquet")
    return RunData(path=path, global_effects=global_table, local_effects=loc, run_info=info)


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj
