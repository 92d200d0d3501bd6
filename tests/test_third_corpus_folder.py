"""The run folder trusts nothing it finds (third bad-input corpus).

Each case plants something where a run looks: a symbolic link at the stage's name, a commit journal
(unsigned, or with a forged lock and token) naming paths outside ``--out``, a user's folder or a
finished run at the stage's name, links at ``chunks`` or the lock, a killed ``--force`` run, a chunk
file with a flipped bit or an edited array. Every case checks the files outside ``--out`` byte for
byte, and the outcome: a finished run, or one line naming the problem and the fix.
Runs use the tiny 40 bp factory model of ``tests/test_run_folder.py``.
"""

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from deepmr_kipoi import cli
from deepmr_kipoi.run import folder as rf
from tests import _helpers_pipeline as helpers
from tests.test_run_folder import _argv, _assert_same_tables, _killed_run

STAGE = rf.STAGE_TAG


def _tree(folder: Path) -> dict:
    """Every entry below ``folder`` (links not followed): md5 of files, targets of links."""
    out = {}
    for here, dirs, files in os.walk(folder):
        for name in dirs + files:
            p = Path(here) / name
            rel = str(p.relative_to(folder))
            if p.is_symlink():
                out[rel] = "-> " + os.readlink(p)
            elif p.is_file():
                out[rel] = hashlib.md5(p.read_bytes()).hexdigest()
            else:
                out[rel] = "dir"
    return out


@pytest.fixture(scope="module")
def ref(tmp_path_factory):
    base = tmp_path_factory.mktemp("third")
    fa = helpers.write_fasta(base / "in.fa", helpers.random_dna(8, 40, seed=3))
    for label, z in (("A", 1.96), ("B", 2.5)):
        assert cli.main(_argv(fa, base / label, z)) == 0
    return {"fa": fa, "A": base / "A", "B": base / "B"}


def _victim(tmp_path: Path) -> Path:
    victim = tmp_path / "victim"
    (victim / "chunks").mkdir(parents=True)
    for name in ("report.html", "run.json", "config.yaml", "notes.txt"):
        (victim / name).write_text(f"the user's {name}\n")
    (victim / "chunks" / "local_00000.parquet").write_bytes(b"not a chunk")
    return victim


def _one_line(capsys, *words):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    for w in words:
        assert w in err[0], err[0]


@pytest.mark.parametrize("existing", [False, True])
def test_symlink_at_the_stage_name_is_never_followed(ref, tmp_path, capsys, existing):
    victim = _victim(tmp_path)
    before = _tree(victim)
    out = tmp_path / "r"
    if existing:
        assert cli.main(_argv(ref["fa"], out)) == 0
    old = _tree(out) if existing else None
    os.symlink(victim, tmp_path / f".r{STAGE}")
    argv = _argv(ref["fa"], out, 2.5, *(["--force"] if existing else []))
    capsys.readouterr()
    assert cli.main(argv) == 2
    _one_line(capsys, f".r{STAGE}", "move it away")
    assert _tree(victim) == before
    assert os.readlink(tmp_path / f".r{STAGE}") == str(victim)
    if existing:
        assert not out.is_symlink() and _tree(out) == old
    else:
        assert not out.exists()


def _plant_journal(out: Path, journal: dict, token: str | None = None) -> None:
    stage = out / STAGE
    stage.mkdir(parents=True)
    (stage / rf.COMMIT).write_text(json.dumps(journal))
    if token is not None:  # a forged stage: the token in the stage and in a dead run's lock
        (stage / rf.TOKEN_FILE).write_text(token)
        (out / rf.LOCK_NAME).write_text(json.dumps({"pid": 2**22 + 7, "stage_token": token}))
        journal["token"] = token
        (stage / rf.COMMIT).write_text(json.dumps(journal))


def _journal(v: Path) -> dict:
    """Moves and removals outside ``out``: absolute, through ``..``."""
    md5 = hashlib.md5((v / "victim.txt").read_bytes()).hexdigest()
    return {
        "moves": ["../victim/victim.txt", str(v / "victim.txt")],
        "remove": {str(v / "victim.txt"): md5, "../victim/victim.txt": md5},
    }


@pytest.mark.parametrize("forged", [False, True], ids=["unsigned", "forged_lock_and_token"])
def test_planted_journal_touches_nothing_outside_out(ref, tmp_path, forged):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "victim.txt").write_text("precious\n")
    out = tmp_path / "r"
    assert cli.main(_argv(ref["fa"], out)) == 0
    (out / "victim").mkdir()  # what a move from ``out/.deepmr-stage/../victim`` would take
    (out / "victim" / "victim.txt").write_text("the attacker's\n")
    before = _tree(victim)
    _plant_journal(out, _journal(victim), "f" * 32 if forged else None)
    assert cli.main(_argv(ref["fa"], out, 2.5, "--force")) == 0
    assert _tree(victim) == before
    _assert_same_tables(out, ref["B"])


def test_planted_journal_in_place_is_refused_in_one_line(ref, tmp_path, capsys, monkeypatch):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "victim.txt").write_text("precious\n")
    out = tmp_path / "r"
    assert cli.main(_argv(ref["fa"], out)) == 0
    _plant_journal(out, _journal(victim))
    before, old = _tree(victim), _tree(out)
    monkeypatch.chdir(out)  # no sibling: the stage is out/.deepmr-stage
    capsys.readouterr()
    assert cli.main(_argv(ref["fa"], out, 2.5, "--force")) == 2
    _one_line(capsys, STAGE, "move it away")
    assert _tree(victim) == before and _tree(out) == old


def test_users_folder_named_like_the_stage_is_untouched(ref, tmp_path, capsys):
    mine = tmp_path / f".r{STAGE}"
    (mine / "sub").mkdir(parents=True)
    for name in ("config.yaml", "run.json", "notes.txt", "sub/data.csv"):
        (mine / name).write_text(f"mine: {name}\n")
    before = _tree(mine)
    out = tmp_path / "r"
    capsys.readouterr()
    assert cli.main(_argv(ref["fa"], out)) == 2
    _one_line(capsys, str(mine), "move it away")
    assert _tree(mine) == before and not out.exists()


def test_finished_run_at_the_stage_name_is_not_deleted(ref, tmp_path, capsys):
    other = tmp_path / f".r{STAGE}"
    assert cli.main(_argv(ref["fa"], other)) == 0
    before = _tree(other)
    out = tmp_path / "r"
    assert cli.main(_argv(ref["fa"], out)) == 2
    assert _tree(other) == before
    _assert_same_tables(other, ref["A"])


@pytest.mark.parametrize("name", ["chunks", "figures"])
def test_link_inside_out_is_never_written_through(ref, tmp_path, capsys, name):
    victim = _victim(tmp_path)
    before = _tree(victim)
    out = tmp_path / "r"
    out.mkdir()
    os.symlink(victim / "chunks" if name == "chunks" else victim, out / name)
    capsys.readouterr()
    assert cli.main(_argv(ref["fa"], out)) == 2
    _one_line(capsys, f"{out / name}", "move it away")
    assert _tree(victim) == before


def test_link_at_the_lock_name_is_refused(ref, tmp_path, capsys):
    victim = _victim(tmp_path)
    before = _tree(victim)
    out = tmp_path / "r"
    out.mkdir()
    os.symlink(victim / "notes.txt", out / rf.LOCK_NAME)
    capsys.readouterr()
    assert cli.main(_argv(ref["fa"], out)) == 2
    _one_line(capsys, rf.LOCK_NAME, "remove it")
    assert _tree(victim) == before and os.path.islink(out / rf.LOCK_NAME)


def _old_run(out: Path) -> dict:
    tree = _tree(out)
    return {k: v for k, v in tree.items() if k != rf.LOCK_NAME}


FORCE_KILLS = [
    ("chunk:1", 2.5, "sibling"),
    ("chunk:4", 2.5, "sibling"),
    ("before-swap", 2.5, "sibling"),
    ("chunk:2", 1.96, "sibling"),
    ("chunk:2", 2.5, "in_place"),
    ("outputs", 1.96, "in_place"),
]


@pytest.mark.parametrize("stop,z,where", FORCE_KILLS)
def test_force_killed_leaves_the_old_run_byte_identical(ref, tmp_path, stop, z, where):
    out = tmp_path / "r"
    assert cli.main(_argv(ref["fa"], out)) == 0
    before = _old_run(out)
    cwd = out if where == "in_place" else None
    assert _killed_run(_argv(ref["fa"], out, z, "--force"), stop=stop, cwd=cwd)
    after = {k: v for k, v in _old_run(out).items() if not k.startswith(STAGE)}
    assert after == before
    assert cli.main(_argv(ref["fa"], out, z, "--force")) == 0
    _assert_same_tables(out, ref["B" if z == 2.5 else "A"])


def _flip_bit_in_data_page(path: Path) -> None:
    """Flip one bit among the values of the ``estimate`` column (its dictionary page holds them):
    the first flip that leaves a file Parquet still reads, with a changed value."""
    meta = pq.ParquetFile(path).metadata
    names = [meta.row_group(0).column(j).path_in_schema for j in range(meta.num_columns)]
    col = meta.row_group(0).column(names.index("estimate"))
    start = col.dictionary_page_offset or col.data_page_offset
    original, data = pq.read_table(path), path.read_bytes()
    for offset in range(start + col.total_compressed_size - 1, start, -1):
        flipped = bytearray(data)
        flipped[offset] ^= 0x01
        path.write_bytes(bytes(flipped))
        try:
            if not pq.read_table(path).equals(original):
                return
        except (OSError, ValueError):
            pass
    raise AssertionError("no flip reads back")


def _edit_npz_value(path: Path) -> None:
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    name = next(k for k, v in arrays.items() if v.dtype.kind == "f" and v.size)
    flat = arrays[name].reshape(-1).copy()
    i = int(np.flatnonzero(np.isfinite(flat))[0])
    flat[i] = flat[i] + 1.0
    arrays[name] = flat.reshape(arrays[name].shape)
    np.savez_compressed(path, **arrays)


@pytest.mark.parametrize(
    "damage,name",
    [(_flip_bit_in_data_page, "local_00001.parquet"), (_edit_npz_value, "arrays_00001.npz")],
    ids=["parquet_bit_flip", "npz_value_edited"],
)
def test_damaged_chunk_is_computed_again(ref, tmp_path, caplog, damage, name):
    out = tmp_path / "r"
    assert _killed_run(_argv(ref["fa"], out), stop="chunk:3")
    damage(out / "chunks" / name)
    assert cli.main(_argv(ref["fa"], out)) == 0
    assert json.loads((out / "run.json").read_text())["chunks"]["resumed"] == [0, 2]
    _assert_same_tables(out, ref["A"])
