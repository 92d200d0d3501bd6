"""The model-aware interval of global effects: the pipeline's leave-one-member-out jackknife equals
the jackknife computed by hand from separate runs of the ensemble without each member."""


import numpy as np
import pytest
from scipy import stats

from deepmr_kipoi import pipeline
from deepmr_kipoi.predictive import DeepEnsemble
from tests import _helpers_pipeline as helpers


def _run(model, **kw):
    config = pipeline.RunConfig(n_sequences=9, chunk_size=4, progress=False, figures=False,
                                report=False, methods=("ivw", "egger", "simple_median"), **kw)  # fmt: skip
    return pipeline.run(config, model=model, identity={"name": "tiny"}).global_effects


KEY = ["exposure", "outcome", "method"]


@pytest.fixture(scope="module")
def full_and_leave_one_out():
    model = helpers.tiny_model(n_members=4)
    full = _run(model).set_index(KEY).sort_index()
    loo = [
        _run(DeepEnsemble([m for j, m in enumerate(model.members) if j != s]),
             model_interval=False).set_index(KEY).sort_index()
        for s in range(4)
    ]  # fmt: skip
    return full, loo


def test_jackknife_equals_separate_leave_one_member_out_runs(full_and_leave_one_out):
    full, loo = full_and_leave_one_out
    analytic = full.index.get_level_values("method").isin(["ivw", "egger"])
    theta = np.stack([t["estimate"].to_numpy() for t in loo])
    var_jk = 3 / 4 * ((theta - theta.mean(axis=0)) ** 2).sum(axis=0)
    ok = analytic & np.isfinite(var_jk)
    assert ok.sum() >= 12
    np.testing.assert_allclose(full["jackknife_se"].to_numpy()[ok], np.sqrt(var_jk[ok]),
                               rtol=1e-6, atol=1e-12)  # fmt: skip
    se_total = np.sqrt(full["se"].to_numpy() ** 2 + var_jk)
    np.testing.assert_allclose(full["model_se"].to_numpy()[ok], se_total[ok], rtol=1e-6)
    z = stats.norm.ppf(0.975)
    np.testing.assert_allclose(full["model_ci_high"].to_numpy()[ok],
                               full["estimate"].to_numpy()[ok] + z * se_total[ok], rtol=1e-6)  # fmt: skip
    # the model-aware interval contains the meta-analysis CI
    assert np.all(full["model_ci_low"].to_numpy()[ok] <= full["ci_low"].to_numpy()[ok])
    # bootstrap-SE methods get no jackknife
    assert full.loc[~analytic, list(pipeline.MODEL_INTERVAL_COLUMNS)].isna().all().all()


def test_no_model_interval_without_an_ensemble_of_three_or_when_switched_off(full_and_leave_one_out):
    _, loo = full_and_leave_one_out
    assert loo[0][list(pipeline.MODEL_INTERVAL_COLUMNS)].isna().all().all()  # switched off
    two = _run(DeepEnsemble(helpers.tiny_model(n_members=2).members))
    assert two[list(pipeline.MODEL_INTERVAL_COLUMNS)].isna().all().all()


def test_leave_one_out_columns_stay_in_chunk_files_only(tmp_path, full_and_leave_one_out):
    import pandas as pd

    config = pipeline.RunConfig(n_sequences=9, chunk_size=4, progress=False, figures=False,
                                report=False, methods=("ivw",), out=str(tmp_path))  # fmt: skip
    res = pipeline.run(config, model=helpers.tiny_model(n_members=4), identity={"name": "tiny"})
    assert not [c for c in res.local_effects.columns if c.startswith("loo_")]
    written = pd.read_parquet(tmp_path / "local_effects.parquet")
    assert not [c for c in written.columns if c.startswith("loo_")]
    chunk = pd.read_parquet(sorted((tmp_path / "chunks").glob("local_*.parquet"))[0])
    assert {f"loo_estimate_{s}" for s in range(4)} <= set(chunk.columns)
    full, _ = full_and_leave_one_out
    ivw = full.xs("ivw", level="method")
    got = res.global_effects.set_index(["exposure", "outcome"]).sort_index()
    np.testing.assert_allclose(got["model_se"], ivw["model_se"].to_numpy(), rtol=1e-9)
