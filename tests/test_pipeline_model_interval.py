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


def test_leave_one_out_estimates_are_arrays_in_the_chunk_files(tmp_path, full_and_leave_one_out):
    """The chunk files keep the leave-one-member-out local estimates as arrays (S, n, E, O, M);
    member s's equal the local estimates of a run of the ensemble without member s; the user's
    tables hold no trace of them; a resumed run gives the same model-aware interval."""
    from deepmr_kipoi import results

    model = helpers.tiny_model(n_members=4)
    config = pipeline.RunConfig(n_sequences=9, chunk_size=4, progress=False, figures=False,
                                report=False, methods=("ivw",), out=str(tmp_path))  # fmt: skip
    res = pipeline.run(config, model=model, identity={"name": "tiny"})
    assert not [c for c in res.local_effects.columns if c.startswith("loo_")]
    arrays = results.read_npz(tmp_path / "chunks" / "arrays_00000.npz")
    assert arrays["loo_estimate"].shape == (4, 4, 4, 4, 1) == arrays["loo_se"].shape
    without = DeepEnsemble([m for j, m in enumerate(model.members) if j != 2])
    other = pipeline.run(config.replace(out=None, model_interval=False), model=without,
                         identity={"name": "tiny"}).local_effects  # fmt: skip
    names = list(model.feature_names)
    for row in other[other.sequence_index < 4].itertuples():
        e, o = names.index(row.exposure), names.index(row.outcome)
        got = arrays["loo_estimate"][2, row.sequence_index, e, o, 0]
        want = row.estimate if row.reason == 0 else np.nan
        # the separate run's effects are the engine's float32 means, the jackknife's float64 ones
        np.testing.assert_allclose(got, want, rtol=1e-6, equal_nan=True)
    full, _ = full_and_leave_one_out
    ivw = full.xs("ivw", level="method")
    got = res.global_effects.set_index(["exposure", "outcome"]).sort_index()
    np.testing.assert_allclose(got["model_se"], ivw["model_se"].to_numpy(), rtol=1e-9)
    resumed = pipeline.run(config, model=model, identity={"name": "tiny"})
    assert resumed.run_info["chunks"]["resumed"] == [0, 1, 2]
    np.testing.assert_array_equal(resumed.global_effects["model_se"], res.global_effects["model_se"])
