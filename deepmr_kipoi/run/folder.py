"""The run folder: the files a run owns, its lock, its chunk store, and how a finished run goes in.

A run's ``--out`` folder holds (the names are :mod:`~deepmr_kipoi.run.contents`'s)::

    .deepmr-folder.json          the folder record, written last: kind, run key, every file written (md5)
    .deepmr.lock                 held while a run works in the folder (pid, host, start time)
    run.json, config.yaml        the record of the run, and its resolved config
    global_effects.csv/.parquet, local_effects.parquet, effects.h5, report.html, figures/*.png
    chunks/manifest.json         the key the chunk files belong to (what messages compare)
    chunks/local_00000.parquet   chunk 0's local table; its chunk key in the Parquet metadata
    chunks/arrays_00000.npz      chunk 0's arrays; its chunk key as the array ``chunk_key``

Guarantees:

* **Nothing stale.** Every chunk file carries its key and is reused only when it reads whole and
  carries the key of the run at hand (:mod:`~deepmr_kipoi.run.chunk_store`). A folder whose record or
  chunks belong to another key (or to no readable record or manifest) is refused, or replaced
  under ``--force``.
* **All or nothing.** A run builds its complete new folder in a stage and swaps it in at once:
  a sibling ``.<out>.deepmr-stage`` exchanged with ``out`` in one ``renameat2(RENAME_EXCHANGE)``
  (files of ``out`` the new run does not replace are hard-linked into the stage first). Where no
  sibling can be used (the parent is not writable, ``out`` is a mount point or holds the working
  folder, or the file system cannot exchange), the stage is ``out/.deepmr-stage`` and a commit
  marker makes the moves a journal that the next start finishes. A killed run leaves the old run or
  the new one; its stage is cleaned (or, for ``--force``, its chunks resumed) by the next start.
* **Nothing found on disk trusted.** A stage (or commit journal) is acted on only when it is a real
  folder carrying the random token of the run that made it, which that run also keeps in its lock
  (:data:`~deepmr_kipoi.run.contents.TOKEN_FILE`); a folder, file or link at a stage's name that
  does not is never entered, moved or removed: the run refuses in one line. No symbolic link found
  in the folder is followed; journal entries that are absolute, hold ``..`` or pass through a link
  are ignored, so nothing outside ``out`` is moved or removed. A ``--force`` run computes its chunks
  in its stage: killed at any moment, the old run and its chunks stay byte-identical.
* **Nothing foreign lost.** Files the tool did not write (or that changed since it wrote them, by
  md5) are never replaced or deleted: a run refuses a folder where one sits at the name of a table,
  ``run.json``, ``effects.h5`` or ``report.html``; a user's ``config.yaml`` or figure is kept and the
  run's own is not written (with a note); every other file stays where it is across the swap.

The lock is :mod:`~deepmr_kipoi.run.lock`'s; ``DEEPMR_STOP_AT`` (:func:`~deepmr_kipoi.run.chunk_store.stop_point`)
stops a run at a named point for the tests.
"""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
import re
import secrets
import shutil
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from deepmr_kipoi import results
from deepmr_kipoi.errors import DeepMRInputError
from deepmr_kipoi.run.chunk_store import (
    CHUNK_FILE,
    CHUNKS,
    EFFECTS_FILE,
    FORMAT,
    ChunkStore,
    RunKey,
    stop_point,
)
from deepmr_kipoi.run.contents import (
    COMMIT,
    COMPARE_FILES,
    FALLBACK_ERRORS,
    OUTPUT_FILES,
    RECORD,
    STAGE_TAG,
    TOKEN_FILE,
    YIELDING,
    Contents,
    copy_empty_dirs,
    exchange,
    file_md5_or_none,
    holds_run,
    inside,
    is_chunk_name,
    is_own_stage,
    link_or_copy,
    pending_commit,
    read_nofollow,
    read_record,
    real_dir,
    remove_empty_dirs,
    same_file,
    scan,
    walk_files,
    write_token,
)
from deepmr_kipoi.run.lock import LOCK_NAME, RunLock, check_out_dir, pid_alive

__all__ = [
    "OUTPUT_FILES",
    "RECORD",
    "STAGE_TAG",
    "ChunkStore",
    "RunFolder",
    "RunKey",
    "RunLock",
    "check_out_dir",
    "holds_run",
    "pending_commit",
    "read_record",
    "remove_created",
    "scan",
    "stop_point",
]

logger = logging.getLogger(__name__)

_LEGACY_STAGE = re.compile(r"^\.(?P<name>.+)\.deepmr-new-(?P<pid>\d+)$")


# ---- the run folder ----------------------------------------------------------------------------


class RunFolder:
    """A ``--out`` folder while a run (or a comparison) works in it; see the module docstring.

    Use: :meth:`open` (checks, lock, recovery of a killed run, the stage and chunk store), write the
    outputs into :attr:`stage`, :meth:`commit`, and :meth:`close` in a ``finally``.

    Parameters
    ----------
    path : path-like
        The folder (a symlink is followed: the swap happens where the folder really is).
    kind : {"run", "compare"}
    """

    def __init__(self, path: str | os.PathLike, kind: str = "run"):
        self.requested = Path(path)
        self.path = Path(os.path.realpath(path))
        self.kind = kind
        self.key: RunKey | None = None
        self.stage: Path | None = None
        self.store: ChunkStore | None = None
        self.in_place = False
        self.replacing = False
        self.made_dir = False
        self.committed = False
        self.lock: RunLock | None = None
        self.notes: list[str] = []
        self._created: list[Path] = []
        # this run's stage token (held in memory and in the lock); the token of the run before
        self.token = secrets.token_hex(16)
        self.previous_token: str | None = None

    # -- opening -------------------------------------------------------------------------------

    def open(
        self,
        key: RunKey | None = None,
        bounds: Sequence[tuple[int, int]] = (),
        *,
        force: bool = False,
        effects_from: Path | None = None,
    ) -> RunFolder:
        """Check the folder, take its lock, finish or clean what a killed run left, make the stage.

        Parameters
        ----------
        key : RunKey, optional
            The run's key (None for a comparison: no chunks).
        bounds : sequence of (int, int)
            The run's chunks.
        force : bool
            Replace results of another key (or an older deepmr) instead of refusing. Results of
            the same ISM effects and other analysis settings are replaced without it (with a note):
            their stored effects are reused.
        effects_from : Path, optional
            Another run's chunk folder whose stored effects the run may reuse (a reanalysis).

        Raises
        ------
        DeepMRInputError
            In one line: the folder cannot be written, is in use, holds results of another key
            (without ``force``), a comparison or run of the other kind, or a foreign file where
            the run writes a table or record.
        """
        check_out_dir(self.requested)
        if not self.path.exists():
            self.path.mkdir(parents=True)
            self.made_dir = True
        self.key = key
        try:
            self.lock = RunLock(self.path, self.token).acquire()
            token = (self.lock.previous or {}).get("stage_token")
            self.previous_token = token if isinstance(token, str) and token else None
            self.in_place = not self._sibling_usable()
            self._recover()
            self._check(scan(self.path), bounds, force)
            self._make_stage()
            if key is not None:
                chunk_dir = (self.stage if self.replacing else self.path) / CHUNKS
                sources = [self.path / CHUNKS] + ([Path(effects_from)] if effects_from else [])
                self.store = ChunkStore(chunk_dir, key, bounds, effects_from=sources)
                self._created += self.store.prepare()
        except BaseException:
            self.close(computed=False)
            raise
        return self

    def _sibling(self) -> Path:
        return self.path.parent / f".{self.path.name}{STAGE_TAG}"

    def _sibling_usable(self) -> bool:
        if not os.access(self.path.parent, os.W_OK | os.X_OK) or os.path.ismount(self.path):
            return False
        with contextlib.suppress(OSError):
            cwd = Path.cwd().resolve()
            return not (cwd == self.path or self.path in cwd.parents)
        return True

    def _check(self, c: Contents, bounds, force: bool) -> None:
        if self.kind == "compare":
            if c.kind in ("run", "old", "damaged") or holds_run(self.path):
                raise DeepMRInputError(
                    f"{self.path} holds a Deep MR run; choose another --out for the comparison"
                )
            self._refuse_clashes(c, COMPARE_FILES)
            return
        if c.kind == "compare":
            raise DeepMRInputError(
                f"{self.path} holds a comparison (deepmr compare); choose another --out"
            )
        why = None
        if c.kind == "old":
            why = "results without a folder record (of an older deepmr version, or whose record was removed)"
        elif c.kind == "damaged":
            why = f"a run whose folder record {RECORD} does not read"
        elif c.key is not None and (c.ours or self._data_chunks(c)):
            why = self.key.difference(c.key)
            if why is not None and self.key.same_effects(c.key):
                self._note(
                    f"{self.path} holds results of other analysis settings; its stored ISM effects "
                    "are reused and the analysis is redone"
                )
                self.replacing, why = True, None
        elif self._data_chunks(c):
            why = self._unkeyed(c, bounds)
        if why is not None:
            if not force:
                raise DeepMRInputError(
                    f"{self.path} holds {why}; choose another --out, or pass --force to recompute and "
                    "replace them"
                )
            self.replacing = True
        if force and why is None and (c.ours or self._data_chunks(c)):
            self.replacing = (
                True  # --force recomputes in the stage: the old chunks stay as they are
            )
        self._refuse_links()
        self._refuse_clashes(c, [n for n in OUTPUT_FILES if n not in YIELDING])
        # the demo's own inputs/ go without a note; a user's files in a new run folder get one
        shown = [str(f) for f in c.foreign if c.kind is None and f.parts[0] != "inputs"]
        if shown:
            more = ", ..." if len(shown) > 3 else ""
            self._note(
                f"{self.path} holds {len(shown)} file(s) deepmr did not write ({', '.join(shown[:3])}"
                f"{more}); they are left alone"
            )

    @staticmethod
    def _data_chunks(c: Contents) -> list[Path]:
        return [f for f in c.chunk_files if CHUNK_FILE.match(f.name) or EFFECTS_FILE.match(f.name)]

    def _unkeyed(self, c: Contents, bounds) -> str | None:
        """Chunk files without a readable manifest: acceptable only when each carries its key."""
        probe = ChunkStore(self.path / CHUNKS, self.key, bounds)
        for f in self._data_chunks(c):
            if not CHUNK_FILE.match(f.name):
                continue  # an effects file carries its own key, checked when it is read
            i = int(CHUNK_FILE.match(f.name).group(2))
            if f.suffix == ".parquet" and (
                i >= len(bounds) or probe.file_key(self.path / f) != probe.chunk_key(i)
            ):
                return "chunk files of another run (and no readable manifest of them)"
        return None

    def _refuse_links(self) -> None:
        """Folders the run writes into must be real folders: a link there would carry its files
        elsewhere."""
        for name in (CHUNKS, "figures"):
            p = self.path / name
            if os.path.lexists(p) and not real_dir(p):
                raise DeepMRInputError(
                    f"{p} is a link or a file, not a folder; deepmr writes its {name} there and "
                    "never through a link it did not make: move it away or choose another --out"
                )

    def _refuse_clashes(self, c: Contents, names: Iterable[str]) -> None:
        clash = sorted(str(f) for f in c.foreign if str(f) in set(names))
        if clash:
            raise DeepMRInputError(
                f"{self.path} holds {', '.join(clash)}, which deepmr did not write (or which changed "
                "since); move them away or choose another --out"
            )

    def _owned(self, stage: Path) -> bool:
        """A stage made by this run or by the run whose lock this one took over."""
        return is_own_stage(stage, self.token) or is_own_stage(stage, self.previous_token)

    def _make_stage(self) -> None:
        stage = self.path / STAGE_TAG if self.in_place else self._sibling()
        other = self._sibling() if self.in_place else self.path / STAGE_TAG
        if self._owned(other):
            shutil.rmtree(other)
        if os.path.lexists(stage) and not self._owned(stage):
            raise DeepMRInputError(
                f"{stage} exists and was not made by deepmr for this --out (a folder, file or link "
                "of the name deepmr stages a run under); move it away or choose another --out"
            )
        if os.path.lexists(stage) and not self.replacing:
            shutil.rmtree(stage)
        if not os.path.lexists(stage):
            os.mkdir(stage)
        write_token(stage, self.token)
        self.stage = stage

    # -- recovering what a killed run left -----------------------------------------------------

    def _recover(self) -> None:
        for p in self.path.parent.glob(f".{glob.escape(self.path.name)}.deepmr-new-*"):
            m = _LEGACY_STAGE.match(p.name)
            if m and real_dir(p) and not pid_alive(int(m.group("pid"))):
                shutil.rmtree(p, ignore_errors=True)  # the earlier layout staged only its own files
        inner = self.path / STAGE_TAG
        for stage in (inner, self._sibling()):
            if not is_own_stage(stage, self.previous_token):
                continue  # not a stage of the run before this one: never entered
            write_token(stage, self.token)  # a kill from here on leaves it to the next run
            if stage == inner and os.path.lexists(inner / COMMIT):
                self._roll_forward(inner)
            if os.path.lexists(stage):
                self._clean_stage(stage, keep_chunks=True)
        if (
            not self.in_place
            and os.path.lexists(self.path / TOKEN_FILE)
            and not real_dir(self.path / TOKEN_FILE)
        ):
            os.unlink(self.path / TOKEN_FILE)  # left by a run killed amid its swap

    def _tool_names(self, stage: Path) -> set[str]:
        names = set(OUTPUT_FILES) | {RECORD, LOCK_NAME, COMMIT, TOKEN_FILE}
        for folder in (stage, self.path):
            names |= set((read_record(folder) or {}).get("files") or {})
        with contextlib.suppress(OSError, ValueError, TypeError, AttributeError):
            names |= set(json.loads((stage / "run.json").read_text()).get("figures") or [])
        return names

    def _clean_stage(self, stage: Path, *, keep_chunks: bool) -> None:
        """Empty a stage (or a folder swapped out): links of the run folder's files and the tool's
        files go, a user's file that only it holds goes back into the run folder."""
        names = self._tool_names(stage)
        left = False
        for i, rel in enumerate(walk_files(stage)):
            src, twin = stage / rel, self.path / rel
            if i == 1:
                stop_point("cleanup")
            if str(rel) == TOKEN_FILE:
                continue  # goes last: the stage stays this run's until it is empty
            if is_chunk_name(rel) and keep_chunks and not same_file(src, twin):
                continue
            if same_file(src, twin) or str(rel) in names or is_chunk_name(rel):
                src.unlink()
            elif not os.path.lexists(twin) and inside(self.path, str(rel)) is not None:
                twin.parent.mkdir(parents=True, exist_ok=True)
                os.rename(src, twin)
                self._note(
                    f"{rel} was found outside {self.path} after an interrupted run and moved back"
                )
            else:
                left = True
        if left:
            self._note(
                f"{stage} holds files of yours that differ from those in {self.path}; it is left as is"
            )
            return
        kept = keep_chunks and any(is_chunk_name(r) for r in walk_files(stage))
        if not kept:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(stage / TOKEN_FILE)
        remove_empty_dirs(stage, keep=(stage / CHUNKS) if kept else None)

    # -- committing ----------------------------------------------------------------------------

    def commit(self) -> None:
        """Swap the finished run built in :attr:`stage` in, whole (see the module docstring)."""
        self._drop_clashes()
        record = {
            "format": FORMAT,
            "kind": self.kind,
            "key": None if self.key is None else self.key.to_dict(),
            "files": self._record_files(),
            "written": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        if self.in_place:
            self._commit_journal(record)
        else:
            try:
                self._commit_exchange(record)
            except OSError as err:
                if err.errno not in FALLBACK_ERRORS or not self.stage.exists():
                    raise
                logger.info("cannot exchange folders here (%s); committing in place", err)
                inner = self.path / STAGE_TAG
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path / TOKEN_FILE)
                if os.path.lexists(inner) and not self._owned(inner):
                    raise DeepMRInputError(
                        f"{inner} exists and was not made by deepmr for this --out; move it away "
                        "or choose another --out"
                    ) from None
                if os.path.lexists(inner):
                    shutil.rmtree(inner)
                os.rename(self.stage, inner)
                self.stage, self.in_place = inner, True
                self._commit_journal(record)
        self.committed = True

    def _drop_clashes(self) -> None:
        for rel in scan(self.path).foreign:
            mine = self.stage / rel
            if mine.is_file() and not same_file(mine, self.path / rel):
                mine.unlink()
                self._note(
                    f"{self.path / rel} is yours and is kept; the run's own {rel} was not written"
                )

    def _record_files(self) -> dict:
        files = {
            str(rel): (None if is_chunk_name(rel) else file_md5_or_none(self.stage / rel))
            for rel in walk_files(self.stage)
            if str(rel) not in (RECORD, COMMIT, TOKEN_FILE)
        }
        if self.store is not None and not self.replacing:
            files.update(
                {
                    str(rel): None
                    for rel in scan(self.path).chunk_files
                    if not rel.name.endswith(results.TMP_TAG)
                }
            )
        return dict(sorted(files.items()))

    def _commit_exchange(self, record: dict) -> None:
        stage = self.stage
        now = scan(self.path)
        carry = list(now.foreign) + [Path(LOCK_NAME)]
        if not self.replacing:
            carry += [f for f in now.chunk_files if not f.name.endswith(results.TMP_TAG)]
        for rel in carry:
            if not os.path.lexists(stage / rel) and os.path.lexists(self.path / rel):
                link_or_copy(self.path / rel, stage / rel)
        copy_empty_dirs(self.path, stage)
        stop_point("linked")
        results.write_json(stage / RECORD, record)
        shutil.copymode(self.path, stage)
        # the folder swapped out carries the token too, so a kill right after the swap leaves a
        # stage the next run recognises
        write_token(self.path, self.token)
        stop_point("before-swap")
        exchange(stage, self.path)
        stop_point("after-swap")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path / TOKEN_FILE)
        self._clean_stage(stage, keep_chunks=False)

    def _commit_journal(self, record: dict) -> None:
        stage = self.stage
        old = scan(self.path)
        new_files = set(record["files"])
        remove = {
            str(f): file_md5_or_none(self.path / f) for f in old.ours if str(f) not in new_files
        }
        if self.replacing:
            remove.update({str(f): None for f in self._data_chunks(old) if str(f) not in new_files})
        results.write_json(stage / RECORD, record)
        skip = (RECORD, COMMIT, TOKEN_FILE)
        moves = [str(r) for r in walk_files(stage) if str(r) not in skip] + [RECORD]
        results.write_json(stage / COMMIT, {"token": self.token, "moves": moves, "remove": remove})
        stop_point("journal")
        self._roll_forward(stage)

    def _roll_forward(self, stage: Path) -> None:
        """Finish an in-place commit from its journal (idempotent: a killed roll-forward reruns).

        Only a journal written by a run of this folder counts (its token is the stage's); entries
        outside the folder (absolute, ``..``, through a link) are ignored.
        """
        try:
            journal = json.loads((read_nofollow(stage / COMMIT) or b"").decode())
        except (ValueError, UnicodeDecodeError):
            return
        if not isinstance(journal, dict) or journal.get("token") not in (
            self.token,
            self.previous_token,
        ):
            return
        moves = journal.get("moves") if isinstance(journal.get("moves"), list) else []
        for i, rel in enumerate(moves):
            src, dst = inside(stage, rel), inside(self.path, rel)
            if src is not None and dst is not None and os.path.lexists(src):
                if not same_file(src, dst) and not real_dir(dst):
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(src, dst)
            if i == 0:
                stop_point("journal-moves")
        remove = journal.get("remove") if isinstance(journal.get("remove"), dict) else {}
        for rel, md5 in remove.items():
            p = inside(self.path, rel)
            if (
                p is not None
                and p.is_file()
                and not p.is_symlink()
                and (md5 is None and is_chunk_name(Path(rel)) or md5 == file_md5_or_none(p))
            ):
                p.unlink()
        (stage / COMMIT).unlink(missing_ok=True)
        shutil.rmtree(stage, ignore_errors=True)

    # -- closing -------------------------------------------------------------------------------

    def close(self, *, computed: bool, keep_stage: bool | None = None) -> None:
        """Release the folder; when not committed, remove the stage (keeping the chunks of a
        ``--force`` run that computed some, unless ``keep_stage`` is False; None: kept unless the
        run is being refused for its input, which leaves the folder as it found it) and, when
        nothing was computed, what this run created."""
        if keep_stage is None:
            keep_stage = not isinstance(sys.exc_info()[1], DeepMRInputError)
        try:
            if not self.committed and self.stage is not None and self.stage.exists():
                if self.replacing and computed and keep_stage:
                    self._clean_stage(self.stage, keep_chunks=True)
                else:
                    shutil.rmtree(self.stage, ignore_errors=True)
            if not self.committed and not computed:
                for p in reversed(self._created):
                    if p.is_dir() and not any(p.iterdir()):
                        p.rmdir()
                    elif p.is_file():
                        p.unlink()
        finally:
            if self.lock is not None:
                # a stage left behind keeps its token in the lock, for the next run
                left = any(self._owned(p) for p in (self.path / STAGE_TAG, self._sibling()))
                self.lock.release(keep_token=left)
            if (
                self.made_dir
                and not self.committed
                and self.path.is_dir()
                and not any(self.path.iterdir())
            ):
                self.path.rmdir()

    def _note(self, text: str) -> None:
        logger.warning(text)
        self.notes.append(text)


def remove_created(out_dir: Path | None, made_dir: bool, created: list[Path]) -> None:
    """Remove the files and folders a call created, newest first; the folder itself only when empty
    and created by that call (files another process put there meanwhile survive)."""
    if out_dir is None:
        return
    for p in reversed(created):
        if p.is_dir() and not any(p.iterdir()):
            p.rmdir()
        elif p.is_file():
            p.unlink()
    if made_dir and out_dir.is_dir() and not any(out_dir.iterdir()):
        out_dir.rmdir()
