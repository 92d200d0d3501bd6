"""Files of a Deep MR run: atomic writes of each file, and reading a finished run folder back.

Every file is written to a temporary name in the same folder and moved into place with
``os.replace``, so a killed run leaves either the old file, the new one, or a stray temporary
(removed on the next start), never a truncated table. Which files a run folder holds, and how a
run's files go in together, is :mod:`deepmr_kipoi.run.folder`'s.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import time
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from deepmr_kipoi.errors import DeepMRInputError

logger = logging.getLogger(__name__)

#: Suffix of the temporary files writes go through (``.<name>.<pid>.deepmr-tmp``).
TMP_TAG = ".deepmr-tmp"
_TMP_NAME = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)" + re.escape(TMP_TAG) + "$")


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
    tmp = path.with_name(f".{path.name}.{os.getpid()}{TMP_TAG}")
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


def write_table(
    df: pd.DataFrame, path: str | os.PathLike, metadata: Mapping[bytes, bytes] | None = None
) -> Path:
    """Write a table atomically as Parquet or CSV, chosen by the suffix of ``path``.

    ``metadata`` (Parquet only) is added to the file's schema metadata (:func:`table_metadata`).
    """
    path = Path(path)
    with atomic_path(path) as tmp:
        if path.suffix == ".parquet" and metadata:
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.Table.from_pandas(df, preserve_index=False)
            pq.write_table(
                table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata}), tmp
            )
        elif path.suffix == ".parquet":
            df.to_parquet(tmp, index=False)
        elif path.suffix == ".csv" and df.size > FAST_CSV_CELLS:
            _write_csv_arrow(df, tmp)
        elif path.suffix == ".csv":
            df.to_csv(tmp, index=False)
        else:
            raise DeepMRInputError(f"unknown table format {path.suffix!r}; use .parquet or .csv")
    return path


#: Cells (rows x columns) above which a CSV is written by pyarrow's CSV writer: pandas formats every
#: float through Python objects (a 919-feature run's global table, 118 million cells, takes over
#: three minutes that way, pyarrow a few seconds).
FAST_CSV_CELLS = 5_000_000


def _write_csv_arrow(df: pd.DataFrame, path: Path) -> None:
    """``df`` as CSV by pyarrow: what ``pandas.read_csv`` reads back equals ``df.to_csv``'s.

    Floats are written in their shortest round-trip form (``1e-05`` may read ``0.00001``), NaN as
    an empty field, and a float column that would read back as integers (every value integral)
    as pandas writes it (``2.0``); booleans as ``True``/``False`` and categoricals as their
    labels, as pandas writes them. Written in slices of rows, so the only copy is that of a slice.
    """
    import pyarrow as pa
    import pyarrow.csv as pcsv

    def arrow_slice(part: pd.DataFrame) -> pa.Table:
        columns = {}
        for name in part.columns:
            col = part[name]
            if col.dtype == bool:
                col = pa.array(np.where(col.to_numpy(), "True", "False"), pa.string())
            elif isinstance(col.dtype, pd.CategoricalDtype) or col.dtype == object:
                values = col.to_numpy(dtype=object)
                missing = pd.isna(values)
                col = pa.array(np.where(missing, None, col.astype(str).to_numpy()), pa.string())
            elif col.dtype.kind == "f" and _reads_as_int(col.to_numpy()):
                col = pa.array(col.astype(str).to_numpy(), pa.string())  # "2.0", as pandas
            else:
                col = pa.array(col.to_numpy(), from_pandas=True)  # NaN: an empty field
            columns[str(name)] = col
        return pa.table(columns)

    step = max(1, 1_000_000 // max(1, df.shape[1]))
    options = pcsv.WriteOptions(quoting_style="needed")
    first = arrow_slice(df.iloc[:step])
    with pcsv.CSVWriter(path, first.schema, write_options=options) as writer:
        writer.write_table(first)
        for start in range(step, len(df), step):
            writer.write_table(arrow_slice(df.iloc[start : start + step]))


def _reads_as_int(values: np.ndarray) -> bool:
    """Whether a float column written in shortest form would read back as integers."""
    with np.errstate(invalid="ignore"):
        return bool(np.isfinite(values).all() and (values == np.round(values)).all())


def table_metadata(path: str | os.PathLike) -> dict[bytes, bytes]:
    """The schema metadata of a Parquet file (read from its footer only)."""
    import pyarrow.parquet as pq

    return dict(pq.read_schema(path).metadata or {})


def read_table_with_metadata(path: str | os.PathLike) -> tuple[pd.DataFrame, dict[bytes, bytes]]:
    """A Parquet table and its schema metadata, read once (a truncated file raises ``OSError`` or
    ``ValueError``)."""
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    return table.to_pandas(), dict(table.schema.metadata or {})


def remove_stray_temporaries(folder: str | os.PathLike) -> None:
    """Remove the temporaries of writers that died (their pid is gone) from ``folder``."""
    for stray in Path(folder).glob(f".*{TMP_TAG}"):
        m = _TMP_NAME.match(stray.name)
        pid = int(m.group("pid")) if m else 0
        alive = True
        try:
            os.kill(pid, 0) if pid > 0 else None
        except ProcessLookupError:
            alive = False
        except PermissionError:
            pass
        if not alive or pid <= 0 or pid == os.getpid():
            stray.unlink(missing_ok=True)


#: Floating-point arrays larger than this (bytes) are stored in ``.npz`` files uncompressed.
NPZ_STORED_BYTES = 1 << 20


def write_npz(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> Path:
    """Write named arrays to an ``.npz`` atomically (read back by ``numpy.load``).

    Large floating-point arrays (model effects, per-sample estimates: above
    :data:`NPZ_STORED_BYTES`) are stored uncompressed: their mantissas barely compress (measured:
    9.1 of 12.8 MB at zlib's default level, 4.4 of 4.8 MB for float32 effects) while deflating
    them took 15-50x the time of storing them, which at hundreds of features was most of a chunk
    file's write. Everything else is deflated (level 1). No array is pickled.
    """
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, allowZip64=True, compresslevel=1) as zf:
        for name, value in arrays.items():
            a = np.asanyarray(value)
            member = f"{name}.npy"  # by name: the archive's deflate at level 1
            if a.dtype.kind in "fc" and a.nbytes > NPZ_STORED_BYTES:
                member = zipfile.ZipInfo(member, date_time=time.localtime()[:6])
                member.compress_type = zipfile.ZIP_STORED
            with zf.open(member, "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, a, allow_pickle=False)
    return write_bytes(path, buf.getvalue())


def read_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read every array of a ``.npz`` into memory."""
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def write_effects_h5(
    path: str | os.PathLike,
    arrays: Mapping[str, np.ndarray],
    sequence_ids: list[str],
    feature_names: list[str],
    attrs: dict | None = None,
) -> Path:
    """Write ISM effects with labelled axes to HDF5 atomically.

    Parameters
    ----------
    path : path-like
    arrays : mapping of str to ndarray
        ``mean``, ``se`` (N, W, 3, F): paired effect means and SEs (SEs as used by MR, i.e.
        calibrated when calibration was on); ``reference`` (S, N, F): reference predictions per
        uncertainty sample; ``alt_bases`` (N, W, 3), uint8: alternative base codes into
        ``"ACGT"``; ``positions`` (W,), int: mutated positions (0-based, within the sequence).
        Other keys are not written.
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
            f.attrs["description"] = (
                "Deep MR saturation-ISM effects (paired mean and SE over samples)"
            )
            f.attrs["alphabet"] = "ACGT"
            for key, value in (attrs or {}).items():
                f.attrs[key] = value if isinstance(value, (int, float, str)) else json.dumps(value)
            sid = f.create_dataset(
                "sequence_id", data=np.array(sequence_ids, dtype=object), dtype=str_dt
            )
            pos = f.create_dataset("position", data=np.asarray(arrays["positions"], dtype=np.int64))
            feat = f.create_dataset(
                "feature", data=np.array(feature_names, dtype=object), dtype=str_dt
            )
            f.create_dataset("alt_base", data=np.asarray(arrays["alt_bases"], dtype=np.uint8))
            f["alt_base"].attrs["axes"] = ["sequence", "position", "allele"]
            f["alt_base"].attrs["codes"] = "ACGT"
            for name in ("sequence_id", "position", "feature"):
                f[name].make_scale(name)
            for name in ("mean", "se"):
                ds = f.create_dataset(
                    name, data=np.asarray(arrays[name], dtype=np.float32), compression="gzip"
                )
                ds.attrs["axes"] = ["sequence", "position", "allele", "feature"]
                for i, label in enumerate(ds.attrs["axes"]):
                    ds.dims[i].label = label
                ds.dims[0].attach_scale(sid)
                ds.dims[1].attach_scale(pos)
                ds.dims[3].attach_scale(feat)
            ref = f.create_dataset(
                "reference", data=np.asarray(arrays["reference"], dtype=np.float32)
            )
            ref.attrs["axes"] = ["sample", "sequence", "feature"]
            for i, label in enumerate(ref.attrs["axes"]):
                ref.dims[i].label = label
    return path


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
    global_table = _read_result_table(table)
    info = {}
    if (path / "run.json").exists():
        try:
            info = json.loads((path / "run.json").read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as err:
            raise DeepMRInputError(
                f"{path / 'run.json'} is not valid JSON ({' '.join(str(err).split())}); re-run that run"
            ) from None
        if not isinstance(info, dict):
            raise DeepMRInputError(
                f"{path / 'run.json'} does not hold a run record; re-run that run"
            )
    loc = None
    if local and (path / "local_effects.parquet").exists():
        loc = _read_result_table(path / "local_effects.parquet")
    return RunData(path=path, global_effects=global_table, local_effects=loc, run_info=info)


def _read_result_table(path: Path) -> pd.DataFrame:
    """A run's table; a truncated or damaged file is named in one line."""
    try:
        return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    except (OSError, ValueError, UnicodeDecodeError) as err:
        raise DeepMRInputError(
            f"{path} does not read ({type(err).__name__}: truncated or damaged); re-run that run"
        ) from None


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
