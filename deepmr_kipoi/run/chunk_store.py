"""Chunk files of a run and the key each one carries.

A chunk key (:meth:`RunKey.chunk_key`) hashes the run's configuration hash, the md5s of its inputs
and model code (:mod:`~deepmr_kipoi.run.fingerprint`) and the chunk's sequence range. Every chunk
file carries its key (the Parquet table in its schema metadata, the arrays as ``chunk_key``), and
:meth:`ChunkStore.read` returns a chunk only when both files read whole and carry the expected key;
a file that does not read (truncated, damaged) or belongs elsewhere is named and the chunk computed
again. Each file also carries a SHA-256 of its content (:func:`frame_digest`, :func:`arrays_digest`),
checked on read: a flipped bit in a Parquet data page or an array edited with its key kept is named
and the chunk computed again.

``DEEPMR_STOP_AT=<point>`` in the environment kills the process (SIGKILL) at a named point
(:func:`stop_point`), for the tests that show a killed run leaves a whole folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import signal
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from deepmr_kipoi import results
from deepmr_kipoi.errors import DeepMRInputError

logger = logging.getLogger(__name__)

#: Version of the folder layout and chunk keys; folders of another version are not resumed.
FORMAT = 2
CHUNKS = "chunks"
MANIFEST = "manifest.json"
CHUNK_FILE = re.compile(r"^(local|arrays)_(\d{5,})\.(parquet|npz)$")
#: A file of the effects store: the raw ISM effects of sequences ``start`` to ``end`` (half-open).
EFFECTS_FILE = re.compile(r"^effects_(\d{6,})_(\d{6,})\.npz$")
#: The run-level file of the effects store: feature names, sequence ids, one-hot sequences and the
#: features' spread over them, which an analysis of the stored effects needs besides them.
RUN_EFFECTS = "effects_run.npz"
#: Inputs that only the analysis reads (not part of the effects' key).
ANALYSIS_INPUTS = ("calibration table", "calibrator")
_KEY_META = b"deepmr_chunk_key"
_SUM_META = b"deepmr_chunk_sha256"
#: The array of a chunk's ``.npz`` holding the checksum of its other arrays.
_SUM_ARRAY = "content_sha256"
#: Named points where ``DEEPMR_STOP_AT`` kills the process.
STOP_POINTS = (
    "chunk",
    "outputs",
    "linked",
    "before-swap",
    "after-swap",
    "cleanup",
    "journal",
    "journal-moves",
)

_REACHED: dict[str, int] = {}


def stop_point(name: str) -> None:
    """Kill this process with SIGKILL when ``DEEPMR_STOP_AT`` names this point (tests only):
    ``NAME`` stops the first time it is reached, ``NAME:K`` the K-th time."""
    wanted = os.environ.get("DEEPMR_STOP_AT")
    if not wanted or wanted.split(":")[0] != name:
        return
    _REACHED[name] = _REACHED.get(name, 0) + 1
    if _REACHED[name] >= int(wanted.split(":")[1] if ":" in wanted else 1):
        os.kill(os.getpid(), signal.SIGKILL)


def frame_digest(df: pd.DataFrame) -> str:
    """SHA-256 of a table's content: column names, order, dtypes and every value (64 hex digits).

    Values enter through ``pandas.util.hash_pandas_object`` per column, which sees the same values
    in a table written to Parquet and read back.
    """
    h = hashlib.sha256()
    for name in df.columns:
        col = df[name]
        h.update(f"{name}\0{len(col)}\0".encode())
        h.update(pd.util.hash_pandas_object(col, index=False).to_numpy().tobytes())
    return h.hexdigest()


def arrays_digest(arrays: Mapping[str, np.ndarray]) -> str:
    """SHA-256 of named arrays: names, dtypes, shapes and bytes (64 hex digits)."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        if name in ("chunk_key", _SUM_ARRAY):
            continue
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}\0{a.dtype.str}\0{a.shape}\0".encode())
        h.update(a.tobytes())
    return h.hexdigest()


class StoredChunksIncomplete(DeepMRInputError):
    """A run without its model met a chunk that neither reads back nor has stored ISM effects."""


@dataclass(frozen=True)
class RunKey:
    """What a run's results are computed from: settings, weights, input and code fingerprints.

    Attributes
    ----------
    config_hash : str
        ``config.config_hash``: the settings that change results, the model's name and features.
    weights : tuple of str or None
        Sorted md5s of the model's weight files, where known.
    inputs : mapping of str to str
        md5 per input and per model code file (``fingerprint.input_fingerprint``).
    """

    config_hash: str
    weights: tuple[str, ...] | None = None
    inputs: Mapping[str, str] = field(default_factory=dict)
    effects_hash: str | None = None

    def to_dict(self) -> dict:
        return {
            "config_hash": self.config_hash,
            "weights": None if self.weights is None else list(self.weights),
            "inputs": dict(sorted(self.inputs.items())),
            "effects_hash": self.effects_hash,
        }

    def effects_key(self, bounds: Sequence[int]) -> str:
        """The key of the stored ISM effects of sequences ``bounds = (start, end)``: what they depend
        on (``effects_hash``: the settings that change effects, the model, its features; the input
        and code md5s but those only the analysis reads), not the analysis settings."""
        payload = {
            "format": FORMAT,
            "effects_hash": self.effects_hash,
            "inputs": {k: v for k, v in sorted(self.inputs.items()) if k not in ANALYSIS_INPUTS},
            "bounds": [int(b) for b in bounds],
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]

    def same_effects(self, other: Mapping | None) -> bool:
        """Whether results recorded under ``other`` (a ``to_dict`` mapping) come from the same ISM
        effects as this key's (only analysis settings or analysis inputs differ)."""
        if not isinstance(other, Mapping) or not self.effects_hash:
            return False
        if other.get("effects_hash") != self.effects_hash:
            return False
        if other.get("weights") and self.weights and list(other["weights"]) != list(self.weights):
            return False
        old = other.get("inputs") if isinstance(other.get("inputs"), Mapping) else {}
        strip = lambda d: {k: v for k, v in d.items() if k not in ANALYSIS_INPUTS}  # noqa: E731
        return strip(old) == strip(dict(self.inputs))

    def chunk_key(self, bounds: Sequence[int]) -> str:
        """The key of the chunk of sequences ``bounds = (start, end)``: 32 hex digits.

        It hashes what the configuration determines (settings, input and code md5s); the weight
        md5s a model object reports depend on how it was loaded (a demo model handed over, or its
        factory), so they are compared where both runs know them (:meth:`difference`) instead.
        """
        payload = {
            "format": FORMAT,
            "config_hash": self.config_hash,
            "inputs": dict(sorted(self.inputs.items())),
            "bounds": [int(b) for b in bounds],
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]

    def difference(self, other: Mapping | None) -> str | None:
        """Why results recorded under ``other`` (a ``to_dict`` mapping) are not this key's, or None."""
        from deepmr_kipoi.run.fingerprint import changed

        if not isinstance(other, Mapping):
            return "results without a readable key"
        if other.get("config_hash") != self.config_hash:
            return "results of a different configuration"
        if other.get("weights") and self.weights and list(other["weights"]) != list(self.weights):
            return "results of other model weights"
        old = other.get("inputs") if isinstance(other.get("inputs"), Mapping) else {}
        diff = changed(old, self.inputs) + sorted(set(old) ^ set(self.inputs))
        if diff:
            return f"results of other inputs ({', '.join(dict.fromkeys(diff))} changed)"
        return None


#: Effects arrays with a sequence axis, and which axis it is.
_SEQUENCE_AXIS = {"samples": 1, "reference": 1, "alt_bases": 0, "ref_bases": 0, "is_n": 0}


def _slice_sequences(arrays: dict, lo: int, hi: int) -> dict:
    out = dict(arrays)
    for k, axis in _SEQUENCE_AXIS.items():
        index = [slice(None)] * arrays[k].ndim
        index[axis] = slice(lo, hi)
        out[k] = arrays[k][tuple(index)]
    return out


def _join(key: str, parts: list) -> np.ndarray:
    if key not in _SEQUENCE_AXIS:
        return parts[0]
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=_SEQUENCE_AXIS[key])


class ChunkStore:
    """The chunk files of one run key in one folder, each verified by its key on read.

    Parameters
    ----------
    folder : Path
        The chunk folder (``<run folder>/chunks``, or the stage's while ``--force`` replaces a run).
    key : RunKey
    bounds : sequence of (int, int)
        The chunks' half-open sequence ranges.
    """

    def __init__(
        self,
        folder: Path,
        key: RunKey,
        bounds: Sequence[tuple[int, int]],
        effects_from: Sequence[Path] = (),
    ):
        self.dir = Path(folder)
        self.key = key
        self.bounds = tuple(tuple(b) for b in bounds)
        self.notes: list[str] = []
        # other chunk folders whose effects files may be reused (the run being replaced, or the
        # run being reanalysed); a file used from there is linked into this store
        self.effects_from = tuple(Path(p) for p in effects_from if Path(p) != self.dir)

    def local_path(self, i: int) -> Path:
        return self.dir / f"local_{i:05d}.parquet"

    def arrays_path(self, i: int) -> Path:
        return self.dir / f"arrays_{i:05d}.npz"

    def chunk_key(self, i: int) -> str:
        return self.key.chunk_key(self.bounds[i])

    def prepare(self) -> list[Path]:
        """Create the chunk folder and its manifest; remove temporaries of dead writers.

        Returns
        -------
        list of Path
            What this call created.
        """
        created = []
        if not self.dir.exists():
            self.dir.mkdir(parents=True)
            created.append(self.dir)
        results.remove_stray_temporaries(self.dir)
        manifest = self.dir / MANIFEST
        if not manifest.exists():
            created.append(manifest)
        results.write_json(
            manifest, {"format": FORMAT, **self.key.to_dict(), "n_chunks": len(self.bounds)}
        )
        return created

    def is_done(self, i: int) -> bool:
        """Whether chunk ``i`` has a local table (its last file); :meth:`read` verifies it."""
        return self.local_path(i).exists()

    def write(self, i: int, local: pd.DataFrame, arrays: Mapping[str, np.ndarray]) -> list[Path]:
        """Write chunk ``i`` with its key: arrays first, then the local table that marks it done."""
        key = self.chunk_key(i)
        sums = {"chunk_key": np.asarray(key), _SUM_ARRAY: np.asarray(arrays_digest(arrays))}
        results.write_npz(self.arrays_path(i), {**arrays, **sums})
        meta = {_KEY_META: key.encode(), _SUM_META: frame_digest(local).encode()}
        results.write_table(local, self.local_path(i), metadata=meta)
        stop_point("chunk")
        return [self.arrays_path(i), self.local_path(i)]

    def read(self, i: int) -> tuple[pd.DataFrame, dict] | None:
        """Chunk ``i``'s local table and arrays when both read whole and carry its key, else None
        (with a note naming the file, for a file that does not read or belongs elsewhere)."""
        key = self.chunk_key(i)
        path = self.arrays_path(i)
        try:
            if not path.exists():
                return None
            arrays = results.read_npz(path)
            path = self.local_path(i)
            local, meta = results.read_table_with_metadata(path)
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as err:
            self._note(
                f"chunk file {path} does not read ({type(err).__name__}: truncated or damaged); "
                f"chunk {i} is computed again"
            )
            return None
        for found, where in (
            (str(arrays.pop("chunk_key", "")), self.arrays_path(i)),
            (meta.get(_KEY_META, b"").decode(), self.local_path(i)),
        ):
            if found != key:
                self._note(
                    f"chunk file {where} was computed from other inputs or settings; chunk {i} is "
                    "computed again"
                )
                return None
        for found, wanted, where in (
            (str(arrays.pop(_SUM_ARRAY, "")), arrays_digest(arrays), self.arrays_path(i)),
            (meta.get(_SUM_META, b"").decode(), frame_digest(local), self.local_path(i)),
        ):
            if found != wanted:
                self._note(
                    f"chunk file {where} does not match its checksum (changed since it was "
                    f"written); chunk {i} is computed again"
                )
                return None
        return local, arrays

    def effects_path(self, bounds: Sequence[int]) -> Path:
        return self.dir / f"effects_{int(bounds[0]):06d}_{int(bounds[1]):06d}.npz"

    def write_run_effects(self, feature_names, seq_ids, onehot: np.ndarray, spread) -> Path:
        """Write the run-level file of the effects store (:data:`RUN_EFFECTS`), with its key.

        Parameters
        ----------
        feature_names : sequence of str, length F
        seq_ids : sequence of str, length N
        onehot : ndarray, shape (N, L, 4)
            ACGT one-hot reference sequences (kept as uint8).
        spread : ndarray of float64, shape (F,)
            Every feature's spread over the reference sequences.
        """
        n = len(seq_ids)
        arrays = {
            "feature_names": np.asarray(list(feature_names), dtype=str),
            "seq_ids": np.asarray(list(seq_ids), dtype=str),
            "onehot": np.asarray(onehot > 0.5, dtype=np.uint8),
            "spread": np.asarray(spread, dtype=np.float64),
            "effects_key": np.asarray(self.key.effects_key((0, n))),
        }
        self.dir.mkdir(parents=True, exist_ok=True)
        return results.write_npz(self.dir / RUN_EFFECTS, arrays)

    def write_effects(self, i: int, arrays: Mapping[str, np.ndarray]) -> Path:
        """Write chunk ``i``'s raw ISM effects with their key (``RunKey.effects_key``)."""
        path = self.effects_path(self.bounds[i])
        key = self.key.effects_key(self.bounds[i])
        results.write_npz(path, {**arrays, "effects_key": np.asarray(key)})
        return path

    def _effects_files(self) -> list[tuple[int, int, Path]]:
        found = {}
        for folder in (self.dir, *self.effects_from):
            for path in sorted(folder.glob("effects_*.npz")) if folder.is_dir() else ():
                m = EFFECTS_FILE.match(path.name)
                if m:
                    found.setdefault((int(m.group(1)), int(m.group(2))), path)
        return [(a, b, p) for (a, b), p in sorted(found.items())]

    def read_effects(self, i: int, used: Sequence[int]) -> dict[str, np.ndarray] | None:
        """Chunk ``i``'s stored raw effects on the model features ``used`` (in that order), joined
        from the stored files that cover its sequences and carry their keys; None when the store
        does not hold them all (then the model computes them)."""
        a, b = self.bounds[i]
        parts, at = [], a
        for start, end, path in self._effects_files():
            if start <= at < end:
                arrays = self._read_effects_file(path, (start, end), used)
                if arrays is None:
                    return None
                lo, hi = at - start, min(end, b) - start
                parts.append(_slice_sequences(arrays, lo, hi))
                at = min(end, b)
            if at >= b:
                break
        if at < b or not parts:
            return None
        return {k: _join(k, [p[k] for p in parts]) for k in parts[0]}

    def _read_effects_file(self, path: Path, bounds, used) -> dict[str, np.ndarray] | None:
        try:
            arrays = results.read_npz(path)
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as err:
            self._note(f"effects file {path} does not read ({type(err).__name__}); not reused")
            return None
        if str(arrays.pop("effects_key", "")) != self.key.effects_key(bounds):
            return None
        features = [int(f) for f in arrays["features"]]
        if not set(used) <= set(features):
            return None
        if path.parent != self.dir:
            self.dir.mkdir(parents=True, exist_ok=True)
            target = self.effects_path(bounds)
            if not target.exists():
                try:  # a hard link: the run being replaced keeps its file until the swap
                    os.link(path, target)
                except OSError:
                    shutil.copy2(path, target)
        cols = [features.index(u) for u in used]
        arrays["samples"] = arrays["samples"][..., cols]
        arrays["reference"] = arrays["reference"][..., cols]
        arrays["feature_names"] = arrays["feature_names"][cols]
        arrays["features"] = np.asarray(list(used), dtype=np.int64)
        return arrays

    def file_key(self, path: Path) -> str | None:
        """The key a chunk's local table carries (None: unreadable or none)."""
        with contextlib.suppress(OSError, ValueError, EOFError):
            return results.table_metadata(path).get(_KEY_META, b"").decode() or None
        return None

    def _note(self, text: str) -> None:
        logger.warning(text)
        self.notes.append(text)
