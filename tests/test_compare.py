"""``compare`` across runs whose features are named differently: repeated labels numbered ``#k``
matched to the k-th occurrence (a lone label to the first), and an explicit mapping."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from deepmr_kipoi import cli, pipeline
from deepmr_kipoi.compare import HEADLINE, _label_matches, label_key
from deepmr_kipoi.errors import DeepMRInputError
from tests import _helpers_pipeline as helpers

HELPERS = Path(__file__).parent / "_helpers_pipeline.py"
KEY = ["exposure", "outcome", "method"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("compare")
    out = {}
    for name, factory in (
        ("plain", "tiny_model"),
        ("dup", "duplicated_labels_model"),
        ("swapped", "swapped_labels_model"),
        ("other", "other_scheme_model"),
    ):
        cfg = pipeline.RunConfig(
            model=f"{HELPERS}:{factory}",
            n_sequences=4,
            chunk_size=4,
            methods=("ivw", "egger"),
            figures=False,
            report=False,
            save_effects=False,
            progress=False,
            out=str(base / name),
        )
        pipeline.run(cfg)
        out[name] = base / name
    return out


def _own(run_dir):
    g = pd.read_parquet(run_dir / "global_effects.parquet")
    return g.set_index(KEY)


def _check(res, dirs, to_first):
    """Every row pairs the features ``to_first`` says, with each run's own headline numbers."""
    labels = res.labels
    t = res.table
    for i, (label, d) in enumerate(zip(labels, dirs)):
        own = _own(d)
        if i:
            names = {v: k for k, v in to_first[i].items()}  # first run's name -> this run's
            assert list(t[f"exposure_{label}"]) == [names[e] for e in t.exposure]
            assert list(t[f"outcome_{label}"]) == [names[o] for o in t.outcome]
            idx = list(zip(t[f"exposure_{label}"], t[f"outcome_{label}"], t.method))
        else:
            idx = list(zip(t.exposure, t.outcome, t.method))
        for col in HEADLINE:
            got, want = t[f"{col}_{label}"].to_numpy(), own.loc[idx, col].to_numpy()
            if col in ("significant", "direction"):
                assert list(got) == list(want), col
            else:
                np.testing.assert_array_equal(got.astype(float), want.astype(float), err_msg=col)


def _col(res, name, i):
    """Column ``name`` of run ``i`` (runs are labelled by their model names)."""
    return res.table[f"{name}_{res.labels[i]}"]


def _pairs(features):
    return {(a, b) for a in features for b in features if a != b}


def test_label_key_reads_the_occurrence_suffix():
    assert label_key("K562_DNase_None#2") == ("K562_DNase_None", 2)
    assert label_key("K562_DNase_None") == ("K562_DNase_None", 1)
    assert label_key("a#0") == ("a#0", 1) and label_key("a#b") == ("a#b", 1)
    assert label_key("a#1#3") == ("a#1", 3)
    with pytest.raises(DeepMRInputError, match="same label"):
        _label_matches([["x", "y"], ["x", "x#1"]], ["a", "b"])


def test_lone_label_meets_the_first_occurrence(runs):
    res = pipeline.compare([runs["plain"], runs["dup"]])
    assert res.labels == (f"{HELPERS}:tiny_model", f"{HELPERS}:duplicated_labels_model")
    want = {"x": "x#1", "y": "y", "z": "z"}  # w and x#2 (the same outputs) stay unmatched
    assert {(e, o) for e, o in zip(res.table.exposure, res.table.outcome)} == _pairs(want)
    assert len(res.table) == 6 * 2
    _check(res, [runs["plain"], runs["dup"]], [None, {v: k for k, v in want.items()}])
    # the matched features are the same outputs, so the runs' numbers agree
    np.testing.assert_allclose(_col(res, "estimate", 1), _col(res, "estimate", 0), rtol=1e-10)
    assert (res.summary.shared_pairs == 6).all() and (res.summary.spearman_rho > 0.999).all()
    # and the other way round: the first run's numbered label meets the second's lone one
    back = pipeline.compare([runs["dup"], runs["plain"]])
    assert set(zip(back.table.exposure, back.table.outcome)) == _pairs(["x#1", "y", "z"])
    assert set(_col(back, "exposure", 1)) == {"x", "y", "z"}


def test_kth_occurrence_meets_the_kth(runs):
    res = pipeline.compare([runs["dup"], runs["swapped"]])
    # x#1 meets x#1 and x#2 meets x#2 by name, although the outputs behind them are swapped
    feats = ["x#1", "y", "z", "x#2"]
    assert {(e, o) for e, o in zip(res.table.exposure, res.table.outcome)} == _pairs(feats)
    _check(res, [runs["dup"], runs["swapped"]], [None, {f: f for f in feats}])
    t = res.table
    yz = t.exposure.isin(["y", "z"]) & t.outcome.isin(["y", "z"])
    np.testing.assert_allclose(
        _col(res, "estimate", 1)[yz], _col(res, "estimate", 0)[yz], rtol=1e-10
    )
    assert not np.allclose(_col(res, "estimate", 1)[~yz], _col(res, "estimate", 0)[~yz])


def test_explicit_mapping_for_another_naming_scheme(runs, tmp_path):
    with pytest.raises(DeepMRInputError, match="share no"):
        pipeline.compare([runs["plain"], runs["other"]])
    mapping = tmp_path / "names.csv"
    pd.DataFrame({"plain": ["x", "y", "z"], "other": ["X_a", "Y_a", "Z_a"]}).to_csv(
        mapping, index=False
    )
    res = pipeline.compare([runs["plain"], runs["other"]], mapping=mapping)
    assert set(zip(res.table.exposure, res.table.outcome)) == _pairs("xyz")
    _check(res, [runs["plain"], runs["other"]], [None, {"X_a": "x", "Y_a": "y", "Z_a": "z"}])
    np.testing.assert_allclose(_col(res, "estimate", 1), _col(res, "estimate", 0), rtol=1e-10)
    # a mapping names only what it lists: the label matching is off even where labels agree
    only_y = pipeline.compare(
        [runs["plain"], runs["dup"]], mapping=pd.DataFrame({"a": ["x", "y"], "b": ["x#2", "y"]})
    )
    assert set(zip(only_y.table.exposure, only_y.table.outcome)) == {("x", "y"), ("y", "x")}
    _check(only_y, [runs["plain"], runs["dup"]], [None, {"x#2": "x", "y": "y"}])
    for bad, msg in (
        (pd.DataFrame({"a": ["x"], "b": ["nope"]}), "does not hold"),
        (pd.DataFrame({"a": ["x", "y"], "b": ["X_a", "X_a"]}), "twice"),
        (pd.DataFrame({"a": ["x"]}), "1 columns for 2 runs"),
        (tmp_path / "missing.csv", "not found"),
    ):
        with pytest.raises(DeepMRInputError, match=msg):
            pipeline.compare([runs["plain"], runs["other"]], mapping=bad)


def test_cli_mapping(runs, tmp_path, capsys):
    # in this process: `deepmr compare` is cli.main (a fresh interpreter would only add imports)
    mapping = tmp_path / "names.csv"
    mapping.write_text("plain,other\nx,X_a\ny,Y_a\nz,Z_a\nw,W_a\n")
    out = tmp_path / "cmp"
    argv = ["compare", str(runs["plain"]), str(runs["other"]), "--mapping", str(mapping)]
    code = cli.main([*argv, "--out", str(out), "--no-figures"])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert "over 12 shared pairs" in printed.out
    table = pd.read_csv(out / "compare_table.csv")
    (other,) = [c for c in table.columns if c.startswith("exposure_")]
    assert set(zip(table.exposure, table[other])) == set(zip("xyzw", helpers.OTHER_SCHEME))
    bad = tmp_path / "bad.csv"
    bad.write_text("plain,other\nx,Q\n")
    argv = ["compare", str(runs["plain"]), str(runs["other"]), "--mapping", str(bad)]
    code = cli.main([*argv, "--out", str(tmp_path / "c2")])
    assert code == 2 and "does not hold" in capsys.readouterr().err
    assert not (tmp_path / "c2").exists()
