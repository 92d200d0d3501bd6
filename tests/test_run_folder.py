"""The run folder: killed at any point a run leaves the old run or the new one, never a mix; a rerun
gives the tables of an uninterrupted run; files the tool did not write are never replaced or lost.

Kills are real ``SIGKILL`` s: a forked child runs ``deepmr run`` and is killed at a named point
(``DEEPMR_STOP_AT``) or after a random delay; one case runs a separate interpreter. Everything runs
on the tiny 40 bp factory model (8 sequences, 4 chunks, a 10 bp window, no figures).
"""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from deepmr_kipoi import cli
from deepmr_kipoi.run import folder as rf
from tests import _helpers_pipeline as helpers

HERE = Path(__file__).parent
FACTORY = f"{HERE / '_helpers_pipeline.py'}:tiny_model"
TABLES = ("global_effects.parquet", "local_effects.parquet", "global_effects.csv")


def _argv(fa, out, z=1.96, *extra):
    return [
        "run",
        "--model",
        FACTORY,
        "--fasta",
        str(fa),
        "--window",
        "10",
        "20",
        "--chunk-size",
        "2",
        "--no-figures",
        "--no-report",
        "--quiet",
        "--z",
        str(z),
        "--out",
        str(out),
        *map(str, extra),
    ]


@pytest.fixture(scope="module")
def ref(tmp_path_factory):
    """Uninterrupted runs of configuration A (z 1.96) and B (z 2.5), and the FASTA they read."""
    base = tmp_path_factory.mktemp("folder")
    fa = helpers.write_fasta(base / "in.fa", helpers.random_dna(8, 40, seed=3))
    for label, z in (("A", 1.96), ("B", 2.5)):
        assert cli.main(_argv(fa, base / label, z)) == 0
    return {"fa": fa, "A": base / "A", "B": base / "B", "base": base}


def _tables(folder):
    return {
        t: (pd.read_parquet if t.endswith("parquet") else pd.read_csv)(folder / t) for t in TABLES
    }


def _assert_same_tables(folder, reference):
    got, want = _tables(folder), _tables(reference)
    for t in TABLES:
        pd.testing.assert_frame_equal(got[t], want[t], check_exact=True)


def _which_run(folder, ref):
    """Which whole run a folder holds: None (no finished run), "A" or "B"; fails on a mix."""
    present = [n for n in rf.OUTPUT_FILES if (folder / n).exists()]
    if not present:
        assert not (folder / rf.RECORD).exists()
        return None
    record = rf.read_record(folder)
    assert record is not None, "tables without the folder record"
    listed = set(record["files"])
    for name in present:
        assert name in listed and record["files"][name] == rf.file_md5_or_none(folder / name), name
    z = json.loads((folder / "run.json").read_text())["config"]["z"]
    label = {1.96: "A", 2.5: "B"}[z]
    _assert_same_tables(folder, ref[label])
    key = rf.RunKey(record["key"]["config_hash"], None, record["key"]["inputs"])
    store = rf.ChunkStore(folder / rf.CHUNKS, key, [(0, 2), (2, 4), (4, 6), (6, 8)])
    for i in range(4):
        assert store.file_key(store.local_path(i)) == store.chunk_key(i)
    return label


def _killed_run(argv, stop=None, delay=None, cwd=None):
    """Run ``deepmr`` in a forked child killed at ``stop`` (or after ``delay`` s); True if killed."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 3
        try:
            if stop:
                os.environ["DEEPMR_STOP_AT"] = stop
            if cwd:
                os.chdir(cwd)
            code = cli.main(argv)
        finally:
            os._exit(code)
    if delay is not None:
        time.sleep(delay)
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    return os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL


def _user_files(out):
    (out / "notes.txt").write_text("mine")
    (out / "figures").mkdir(exist_ok=True)
    (out / "figures" / "mine.png").write_bytes(b"\x89PNG mine")
    (out / "deep" / "er").mkdir(parents=True, exist_ok=True)
    (out / "deep" / "er" / "data.csv").write_text("a,b\n1,2\n")
    (out / "empty_dir").mkdir(exist_ok=True)
    if not (out / "link").exists():
        os.symlink("notes.txt", out / "link")


def _assert_user_files(out):
    assert (out / "notes.txt").read_text() == "mine"
    assert (out / "figures" / "mine.png").read_bytes() == b"\x89PNG mine"
    assert (out / "deep" / "er" / "data.csv").read_text() == "a,b\n1,2\n"
    assert (out / "empty_dir").is_dir() and os.readlink(out / "link") == "notes.txt"


def _no_leftovers(out):
    assert not (out / rf.LOCK_NAME).exists()
    assert not (out.parent / f".{out.name}{rf.STAGE_TAG}").exists()
    assert not (out / rf.STAGE_TAG).exists()


FIRST_RUN_STOPS = [
    "chunk:1",
    "chunk:3",
    "outputs",
    "linked",
    "before-swap",
    "after-swap",
    "cleanup",
]


@pytest.mark.parametrize("stop", FIRST_RUN_STOPS)
def test_first_run_killed_then_rerun(ref, tmp_path, stop):
    out = tmp_path / "r"
    assert _killed_run(_argv(ref["fa"], out), stop=stop)
    expected = "A" if stop in ("after-swap", "cleanup") else None
    assert _which_run(out, ref) == expected
    assert cli.main(_argv(ref["fa"], out)) == 0
    assert _which_run(out, ref) == "A"
    _no_leftovers(out)


FORCE_STOPS = ["chunk:1", "chunk:4", "outputs", "linked", "before-swap", "after-swap", "cleanup"]


@pytest.mark.parametrize("stop", FORCE_STOPS)
def test_force_killed_leaves_old_or_new_run_then_rerun(ref, tmp_path, stop):
    out = tmp_path / "r"
    assert cli.main(_argv(ref["fa"], out)) == 0
    _user_files(out)
    assert _killed_run(_argv(ref["fa"], out, 2.5, "--force"), stop=stop)
    assert _which_run(out, ref) == ("B" if stop in ("after-swap", "cleanup") else "A")
    _assert_user_files(out)
    assert cli.main(_argv(ref["fa"], out, 2.5, "--force")) == 0
    assert _which_run(out, ref) == "B"
    _assert_user_files(out)
    _no_leftovers(out)


def test_killed_force_run_resumes_its_own_chunks(ref, tmp_path, caplog):
    out = tmp_path / "r"
    assert cli.main(_argv(ref["fa"], out)) == 0
    assert _killed_run(_argv(ref["fa"], out, 2.5, "--force"), stop="chunk:3")
    stage = out.parent / f".{out.name}{rf.STAGE_TAG}"
    assert sorted(p.name for p in (stage / "chunks").glob("local_*")) == [
        f"local_0000{i}.parquet" for i in range(3)
    ]
    assert cli.main(_argv(ref["fa"], out, 2.5, "--force")) == 0
    assert json.loads((out / "run.json").read_text())["chunks"]["resumed"] == [0, 1, 2]
    assert _which_run(out, ref) == "B"


@pytest.mark.parametrize("stop", ["journal", "journal-moves", "chunk:2", "outputs"])
def test_in_place_commit_killed_is_finished_by_the_next_run(ref, tmp_path, stop):
    """Run from inside the folder: no sibling stage; the commit is a journal the next start ends."""
    out = tmp_path / "r"
    assert cli.main(_argv(ref["fa"], out)) == 0
    _user_files(out)
    assert _killed_run(_argv(ref["fa"], out, 2.5, "--force"), stop=stop, cwd=out)
    assert rf.pending_commit(out) == stop.startswith("journal")
    assert not (out.parent / f".{out.name}{rf.STAGE_TAG}").exists()
    assert cli.main(_argv(ref["fa"], out, 2.5, "--force")) == 0
    assert _which_run(out, ref) == "B"
    _assert_user_files(out)
    _no_leftovers(out)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_force_killed_at_a_random_moment(ref, tmp_path, seed):
    out = tmp_path / "r"
    assert cli.main(_argv(ref["fa"], out)) == 0
    tick = time.perf_counter()
    assert cli.main(_argv(ref["fa"], tmp_path / "timing", 2.5)) == 0
    duration = time.perf_counter() - tick
    _killed_run(
        _argv(ref["fa"], out, 2.5, "--force"), delay=random.Random(seed).uniform(0, duration)
    )
    assert _which_run(out, ref) in ("A", "B")
    assert cli.main(_argv(ref["fa"], out, 2.5, "--force")) == 0
    assert _which_run(out, ref) == "B"
    _no_leftovers(out)


def test_separate_interpreter_killed_inside_the_swap(ref, tmp_path):
    out = tmp_path / "r"
    assert cli.main(_argv(ref["fa"], out)) == 0
    env = {**os.environ, "DEEPMR_STOP_AT": "before-swap"}
    proc = subprocess.run(
        [sys.executable, "-m", "deepmr_kipoi.cli", *_argv(ref["fa"], out, 2.5, "--force")],
        env=env,
        capture_output=True,
        timeout=300,
    )
    assert proc.returncode == -signal.SIGKILL
    assert _which_run(out, ref) == "A"
    assert cli.main(_argv(ref["fa"], out, 2.5, "--force")) == 0
    assert _which_run(out, ref) == "B"


def test_no_exchange_falls_back_to_the_journal(ref, tmp_path, monkeypatch):
    out = tmp_path / "r"
    assert cli.main(_argv(ref["fa"], out)) == 0
    _user_files(out)

    def unsupported(a, b):
        raise OSError(22, "Invalid argument")

    monkeypatch.setattr(rf, "exchange", unsupported)
    assert cli.main(_argv(ref["fa"], out, 2.5, "--force")) == 0
    assert _which_run(out, ref) == "B"
    _assert_user_files(out)
    _no_leftovers(out)


def test_symlinked_out_swaps_the_real_folder(ref, tmp_path):
    real = tmp_path / "real"
    assert cli.main(_argv(ref["fa"], real)) == 0
    os.symlink(real, tmp_path / "alias")
    assert cli.main(_argv(ref["fa"], tmp_path / "alias", 2.5, "--force")) == 0
    assert os.readlink(tmp_path / "alias") == str(real)
    assert _which_run(real, ref) == "B"
    _no_leftovers(real)


def test_legacy_stage_of_a_dead_run_is_removed(ref, tmp_path):
    out = tmp_path / "r"
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    legacy = tmp_path / f".r.deepmr-new-{pid}"
    (legacy / "chunks").mkdir(parents=True)
    (legacy / "run.json").write_text("{}")
    assert cli.main(_argv(ref["fa"], out)) == 0
    assert not legacy.exists()


# ---- files the tool did not write --------------------------------------------------------------


def _one_line_error(capsys, words):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    assert words in err[0], err[0]
    return err[0]


@pytest.mark.parametrize(
    "name",
    [
        "run.json",
        "report.html",
        "global_effects.csv",
        "global_effects.parquet",
        "local_effects.parquet",
        "effects.h5",
    ],
)
def test_first_run_refuses_a_folder_with_a_users_file_of_a_result_name(ref, tmp_path, capsys, name):
    out = tmp_path / "mine"
    out.mkdir()
    (out / name).write_text("the user's own file\n")
    (out / "other.txt").write_text("other\n")
    assert cli.main(_argv(ref["fa"], out)) == 2
    _one_line_error(capsys, f"holds {name}, which deepmr did not write")
    assert sorted(p.name for p in out.iterdir()) == sorted([name, "other.txt"])
    assert (out / name).read_text() == "the user's own file\n"


def test_users_config_yaml_is_kept_with_a_note(ref, tmp_path, caplog):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "config.yaml").write_text("# my notes, not a deepmr config\n")
    assert cli.main([a for a in _argv(ref["fa"], out) if a != "--quiet"]) == 0
    assert (out / "config.yaml").read_text() == "# my notes, not a deepmr config\n"
    assert (
        f"{out / 'config.yaml'} is yours and is kept; the run's own config.yaml was not written"
        in caplog.text
    )
    _assert_same_tables(out, ref["A"])
    assert "config.yaml" not in rf.read_record(out)["files"]


def test_first_run_beside_users_files_leaves_them_with_a_note(ref, tmp_path, caplog):
    out = tmp_path / "mine"
    out.mkdir()
    _user_files(out)
    assert cli.main([a for a in _argv(ref["fa"], out) if a != "--quiet"]) == 0
    _assert_user_files(out)
    assert (
        f"{out} holds 4 file(s) deepmr did not write (deep/er/data.csv, figures/mine.png, link, ...); they are left alone"
        in caplog.text
    )
    _assert_same_tables(out, ref["A"])
    caplog.clear()
    assert cli.main([a for a in _argv(ref["fa"], out) if a != "--quiet"]) == 0  # a rerun: no note
    assert "left alone" not in caplog.text


def test_hand_written_config_in_its_own_out_folder_is_never_replaced(ref, tmp_path, capsys):
    folder = tmp_path / "study"
    folder.mkdir()
    text = (
        f"# my study: the tiny model, z at its default\nmodel: '{FACTORY}'\nfasta: '{ref['fa']}'\n"
        "window: [10, 20]\nchunk_size: 2\nfigures: false\nreport: false\nout: .\n"
    )
    (folder / "config.yaml").write_text(text)
    for _ in range(2):  # the first run and a rerun (resume)
        assert cli.main(["run", "--config", str(folder / "config.yaml"), "--quiet"]) == 0
        assert (folder / "config.yaml").read_text() == text
    _assert_same_tables(folder, ref["A"])
    assert json.loads((folder / "run.json").read_text())["chunks"]["resumed"] == [0, 1, 2, 3]


def test_a_changed_result_file_is_no_longer_the_tools(ref, tmp_path, capsys):
    out = tmp_path / "r"
    assert cli.main(_argv(ref["fa"], out)) == 0
    (out / "global_effects.csv").write_text("edited by hand\n")
    assert cli.main(_argv(ref["fa"], out)) == 2
    _one_line_error(
        capsys, "global_effects.csv, which deepmr did not write (or which changed since)"
    )
    assert (out / "global_effects.csv").read_text() == "edited by hand\n"


def test_compare_into_a_run_folder_is_refused(ref, tmp_path, capsys):
    before = {p: p.read_bytes() for p in ref["A"].rglob("*") if p.is_file()}
    assert (
        cli.main(["compare", str(ref["A"]), str(ref["B"]), "--out", str(ref["A"]), "--quiet"]) == 2
    )
    _one_line_error(capsys, "holds a Deep MR run; choose another --out for the comparison")
    assert {p: p.read_bytes() for p in ref["A"].rglob("*") if p.is_file()} == before


def test_compare_refuses_users_report_and_replaces_its_own(ref, tmp_path, capsys):
    out = tmp_path / "cmp"
    out.mkdir()
    (out / "report.html").write_text("mine")
    argv = ["compare", str(ref["A"]), str(ref["B"]), "--out", str(out), "--quiet", "--no-figures"]
    assert cli.main(argv) == 2
    _one_line_error(capsys, "holds report.html, which deepmr did not write")
    (out / "report.html").unlink()
    (out / "notes.txt").write_text("mine")
    assert cli.main(argv) == 0 and cli.main(argv) == 0  # a comparison replaces its own files
    assert (out / "notes.txt").read_text() == "mine" and rf.read_record(out)["kind"] == "compare"
    assert cli.main(_argv(ref["fa"], out)) == 2
    _one_line_error(capsys, "holds a comparison")
