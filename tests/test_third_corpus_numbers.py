"""Numbers at any offset and scale (third bad-input corpus).

* A float64 model whose outputs carry an offset of 1e5 or 1e8: its effects are the differences of
  nearby large numbers. Rounded to float32 first they lost every digit (estimates off by more than
  1% of their SE at 1e5, "standard error 0" at 1e8); now taken in float64: equal to the brute-force
  float64 differences, and a run's tables equal to the run without offset.
* Outputs scaled by 1e-30 and 1e30: every scale-free quantity (estimates over their SEs, p-values,
  heterogeneity share, verdicts) equals the unscaled run's.
* A constant feature, or one that reads only outside the window: left out with a warning instead of
  refusing the run.
* Identical reference sequences: the directionality check in the units of the reference spread
  cannot run, and the run says so.
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from deepmr_kipoi import cli, ism
from deepmr_kipoi.predictive import DeepEnsemble, from_function
from tests import _helpers_pipeline as helpers

FACTORY = """\
import numpy as np
from deepmr_kipoi.predictive import DeepEnsemble, from_function
from tests._helpers_pipeline import tiny_model


def f():
    base = tiny_model()
    members = [
        from_function(
            lambda x, m=m: np.asarray(m.predict(x), dtype=np.float64) * {scale!r} + {offset!r},
            base.feature_names,
            sequence_length=40,
        )
        for m in base.members
    ]
    return DeepEnsemble(members)


def constant():
    base = tiny_model()
    members = [
        from_function(
            lambda x, m=m: np.concatenate([m.predict(x), np.full((len(x), 1), 3.0)], axis=1),
            (*base.feature_names, "flat"),
            sequence_length=40,
        )
        for m in base.members
    ]
    return DeepEnsemble(members)


def outside():
    # "flat" reads only the first 6 positions, outside the run's window (10, 22)
    base = tiny_model()
    w = np.random.default_rng(5).normal(size=(6, 4))
    members = [
        from_function(
            lambda x, m=m: np.concatenate(
                [m.predict(x), (np.asarray(x)[:, :6] * w).sum(axis=(1, 2))[:, None]], axis=1
            ),
            (*base.feature_names, "flat"),
            sequence_length=40,
        )
        for m in base.members
    ]
    return DeepEnsemble(members)
"""


def _factory(tmp_path: Path, scale=1.0, offset=0.0) -> str:
    path = tmp_path / f"scaled_{abs(hash((scale, offset)))}.py"
    path.write_text(FACTORY.format(scale=scale, offset=offset))
    return str(path)


def _run(tmp_path: Path, model: str, name: str, *extra, seqs=None) -> Path:
    fa = helpers.write_fasta(tmp_path / f"{name}.fa", seqs or helpers.random_dna(6, 40, seed=11))
    out = tmp_path / name
    argv = ["run", "--model", model, "--fasta", str(fa), "--window", "10", "22"]
    assert (
        cli.main([*argv, "--no-figures", "--no-report", "--quiet", "--out", str(out), *extra]) == 0
    )
    return out


def _brute_force(members, x):
    """Mean and SD (ddof 1) over members of f(mutant) - f(reference), in float64."""
    diffs = []
    for m in members:
        ref = np.asarray(m.predict(x), dtype=np.float64)
        per = np.empty((x.shape[0], x.shape[1], 3, ref.shape[1]))
        for p in range(x.shape[1]):
            b = int(x[0, p].argmax())
            for k, alt in enumerate(a for a in range(4) if a != b):
                mut = x.copy()
                mut[:, p] = 0.0
                mut[:, p, alt] = 1.0
                per[:, p, k] = np.asarray(m.predict(mut), dtype=np.float64) - ref
        diffs.append(per)
    d = np.stack(diffs)
    return d.mean(0), d.std(0, ddof=1)


@pytest.mark.parametrize("offset", [1e5, 1e8])
def test_float64_model_effects_are_exact_at_any_offset(offset):
    base = helpers.tiny_model()
    members = [
        from_function(
            lambda x, m=m: np.asarray(m.predict(x), dtype=np.float64) + offset,
            base.feature_names,
            sequence_length=40,
        )
        for m in base.members
    ]
    x = np.eye(4, dtype=np.float32)[np.random.default_rng(2).integers(0, 4, (1, 40))]
    eff = ism.saturation_effects(DeepEnsemble(members), x)
    mean, sd = _brute_force(base.members, x)
    assert eff.reference.dtype == np.float64
    np.testing.assert_allclose(eff.mean, mean, rtol=1e-5, atol=1e-6 * offset * 1e-7 + 1e-7)
    np.testing.assert_allclose(eff.se, sd, rtol=1e-4, atol=1e-7)


def _tables(out: Path) -> pd.DataFrame:
    return pd.read_parquet(out / "global_effects.parquet").sort_values(
        ["exposure", "outcome", "method"], ignore_index=True
    )


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("plain")
    return _tables(_run(tmp, f"{_factory(tmp)}:f", "plain"))


@pytest.mark.parametrize("offset", [1e5, 1e8])
def test_run_with_an_offset_gives_the_tables_without_it(tmp_path, plain, offset):
    got = _tables(_run(tmp_path, f"{_factory(tmp_path, offset=offset)}:f", "offset"))
    ok = np.isfinite(plain["estimate"])
    assert ok.sum() >= 8
    off = np.abs(got["estimate"] - plain["estimate"])[ok] / plain["se"][ok]
    assert off.max() < 1e-3, off.max()
    assert list(got["verdict"]) == list(plain["verdict"])


SCALE_FREE = ("estimate", "se", "pvalue", "heterogeneity_share")


@pytest.mark.parametrize("scale", [1e-30, 1e30])
def test_scale_free_statistics_do_not_depend_on_the_output_scale(tmp_path, plain, scale):
    got = _tables(_run(tmp_path, f"{_factory(tmp_path, scale=scale)}:f", "scaled"))
    assert list(got["verdict"]) == list(plain["verdict"])
    for col in SCALE_FREE:
        a, b = got[col].to_numpy(float), plain[col].to_numpy(float)
        assert (np.isnan(a) == np.isnan(b)).all(), col
        np.testing.assert_allclose(a[np.isfinite(b)], b[np.isfinite(b)], rtol=1e-4, err_msg=col)


@pytest.mark.parametrize("factory", ["constant", "outside"])
def test_a_flat_feature_is_left_out_with_a_warning(tmp_path, plain, factory):
    """A constant output, or one that reads only outside --window: no mutation changes it."""
    out = _run(tmp_path, f"{_factory(tmp_path)}:{factory}", "flat")
    record = json.loads((out / "run.json").read_text())
    assert any("flat: no mutation inside the window" in w for w in record["warnings"])
    got = _tables(out)
    with_flat = (got["exposure"] == "flat") | (got["outcome"] == "flat")
    assert (got.loc[with_flat, "verdict"] == "undetermined").all()
    rest = got[~with_flat].reset_index(drop=True)
    pd.testing.assert_series_equal(rest["estimate"], plain["estimate"], check_names=False)


def test_identical_reference_sequences_say_the_direction_check_cannot_run(tmp_path):
    seqs = helpers.random_dna(1, 40, seed=4) * 4
    out = _run(
        tmp_path, f"{_factory(tmp_path)}:f", "same", "--direction-scale", "reference", seqs=seqs
    )
    warnings = json.loads((out / "run.json").read_text())["warnings"]
    assert any("directionality check" in w and "do not vary" in w for w in warnings), warnings
