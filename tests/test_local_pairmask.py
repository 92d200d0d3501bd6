"""The local stage's compiled pair-mask engine against the explicit-mask definition.

The run's local stage (``run.local_fit.local_mr``, ``run.local_samples.sample_estimates``) computes IVW,
MR-Egger, the instrument counts and the heterogeneity test under per-pair directionality masks in
one compiled pass (``mr.pairmask``). The reference here is the definition, computed the slow way:
the pair mask formed as an array (``instruments.select`` & ``instruments.directional``), each
method on ``mr.run_batched`` over it (``drop_invalid=True``) and ``run.local_checks.heterogeneity`` on the
same mask, for 20 features of a simulated 5-sample ensemble with N positions, zero SEs and both
directionality spreads.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from deepmr_kipoi import instruments, mr
from deepmr_kipoi.mr import pairmask
from deepmr_kipoi.run import local, local_checks, local_fit, local_samples
from deepmr_kipoi.run.config import RunConfig

N_SEQ, W, F, S = 3, 14, 20, 5


def _effects(seed: int):
    """Per-sample effects (S, n, W, 3, F) of a toy ensemble: shared latent drivers (so that
    features cause each other and mutations move several features), member noise, an N
    position (NaN) and a mutant with a zero SE on one feature."""
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(N_SEQ, W, 3, 4))
    load = rng.normal(size=(4, F)) * (rng.random((4, F)) < 0.6)
    true = latent @ load + 0.3 * rng.normal(size=(N_SEQ, W, 3, F))
    noise = rng.uniform(0.05, 0.4, size=(1, N_SEQ, W, 3, F))
    samples = true[None] + noise * rng.normal(size=(S, N_SEQ, W, 3, F))
    samples[:, 1, 4] = np.nan  # an N position of sequence 1
    samples[:, 0, 2, 1, 7] = samples[0, 0, 2, 1, 7]  # every sample agrees: SE 0
    return samples


def _reference(mean, se, ex, oc, sel, direction, samples, methods, min_inst):
    """The local fields and per-sample estimates by explicit pair masks (the definition)."""
    flat = local_fit._flat
    n = mean.shape[0]
    mask_x = sel.mask.reshape(n, -1, len(ex)).transpose(0, 2, 1)
    bx, sx, by, sy = flat(mean, ex), flat(se, ex), flat(mean, oc), flat(se, oc)
    spread = np.broadcast_to(direction.spread, (n, F))
    passes = instruments.directional(
        flat(direction.effects, ex)[:, :, None],
        flat(direction.effects, oc)[:, None],
        flat(direction.se, ex)[:, :, None],
        flat(direction.se, oc)[:, None],
        spread[:, ex][:, :, None, None],
        spread[:, oc][:, None, :, None],
        z=direction.z,
    )
    pair = mask_x[:, :, None, :] & passes
    fields = {}
    for name in ("estimate", "se", "intercept", "i2_gx", "pvalue", "n_instruments", "reason"):
        fields[name] = np.zeros((n, len(ex), len(oc), len(methods)))
    for mi, m in enumerate(methods):
        r = mr.run_batched(
            m, bx[:, :, None], by[:, None], sx[:, :, None], sy[:, None], pair, drop_invalid=True
        )
        for name in fields:
            fields[name][..., mi] = getattr(r, name)
    sx_s = np.stack([flat(d, ex) for d in samples])[:, :, :, None]
    sy_s = np.stack([flat(d, oc) for d in samples])[:, :, None]
    q, p, spr = local_checks.heterogeneity(
        bx[:, :, None], by[:, None], sx[:, :, None], sy[:, None], pair, sx_s, sy_s
    )
    few = (fields["reason"] == 0) & (fields["n_instruments"] < min_inst)
    for name in ("estimate", "se", "intercept", "i2_gx", "pvalue"):
        fields[name][few] = np.nan
    fields["reason"][few] = local_fit.TOO_FEW
    fields["heterogeneity_pvalue"] = np.where(few, np.nan, p[..., None])
    fields["heterogeneity_spread"] = np.where(few, np.nan, spr[..., None])
    fields["removed_direction"] = mask_x.sum(-1)[:, :, None] - pair.sum(-1)
    per_sample = np.full((S, n, len(ex), len(oc), len(methods)), np.nan)
    for s, d in enumerate(samples):
        for mi, m in enumerate(methods):
            r = mr.run_batched(
                m,
                flat(d, ex)[:, :, None],
                flat(d, oc)[:, None],
                sx[:, :, None],
                sy[:, None],
                pair,
                drop_invalid=True,
            )
            ok = (r.reason == 0) & (r.n_instruments >= min_inst)
            per_sample[s, ..., mi] = np.where(ok, r.estimate, np.nan)
    return fields, per_sample


@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"direction_z": 1.0},
        {"direction_scale": "reference", "one_per_position": False, "floor": 0.0},
    ],
)
def test_compiled_engine_equals_explicit_pair_masks(settings):
    samples = _effects(11)
    mean = samples.mean(axis=0)
    se = samples.std(axis=0, ddof=1)
    config = RunConfig(model="toy", methods=("ivw", "egger", "ivw_fe"), **settings)
    ex, oc = list(range(F)), list(range(F))
    spread = np.nanstd(np.nanmean(samples, axis=(0, 2, 3)), axis=0, ddof=1)
    step = local.local_step(
        local_fit.MutantEffects(mean, se, samples),
        ex,
        oc,
        config,
        features=local.FeatureContext(spread=spread),
    )
    assert step.direction is not None
    fields, per_sample = _reference(
        mean, se, ex, oc, step.selection, step.direction, samples, config.methods, 3
    )
    got = step.estimates.fields
    assert (fields["reason"] == 0).mean() > 0.5  # most cells have a fit
    assert 0 < fields["removed_direction"].mean() < fields["n_instruments"].max()
    np.testing.assert_array_equal(got["reason"], fields["reason"])
    np.testing.assert_array_equal(got["n_instruments"], fields["n_instruments"])
    np.testing.assert_array_equal(got["removed_direction"][..., 0], fields["removed_direction"])
    for name in ("estimate", "se", "intercept", "i2_gx", "pvalue"):
        np.testing.assert_allclose(got[name], fields[name], rtol=1e-9, atol=1e-12, err_msg=name)
    # the reference's covariance term is taken in the samples' own precision (here float64)
    for name in ("heterogeneity_pvalue", "heterogeneity_spread"):
        np.testing.assert_allclose(got[name], fields[name], rtol=1e-8, atol=1e-12, err_msg=name)
    est = local_samples.sample_estimates(samples, step, ex, oc, config)
    np.testing.assert_array_equal(np.isnan(est.estimate), np.isnan(per_sample))
    np.testing.assert_allclose(est.estimate, per_sample, rtol=1e-9, atol=1e-12)


def test_sorting_methods_keep_the_explicit_mask_path():
    samples = _effects(5)
    mean, se = samples.mean(axis=0), samples.std(axis=0, ddof=1)
    config = RunConfig(model="toy", methods=("ivw", "weighted_median"), n_boot=50)
    ex, oc = list(range(6)), list(range(F))
    step = local.local_step(local_fit.MutantEffects(mean, se, samples), ex, oc, config)
    fields, _ = _reference(mean, se, ex, oc, step.selection, step.direction, samples, ("ivw",), 3)
    got = step.estimates.fields
    np.testing.assert_allclose(got["estimate"][..., 0], fields["estimate"][..., 0], rtol=1e-9)
    wm = got["estimate"][..., 1]
    assert np.isfinite(wm).mean() > 0.5
    est = local_samples.sample_estimates(samples, step, ex, oc, config)
    assert np.isfinite(est.estimate[..., 1]).mean() > 0.5


def test_pair_sums_count_the_directional_instruments_by_hand():
    # one sequence, one exposure, two outcomes, four instruments: which pass is known
    b = np.array([[[1.0, -2.0, 0.5, 3.0]], [[2.0, 1.0, 0.1, -1.0]], [[0.5, 3.0, 1.0, 4.0]]])
    se = np.full_like(b, 0.1)
    spread = np.ones((1, 3))
    x = pairmask.side(b[0][None], se[0][None], (b[0][None], se[0][None], spread[:, :1]))
    y = pairmask.side(
        b[1:].transpose(1, 0, 2),
        se[1:].transpose(1, 0, 2),
        (b[1:].transpose(1, 0, 2), se[1:].transpose(1, 0, 2), spread[:, 1:]),
    )
    out = pairmask.pair_sums(
        x, y, np.ones((1, 1, 4), bool), direction=True, z=0.0, tie=1e-6, what=("main",)
    )
    main = dict(zip(pairmask.MAIN_SUMS, out["main"]))
    # outcome 1 (|by| = 2, 1, .1, 1): instruments 1, 2, 3 pass; outcome 2: only instrument 0
    np.testing.assert_array_equal(main["n_pass"][0, 0], [3, 1])
    np.testing.assert_allclose(main["sxx"][0, 0], [(4 + 0.25 + 9) / 0.01, 1 / 0.01])
    np.testing.assert_allclose(main["sxy"][0, 0], [(-2 + 0.05 - 3) / 0.01, 0.5 / 0.01])


@pytest.mark.parametrize("block_cells", [local_fit.MR_BLOCK_CELLS, 7])
def test_one_pass_sample_estimates_equal_a_pass_of_their_own(block_cells):
    # the local step's pass gives every sample's IVW/Egger estimates too (blocked over
    # exposures, sub-blocked for the samples' sums); a step without the samples leaves them to
    # a pass of their own over the same instruments: the same sums in the same order
    samples = _effects(3)
    mean, se = samples.mean(axis=0), samples.std(axis=0, ddof=1)
    config = RunConfig(model="toy", methods=("ivw", "egger"))
    ex, oc = list(range(F)), list(range(F))
    step = local.local_step(local_fit.MutantEffects(mean, se, samples), ex, oc, config)
    assert step.estimates.closed_samples is not None
    settings = dataclasses.replace(local.mr_settings(config, 0), block_cells=block_cells)
    blocked = local_fit.local_mr(
        local_fit.MutantEffects(mean, se, samples),
        ex,
        oc,
        step.selection,
        config.methods,
        settings=settings,
        direction=step.direction,
    )
    separate = dataclasses.replace(
        step, estimates=dataclasses.replace(step.estimates, closed_samples=None)
    )
    own = local_samples.sample_estimates(samples, separate, ex, oc, config).estimate
    np.testing.assert_array_equal(
        local_samples.sample_estimates(samples, step, ex, oc, config).estimate, own
    )
    np.testing.assert_array_equal(blocked.closed_samples, own)
    # a model panel's cross-model pairs weigh by pooled SEs: never the local pass's estimates
    groups = np.arange(F) % 2
    panel = local_samples.sample_estimates(samples, step, ex, oc, config, feature_groups=groups)
    panel_own = local_samples.sample_estimates(
        samples, separate, ex, oc, config, feature_groups=groups
    )
    np.testing.assert_array_equal(panel.estimate, panel_own.estimate)
    assert not np.allclose(panel.estimate, own, equal_nan=True)
    for name, value in step.estimates.fields.items():
        if name in blocked.fields:
            np.testing.assert_array_equal(blocked.fields[name], value, err_msg=name)
    assert np.isfinite(own).mean() > 0.5
