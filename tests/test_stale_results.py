"""Nothing stale: a chunk is reused only when it reads whole and carries the key of this run's
settings, inputs and model code; a folder whose results belong elsewhere is refused (or replaced
under ``--force``); every edit of the user's model code changes the key.

Each case damages or swaps files of a finished run of the tiny factory model (8 sequences, 4
chunks) and reruns it: the outcome is the exact set of resumed chunks and tables equal to the
uninterrupted run's, or a one-line refusal.
"""

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from deepmr_kipoi import cli, pipeline
from deepmr_kipoi.errors import DeepMRInputError
from deepmr_kipoi.run import folder as rf
from deepmr_kipoi.run.fingerprint import code_fingerprint
from deepmr_kipoi.run.inputs import select_features
from tests import _helpers_pipeline as helpers

HERE = Path(__file__).parent
FACTORY = f"{HERE / '_helpers_pipeline.py'}:tiny_model"


def _argv(fa, out, *extra, model=FACTORY):
    return [
        "run",
        "--model",
        model,
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
        "--out",
        str(out),
        *map(str, extra),
    ]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("stale")
    fa = helpers.write_fasta(base / "in.fa", helpers.random_dna(8, 40, seed=3))
    fa2 = helpers.write_fasta(base / "other.fa", helpers.random_dna(8, 40, seed=4))
    for argv in (
        _argv(fa, base / "A"),
        _argv(fa, base / "B", "--z", "2.5"),
        _argv(fa2, base / "other_fasta"),
    ):
        assert cli.main(argv) == 0
    return {
        "fa": fa,
        "base": base,
        "A": base / "A",
        "B": base / "B",
        "other_fasta": base / "other_fasta",
    }


def _copy(runs, tmp_path):
    out = tmp_path / "r"
    shutil.copytree(runs["A"], out)
    return out


def _truncate(path: Path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _chunk(name, i):
    return Path("chunks") / f"{name}_{i:05d}.{'parquet' if name == 'local' else 'npz'}"


def _from(run, *files):
    def act(runs, out):
        for rel in files:
            shutil.copy(runs[run] / rel, out / rel)

    return act


def _other_index(runs, out):
    for name in ("local", "arrays"):
        shutil.copy(out / _chunk(name, 0), out / _chunk(name, 1))


def _write(rel, data):
    def act(runs, out):
        (out / rel).write_bytes(data)

    return act


def _unlink(*rels):
    def act(runs, out):
        for rel in rels:
            (out / rel).unlink()

    return act


def _truncated(rel):
    def act(runs, out):
        _truncate(out / rel)

    return act


#: (case, damage, chunks resumed by the rerun, words of the note naming the chunk computed again)
RESUME_CASES = [
    (
        "chunk_of_other_settings",
        _from("B", _chunk("local", 1), _chunk("arrays", 1)),
        [0, 2, 3],
        "other inputs or settings",
    ),
    (
        "chunk_of_other_sequences",
        _from("other_fasta", _chunk("local", 2), _chunk("arrays", 2)),
        [0, 1, 3],
        "other inputs",
    ),
    ("chunk_of_other_range", _other_index, [0, 2, 3], "arrays_00001.npz was computed from other"),
    (
        "arrays_of_other_settings",
        _from("B", _chunk("arrays", 3)),
        [0, 1, 2],
        "arrays_00003.npz was computed",
    ),
    (
        "truncated_parquet",
        _truncated(_chunk("local", 2)),
        [0, 1, 3],
        "local_00002.parquet does not read",
    ),
    ("truncated_npz", _truncated(_chunk("arrays", 0)), [1, 2, 3], "arrays_00000.npz does not read"),
    (
        "empty_parquet",
        _write(_chunk("local", 1), b""),
        [0, 2, 3],
        "local_00001.parquet does not read",
    ),
    (
        "garbage_npz",
        _write(_chunk("arrays", 1), b"PK\x03\x04garbage" * 10),
        [0, 2, 3],
        "arrays_00001.npz does not read",
    ),
    ("arrays_missing", _unlink(_chunk("arrays", 3)), [0, 1, 2], None),
    ("manifest_deleted", _unlink("chunks/manifest.json"), [0, 1, 2, 3], None),
    ("manifest_garbage", _write("chunks/manifest.json", b"{not json"), [0, 1, 2, 3], None),
    (
        "stray_temporary",
        _write("chunks/.local_00001.parquet.999999999.deepmr-tmp", b"half"),
        [0, 1, 2, 3],
        None,
    ),
]


@pytest.mark.parametrize("case,damage,resumed,note", RESUME_CASES, ids=[c[0] for c in RESUME_CASES])
def test_damaged_or_foreign_chunks_are_computed_again(
    runs, tmp_path, caplog, case, damage, resumed, note
):
    out = _copy(runs, tmp_path)
    damage(runs, out)
    assert cli.main([a for a in _argv(runs["fa"], out) if a != "--quiet"]) == 0
    info = json.loads((out / "run.json").read_text())
    assert info["chunks"]["resumed"] == resumed
    for t in ("global_effects.parquet", "local_effects.parquet"):
        pd.testing.assert_frame_equal(
            pd.read_parquet(out / t), pd.read_parquet(runs["A"] / t), check_exact=True
        )
    if note:
        assert note in caplog.text and "is computed again" in caplog.text
    assert not list((out / "chunks").glob(".*deepmr-tmp"))


def _chunks_only(out):
    """What a killed first run leaves: chunk files, nothing else."""
    for p in out.iterdir():
        if p.name != "chunks":
            p.unlink()


def _foreign_manifest(runs, out):
    _chunks_only(out)
    manifest = json.loads((out / "chunks" / "manifest.json").read_text())
    (out / "chunks" / "manifest.json").write_text(json.dumps({**manifest, "config_hash": "0" * 16}))


def _unkeyed_chunks(runs, out):
    """Chunk files of the layout before chunk keys, and no manifest or record."""
    _chunks_only(out)
    (out / "chunks" / "manifest.json").unlink()
    for i in range(4):
        p = out / _chunk("local", i)
        pd.read_parquet(p).to_parquet(p, index=False)


def _old_layout(runs, out):
    _unkeyed_chunks(runs, out)
    (out / "chunks" / "manifest.json").write_text(json.dumps({"config_hash": "abc", "n_chunks": 4}))
    (out / "run.json").write_text(json.dumps({"deepmr_kipoi_version": "0.1", "figures": []}))


def _old_manifest_only(runs, out):
    _unkeyed_chunks(runs, out)
    (out / "chunks" / "manifest.json").write_text(json.dumps({"config_hash": "abc", "n_chunks": 4}))


REFUSE_CASES = [
    # an effects setting (an analysis setting such as --z reuses the stored effects instead)
    (
        "other_configuration",
        None,
        ["--window", "10", "25"],
        "holds results of a different configuration",
    ),
    (
        "other_sequences",
        None,
        ["--fasta", "OTHER"],
        "holds results of other inputs (sequences changed)",
    ),
    ("foreign_manifest", _foreign_manifest, [], "holds results of a different configuration"),
    (
        "chunks_without_keys",
        _unkeyed_chunks,
        [],
        "chunk files of another run (and no readable manifest",
    ),
    ("old_layout", _old_layout, [], "results without a folder record (of an older deepmr version"),
    ("old_chunks_and_manifest", _old_manifest_only, [], "results without a folder record"),
    ("record_removed", _unlink(rf.RECORD), [], "results without a folder record"),
    (
        "manifest_and_record_removed",
        _unlink(rf.RECORD, "chunks/manifest.json"),
        [],
        "without a folder record",
    ),
    (
        "damaged_record",
        _write(rf.RECORD, b"\x00garbage"),
        [],
        "folder record .deepmr-folder.json does not read",
    ),
]


@pytest.mark.parametrize("case,damage,extra,words", REFUSE_CASES, ids=[c[0] for c in REFUSE_CASES])
def test_results_of_another_key_are_refused_then_replaced_under_force(
    runs, tmp_path, capsys, case, damage, extra, words
):
    out = _copy(runs, tmp_path)
    if damage is not None:
        damage(runs, out)
    (out / "notes.txt").write_text("mine")
    extra = [str(runs["base"] / "other.fa") if e == "OTHER" else e for e in extra]
    argv = _argv(runs["fa"], out, *extra)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0] and "--force" in err[0], err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert cli.main([*argv, "--force"]) == 0
    assert json.loads((out / "run.json").read_text())["chunks"]["resumed"] == []
    assert (out / "notes.txt").read_text() == "mine"


# ---- the model's code --------------------------------------------------------------------------

FACTORY_FILE = """\
from helpers import scale
from tests._helpers_pipeline import tiny_model


def build(seed=0):
    return tiny_model(seed, direct_scale=scale())
"""


def _project(tmp_path):
    """A factory file importing a helper module beside it, which imports another one."""
    proj = tmp_path / "proj"
    (proj / "pkg").mkdir(parents=True)
    (proj / "factory.py").write_text(FACTORY_FILE)
    (proj / "helpers.py").write_text(
        "from pkg.deep import base\n\n\ndef scale():\n    return base()\n"
    )
    (proj / "pkg" / "__init__.py").write_text("")
    (proj / "pkg" / "deep.py").write_text(
        "from .leaf import VALUE\n\n\ndef base():\n    return VALUE\n"
    )
    (proj / "pkg" / "leaf.py").write_text("VALUE = 0.15\n")
    (proj / "unrelated.py").write_text("X = 1\n")
    return proj


EDITS = [
    ("factory_file", "factory.py", "model factory file changed"),
    ("imported_helper", "helpers.py", "model code helpers.py changed"),
    ("package_module", "pkg/deep.py", "model code pkg/deep.py changed"),
    ("relative_import", "pkg/leaf.py", "model code pkg/leaf.py changed"),
    ("package_init", "pkg/__init__.py", "model code pkg/__init__.py changed"),
]


@pytest.mark.parametrize("case,rel,words", EDITS, ids=[e[0] for e in EDITS])
def test_edited_user_code_is_not_resumed(runs, tmp_path, capsys, monkeypatch, case, rel, words):
    proj = _project(tmp_path)
    monkeypatch.syspath_prepend(str(proj))  # where `import helpers` finds it, as PYTHONPATH would
    spec = f"{proj / 'factory.py'}:build"
    out = tmp_path / "r"
    assert cli.main(_argv(runs["fa"], out, model=spec)) == 0
    with open(proj / rel, "a") as fh:
        fh.write("\n# edited\n")
    assert cli.main(_argv(runs["fa"], out, model=spec)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0], err


def test_unrelated_file_beside_the_factory_does_not_matter(runs, tmp_path, monkeypatch):
    proj = _project(tmp_path)
    monkeypatch.syspath_prepend(str(proj))
    spec = f"{proj / 'factory.py'}:build"
    out = tmp_path / "r"
    assert cli.main(_argv(runs["fa"], out, model=spec)) == 0
    (proj / "unrelated.py").write_text("X = 2\n")
    assert cli.main(_argv(runs["fa"], out, model=spec)) == 0
    assert json.loads((out / "run.json").read_text())["chunks"]["resumed"] == [0, 1, 2, 3]


def test_module_style_factory_is_fingerprinted(tmp_path, monkeypatch):
    proj = _project(tmp_path)
    monkeypatch.syspath_prepend(str(proj))
    before = code_fingerprint("factory:build")
    assert sorted(before) == sorted(
        [
            "model code helpers.py",
            "model code pkg/__init__.py",
            "model code pkg/deep.py",
            "model code pkg/leaf.py",
            "model factory file",
            f"model code {HERE / '__init__.py'}",
            f"model code {HERE / '_helpers_pipeline.py'}",
        ]
    )
    (proj / "pkg" / "leaf.py").write_text("VALUE = 0.2\n")
    after = code_fingerprint("factory:build")
    assert [k for k in before if before[k] != after[k]] == ["model code pkg/leaf.py"]
    assert code_fingerprint("deepmr_kipoi.simulate:load_demo_model") == {}  # the tool's own code
    assert code_fingerprint("numpy.random:default_rng") == {}  # an installed package


def test_kipoi_model_code_is_fingerprinted(torch_dir, tmp_path):
    model = tmp_path / "m"
    shutil.copytree(torch_dir, model)
    (model / "dataloader.py").write_text("class Dl:\n    pass\n")
    before = code_fingerprint(str(model))
    assert sorted(before) == [
        "model code dataloader.py",
        "model code model.yaml",
        "model code tiny_cnn.py",
    ]
    for rel in ("tiny_cnn.py", "dataloader.py", "model.yaml"):
        with open(model / rel, "a") as fh:
            fh.write("\n# edited\n")
        after = code_fingerprint(str(model))
        assert [k for k in before if before[k] != after[k]] == [f"model code {rel}"]
        before = after


# ---- options and factories that would leave results unexplained ---------------------------------

EXIT_FACTORIES = {
    "exit_zero_in_factory": (
        "import sys\ndef f():\n    sys.exit(0)\n",
        "called sys.exit(0) instead of returning",
    ),
    "exit_code_in_factory": ("def f():\n    raise SystemExit(3)\n", "called sys.exit(3)"),
    "exit_at_import": (
        "import sys\nsys.exit(0)\ndef f():\n    pass\n",
        "called sys.exit(0) while being imported",
    ),
}

OPTION_CASES = [
    ("weights", ["--weights", "W"], "--weights does not apply to the model factory"),
    ("source", ["--source", "kipoi"], "--source does not apply to the model factory"),
    ("adapter", ["--adapter", "bpnet"], "--adapter does not apply to the model factory"),
    ("alphabet", ["--alphabet", "AGCT"], "--alphabet does not apply to the model factory"),
]


@pytest.mark.parametrize("case", sorted(EXIT_FACTORIES))
def test_factory_that_exits_is_an_error_not_success(runs, tmp_path, capsys, case):
    text, words = EXIT_FACTORIES[case]
    (tmp_path / "fac.py").write_text(text)
    assert cli.main(_argv(runs["fa"], tmp_path / "r", model=f"{tmp_path / 'fac.py'}:f")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0], err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("case,extra,words", OPTION_CASES, ids=[c[0] for c in OPTION_CASES])
def test_kipoi_options_with_a_factory_are_refused(runs, tmp_path, capsys, case, extra, words):
    (tmp_path / "w.pt").write_bytes(b"weights")
    extra = [str(tmp_path / "w.pt") if e == "W" else e for e in extra]
    assert cli.main(_argv(runs["fa"], tmp_path / "r", *extra)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0], err
    assert not (tmp_path / "r").exists()


DUPLICATES = [
    ("top_level", "z: 2\nz: 3\n", "line 5: the key 'z' is given twice"),
    ("nested", "dataloader_args:\n  a: 1\n  a: 2\n", "line 6: the key 'a' is given twice"),
    (
        "dash_and_underscore",
        "n_sequences: 2\nn-sequences: 3\n",
        "the config key 'n_sequences' is given twice",
    ),
]


@pytest.mark.parametrize("case,text,words", DUPLICATES, ids=[c[0] for c in DUPLICATES])
def test_config_with_a_duplicated_key_is_refused(runs, tmp_path, capsys, case, text, words):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"model: '{FACTORY}'\nfasta: '{runs['fa']}'\nout: '{tmp_path / 'r'}'\n{text}")
    assert cli.main(["run", "--config", str(cfg), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0], err


# ---- feature selection ---------------------------------------------------------------------------

NAMES = ["K562_*", "K562_a", "K562_b", "HepG2_[x]", "a?b", "plain"]
SELECTIONS = [
    (["K562_*"], [0]),  # the exact name wins over its glob reading
    (["K562_?"], [0, 1, 2]),  # a glob that is no name
    (["K562_[*]*"], [0]),  # the literal star, written as a glob
    (["HepG2_[x]"], [3]),
    (["HepG2_*"], [3]),
    (["a?b"], [4]),
    (["K562_[ab]"], [1, 2]),
    (["plain", "K562_*"], [5, 0]),
    (["K562_*", "K562_?"], [0, 1, 2]),
]


@pytest.mark.parametrize("patterns,expected", SELECTIONS, ids=["|".join(s[0]) for s in SELECTIONS])
def test_exposure_selection(patterns, expected):
    assert select_features(patterns, NAMES, "exposure") == expected


def test_exposure_selection_unknown_is_one_line():
    with pytest.raises(DeepMRInputError, match="unknown exposure feature 'K563_.'") as info:
        select_features(["K563_*"], NAMES, "exposure")
    assert "\n" not in str(info.value)


def test_literal_glob_name_selected_in_a_run(runs, tmp_path):
    model = helpers.tiny_model(features=("K562_*", "K562_a", "y", "z"))
    res = pipeline.run(
        pipeline.RunConfig(
            fasta=str(runs["fa"]),
            window=(10, 20),
            exposures=("K562_*",),
            outcomes=("y",),
            figures=False,
            report=False,
            progress=False,
        ),
        model=model,
        identity={"name": "tiny"},
    )
    assert set(res.global_effects["exposure"]) == {"K562_*"}
    np.testing.assert_array_equal(res.global_effects["outcome"].unique(), ["y"])


def test_python_path_factory_module_resolves_without_import(tmp_path, monkeypatch):
    """Fingerprinting reads code, it never runs it: a module whose import would fail is listed."""
    proj = tmp_path / "p"
    proj.mkdir()
    (proj / "fac.py").write_text("import boom\n\ndef f():\n    pass\n")
    (proj / "boom.py").write_text("raise RuntimeError('would run')\n")
    monkeypatch.syspath_prepend(str(proj))
    assert sorted(code_fingerprint(f"{proj / 'fac.py'}:f")) == [
        "model code boom.py",
        "model factory file",
    ]
    assert "boom" not in sys.modules
