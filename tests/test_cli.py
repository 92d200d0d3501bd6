"""The ``deepmr`` command end to end on a tiny model: run, config files, compare, adapters, and bad
input (exit 2, one line on stderr, nothing written)."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from deepmr_kipoi import cli
from tests import _helpers_pipeline as helpers
from tests.test_report import check_self_contained

HERE = Path(__file__).parent

FACTORY = f"{HERE / '_helpers_pipeline.py'}:tiny_model"


def deepmr(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "deepmr_kipoi.cli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("cli")
    a = base / "run_a"
    proc = deepmr("run", "--model", FACTORY, "--n-sequences", 4, "--chunk-size", 2, "--out", a)
    assert proc.returncode == 0, proc.stderr
    cfg = base / "b.yaml"
    cfg.write_text(
        f"model: '{HERE / '_helpers_pipeline.py'}:tiny_model'\nn_sequences: 4\n"
        "seed: 7\nmethods: [ivw]\nexposures: ['x', 'y']\nfigures: false\n"
    )  # run_b's tables and record are checked, not its figures (run_a's are)
    b = base / "run_b"
    assert cli.main(["run", "--config", str(cfg), "--out", str(b), "--quiet"]) == 0
    return a, b, proc


def test_run_writes_the_results_folder_and_a_summary(two_runs):
    a, _, proc = two_runs
    assert "global effects" in proc.stdout and str(a) in proc.stdout
    for name in (
        "global_effects.csv",
        "global_effects.parquet",
        "local_effects.parquet",
        "effects.h5",
        "report.html",
        "run.json",
        "config.yaml",
    ):
        assert (a / name).is_file(), name
    assert sorted(p.name for p in (a / "figures").glob("heatmap_*.png")) == [
        "heatmap_egger.png",
        "heatmap_ivw.png",
    ]
    for kind in ("scatter", "instruments", "forest"):  # the pair details
        assert list((a / "figures").glob(f"{kind}_*.png")), kind
    parser = check_self_contained(a / "report.html")
    assert sum(t == "img" for t in parser.tags) == len(list((a / "figures").glob("*.png")))
    glob = pd.read_csv(a / "global_effects.csv")
    assert len(glob) == 12 * 2 and set(glob.method) == {"ivw", "egger"}


def test_config_file_with_overrides_and_rerun_from_written_config(two_runs, tmp_path):
    _, b, _ = two_runs
    info = json.loads((b / "run.json").read_text())
    assert info["config"]["seed"] == 7 and info["config"]["methods"] == ["ivw"]
    assert info["features"]["exposures"] == ["x", "y"]
    assert info["config"]["out"] == str(b)  # the command line's --out
    glob = pd.read_parquet(b / "global_effects.parquet")
    assert set(glob.exposure) == {"x", "y"} and len(glob) == 2 * 3
    before = glob.copy()
    # the written config repeats the run: every chunk is found finished, the tables are equal
    assert cli.main(["run", "--config", str(b / "config.yaml"), "--quiet"]) == 0
    info2 = json.loads((b / "run.json").read_text())
    assert info2["chunks"]["resumed"] == list(range(info2["chunks"]["n"]))
    pd.testing.assert_frame_equal(pd.read_parquet(b / "global_effects.parquet"), before)


def test_compare_two_runs(two_runs, tmp_path, capsys):
    a, b, _ = two_runs
    out = tmp_path / "cmp"
    # in this process (the run above is the one spawned through the console command)
    code = cli.main(["compare", str(a), str(b), "--out", str(out)])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert "Spearman" in printed.out
    ga, gb = pd.read_csv(a / "global_effects.csv"), pd.read_csv(b / "global_effects.csv")
    key = ["exposure", "outcome", "method"]
    j = ga.merge(gb, on=key, suffixes=("_a", "_b"))
    assert len(j) == 6  # b: exposures x, y; ivw only
    summary = pd.read_csv(out / "compare_summary.csv")
    row = summary.iloc[0]
    assert row.method == "ivw" and row.shared_pairs == 6
    assert row.spearman_rho == pytest.approx(spearmanr(j.estimate_a, j.estimate_b)[0], rel=1e-12)
    dis = pd.read_csv(out / "disagreements.csv")
    want = j[
        (np.sign(j.estimate_a) != np.sign(j.estimate_b)) | (j.significant_a != j.significant_b)
    ]
    assert sorted(zip(dis.exposure, dis.outcome)) == sorted(zip(want.exposure, want.outcome))
    check_self_contained(out / "report.html")
    assert list((out / "figures").glob("compare_ivw.png"))


def test_adapters_lists_registered_adapters(capsys):
    assert cli.main(["adapters"]) == 0
    out = capsys.readouterr().out
    assert "kipoi-generic" in out and "DeepSEA" in out


def test_help_has_examples_and_every_option_a_description():
    import argparse

    commands = cli.build_parser()._subparsers._group_actions[0].choices
    for command in ("run", "demo", "compare"):
        text = commands[command].format_help()
        assert "examples:" in text and "deepmr " + command in text
    for command, sub in commands.items():
        for action in sub._actions:
            assert action.help and action.help.strip() and action.help != argparse.SUPPRESS, (
                command,
                action.option_strings or action.dest,
            )


def _bad(tmp_path, capsys, *args, kept=False):
    out = tmp_path / "out"
    capsys.readouterr()
    code = cli.main(["run", "--model", FACTORY, "--out", str(out), *(str(a) for a in args)])
    err = capsys.readouterr().err
    # what stays on a terminal: progress bars (leave=False) are erased with carriage returns
    lines = [v for v in (ln.split("\r")[-1].strip() for ln in err.split("\n")) if v]
    assert code == 2, err
    assert len(lines) == 1, err
    if kept:  # found after chunks were computed: they stay (valid results of that configuration)
        assert (out / "chunks" / "local_00000.parquet").exists()
        shutil.rmtree(out)
    assert not out.exists()
    return lines[0]


def test_bad_inputs_exit_2_with_one_line_and_nothing_written(tmp_path, capsys):
    line = _bad(tmp_path, capsys, "--exposures", "xx")
    assert line == "deepmr run: error: unknown exposure feature 'xx'; close matches: x"
    assert "same feature (x)" in _bad(tmp_path, capsys, "--exposures", "x", "--outcomes", "x")
    assert "FASTA file not found: /no/such.fa" in _bad(tmp_path, capsys, "--fasta", "/no/such.fa")
    genome = helpers.write_fasta(tmp_path / "g.fa", helpers.random_dna(1, 60), ["chr2"])
    bed = tmp_path / "r.bed"
    bed.write_text("chr2\t50\t70\n")
    assert "runs off chr2" in _bad(tmp_path, capsys, "--fasta", genome, "--bed", bed)
    short = helpers.write_fasta(tmp_path / "s.fa", helpers.random_dna(2, 35))
    assert "are 35 bp but the model takes 40 bp" in _bad(tmp_path, capsys, "--fasta", short)
    line = _bad(tmp_path, capsys, "--z", "1e9", "--n-sequences", 2, kept=True)
    assert "no sequence had at least 3 instruments" in line and "lower --z" in line
    assert "invalid choice" in _bad(tmp_path, capsys, "--meta-method", "XX")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("n_sequence: 3\n")
    assert "unknown config key 'n_sequence'; did you mean n_sequences" in _bad(
        tmp_path, capsys, "--config", cfg
    )


def test_a_bug_shows_its_traceback_exits_1_and_keeps_the_chunks(tmp_path, capsys, monkeypatch):
    from deepmr_kipoi.run import aggregate

    def broken(*args, **kwargs):
        raise ValueError("operands could not be broadcast together")  # as numpy would

    monkeypatch.setattr(aggregate, "global_effects", broken)
    out = tmp_path / "bug"
    code = cli.main(
        [
            "run",
            "--model",
            FACTORY,
            "--out",
            str(out),
            "--n-sequences",
            "3",
            "--chunk-size",
            "2",
            "-q",
        ]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert "Traceback (most recent call last)" in err and "could not be broadcast" in err
    assert "a bug, not your input" in err
    assert sorted(p.name for p in (out / "chunks").glob("local_*")) == [
        "local_00000.parquet",
        "local_00001.parquet",
    ]


def test_missing_out_and_compare_errors(tmp_path, capsys):
    assert cli.main(["run", "--model", FACTORY]) == 2
    assert (
        capsys.readouterr().err.strip()
        == "deepmr run: error: no results folder given; pass --out DIR"
    )
    assert (
        cli.main(["compare", str(tmp_path), str(tmp_path / "nope"), "--out", str(tmp_path / "c")])
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert err.startswith("deepmr compare: error:") and "\n" not in err
    assert not (tmp_path / "c").exists()


def test_interrupt_and_verbose(tmp_path, capsys, monkeypatch):
    import logging

    from deepmr_kipoi import pipeline

    seen = []

    def interrupted(config):
        seen.append(logging.getLogger().level)
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "run", interrupted)
    before = logging.getLogger().level
    assert cli.main(["run", "--model", FACTORY, "--out", str(tmp_path / "x"), "-v"]) == 130
    assert "interrupted; re-run the same command to resume" in capsys.readouterr().err
    assert seen == [logging.DEBUG]
    assert logging.getLogger().level == before  # restored after the command
