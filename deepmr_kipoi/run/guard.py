"""Guards of a run folder: a checked ``--out``, a lock against a second run, and the ``--force`` swap.

* :func:`check_out_dir` refuses an ``--out`` under a file, of a file, or in a read-only place in one
  line, before anything is written.
* :class:`RunLock` (``<out>/.deepmr.lock``, created with ``O_EXCL``) keeps a second run out of a
  folder in use; the message names the holder's pid, host and start time. A lock left by a process
  that died on this host is taken over.
* :func:`staging_dir` / :func:`swap_in`: a forced run of another configuration is built in a sibling
  folder and moved into ``--out`` only once it has succeeded; the old run's own files (the names a
  run writes, and the figures its ``run.json`` lists) are then removed, files a user put there are
  left alone.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import time
from pathlib import Path

from deepmr_kipoi import results
from deepmr_kipoi.errors import DeepMRInputError

logger = logging.getLogger(__name__)

LOCK_NAME = ".deepmr.lock"
_STAGING_TAG = ".deepmr-new"


def check_out_dir(out_dir: Path, option: str = "--out") -> None:
    """Refuse an output folder that cannot be created or written, without creating anything.

    Parameters
    ----------
    out_dir : Path
    option : str
        The option named in messages.

    Raises
    ------
    DeepMRInputError
        ``out_dir`` is a file, lies under a file, or its nearest existing folder is not writable.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise DeepMRInputError(f"{option} {out_dir} is a file, not a folder; choose another {option}")
    parent = out_dir
    while not parent.exists():
        if parent.parent == parent:
            break
        parent = parent.parent
    if parent.exists() and not parent.is_dir():
        raise DeepMRInputError(
            f"{option} {out_dir} lies under the file {parent}; choose another {option}"
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise DeepMRInputError(
            f"{option} {out_dir}: {parent} is not writable; choose a folder you can write to"
        )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunLock:
    """An exclusive lock file on a run folder, held for the duration of one run.

    Parameters
    ----------
    out_dir : Path
        An existing folder.
    """

    def __init__(self, out_dir: Path):
        self.path = Path(out_dir) / LOCK_NAME
        self.held = False

    def _holder(self) -> dict:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}

    def acquire(self) -> RunLock:
        """Take the lock, or take over a dead holder's lock on this host.

        Raises
        ------
        DeepMRInputError
            When another live run (or a run on another host) holds it.
        """
        me = {"pid": os.getpid(), "host": socket.gethostname(),
              "started": time.strftime("%Y-%m-%dT%H:%M:%S")}  # fmt: skip
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder()
                pid, host = holder.get("pid"), holder.get("host")
                if host == me["host"] and isinstance(pid, int) and not _pid_alive(pid):
                    logger.warning("taking over the lock of a run that ended (pid %s) in %s",
                                   pid, self.path.parent)  # fmt: skip
                    self.path.unlink(missing_ok=True)
                    continue
                raise DeepMRInputError(
                    f"{self.path.parent} is in use by another deepmr run (pid {pid} on {host}, "
                    f"started {holder.get('started')}); wait for it to finish or choose another "
                    f"--out (remove {self.path} only if that run is gone)"
                ) from None
            with os.fdopen(fd, "w") as fh:
                json.dump(me, fh)
            self.held = True
            return self
        raise DeepMRInputError(f"could not take the lock {self.path}; try again")

    def release(self) -> None:
        """Remove the lock if this object holds it."""
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False


def staging_dir(out_dir: Path) -> Path:
    """A fresh sibling folder where a forced run is built before it replaces ``out_dir``'s run."""
    stage = out_dir.parent / f".{out_dir.name}{_STAGING_TAG}-{os.getpid()}"
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir()
    return stage


def old_run_files(out_dir: Path) -> list[Path]:
    """The files an earlier run wrote in ``out_dir``: result files, chunk files, its listed figures.

    Figures count only when the folder's ``run.json`` names them, so a user's own files in
    ``figures/`` are never included.
    """
    files = [out_dir / name for name in results.OUTPUT_FILES]
    chunks = out_dir / "chunks"
    for pattern in ("local_*.parquet", "arrays_*.npz", results.MANIFEST):
        files += sorted(chunks.glob(pattern))
    with contextlib.suppress(OSError, ValueError, TypeError):
        listed = json.loads((out_dir / "run.json").read_text()).get("figures") or []
        files += [out_dir / f for f in listed if not Path(f).is_absolute() and ".." not in Path(f).parts]
    return [f for f in files if f.is_file()]


def swap_in(stage: Path, out_dir: Path) -> None:
    """Replace the earlier run in ``out_dir`` by the finished run built in ``stage``.

    Each new file is moved over its old counterpart (``os.replace``: atomic per file), then the old
    run's files the new run did not replace are removed, then ``stage``. Nothing else in
    ``out_dir`` is touched.
    """
    old = {p.resolve() for p in old_run_files(out_dir)}
    moved = set()
    for src in sorted(p for p in stage.rglob("*") if p.is_file()):
        dst = out_dir / src.relative_to(stage)
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dst)
        moved.add(dst.resolve())
    for p in old - moved:
        p.unlink(missing_ok=True)
    shutil.rmtree(stage, ignore_errors=True)


def remove_created(out_dir: Path | None, made_dir: bool, created: list[Path]) -> None:
    """Remove the files and folders one run created, newest first; the run folder only when empty
    and created by that run (files another process put there meanwhile survive)."""
    if out_dir is None:
        return
    for p in reversed(created):
        if p.is_dir() and not any(p.iterdir()):
            p.rmdir()
        elif p.is_file():
            p.unlink()
    if made_dir and out_dir.is_dir() and not any(out_dir.iterdir()):
        out_dir.rmdir()
