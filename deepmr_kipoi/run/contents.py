"""What a run folder holds: the names a run writes, the folder record, the sorting of a folder's
files into the tool's and the user's, and the file operations of the swap (:mod:`~deepmr_kipoi.run.folder`
puts them together).

A file is the tool's when the folder record (``.deepmr-folder.json``, written last) lists it with the
md5 it has now, when it is a chunk file, or the lock; a folder without a record but with the
``run.json`` of a deepmr run (or a chunk manifest of no format beside chunk files) is a run of an
older layout, whose files are its output names and the figures its ``run.json`` lists. Everything
else is the user's.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import shutil
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from deepmr_kipoi import results
from deepmr_kipoi._files import file_md5
from deepmr_kipoi.run.chunk_store import (
    CHUNK_FILE,
    CHUNKS,
    EFFECTS_FILE,
    FORMAT,
    MANIFEST,
    RUN_EFFECTS,
)
from deepmr_kipoi.run.lock import LOCK_NAME

RECORD = ".deepmr-folder.json"
#: Files a finished run writes at the top of its folder (figures go to ``figures/``).
OUTPUT_FILES = (
    "global_effects.csv",
    "global_effects.parquet",
    "local_effects.parquet",
    "effects.h5",
    "report.html",
    "run.json",
    "config.yaml",
)
#: Files ``deepmr compare`` writes (and figures).
COMPARE_FILES = (
    "compare_table.csv",
    "compare_summary.csv",
    "disagreements.csv",
    "report.html",
    "compare.json",
)
#: Output names where a foreign file is kept and the run's own is dropped, instead of a refusal.
YIELDING = ("config.yaml",)
STAGE_TAG = ".deepmr-stage"
COMMIT = ".deepmr-commit"
#: The file in a stage holding the token of the run that made it (also in that run's lock).
TOKEN_FILE = ".deepmr-stage-token"


def read_record(folder: Path) -> dict | None:
    """The folder record of a folder, or None (missing, unreadable, or of another format)."""
    try:
        record = json.loads((Path(folder) / RECORD).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("format") == FORMAT else None


def holds_run(folder: Path) -> bool:
    """Whether a folder holds (part of) a Deep MR run: its record, chunks or ``run.json``."""
    folder = Path(folder)
    record = read_record(folder)
    if record is not None:
        return record.get("kind") == "run"
    return (
        (folder / CHUNKS / MANIFEST).exists()
        or (folder / "run.json").exists()
        or any(CHUNK_FILE.match(p.name) for p in (folder / CHUNKS).glob("*"))
    )


def pending_commit(folder: Path) -> bool:
    """Whether an interrupted in-place commit waits in ``folder`` (the next run finishes it)."""
    return (Path(folder) / STAGE_TAG / COMMIT).exists()


# ---- what a folder holds -----------------------------------------------------------------------


def walk_files(folder: Path, skip: Iterable[str] = ()) -> list[Path]:
    """Every file (and link, and special file) below ``folder``, relative, sorted."""
    skip = set(skip)
    out = []
    for here, dirs, files in os.walk(folder):
        rel_here = Path(here).relative_to(folder)
        dirs[:] = sorted(d for d in dirs if str(rel_here / d) not in skip)
        out += [rel_here / f for f in files if str(rel_here / f) not in skip]
        out += [rel_here / d for d in dirs if os.path.islink(os.path.join(here, d))]
    return sorted(out)


def is_chunk_name(rel: Path) -> bool:
    return (
        len(rel.parts) == 2
        and rel.parts[0] == CHUNKS
        and (
            rel.name in (MANIFEST, RUN_EFFECTS)
            or bool(CHUNK_FILE.match(rel.name))
            or bool(EFFECTS_FILE.match(rel.name))
            or rel.name.endswith(results.TMP_TAG)
        )
    )


def same_file(a: Path, b: Path) -> bool:
    try:
        return (
            os.path.samefile(a, b)
            if not (a.is_symlink() or b.is_symlink())
            else (
                os.lstat(a).st_ino == os.lstat(b).st_ino
                and os.lstat(a).st_dev == os.lstat(b).st_dev
            )
        )
    except OSError:
        return False


def file_md5_or_none(path: Path) -> str | None:
    with contextlib.suppress(OSError):
        return file_md5(path) if path.is_file() and not path.is_symlink() else None
    return None


@dataclass
class Contents:
    """What an existing folder holds, sorted into the tool's files and the user's.

    Attributes
    ----------
    kind : str or None
        ``"run"`` or ``"compare"`` (a record of this format), ``"old"`` (a run of an older deepmr),
        ``"damaged"`` (a record that does not read), or None (no run).
    key : dict or None
        The run key its record or chunk manifest names.
    ours : set of Path
        Relative paths the tool wrote and a new run replaces (chunk files listed separately).
    chunk_files : list of Path
        Relative paths of chunk files (``chunks/local_*``, ``arrays_*``, the manifest, temporaries).
    foreign : list of Path
        Everything else: left alone.
    """

    kind: str | None = None
    key: dict | None = None
    ours: set = field(default_factory=set)
    chunk_files: list = field(default_factory=list)
    foreign: list = field(default_factory=list)


def _old_layout(folder: Path, manifest, chunk_files: list[Path]) -> bool:
    """A run without a folder record (of an older deepmr, or whose record was removed): its
    ``run.json`` names a deepmr version, or its chunk manifest (of no format) stands beside chunk
    files. A user's own ``run.json`` is not one."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        if "deepmr_kipoi_version" in json.loads((folder / "run.json").read_text()):
            return True
    return (
        isinstance(manifest, dict)
        and manifest.get("format") is None
        and "config_hash" in manifest
        and any(CHUNK_FILE.match(f.name) for f in chunk_files)
    )


def _old_run_files(folder: Path, files: list[Path]) -> set[Path]:
    """A pre-record run's own files: its output names and the figures its ``run.json`` lists."""
    ours = {Path(n) for n in OUTPUT_FILES}
    with contextlib.suppress(OSError, ValueError, TypeError, AttributeError):
        listed = json.loads((folder / "run.json").read_text()).get("figures") or []
        ours |= {Path(f) for f in listed if not Path(f).is_absolute() and ".." not in Path(f).parts}
    return ours & set(files)


def scan(folder: Path) -> Contents:
    """Sort what ``folder`` holds (see :class:`Contents`); the lock and stage count as the tool's."""
    folder = Path(folder)
    if not folder.is_dir():
        return Contents()
    files = walk_files(folder, skip=(STAGE_TAG,))
    record = read_record(folder)
    c = Contents(chunk_files=[f for f in files if is_chunk_name(f)])
    tool = (LOCK_NAME, RECORD, TOKEN_FILE)
    rest = [f for f in files if f not in set(c.chunk_files) and str(f) not in tool]
    manifest = None
    with contextlib.suppress(OSError, ValueError):
        manifest = json.loads((folder / CHUNKS / MANIFEST).read_text())
    if record is not None:
        c.kind, c.key = record.get("kind"), record.get("key")
        listed = record.get("files") or {}
        c.ours = {
            f for f in rest if str(f) in listed and listed[str(f)] == file_md5_or_none(folder / f)
        }
    elif (folder / RECORD).exists():
        c.kind = "damaged"
        c.ours = _old_run_files(folder, rest)
    elif _old_layout(folder, manifest, c.chunk_files):
        c.kind = "old"
        c.ours = _old_run_files(folder, rest)
    if c.key is None and isinstance(manifest, dict) and manifest.get("format") == FORMAT:
        c.key = {k: manifest.get(k) for k in ("config_hash", "weights", "inputs")}
    c.foreign = [f for f in rest if f not in c.ours]
    return c


# ---- trusting nothing found on disk ------------------------------------------------------------


def read_nofollow(path: Path, limit: int = 1 << 20) -> bytes | None:
    """The bytes of a regular file, never through a symbolic link (None: missing, a link, other)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            return None
        return fh.read(limit)


def real_dir(path: Path) -> bool:
    """Whether ``path`` itself is a folder (a symbolic link to one is not)."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def is_own_stage(path: Path, token: str | None) -> bool:
    """Whether ``path`` is a stage a deepmr run made with ``token``: a real folder of this user
    holding :data:`TOKEN_FILE` (a regular file, not a link) with exactly that token."""
    if not token or not real_dir(path):
        return False
    if os.lstat(path).st_uid != os.geteuid():
        return False
    return read_nofollow(Path(path) / TOKEN_FILE, 256) == token.encode()


def write_token(stage: Path, token: str) -> None:
    """Mark ``stage`` (a folder this run made or took over) with the run's token."""
    target = Path(stage) / TOKEN_FILE
    if os.path.lexists(target):
        os.unlink(target)
    fd = os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token)


def inside(root: Path, rel) -> Path | None:
    """``root / rel`` when ``rel`` is a plain relative path whose folders below ``root`` are real
    folders (or not there yet), else None: no absolute path, no ``..``, no symbolic link on the way.
    """
    if not isinstance(rel, str) or not rel or "\0" in rel:
        return None
    path = Path(rel)
    if path.is_absolute() or any(part in ("..", ".", "") for part in path.parts):
        return None
    here = Path(root)
    for part in path.parts[:-1]:
        here = here / part
        if os.path.lexists(here) and not real_dir(here):
            return None
    return Path(root) / path


# ---- swapping a stage in -----------------------------------------------------------------------


def exchange(a: Path, b: Path) -> None:
    """Swap two folders atomically (Linux ``renameat2(RENAME_EXCHANGE)``).

    Raises
    ------
    OSError
        Where the system or file system cannot (``EINVAL``, ``ENOSYS``, ...): the caller falls back.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    fn = getattr(libc, "renameat2", None)
    if fn is None:
        raise OSError(errno.ENOSYS, "renameat2 is not available")
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), str(a))


def link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link ``src`` at ``dst`` (a copy where the file system has no hard links)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst, follow_symlinks=False)
    except OSError:
        if src.is_symlink():
            os.symlink(os.readlink(src), dst)
        else:
            shutil.copy2(src, dst)


FALLBACK_ERRORS = (
    errno.EINVAL,
    errno.ENOSYS,
    errno.EXDEV,
    errno.ENOTSUP,
    errno.EPERM,
    errno.EBUSY,
)


def remove_empty_dirs(root: Path, keep: Path | None = None) -> None:
    for here, _, _ in sorted(os.walk(root), key=lambda t: -len(t[0])):
        p = Path(here)
        if keep is not None and (p == keep or keep in p.parents or p in keep.parents):
            continue
        with contextlib.suppress(OSError):
            p.rmdir()


def copy_empty_dirs(src: Path, dst: Path) -> None:
    """Folders of ``src`` (a user's empty folders, say) that ``dst`` lacks, created in ``dst``."""
    for here, dirs, _ in os.walk(src):
        rel = Path(here).relative_to(src)
        if rel.parts and rel.parts[0] == STAGE_TAG:
            continue
        for d in dirs:
            if d != STAGE_TAG and not os.path.islink(os.path.join(here, d)):
                (dst / rel / d).mkdir(parents=True, exist_ok=True)
