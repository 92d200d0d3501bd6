"""The lock of a run folder, and the check of an ``--out`` folder before anything is written.

:class:`RunLock` (``<folder>/.deepmr.lock``, created with ``O_EXCL``) keeps a second run out of a
folder in use; the message names the holder's pid, host and start time. A lock left by a process
that died on this host is taken over, and so is an empty or unreadable lock file older than
``LOCK_GRACE_S`` (a run killed while writing it); a lock naming its pid as plain text is read as
that pid; a folder, link or special file named like the lock is refused (never followed).

The lock also holds the run's stage token (a random value the run keeps in memory): the next run
reads it from a lock it takes over and acts only on a stage that carries the same token
(:mod:`~deepmr_kipoi.run.folder`). A run that leaves its stage behind (the chunks of a ``--force``
run that failed) marks its lock released instead of removing it, so the token survives.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
from pathlib import Path

from deepmr_kipoi.errors import DeepMRInputError

logger = logging.getLogger(__name__)

LOCK_NAME = ".deepmr.lock"
#: An empty or unreadable lock file younger than this may be one being written: not taken over.
LOCK_GRACE_S = 10.0


def check_out_dir(out_dir: Path, option: str = "--out") -> None:
    """Refuse an output folder that cannot be created or written, without creating anything.

    Raises
    ------
    DeepMRInputError
        ``out_dir`` is a file, lies under a file, or its nearest existing folder is not writable.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise DeepMRInputError(
            f"{option} {out_dir} is a file, not a folder; choose another {option}"
        )
    parent = out_dir
    while not parent.exists() and parent.parent != parent:
        parent = parent.parent
    if parent.exists() and not parent.is_dir():
        raise DeepMRInputError(
            f"{option} {out_dir} lies under the file {parent}; choose another {option}"
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise DeepMRInputError(
            f"{option} {out_dir}: {parent} is not writable; choose a folder you can write to"
        )


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunLock:
    """An exclusive lock file on a folder (``.deepmr.lock``, created with ``O_EXCL``).

    A lock left by a process that died on this host is taken over; so is an empty or unreadable
    lock file older than ``LOCK_GRACE_S``; a lock naming its pid as plain text is read as that pid.
    """

    def __init__(self, folder: Path, token: str = ""):
        self.path = Path(folder) / LOCK_NAME
        self.token = token
        self.held = False
        #: The holder of a stale lock this one took over (its ``stage_token`` included), or None.
        self.previous: dict | None = None

    def _holder(self) -> dict | None:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW)
            with os.fdopen(fd, "rb") as fh:
                text = fh.read(65536).decode().strip()
        except (OSError, UnicodeDecodeError):
            return None
        if text.isdigit():
            return {"pid": int(text)}
        try:
            holder = json.loads(text)
        except ValueError:
            return None
        if not isinstance(holder, dict):
            return None
        if isinstance(holder.get("pid"), str) and holder["pid"].strip().isdigit():
            holder["pid"] = int(holder["pid"])
        return holder

    def _stale(self, holder: dict | None, host: str) -> bool:
        if holder is None:
            with contextlib.suppress(OSError):
                return time.time() - self.path.stat().st_mtime > LOCK_GRACE_S
            return True
        if holder.get("released") is True:
            return True
        pid = holder.get("pid")
        return (
            holder.get("host", host) == host
            and isinstance(pid, int)
            and pid > 0
            and not pid_alive(pid)
        )

    def acquire(self) -> RunLock:
        """Take the lock, or take over a stale one.

        Raises
        ------
        DeepMRInputError
            When a live run (or a run on another host) holds it, or the lock's name is a folder.
        """
        me = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "stage_token": self.token,
        }
        for _ in range(3):
            if self.path.is_symlink() or (os.path.lexists(self.path) and not self.path.is_file()):
                raise DeepMRInputError(
                    f"{self.path} is not deepmr's lock file (a folder, link or special file of that "
                    "name); remove it or choose another --out"
                )
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW, 0o644)
            except FileExistsError:
                holder = self._holder()
                if self._stale(holder, me["host"]):
                    logger.warning(
                        "taking over the stale lock %s (%s)", self.path, holder or "empty"
                    )
                    self.previous = holder
                    self.path.unlink(missing_ok=True)
                    continue
                if holder is None:
                    raise DeepMRInputError(
                        f"{self.path.parent} is being set up by another deepmr run (its lock file is "
                        "being written); try again in a few seconds"
                    ) from None
                raise DeepMRInputError(
                    f"{self.path.parent} is in use by another deepmr run (pid {holder.get('pid')} on "
                    f"{holder.get('host', 'this host')}, started {holder.get('started', 'earlier')}); wait for "
                    f"it to finish or choose another --out (remove {self.path} only if that run is gone)"
                ) from None
            with os.fdopen(fd, "w") as fh:
                json.dump(me, fh)
            self.held = True
            return self
        raise DeepMRInputError(f"could not take the lock {self.path}; try again")

    def release(self, keep_token: bool = False) -> None:
        """Remove the lock if this object holds it; with ``keep_token``, mark it released instead
        (any later run takes it over and reads the stage token from it)."""
        if not self.held:
            return
        if keep_token:
            text = json.dumps({"released": True, "stage_token": self.token})
            tmp = self.path.with_name(f"{LOCK_NAME}.{os.getpid()}.released")
            fd = os.open(tmp, os.O_CREAT | os.O_TRUNC | os.O_WRONLY | os.O_NOFOLLOW, 0o644)
            with os.fdopen(fd, "w") as fh:
                fh.write(text)
            os.replace(tmp, self.path)
        else:
            self.path.unlink(missing_ok=True)
        self.held = False
