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
import signal
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from deepmr_kipoi import results

logger = logging.getLogger(__name__)

#: Version of the folder layout and chunk keys; folders of another version are not resumed.
FORMAT = 2
CHUNKS = "chunks"
MANIFEST = "manifest.json"
CHUNK_FILE = re.compile(r"^(local|arrays)_(\d{5,})\.(parquet|npz)$")
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

    def to_dict(self) -> dict:
        return {
            "config_hash": self.config_hash,
            "weights": None if self.weights is None else list(self.weights),
            "inputs": dict(sorted(self.inputs.items())),
        }

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

    def __init__(self, folder: Path, key: RunKey, bounds: Sequence[tuple[int, int]]):
        self.dir = Path(folder)
        self.key = key
        self.bounds = tuple(tuple(b) for b in bounds)
        self.notes: list[str] = []

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

    def file_key(self, path: Path) -> str | None:
        """The key a chunk's local table carries (None: unreadable or none)."""
        with contextlib.suppress(OSError, ValueError, EOFError):
            return results.table_metadata(path).get(_KEY_META, b"").decode() or None
        return None

    def _note(self, text: str) -> None:
        logger.warning(text)
        self.notes.append(text)
