"""The report's parts on hand-made global tables: the verdict headline, the embedded table, the
causal graph, the clustered heatmap (order, labels, claimed cells) and its canvas payload, and the
instrument map."""

import base64

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from deepmr_kipoi.report import drawing, headline, overview, table  # noqa: E402
from tests._report_tables import zoo_table  # noqa: E402
from tests.test_report import decode_column  # noqa: E402

AGREE = "IVW and MR-Egger agree, reverse direction not supported"
ONLY_IVW = "IVW finds an effect that MR-Egger does not: invalid instruments cannot be ruled out"


def _row(e, o, method, est, lo, hi, verdict, reason, n=16, sig=None, p=0.5):
    return {
        "exposure": e,
        "outcome": o,
        "method": method,
        "estimate": est,
        "ci_low": lo,
        "ci_high": hi,
        "pvalue": p,
        "qvalue": p,
        "significant": (lo > 0 or hi < 0) if sig is None else sig,
        "verdict": verdict,
        "verdict_reason": reason,
        "n_sequences": n,
    }


def _demo_like():
    rows = []
    for m, shift in (("ivw", 0.0), ("egger", -0.2)):
        rows += [
            _row(
                "GATA1",
                "TAL1",
                m,
                2.1234 + shift,
                1.8812 + shift,
                2.3456 + shift,
                "causal",
                AGREE,
                p=1e-9,
            ),
            _row(
                "TAL1",
                "GATA1",
                m,
                0.035,
                0.019,
                0.051,
                "undetermined",
                ONLY_IVW,
                sig=m == "ivw",
                p=0.001,
            ),
            _row(
                "SOX2",
                "TAL1",
                m,
                -0.089,
                -0.167,
                -0.012,
                "not causal",
                "no estimator finds an effect (IVW -0.0894 [-0.167, -0.0117])",
                sig=False,
                p=0.07,
            ),
            _row(
                "SOX2",
                "GATA1",
                m,
                -0.058,
                -0.12,
                0.007,
                "not causal",
                "no estimator finds an effect (IVW -0.0579 [-0.123, 0.00667])",
                p=0.1,
            ),
            _row(
                "GATA1",
                "SOX2",
                m,
                -0.012,
                -0.09,
                0.066,
                "undetermined",
                "too few sequences with a local fit (3 of 16; a verdict needs 5)",
                n=3,
            ),
            _row(
                "TAL1",
                "SOX2",
                m,
                -0.005,
                -0.027,
                0.016,
                "not causal",
                "no estimator finds an effect (IVW -0.00551 [-0.0266, 0.0156])",
                p=0.6,
            ),
        ]
    return pd.DataFrame(rows)


def test_headline_claims_and_reasons_in_counts():
    h = headline.build_headline(_demo_like())
    assert h.method == "ivw" and h.n_pairs == 6
    assert [c.sentence() for c in h.claims] == [
        "GATA1 -> TAL1: +2.12 [1.88, 2.35], 16 sequences, " + AGREE
    ]
    assert h.summary() == "1 of 6 ordered pairs causal:"
    # reasons counted by their words: the three "no estimator" pairs are one group
    assert h.not_claimed == (
        (
            "undetermined",
            "IVW finds an effect that MR-Egger does not: invalid instruments cannot be ruled out",
            1,
        ),
        ("undetermined", "too few sequences with a local fit", 1),
        ("not causal", "no estimator finds an effect", 3),
    )
    lines = h.lines()
    assert lines[0] == "1 of 6 ordered pairs causal:" and lines[1].startswith(
        "  GATA1 -> TAL1: +2.12"
    )
    assert lines[2] == (
        "Not claimed: 1 undetermined: " + ONLY_IVW + "; 1 undetermined: too few "
        "sequences with a local fit; 3 not causal: no estimator finds an effect."
    )


def test_headline_against_a_truth_counts_hits_false_claims_and_misses():
    table = _demo_like()
    truth = pd.DataFrame(
        [
            ("GATA1", "TAL1", 2.04),
            ("TAL1", "GATA1", -0.002),
            ("SOX2", "TAL1", 0.3),
            ("SOX2", "GATA1", 0.03),
            ("GATA1", "SOX2", 0.0),
            ("TAL1", "SOX2", 0.0),
        ],
        columns=["exposure", "outcome", "true_effect"],
    )
    h = headline.build_headline(table, truth)
    assert h.claims[0].true_effect == pytest.approx(2.04)
    assert h.claims[0].sentence().endswith("(true effect +2.04)")
    t = h.truth
    # planted: |true| >= 5% of 2.04 -> GATA1->TAL1 (claimed, right sign) and SOX2->TAL1 (missed)
    assert (t.n_planted, t.planted_claimed, t.false_claims) == (2, 1, ())
    assert t.missed == (("SOX2 -> TAL1", "not causal"),)
    ivw = table[table.method == "ivw"].merge(truth, on=["exposure", "outcome"])
    inside = int(((ivw.ci_low <= ivw.true_effect) & (ivw.true_effect <= ivw.ci_high)).sum())
    assert t.coverage == (inside, 6)
    assert "1 of 2 planted effects claimed with the right sign; 0 false claims" in h.truth_text()
    # a claim against a null truth is a false claim
    wrong = truth.assign(true_effect=[0.0, 0, 1.0, 0, 0, 0])
    assert headline.build_headline(table, wrong).truth.false_claims == ("GATA1 -> TAL1",)


def test_headline_lists_the_largest_claims_and_counts_the_rest():
    t, _ = _block_table(30, seed=3)
    claims = [(f"f{i:03d}", f"f{i + 1:03d}") for i in range(0, 28, 2)]  # 14 claims
    pairs = list(zip(t.exposure, t.outcome))
    t["verdict"] = ["causal" if p in claims else "not causal" for p in pairs]
    h = headline.build_headline(t)
    assert len(h.claims) == 14 and len(h.listed()) == headline.MAX_LISTED == 12
    sizes = [abs(c.estimate) for c in h.claims]
    assert sizes == sorted(sizes, reverse=True) and h.listed() == h.claims[:12]
    lines = h.lines()
    assert lines[13] == "  ... and 2 more causal pairs (verdict = causal in the table)"


def test_headline_of_a_table_without_verdicts_says_so():
    h = headline.build_headline(_demo_like().drop(columns=["verdict", "verdict_reason"]))
    assert not h.has_verdicts and h.claims == () and "no verdicts" in h.summary()


def test_reason_kind_drops_numbers_only():
    assert headline.reason_kind("no estimator finds an effect (IVW +0.01 [-0.02, 0.04])") == (
        "no estimator finds an effect"
    )
    assert (
        headline.reason_kind(
            "instruments disagree: heterogeneity beyond model noise in 40% of sequences"
        )
        == "instruments disagree: heterogeneity beyond model noise"
    )
    assert headline.reason_kind(AGREE) == AGREE


def test_table_payload_orders_encodes_and_caps():
    t = _demo_like()
    t["i2"] = np.linspace(0.123456, 99.87654, len(t))
    t.loc[3, "i2"] = np.nan
    p = table.table_payload(t, max_rows=5)
    assert p["n_rows"] == 5 and p["n_total"] == 12
    cols = {c["name"]: c for c in p["columns"]}
    assert [c["name"] for c in p["columns"]][:5] == [
        "exposure",
        "outcome",
        "verdict",
        "verdict_reason",
        "method",
    ]
    assert cols["i2"]["group"] == "technical" and cols["estimate"]["group"] == "decision"
    assert decode_column(cols["verdict"]) == [
        "causal",
        "causal",
        "undetermined",
        "undetermined",
        "undetermined",
    ]
    full = {c["name"]: c for c in table.table_payload(t)["columns"]}
    ordered = table.ordered_rows(t)
    i2 = decode_column(full["i2"])
    assert i2[list(ordered.index).index(3)] is None
    np.testing.assert_allclose([np.nan if v is None else v for v in i2], ordered["i2"])
    assert decode_column(full["significant"]) == ordered["significant"].tolist()
    assert full["significant"]["type"] == "flag" and full["n_sequences"]["levels"] == [16, 3]
    # many distinct numbers: float32, to float32 precision
    many = pd.concat([t] * 30, ignore_index=True).assign(estimate=np.linspace(-3, 3, 360))
    col = {c["name"]: c for c in table.table_payload(many)["columns"]}["estimate"]
    assert "float32" in col
    np.testing.assert_allclose(decode_column(col), table.ordered_rows(many)["estimate"], rtol=1e-6)
    # more than 255 distinct names: two-byte codes
    wide = many.assign(exposure=[f"x{i}" for i in range(len(many))])
    col = {c["name"]: c for c in table.table_payload(wide)["columns"]}["exposure"]
    assert col["width"] == 2 and decode_column(col) == table.ordered_rows(wide)["exposure"].tolist()
    assert "</" not in table.to_json({"x": "</script><b>"})


def _block_table(n=60, seed=0, methods=("ivw",)):
    """n features in two blocks: effects ~ +1 within a block, ~ 0 across, order shuffled."""
    template = pd.DataFrame([_row("a", "b", "ivw", 1.0, 0.5, 1.5, "causal", AGREE)])
    t = zoo_table(template, n, seed=seed, methods=methods)
    return t, {name: int(name[1:]) < n // 2 for name in t["exposure"].unique()}


def test_cluster_order_keeps_blocks_together_and_one_order_on_both_axes():
    t, block = _block_table()
    mat = drawing.effect_matrix(t, "ivw")
    rows, cols = overview.cluster_order(mat)
    assert rows == cols and sorted(rows) == sorted(mat.index)
    flags = [block[r] for r in rows]
    assert sum(a != b for a, b in zip(flags, flags[1:])) == 1  # one switch between the two blocks


def test_clustered_heatmap_labels_and_claimed_cells_at_164_features():
    t, _ = _block_table(164, seed=1)
    fig = overview.clustered_heatmap(t)
    ax = fig.axes[0]
    ylabels = [x.get_text() for x in ax.get_yticklabels()]
    assert 80 <= len(ylabels) <= 164 and all(x.startswith("f") for x in ylabels)
    rows, _ = overview.cluster_order(drawing.effect_matrix(t, "ivw"))
    assert ylabels == [rows[int(round(y))] for y in ax.get_yticks()]
    marks = [c for c in ax.collections if c.get_offsets().shape[0] == 2][0].get_offsets()
    got = {(rows[int(r)], rows[int(c)]) for c, r in marks}
    assert got == {("f000", "f002"), ("f001", "f002")}
    matplotlib.pyplot.close(fig)


def test_heatmap_payload_decodes_to_the_matrix():
    t, _ = _block_table(30, seed=2)
    p = overview.heatmap_payload(t)
    n = len(p["rows"])
    q = np.frombuffer(base64.b64decode(p["values"]), dtype=np.int8).reshape(n, len(p["cols"]))
    v = np.frombuffer(base64.b64decode(p["verdict"]), dtype=np.uint8).reshape(q.shape)
    mat = drawing.effect_matrix(t, "ivw").reindex(index=p["rows"], columns=p["cols"]).to_numpy()
    assert (q[np.isnan(mat)] == -128).all() and np.isnan(mat).sum() == n  # the diagonal only
    ok = ~np.isnan(mat)
    np.testing.assert_allclose(
        q[ok] / 127 * p["vmax"],
        np.clip(mat[ok], -p["vmax"], p["vmax"]),
        atol=p["vmax"] / 254 + 1e-12,
    )
    claimed = {(p["rows"][r], p["cols"][c]) for r, c in zip(*np.nonzero(v == 3))}
    assert claimed == {("f000", "f002"), ("f001", "f002")}


def test_causal_graph_draws_claims_and_undetermined_effects_only():
    t = _demo_like()
    edges = overview.graph_edges(t)
    assert set(zip(edges.exposure, edges.outcome, edges.verdict)) == {
        ("GATA1", "TAL1", "causal"),
        ("TAL1", "GATA1", "undetermined"),
    }
    fig = overview.causal_graph(t)
    gids = {p.get_gid() for p in fig.axes[0].patches}
    assert gids == {"edge:GATA1|TAL1", "edge:TAL1|GATA1"}
    widths = {p.get_gid(): p.get_linewidth() for p in fig.axes[0].patches}
    assert widths["edge:GATA1|TAL1"] > widths["edge:TAL1|GATA1"]
    labels = {x.get_text() for x in fig.axes[0].texts}
    assert labels == {"GATA1", "TAL1", "SOX2"}
    matplotlib.pyplot.close(fig)


def test_instrument_map_plots_every_mutation_and_marks_instruments():
    rng = np.random.default_rng(0)
    w = 20
    alt = np.array([[b for b in range(4) if b != ref] for ref in rng.integers(0, 4, w)])
    bx, by = rng.normal(size=(w, 3)), rng.normal(size=(w, 3))
    inst = np.abs(bx) > 1.0
    fig = drawing.instrument_map(np.arange(100, 100 + w), alt, [("X", bx), ("Y", by)], inst)
    top = fig.axes[0]
    points = np.vstack([c.get_offsets() for c in top.collections])
    assert len(points) == 3 * w
    big = np.vstack([c.get_offsets() for c in top.collections if c.get_sizes()[0] > 10])
    assert len(big) == inst.sum()
    assert {tuple(x) for x in big} == {(100 + i, bx[i, j]) for i, j in zip(*np.nonzero(inst))}
    np.testing.assert_allclose(top.lines[0].get_ydata(), bx.mean(axis=1))
    matplotlib.pyplot.close(fig)
