"""The table of MR methods is the one place that lists them: every method in it is estimated (scalar
and batched, agreeing with each other), classified by the verdict and displayed with its label, and
no module outside ``mr/`` keeps a list or a label of its own."""

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from deepmr_kipoi import mr, verdict
from deepmr_kipoi.mr.methods import BATCHED_IMPLEMENTATIONS, METHOD_TABLE, method_label
from deepmr_kipoi.report import figures, page

ROOT = Path(__file__).resolve().parent.parent / "deepmr_kipoi"

# Six instruments with distinct |b_x| (MR-Egger), non-zero b_x (ratio methods), some pleiotropy.
BX = np.array([0.12, -0.21, 0.33, 0.25, -0.07, 0.41])
BY = 0.8 * BX + np.array([0.01, -0.02, 0.015, 0.0, 0.01, -0.005])
SE_X = np.full(6, 0.02)
SE_Y = np.array([0.05, 0.04, 0.06, 0.05, 0.03, 0.07])


def test_the_table_defines_the_package_lists():
    assert mr.METHODS == tuple(METHOD_TABLE)
    assert set(mr.ESTIMATORS) == set(METHOD_TABLE)
    assert mr.MIN_INSTRUMENTS == {m: s.min_instruments for m, s in METHOD_TABLE.items()}
    assert mr.PAIR_METHODS == ("ivw", "ivw_fe", "egger")
    for name, spec in METHOD_TABLE.items():
        assert spec.name == name and spec.batched in BATCHED_IMPLEMENTATIONS


@pytest.mark.parametrize("method", list(METHOD_TABLE))
def test_every_method_is_estimated_scalar_and_batched_alike(method):
    spec = METHOD_TABLE[method]
    kw = {} if spec.closed_form else {"n_boot": 50}
    # batched cell 0 draws from SeedSequence(seed, spawn_key=(0,)), as the scalar call below
    seed = {} if spec.closed_form else {"seed": np.random.SeedSequence(3, spawn_key=(0,))}
    scalar = mr.ESTIMATORS[method](BX, BY, SE_X, SE_Y, **kw, **seed)
    batched = mr.run_batched(method, BX[None], BY[None], SE_X[None], SE_Y[None], **kw, seed=3)
    assert batched.method == method and batched.reason[0] == 0
    assert batched.estimate[0] == pytest.approx(scalar.estimate, rel=1e-10)
    assert batched.se[0] == pytest.approx(scalar.se, rel=1e-10)
    assert batched.pvalue[0] == pytest.approx(scalar.pvalue, rel=1e-8)
    # the minimum of the table is the one both APIs enforce
    need = spec.min_instruments
    short = mr.run_batched(
        method, BX[: need - 1], BY[: need - 1], SE_X[: need - 1], SE_Y[: need - 1]
    )
    assert int(short.reason) == mr._common.TOO_FEW
    with pytest.raises(ValueError, match=f"at least {need} instruments"):
        mr.ESTIMATORS[method](BX[: need - 1], BY[: need - 1], SE_X[: need - 1], SE_Y[: need - 1])


@pytest.mark.parametrize("method", list(METHOD_TABLE))
def test_every_method_is_classified_by_the_verdict(method):
    spec = METHOD_TABLE[method]
    assert (method in verdict.AGREEMENT_METHODS) == spec.agreement
    assert (method in verdict.ROBUST_METHODS) == spec.robust
    assert (method in verdict.NON_IVW_METHODS) == (spec.batched != "ivw")
    # its label is the one the verdict's reasons use
    row = dict(
        exposure="x",
        outcome="y",
        method=method,
        estimate=1.0,
        se=0.1,
        df=9.0,
        ci_low=0.77,
        ci_high=1.23,
        significant=True,
        n_sequences=10,
        n_analysed=10,
        heterogeneity_share=0.0,
        heterogeneity_excess=False,
    )
    table = pd.DataFrame(
        [
            row,
            dict(
                row,
                exposure="y",
                outcome="x",
                estimate=0.0,
                ci_low=-0.4,
                ci_high=0.4,
                significant=False,
            ),
        ]
    )
    out = verdict.verdicts(table)
    reason = out["verdict_reason"].iloc[0]
    assert spec.label in reason
    assert out["verdict"].iloc[0] == "causal"


@pytest.mark.parametrize("method", list(METHOD_TABLE))
def test_every_method_is_displayed_with_its_label(method):
    label = METHOD_TABLE[method].label
    assert method_label(method) == label
    assert page.method_label is method_label and figures.method_label is method_label
    assert method_label("not-a-method") == "not-a-method"


def test_no_module_outside_mr_lists_methods_or_their_labels():
    labels = [re.escape(f'"{s.label}"') for s in METHOD_TABLE.values()]
    lists = r'\(\s*"ivw",\s*"ivw_fe"|"weighted_median",\s*"simple_median"'
    pattern = re.compile("|".join(labels) + "|" + lists)
    found = [
        str(p.relative_to(ROOT))
        for p in ROOT.rglob("*.py")
        if p.parent.name != "mr" and pattern.search(p.read_text(encoding="utf-8"))
    ]
    assert not found, f"method lists or labels outside mr/methods.py: {found}"
    assert len({s.label for s in METHOD_TABLE.values()}) == len(METHOD_TABLE)
