"""A corpus of user mistakes (CLI, config files, model factories, the Python API): each ends in exit
status 2 (``DeepMRInputError`` for the API) with ONE line on stderr naming the problem, and leaves an
earlier run's result files byte-identical. Then the reliability guarantees that need a real run:
content-keyed resume, the ``--force`` swap, the run lock, masking of non-finite outputs.

Everything runs in process on the tiny 40 bp factory model (``tests/_helpers_pipeline.py``) with a
10 bp ISM window, so the whole file stays well under a minute of CPU.
"""

import hashlib
import json
import os
import socket
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from deepmr_kipoi import cli, pipeline
from deepmr_kipoi.errors import DeepMRInputError
from deepmr_kipoi.run import folder as guard
from tests import _helpers_pipeline as helpers

HERE = Path(__file__).parent
FACTORY = f"{HERE / '_helpers_pipeline.py'}:tiny_model"

FACTORIES = {
    "raises": "def f():\n    raise RuntimeError('weights missing')\n",
    "none": "def f():\n    return None\n",
    "text": "def f():\n    return 'model'\n",
    "array": "import numpy as np\ndef f():\n    return np.zeros(3)\n",
    "syntax": "def f(:\n    pass\n",
    "import": "import no_such_module_xyz\ndef f():\n    pass\n",
    "needs_arg": "def f(path):\n    return None\n",
    "not_function": "f = 3\n",
    "deterministic": "from tests._helpers_pipeline import deterministic_model as f\n",
    "nan": (
        "import numpy as np\nfrom deepmr_kipoi.predictive import DeepEnsemble, from_function\n"
        "def f():\n    def fn(x):\n        out = np.stack([x[:, :, 0].sum(1), x[:, :, 1].sum(1)], 1)\n"
        "        out[:, 1] = np.where(x[:, 12, 2] > 0, np.nan, out[:, 1])\n        return out\n"
        "    return DeepEnsemble([from_function(lambda x, k=k: fn(x) * (1 + 0.1 * k), ('a', 'b'),"
        " sequence_length=40) for k in range(3)])\n"
    ),
    "inf": (
        "import numpy as np\nfrom deepmr_kipoi.predictive import DeepEnsemble, from_function\n"
        "def f():\n    def fn(x):\n        out = np.stack([x[:, :, 0].sum(1), x[:, :, 1].sum(1)], 1)\n"
        "        return np.where(x[:, 15:16, 3] > 0, np.inf, out)\n"
        "    return DeepEnsemble([from_function(lambda x, k=k: fn(x) * (1 + 0.1 * k), ('a', 'b'),"
        " sequence_length=40) for k in range(3)])\n"
    ),
    "zero_se": (
        "import numpy as np\nfrom deepmr_kipoi.predictive import DeepEnsemble, from_function\n"
        "def f():\n    fn = lambda x: np.stack([x[:, :, 0].sum(1), x[:, :, 1].sum(1)], 1)\n"
        "    return DeepEnsemble([from_function(fn, ('a', 'b'), sequence_length=40)] * 3)\n"
    ),
}


def _tree_md5(folder: Path) -> dict:
    return {
        str(p.relative_to(folder)): hashlib.md5(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    base = tmp_path_factory.mktemp("bad")
    fa = helpers.write_fasta(base / "in.fa", helpers.random_dna(6, 40, seed=1))
    files = {"fa": fa, "base": base}
    files["fa_changed"] = helpers.write_fasta(
        base / "changed.fa", helpers.random_dna(6, 40, seed=2)
    )
    files["fa_iupac"] = helpers.write_fasta(base / "iupac.fa", ["ACGTR" * 8] * 2)
    files["fa_lengths"] = helpers.write_fasta(base / "lengths.fa", ["ACGT" * 10, "ACGT" * 9])
    files["empty"] = base / "empty.fa"
    files["empty"].write_text("")
    files["binary"] = base / "blob.bin"
    files["binary"].write_bytes(bytes(range(256)) * 8)
    genome = base / "genome.fa"
    helpers.write_fasta(genome, ["ACGT" * 50], names=["chr1"])
    files["genome"] = genome
    for name, text in (
        ("bed_ok", "chr1\t50\t90\n"),
        ("bed_bad", "chr1\tfifty\t90\n"),
        ("bed_chrom", "chr9\t50\t90\n"),
        ("bed_off", "chr1\t0\t10\n"),
    ):
        files[name] = base / f"{name}.bed"
        files[name].write_text(text)
    files["table_nocol"] = base / "nocol.csv"
    files["table_nocol"].write_text("x,y\n1,2\n")
    files["a_file"] = base / "a_file.txt"
    files["a_file"].write_text("not a folder\n")
    for key, text in FACTORIES.items():
        (base / f"fac_{key}.py").write_text(text)
    done = base / "done"
    rc = cli.main(
        [
            "run",
            "--model",
            FACTORY,
            "--fasta",
            str(fa),
            "--window",
            "10",
            "20",
            "--chunk-size",
            "3",
            "--no-figures",
            "--no-report",
            "--quiet",
            "--out",
            str(done),
        ]
    )
    assert rc == 0
    files["done"] = done
    files["snapshot"] = _tree_md5(done)
    return files


def _base(env, *extra, out=None):
    return [
        "run",
        "--model",
        FACTORY,
        "--fasta",
        str(env["fa"]),
        "--window",
        "10",
        "20",
        "--chunk-size",
        "3",
        "--no-figures",
        "--no-report",
        "--quiet",
        "--out",
        str(out or env["done"]),
        *map(str, extra),
    ]


def _fac(env, key):
    return f"{env['base'] / f'fac_{key}.py'}:f"


def _yaml(env, name, text):
    p = env["base"] / f"{name}.yaml"
    p.write_text(
        f"model: '{FACTORY}'\nfasta: '{env['fa']}'\nwindow: [10, 20]\nfigures: false\n"
        f"report: false\nout: '{env['done']}'\n{text}"
    )
    return p


# (case id, argv builder, expected words in the message)
CLI_CASES = [
    ("n_samples_negative", lambda e: _base(e, "--n-samples", "-4"), "n_samples"),
    ("n_samples_factory", lambda e: _base(e, "--n-samples", "5"), "--n-samples"),
    ("mc_dropout_factory", lambda e: _base(e, "--uncertainty", "mc_dropout"), "--uncertainty"),
    ("z_negative", lambda e: _base(e, "--z", "-1"), "z"),
    ("z_nan", lambda e: _base(e, "--z", "nan"), "z"),
    ("z_text", lambda e: _base(e, "--z", "high"), "--z"),
    ("level_above_one", lambda e: _base(e, "--level", "1.5"), "level"),
    ("level_zero", lambda e: _base(e, "--level", "0"), "level"),
    ("window_reversed", lambda e: _base(e, "--window", "30", "20"), "window"),
    ("window_too_long", lambda e: _base(e, "--window", "0", "100"), "window"),
    ("window_negative", lambda e: _base(e, "--window", "-1", "5"), "window"),
    (
        "window_one_number",
        lambda e: ["run", "--model", FACTORY, "--window", "5", "--out", "x"],
        "window",
    ),
    ("chunk_size_zero", lambda e: _base(e, "--chunk-size", "0"), "chunk_size"),
    ("batch_size_zero", lambda e: _base(e, "--batch-size", "0"), "batch_size"),
    ("method_unknown", lambda e: _base(e, "--methods", "nope"), "nope"),
    ("exposure_unknown", lambda e: _base(e, "--exposures", "nope"), "nope"),
    ("outcome_unknown", lambda e: _base(e, "--outcomes", "nope"), "nope"),
    ("exposure_is_outcome", lambda e: _base(e, "--exposures", "x", "--outcomes", "x"), "same"),
    ("min_instruments_zero", lambda e: _base(e, "--min-instruments", "0"), "min_instruments"),
    ("n_boot_zero", lambda e: _base(e, "--n-boot", "0"), "n_boot"),
    ("n_sequences_zero", lambda e: _base(e, "--n-sequences", "0"), "n_sequences"),
    ("meta_method_unknown", lambda e: _base(e, "--meta-method", "XX"), "meta-method"),
    ("sequences_unknown", lambda e: _base(e, "--sequences", "bogus"), "sequences"),
    ("iupac_unknown", lambda e: _base(e, "--iupac", "bogus"), "iupac"),
    ("duplicates_unknown", lambda e: _base(e, "--duplicates", "bogus"), "duplicates"),
    ("seed_negative", lambda e: _base(e, "--seed", "-1"), "seed"),
    ("n_examples_negative", lambda e: _base(e, "--n-examples", "-1"), "n_examples"),
    ("option_unknown", lambda e: _base(e, "--bogus"), "bogus"),
    ("no_out", lambda e: ["run", "--model", FACTORY, "--quiet"], "--out"),
    ("no_model", lambda e: ["run", "--out", str(e["base"] / "nomodel"), "--quiet"], "--model"),
    ("calibrator_missing", lambda e: _base(e, "--calibrator", e["base"] / "no.json"), "calibrator"),
    ("calibrator_binary", lambda e: _base(e, "--calibrator", e["binary"]), "blob.bin"),
    ("table_missing", lambda e: _base(e, "--calibration-table", e["base"] / "no.csv"), "no.csv"),
    ("table_binary", lambda e: _base(e, "--calibration-table", e["binary"]), "blob.bin"),
    (
        "table_no_sequence_column",
        lambda e: _base(e, "--calibration-table", e["table_nocol"]),
        "sequence",
    ),
    (
        "calibrator_and_table",
        lambda e: _base(e, "--calibrator", e["binary"], "--calibration-table", e["table_nocol"]),
        "either",
    ),
    ("fasta_missing", lambda e: _base(e)[:4] + [str(e["base"] / "no.fa")] + _base(e)[5:], "no.fa"),
    ("fasta_binary", lambda e: _base(e, "--fasta", e["binary"]), "blob.bin"),
    ("fasta_iupac", lambda e: _base(e, "--fasta", e["fa_iupac"]), "--iupac"),
    ("fasta_lengths", lambda e: _base(e, "--fasta", e["fa_lengths"]), "lengths"),
    ("fasta_empty", lambda e: _base(e, "--fasta", e["empty"]), "empty.fa"),
    (
        "bed_missing",
        lambda e: _base(e, "--fasta", e["genome"], "--bed", e["base"] / "no.bed"),
        "no.bed",
    ),
    ("bed_binary", lambda e: _base(e, "--fasta", e["genome"], "--bed", e["binary"]), "blob.bin"),
    ("bed_malformed", lambda e: _base(e, "--fasta", e["genome"], "--bed", e["bed_bad"]), "line 1"),
    (
        "bed_unknown_chrom",
        lambda e: _base(e, "--fasta", e["genome"], "--bed", e["bed_chrom"]),
        "chr9",
    ),
    (
        "bed_off_chrom",
        lambda e: _base(e, "--fasta", e["genome"], "--bed", e["bed_off"]),
        "runs off",
    ),
    (
        "bed_without_fasta",
        lambda e: [
            "run",
            "--model",
            FACTORY,
            "--bed",
            str(e["bed_ok"]),
            "--out",
            str(e["done"]),
            "--quiet",
        ],
        "--fasta",
    ),
    ("sequence_length_differs", lambda e: _base(e, "--sequence-length", "50"), "sequence-length"),
    ("model_dir_missing", lambda e: _base(e, "--model", "./no_such_dir"), "no_such_dir"),
    ("factory_file_missing", lambda e: _base(e, "--model", "no_such.py:f"), "no_such.py"),
    (
        "factory_module_missing",
        lambda e: _base(e, "--model", "no_such_pkg_xyz.mod:f"),
        "no_such_pkg",
    ),
    ("factory_raises", lambda e: _base(e, "--model", _fac(e, "raises")), "weights missing"),
    ("factory_none", lambda e: _base(e, "--model", _fac(e, "none")), "NoneType"),
    ("factory_text", lambda e: _base(e, "--model", _fac(e, "text")), "str"),
    ("factory_array", lambda e: _base(e, "--model", _fac(e, "array")), "ndarray"),
    ("factory_syntax", lambda e: _base(e, "--model", _fac(e, "syntax")), "SyntaxError"),
    ("factory_import", lambda e: _base(e, "--model", _fac(e, "import")), "no_such_module_xyz"),
    ("factory_needs_arg", lambda e: _base(e, "--model", _fac(e, "needs_arg")), "path"),
    (
        "factory_not_function",
        lambda e: _base(e, "--model", _fac(e, "not_function")),
        "not a function",
    ),
    (
        "factory_deterministic",
        lambda e: _base(e, "--model", _fac(e, "deterministic")),
        "uncertainty",
    ),
    (
        "model_outputs_nan",
        lambda e: _base(e, "--model", _fac(e, "nan"), out=e["base"] / "nan"),
        "NaN",
    ),
    (
        "model_outputs_inf",
        lambda e: _base(e, "--model", _fac(e, "inf"), out=e["base"] / "inf"),
        "inf",
    ),
    (
        "model_zero_se",
        lambda e: _base(e, "--model", _fac(e, "zero_se"), out=e["base"] / "zse"),
        "error 0",
    ),
    ("no_instruments", lambda e: _base(e, "--z", "1e6", out=e["base"] / "noinst"), "--z"),
    ("dataloader_args_no_equals", lambda e: _base(e, "--dataloader-args", "oops"), "KEY=VALUE"),
    (
        "dataloader_with_factory",
        lambda e: [
            "run",
            "--model",
            FACTORY,
            "--sequences",
            "dataloader",
            "--out",
            str(e["done"]),
            "--quiet",
        ],
        "Kipoi model",
    ),
    ("out_is_file", lambda e: _base(e, out=e["a_file"]), "a_file.txt"),
    ("out_under_file", lambda e: _base(e, out=e["a_file"] / "sub"), "a_file.txt"),
    (
        "other_config_no_force",
        lambda e: _base(e, "--window", "10", "25"),
        "different configuration",
    ),
    ("other_fasta_content", lambda e: _base(e, "--fasta", e["fa_changed"]), "sequences changed"),
    ("config_missing", lambda e: ["run", "--config", str(e["base"] / "no.yaml")], "no.yaml"),
    ("config_binary", lambda e: ["run", "--config", str(e["binary"])], "blob.bin"),
    ("config_list", lambda e: ["run", "--config", str(_raw(e, "lst", "- 1\n"))], "mapping"),
    ("config_invalid_yaml", lambda e: ["run", "--config", str(_raw(e, "inv", "a: [1,\n"))], "YAML"),
    (
        "config_window_int",
        lambda e: ["run", "--config", str(_yaml(e, "w", "window: 5\n"))],
        "window",
    ),
    (
        "config_level_text",
        lambda e: ["run", "--config", str(_yaml(e, "l", "level: high\n"))],
        "level",
    ),
    ("config_z_text", lambda e: ["run", "--config", str(_yaml(e, "z", "z: high\n"))], "z"),
    (
        "config_chunk_null",
        lambda e: ["run", "--config", str(_yaml(e, "c", "chunk_size: null\n"))],
        "chunk_size",
    ),
    (
        "config_exposures_int",
        lambda e: ["run", "--config", str(_yaml(e, "e", "exposures: 5\n"))],
        "exposures",
    ),
    (
        "config_unknown_key",
        lambda e: ["run", "--config", str(_yaml(e, "k", "windw: [1, 2]\n"))],
        "window",
    ),
    (
        "config_methods_empty",
        lambda e: ["run", "--config", str(_yaml(e, "m", "methods: []\n"))],
        "method",
    ),
    (
        "config_figures_text",
        lambda e: ["run", "--config", str(_yaml(e, "f", "figures: maybe\n"))],
        "figures",
    ),
    (
        "config_save_effects",
        lambda e: ["run", "--config", str(_yaml(e, "s", "save_effects: 3\n"))],
        "save_effects",
    ),
    (
        "config_dataloader_args",
        lambda e: ["run", "--config", str(_yaml(e, "d", "dataloader_args: 5\n"))],
        "dataloader_args",
    ),
    (
        "config_model_int",
        lambda e: ["run", "--config", str(_raw(e, "mi", "model: 5\nout: x\n"))],
        "model",
    ),
    (
        "compare_out_file",
        lambda e: ["compare", str(e["done"]), str(e["done"]), "--out", str(e["a_file"])],
        "a_file.txt",
    ),
    (
        "compare_one_run",
        lambda e: ["compare", str(e["done"]), "--out", str(e["base"] / "cmp1")],
        "two",
    ),
    (
        "compare_not_a_run",
        lambda e: ["compare", str(e["done"]), str(e["base"]), "--out", str(e["base"] / "cmp2")],
        "run",
    ),
    (
        "demo_into_run",
        lambda e: ["demo", "--out", str(e["done"]), "--n-sequences", "2", "--quiet"],
        "--force",
    ),
    (
        "demo_n_zero",
        lambda e: ["demo", "--out", str(e["done"]), "--n-sequences", "0", "--quiet"],
        "n-sequences",
    ),
    (
        "demo_out_under_file",
        lambda e: ["demo", "--out", str(e["a_file"] / "d"), "--quiet"],
        "a_file.txt",
    ),
]


def _raw(env, name, text):
    p = env["base"] / f"{name}.yaml"
    p.write_text(text)
    return p


@pytest.mark.parametrize("case,argv,words", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_cli_bad_input_exits_2_in_one_line_and_keeps_earlier_results(
    env, capsys, case, argv, words
):
    rc = cli.main(argv(env))
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2, err
    assert len(lines) == 1, err
    assert lines[0].startswith("deepmr"), err
    assert "Traceback" not in err
    assert words.lower() in lines[0].lower(), lines[0]
    assert _tree_md5(env["done"]) == env["snapshot"]


def test_cli_lock_held_by_live_run(env, capsys):
    lock = env["done"] / guard.LOCK_NAME
    lock.write_text(json.dumps({"pid": 1, "host": socket.gethostname(), "started": "then"}))
    try:
        assert cli.main(_base(env)) == 2
    finally:
        lock.unlink()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "in use by another deepmr run (pid 1" in err[0]
    assert _tree_md5(env["done"]) == env["snapshot"]


def _cfg(env, **kw):
    base = dict(
        model=FACTORY,
        fasta=str(env["fa"]),
        window=(10, 20),
        figures=False,
        report=False,
        progress=False,
        out=str(env["done"]),
    )
    base.update(kw)
    return pipeline.RunConfig(**base)


API_CASES = [
    ("exposures_string_is_one_name", dict(exposures="GATA1"), "'GATA1'"),
    ("window_int", dict(window=5), "window"),
    ("level_text", dict(level="high"), "level"),
    ("chunk_size_none", dict(chunk_size=None), "chunk_size"),
    ("methods_unknown", dict(methods=["nope"]), "nope"),
    ("model_none", dict(model=None), "no model"),
    ("z_inf", dict(z=float("inf")), "z"),
    ("out_file", dict(out="__a_file__"), "a_file.txt"),
    ("n_samples_zero", dict(n_samples=0), "n_samples"),
    ("weight_files_int", dict(weight_files=5), "weight_files"),
    ("mask_nonfinite_text", dict(mask_nonfinite="yes"), "mask_nonfinite"),
    ("trust_text", dict(trust_model_code="yes"), "trust_model_code"),
    ("fasta_int", dict(fasta=5), "fasta"),
]


@pytest.mark.parametrize("case,kw,words", API_CASES, ids=[c[0] for c in API_CASES])
def test_api_bad_input_raises_one_line(env, case, kw, words):
    kw = {k: (str(env["a_file"]) if v == "__a_file__" else v) for k, v in kw.items()}
    with pytest.raises(DeepMRInputError) as info:
        pipeline.run(_cfg(env, **kw))
    assert "\n" not in str(info.value) and words.lower() in str(info.value).lower()
    assert _tree_md5(env["done"]) == env["snapshot"]


def test_api_unknown_config_key(env):
    with pytest.raises(DeepMRInputError, match="did you mean window"):
        pipeline.RunConfig.from_dict({"windw": 3})


def test_api_deterministic_model_refused(env):
    with pytest.raises(DeepMRInputError, match="no standard error"):
        pipeline.run(_cfg(env), model=helpers.deterministic_model())
    assert _tree_md5(env["done"]) == env["snapshot"]


# ---- guarantees that need a real run ------------------------------------------------------------


def _run(env, out, fasta=None, model=FACTORY, **kw):
    return pipeline.run(_cfg(env, out=str(out), fasta=str(fasta or env["fa"]), model=model, **kw))


def test_edited_factory_is_not_resumed(env, tmp_path):
    src = (HERE / "_helpers_pipeline.py").read_text()
    fac = tmp_path / "fac.py"
    fac.write_text(src)
    first = _run(env, tmp_path / "r", model=f"{fac}:tiny_model")
    fac.write_text(src.replace("0.7 * x", "0.2 * x"))
    with pytest.raises(DeepMRInputError, match="model factory file changed"):
        _run(env, tmp_path / "r", model=f"{fac}:tiny_model")
    forced = _run(env, tmp_path / "r", model=f"{fac}:tiny_model", force=True)
    assert forced.record.chunks.resumed == ()
    a = first.global_effects.query("exposure == 'x' and outcome == 'y' and method == 'ivw'")
    b = forced.global_effects.query("exposure == 'x' and outcome == 'y' and method == 'ivw'")
    assert abs(float(a.estimate.iloc[0]) - 0.7) < 0.1 and abs(float(b.estimate.iloc[0]) - 0.2) < 0.1


def test_moved_fasta_resumes_edited_one_does_not(env, tmp_path):
    _run(env, tmp_path / "r")
    moved = tmp_path / "moved.fa"
    moved.write_bytes(Path(env["fa"]).read_bytes())
    again = _run(env, tmp_path / "r", fasta=moved)
    assert again.record.chunks.resumed == (0,)
    with pytest.raises(DeepMRInputError, match="sequences changed"):
        _run(env, tmp_path / "r", fasta=env["fa_changed"])


def test_force_keeps_old_run_until_new_one_succeeds_and_keeps_user_files(env, tmp_path):
    out = tmp_path / "r"
    _run(env, out, figures=True)
    (out / "figures" / "my_notes.png").write_bytes(b"mine")
    (out / "notes.txt").write_text("mine")
    before = _tree_md5(out)
    with pytest.raises(DeepMRInputError):  # a forced run that fails loses nothing
        _run(env, out, z=1e6, force=True)
    assert _tree_md5(out) == before
    new = _run(env, out, z=2.5, force=True)
    assert (out / "figures" / "my_notes.png").read_bytes() == b"mine"
    assert (out / "notes.txt").read_text() == "mine"
    assert json.loads((out / "run.json").read_text())["config"]["z"] == 2.5
    written = pd.read_parquet(out / "global_effects.parquet")
    pd.testing.assert_frame_equal(
        written.reset_index(drop=True), new.global_effects.reset_index(drop=True)
    )
    assert not list(tmp_path.glob(".r.deepmr-new*"))
    assert not (out / guard.LOCK_NAME).exists()


def test_crash_before_first_chunk_leaves_a_reusable_folder(env, tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    (out / "chunks").mkdir()
    (out / "chunks" / "manifest.json").write_text(json.dumps({"config_hash": "0" * 16}))
    res = _run(env, out)
    assert res.record.chunks.resumed == ()


def test_stale_lock_of_dead_pid_is_taken_over(env, tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    (out / guard.LOCK_NAME).write_text(json.dumps({"pid": pid, "host": socket.gethostname()}))
    _run(env, out)
    assert not (out / guard.LOCK_NAME).exists()


def test_mask_nonfinite_counts_and_matches_clean_mutants(env, tmp_path, capsys):
    out = tmp_path / "nan"
    argv = _base(env, "--model", _fac(env, "nan"), "--mask-nonfinite", out=out)
    assert cli.main(argv) == 0, capsys.readouterr().err
    info = json.loads((out / "run.json").read_text())
    # feature b is NaN for a sequence with G at position 12: a reference with G there makes all 30
    # mutants of the window 10-20 non-finite, any other reference only its mutant to G at 12
    seqs = helpers.random_dna(6, 40, seed=1)
    with_g = [s for s in seqs if s[12] == "G"]
    expected_mutants = len(with_g) * 10 * 3 + (len(seqs) - len(with_g)) * 1
    assert info["nonfinite"] == {"sequences": len(seqs), "mutants": expected_mutants}
    assert any("NaN or inf" in w for w in info["warnings"])
    local = pd.read_parquet(out / "local_effects.parquet")
    assert np.isfinite(local["estimate"].dropna()).all()


def test_inf_outputs_print_no_numpy_warnings(env, tmp_path, capsys, recwarn):
    assert cli.main(_base(env, "--model", _fac(env, "inf"), out=tmp_path / "inf")) == 2
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]
    assert "RuntimeWarning" not in capsys.readouterr().err


def test_config_paths_are_absolute_so_config_runs_from_anywhere(env, tmp_path, monkeypatch):
    monkeypatch.chdir(env["base"])
    assert (
        cli.main(
            [
                "run",
                "--model",
                FACTORY,
                "--fasta",
                "in.fa",
                "--window",
                "10",
                "20",
                "--no-figures",
                "--no-report",
                "--quiet",
                "--out",
                "rel_run",
            ]
        )
        == 0
    )
    monkeypatch.chdir(tmp_path)
    assert (
        cli.main(["run", "--config", str(env["base"] / "rel_run" / "config.yaml"), "--quiet"]) == 0
    )
    info = json.loads((env["base"] / "rel_run" / "run.json").read_text())
    assert info["chunks"]["resumed"] == [0]
    assert Path(info["config"]["fasta"]).is_absolute()
    assert info["sequences"]["source"] == "FASTA records"
