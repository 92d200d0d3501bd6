"""The lock of a run folder, and the check of an ``--out`` folder before anything is written.

:class:`RunLock` (``<folder>/.deepmr.lock``, created with ``O_EXCL``) keeps a second run out of a
folder in use; the message names the holder's pid, host and start time. A lock left by a process
that died on this host is taken over, and so is an empty or unreadable lock file older than
``LOCK_GRACE_S`` (a run killed while writing it); a lock naming its pid as plain text is read as
that pid; a folder named like the lock is refused.
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

    def __init__(self, folder: Path):
        self.path = Path(folder) / LOCK_NAME
        self.held = False

    def _holder(self) -> dict | None:
        try:
            text = self.path.read_text().strip()
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
        }
        for _ in range(3):
            if self.path.is_dir() or (self.path.exists() and not self.path.is_file()):
                raise DeepMRInputError(
                    f"{self.path} is not deepmr's lock file (a folder or special file of that name); "
                    "remove it or choose another --out"
                )
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder()
                if self._stale(holder, me["host"]):
                    logger.warning(
                        "taking over the stale lock %s (%s)", self.path, holder or "empty"
                    )
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

    def release(self) -> None:
        """Remove the lock if this object holds it."""
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False
