"""Model panels (Deep MR across models): windows, the panel ISM, cross-model statistics, a
simulation with known truth, within-model pairs as in a single run, the CLI."""

import logging
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from deepmr_kipoi import inference, ism, pipeline
from deepmr_kipoi.errors import DeepMRInputError
from deepmr_kipoi.predictive import DeepEnsemble, from_function
from deepmr_kipoi.predictive.panel import ModelPanel, member_offset
from deepmr_kipoi.run import config as cfg
from deepmr_kipoi.run.local_checks import heterogeneity
from tests import _panel_sim as sim

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _counting_member(weights, name, calls):
    """A linear member that records the length of every batch it is given."""

    def fn(x):
        calls.append(x.shape)
        return np.einsum("nlc,lc->n", x.astype(np.float64), weights)[:, None]

    return from_function(fn, [name], weights.shape[0])


def _onehot(n, length, seed):
    rng = np.random.default_rng(seed)
    return np.eye(4, dtype=np.float32)[rng.integers(0, 4, (n, length))]


def test_member_offset_is_kipoiseq_centring():
    # kipoiseq resizes [s, e) to n around ceil((s + e) / 2): start = centre - ceil(n / 2)
    for length, n in ((60, 50), (251, 101), (11, 4), (10, 3), (7, 7)):
        centre = -(-length // 2)
        assert member_offset(length, n) == centre - -(-n // 2)
    assert member_offset(251, 101) == 75


def test_panel_ism_runs_each_member_on_its_window_only():
    rng = np.random.default_rng(0)
    wa, wb = rng.normal(size=(12, 4)), rng.normal(size=(8, 4))
    calls_a, calls_b = [], []
    a = DeepEnsemble([_counting_member(wa + 0.1 * k, "x", calls_a) for k in range(3)])
    b = DeepEnsemble([_counting_member(wb - 0.1 * k, "y", calls_b) for k in range(4)])
    panel = ModelPanel({"a": a, "b": b})
    assert panel.feature_names == ("a/x", "b/y") and panel.n_samples == 3
    assert panel.sequence_length == 12 and panel.spans(12) == [(0, 12), (2, 10)]
    x = _onehot(2, 12, 1)
    eff = ism.saturation_effects(panel, x, window=(1, 11), progress=False, per_sample=True)
    # brute force: every mutant of the whole window through every member, differences per sample
    for s in range(3):
        for i in range(2):
            for w, p in enumerate(range(1, 11)):
                for j, alt in enumerate(ism.ALT_BASES[x[i, p].argmax()]):
                    m = x[i].copy()
                    m[p] = np.eye(4)[alt]
                    dx = ((m - x[i]) * (wa + 0.1 * s)).sum()
                    assert eff.samples[s, i, w, j, 0] == pytest.approx(dx, abs=1e-5)
                    if 2 <= p < 10:
                        dy = ((m[2:10] - x[i, 2:10]) * (wb - 0.1 * s)).sum()
                        assert eff.samples[s, i, w, j, 1] == pytest.approx(dy, abs=1e-5)
                    else:  # outside b's window: not seen
                        assert np.isnan(eff.samples[s, i, w, j, 1])
    assert eff.outside[:, 1].tolist() == [True] + [False] * 8 + [True]
    assert not eff.outside[:, 0].any()
    # cost: the sum of the members' own ISMs. b's members saw only their 8 bases, and only the
    # mutants of the 8 positions inside b's window: per member 2 references + 2 x 8 x 3 mutants;
    # b's fourth member (beyond the panel's 3 samples) is never called
    assert {c[1] for c in calls_b} == {8} and {c[1] for c in calls_a} == {12}
    assert sum(c[0] for c in calls_b) == 3 * (2 + 2 * 8 * 3)
    assert sum(c[0] for c in calls_a) == 3 * (2 + 2 * 10 * 3)
    seen = np.isfinite(eff.samples[0])
    np.testing.assert_allclose(eff.mean[seen], eff.samples.mean(axis=0)[seen], atol=1e-6)


def test_panel_predictions_are_each_members_on_its_centred_window():
    rng = np.random.default_rng(2)
    wa, wb = rng.normal(size=(11, 4)), rng.normal(size=(4, 4))

    def linear(w):
        return from_function(lambda x: np.einsum("nlc,lc->n", x, w)[:, None], ["f"], len(w))

    panel = ModelPanel({"a": DeepEnsemble([linear(wa)] * 2), "b": DeepEnsemble([linear(wb)] * 2)})
    x = _onehot(3, 11, 3)
    pred = panel.predict_samples(x)
    # b reads bases [4, 8): ceil(11 / 2) - ceil(4 / 2) = 4
    np.testing.assert_allclose(pred[1, :, 1], np.einsum("nlc,lc->n", x[:, 4:8], wb), rtol=1e-5)
    np.testing.assert_allclose(pred[0, :, 0], np.einsum("nlc,lc->n", x, wa), rtol=1e-5)
    with pytest.raises(DeepMRInputError, match="takes 11"):
        panel.spans(10)


def test_panel_labels_and_config_parsing():
    with pytest.raises(DeepMRInputError, match="panel label"):
        ModelPanel({"a/b": DeepEnsemble([from_function(lambda x: x[:, 0, :1], ["f"])] * 2)})
    assert cfg.model_setting(["DeepSEA/predict"]) == "DeepSEA/predict"
    assert cfg.model_setting(["X", "Y"]) == "Y"  # a repeated option: the last counts
    assert cfg.model_setting(["a=X/y", "b=dir/m"]) == {"a": "X/y", "b": "dir/m"}
    with pytest.raises(DeepMRInputError, match="LABEL=MODEL"):
        cfg.model_setting(["a=X", "Y"])
    with pytest.raises(DeepMRInputError, match="repeat"):
        cfg.model_setting(["a=X", "a=Y"])
    with pytest.raises(DeepMRInputError, match="--weights"):
        cfg.panel_members(cfg.RunConfig(model=["a=X", "b=Y"], weight_files=("w.pt",)))
    members = cfg.panel_members(
        cfg.RunConfig(model={"a": "X", "b": {"model": "Y", "n_samples": 7}})
    )
    assert [(label, c.model, c.n_samples) for label, c in members] == [
        ("a", "X", None),
        ("b", "Y", 7),
    ]


def test_cross_model_heterogeneity_has_no_pairing_covariance():
    rng = np.random.default_rng(4)
    k = 6
    bx, by = rng.normal(size=(1, 1, 1, k)) + 2, rng.normal(size=(1, 1, 1, k))
    sx, sy = rng.uniform(0.2, 0.5, (1, 1, 1, k)), rng.uniform(0.2, 0.5, (1, 1, 1, k))
    dx = rng.normal(size=(5, 1, 1, 1, k))
    dy = dx + rng.normal(size=(5, 1, 1, 1, k))  # strongly paired samples
    mask = np.ones((1, 1, 1, k), bool)
    q_paired = heterogeneity(bx, by, sx, sy, mask, dx, dy)[0]
    q_cross = heterogeneity(bx, by, sx, sy, mask, dx, dy, np.array([[False]]))[0]
    q_none = heterogeneity(bx, by, sx, sy, mask)[0]
    # two models: the two-sample variance se_y^2 + theta^2 se_x^2, whatever the samples' pairing
    theta = (bx * by / sy**2).sum() / (bx * bx / sy**2).sum()
    expected = ((by - theta * bx) ** 2 / (sy**2 + theta**2 * sx**2)).sum()
    assert q_cross.item() == pytest.approx(expected, rel=1e-12)
    assert q_none.item() == pytest.approx(expected, rel=1e-12)
    assert q_paired.item() != pytest.approx(expected, rel=1e-3)


def _wilson(k, n, z=1.96):
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def test_random_pairing_of_two_models_samples_keeps_the_crossed_interval_valid():
    """theta[a, b, i] = mu + u_i + m_a + n_b + (mn)_ab + (um)_ia + (un)_ib + e: two models' samples
    as separate random factors. Pairing sample s of A with sample s of B gives iid pairs, so the
    two-way crossed inference of a single model applies; its 95% interval covers mu."""
    rng = np.random.default_rng(5)
    reps, s, n, mu = 4000, 5, 10, 0.7
    sd = {"u": 0.3, "m": 0.25, "n": 0.35, "mn": 0.1, "um": 0.1, "un": 0.1, "e": 0.05}

    def draw(*shape):
        return rng.normal(size=(*shape, reps))

    u, m, nb = sd["u"] * draw(1, n), sd["m"] * draw(s, 1), sd["n"] * draw(s, 1)
    # independent draws per pair (a, b) = (s, s): the interaction terms of the pair
    theta = (
        mu
        + u
        + m
        + nb
        + sd["mn"] * draw(s, 1)
        + sd["um"] * draw(s, n)
        + sd["un"] * draw(s, n)
        + sd["e"] * draw(s, n)
    )
    res = inference.crossed_batched(theta, level=0.95)
    covered = int(((res.ci_low <= mu) & (mu <= res.ci_high)).sum())
    low, high = _wilson(covered, reps)
    assert low <= 0.95 <= high + 0.01, (covered / reps, low, high)
    # the variance the pairing implies: sigma_u^2 / N + (sigma_m^2 + sigma_n^2 + sigma_mn^2) / S + ...
    implied = (
        sd["u"] ** 2 / n
        + (sd["m"] ** 2 + sd["n"] ** 2 + sd["mn"] ** 2) / s
        + (sd["um"] ** 2 + sd["un"] ** 2 + sd["e"] ** 2) / (n * s)
    )
    assert np.mean(res.se**2) == pytest.approx(implied, rel=0.05)
    assert np.var(res.estimate) == pytest.approx(implied, rel=0.08)


REPLICATES = 60


def test_panel_simulation_with_known_truth(caplog):
    """Three separately constructed ensembles on the same sequences (``tests/_panel_sim.py``).

    The headline interval of every cross-model pair covers its truth at the nominal rate: the
    planted A/X -> B/Y (0.6) and the null pairs A/X -> C/Z and B/Y -> A/X (0). With per-instrument
    weights ``1 / se_y^2`` taken from the same 5 samples as the per-sample estimates, the null
    pairs' 95% intervals covered 0 in 83% of 400 replicates (Wilson 95% interval 0.79-0.86)."""
    caplog.set_level(logging.ERROR)
    hits = {"ab_causal": 0, "ab_covers": 0, "ac_causal": 0, "ba_causal": 0, "null_covers": 0}
    for r in range(REPLICATES):
        models, truth = sim.build_panel(100 + r)
        config = pipeline.RunConfig(
            n_sequences=12,
            seed=r,
            progress=False,
            figures=False,
            report=False,
            methods=("ivw", "egger"),
            n_boot=100,
        )
        g = pipeline.run(config, model=ModelPanel(models)).global_effects
        g = g[g["method"] == "ivw"].set_index(["exposure", "outcome"])
        ab, ac, ba = g.loc[("a/X", "b/Y")], g.loc[("a/X", "c/Z")], g.loc[("b/Y", "a/X")]
        beta = truth[("a/X", "b/Y")]
        hits["ab_causal"] += ab["verdict"] == "causal" and np.sign(ab["estimate"]) == np.sign(beta)
        hits["ab_covers"] += ab["ci_low"] <= beta <= ab["ci_high"]
        hits["ac_causal"] += ac["verdict"] == "causal"
        hits["ba_causal"] += ba["verdict"] == "causal"
        hits["null_covers"] += sum(row["ci_low"] <= 0.0 <= row["ci_high"] for row in (ac, ba))
    trials = {k: 2 * REPLICATES if k == "null_covers" else REPLICATES for k in hits}
    report = {
        k: f"{v}/{trials[k]} = {v / trials[k]:.3f} [{_wilson(v, trials[k])[0]:.3f}, "
        f"{_wilson(v, trials[k])[1]:.3f}]"
        for k, v in hits.items()
    }
    print("panel simulation (rate, Wilson 95% interval):", report)
    assert hits["ab_causal"] >= 0.9 * REPLICATES, report
    assert hits["ab_covers"] >= 0.9 * REPLICATES, report
    assert hits["ac_causal"] <= 0.05 * REPLICATES, report
    assert hits["ba_causal"] <= 0.05 * REPLICATES, report
    # the null pairs' coverage is nominal: 0.95 inside its Wilson interval, and at least 0.9
    low, high = _wilson(hits["null_covers"], trials["null_covers"])
    assert low <= 0.95 <= high and hits["null_covers"] >= 0.9 * trials["null_covers"], report


def _strip_label(col, prefix):
    """Feature names as plain strings without ``prefix`` (missing values stay missing)."""
    out = col.astype(object)
    return out.where(out.isna(), out.astype(str).str.removeprefix(prefix))


def test_within_model_pairs_of_a_panel_equal_a_single_run():
    """Pairs of one member read that member's paired samples: the tables equal its single run."""

    def two_feature_model(seed):
        rng = np.random.default_rng(seed)
        base = rng.normal(size=(30, 4))
        members = []
        for _ in range(4):
            w1 = base + 0.05 * rng.normal(size=base.shape)
            w2 = 0.8 * w1 + 0.05 * rng.normal(size=base.shape)

            def fn(x, w1=w1, w2=w2):
                s = np.einsum("nlc,lc->n", x.astype(np.float64), w1)
                return np.stack(
                    [s, np.einsum("nlc,lc->n", x.astype(np.float64), w2) + 0.1 * s**2], -1
                )

            members.append(from_function(fn, ["p", "q"], 30))
        return DeepEnsemble(members)

    config = pipeline.RunConfig(
        n_sequences=6, seed=3, progress=False, figures=False, report=False, n_boot=50
    )
    single = pipeline.run(config, model=two_feature_model(0))
    panel = pipeline.run(
        config.replace(exposures=("a/*",), outcomes=("a/*",)),
        model=ModelPanel({"a": two_feature_model(0), "b": two_feature_model(1)}),
    )
    for name in ("global_effects", "local_effects"):
        got, want = getattr(panel, name), getattr(single, name)

        # every column of feature names (exposure, outcome, ...) without the panel's "a/"
        def holds_names(col):
            values = col.cat.categories if isinstance(col.dtype, pd.CategoricalDtype) else col
            return pd.Series(values, dtype=object).astype(str).str.startswith("a/").any()

        named = [c for c in got.columns if holds_names(got[c])]
        assert {"exposure", "outcome"} <= set(named)
        got = got.assign(**{c: _strip_label(got[c], "a/") for c in named})
        want = want.assign(**{c: _strip_label(want[c], "") for c in named})
        pd.testing.assert_frame_equal(got.reset_index(drop=True), want.reset_index(drop=True))


def test_single_output_model_names_the_panel():
    model = DeepEnsemble(
        [from_function(lambda x: x[:, :, 0].sum(1, keepdims=True), ["only"], 20)] * 2
    )
    with pytest.raises(DeepMRInputError, match="one output.*--model a=... --model b=..."):
        pipeline.run(pipeline.RunConfig(n_sequences=2, progress=False), model=model)


def _deepmr(args, cwd):
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run(
        [sys.executable, "-m", "deepmr_kipoi.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_cli_panel_of_two_factories(tmp_path):
    factory = os.path.join(ROOT, "tests", "_panel_sim.py")
    done = _deepmr(
        [
            "run",
            "--model",
            f"a={factory}:model_a",
            "--model",
            f"b={factory}:model_b",
            "--n-sequences",
            "8",
            "--methods",
            "ivw",
            "egger",
            "--n-boot",
            "50",
            "--no-figures",
            "--no-report",
            "--out",
            "run",
        ],
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    # the summary names the results folder, and no report where none was written
    assert "results in " in done.stdout and "report.html" not in done.stdout
    assert not (tmp_path / "run" / "report.html").exists()
    g = pd.read_csv(tmp_path / "run" / "global_effects.csv")
    assert set(g["exposure"]) == {"a/X", "b/Y"}
    row = g[(g["exposure"] == "a/X") & (g["method"] == "ivw")].iloc[0]
    assert row["verdict"] == "causal" and row["ci_low"] <= 0.6 <= row["ci_high"]


@pytest.mark.slow
def test_cli_panel_of_two_zoo_definitions_with_report(kipoi_groups, tmp_path):
    """A DeepBind member (101 bp) and a CpGenie member (251 bp) from their zoo definitions
    (``tests/_kipoi_groups.py``, random weights): DeepBind reads the centred 101 bp."""
    done = _deepmr(
        [
            "run",
            "--model",
            "ctcf=DeepBind/Homo_sapiens/TF/D00328.018_ChIP-seq_CTCF",
            "--model",
            "cpg=CpGenie/A549_ENCSR000DDI",
            "--source",
            kipoi_groups,
            "--n-samples",
            "4",
            "--n-sequences",
            "5",
            "--window",
            "95",
            "155",
            "--methods",
            "ivw",
            "--no-figures",
            "--quiet",
            "--out",
            "run",
        ],
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    g = pd.read_csv(tmp_path / "run" / "global_effects.csv")
    assert set(g["exposure"]) == {
        "ctcf/binding_prob/0",
        "cpg/methylation_prob",
        "cpg/unmethylation_prob",
    }
    assert (tmp_path / "run" / "report.html").is_file()
    local = pd.read_parquet(tmp_path / "run" / "local_effects.parquet")
    assert len(local) == 5 * 6  # 5 sequences x 6 ordered pairs


def test_panel_report_and_compare_show_each_features_model(tmp_path):
    from deepmr_kipoi import compare

    models, _ = sim.build_panel(7)
    runs = []
    for seed in (0, 1):
        out = tmp_path / f"run{seed}"
        config = pipeline.RunConfig(
            n_sequences=6, seed=seed, progress=False, methods=("ivw",), out=str(out)
        )
        pipeline.run(config, model=ModelPanel({"a": models["a"], "b": models["b"]}))
        runs.append(out)
    svg = (runs[0] / "figures" / "causal_graph.svg").read_text()
    # nodes filled with their model's colour, a legend entry per model
    for colour in ("#e69f00", "#56b4e9"):
        assert colour in svg
    assert "model a" in svg and "model b" in svg
    html = (runs[0] / "report.html").read_text()
    assert "panel members" in html and "features a/X" in html and "features b/Y" in html
    table = compare.compare(runs).table
    row = table[(table["exposure"] == "a/X") & (table["outcome"] == "b/Y")].iloc[0]
    assert row["exposure_model"].startswith("a (") and row["outcome_model"].startswith("b (")


@pytest.mark.slow
def test_panel_on_a_dask_cluster_and_resumed_gives_the_local_tables(tmp_path):
    """Dask workers load every member from the panel config as the client does; a finished
    panel run resumes from its chunks."""
    pytest.importorskip("distributed")
    from deepmr_kipoi.run import runner

    factory = os.path.join(ROOT, "tests", "_panel_sim.py")
    base = pipeline.RunConfig(
        model={"a": f"{factory}:model_a", "b": f"{factory}:model_b"},
        n_sequences=8,
        chunk_size=4,
        methods=("ivw",),
        figures=False,
        report=False,
        progress=False,
        seed=2,
    )
    local = runner.run(base.replace(out=str(tmp_path / "local")))
    dask = runner.run(base.replace(executor="dask", dask_workers=2, out=str(tmp_path / "dask")))
    pd.testing.assert_frame_equal(dask.global_effects, local.global_effects)
    pd.testing.assert_frame_equal(dask.local_effects, local.local_effects)
    resumed = runner.run(base.replace(out=str(tmp_path / "local")))
    assert list(resumed.run_info["chunks"]["resumed"]) == [0, 1]
    pd.testing.assert_frame_equal(resumed.global_effects, local.global_effects)


def test_analyze_takes_a_dict_of_models(recwarn):
    """``analyze({label: model})``: model objects, and names the run loads, give the same tables."""
    from deepmr_kipoi import analyze

    factory = os.path.join(ROOT, "tests", "_panel_sim.py")
    settings = {"n_sequences": 6, "seed": 1, "methods": ["ivw"], "progress": False}
    by_object = analyze({"a": sim.model_a(), "b": sim.model_b()}, **settings)
    by_name = analyze({"a": f"{factory}:model_a", "b": f"{factory}:model_b"}, **settings)
    mixed = analyze({"a": sim.model_a(), "b": f"{factory}:model_b"}, **settings)
    g = by_object.global_effects
    assert set(g["exposure"]) == {"a/X", "b/Y"}
    for other in (by_name, mixed):
        pd.testing.assert_frame_equal(other.global_effects, g)


def test_reanalysis_of_a_panel_run_equals_a_fresh_run(tmp_path):
    """The stored effects of a panel run (NaN outside a member's window, its members' models read
    from run.json) analysed with a new z give the fresh run's tables, without the models."""
    from deepmr_kipoi.run.reanalysis import reanalyze

    factory = os.path.join(ROOT, "tests", "_panel_sim.py")
    base = pipeline.RunConfig(
        model={"a": f"{factory}:model_a", "b": f"{factory}:model_b"},
        n_sequences=6,
        methods=("ivw",),
        figures=False,
        report=False,
        progress=False,
    )
    pipeline.run(base.replace(out=str(tmp_path / "first")))
    fresh = pipeline.run(base.replace(z=3.0))
    again = reanalyze(tmp_path / "first", z=3.0, progress=False)
    pd.testing.assert_frame_equal(again.global_effects, fresh.global_effects)
    pd.testing.assert_frame_equal(again.local_effects, fresh.local_effects)


def _cached_run(models: dict, cache, n_sequences=6, **settings):
    """A panel run of ``tests/_panel_sim.py`` factories, in memory, and the forward passes each
    model made (``sim.CALLS``)."""
    factory = os.path.join(ROOT, "tests", "_panel_sim.py")
    spec = {label: f"{factory}:{name}" for label, name in models.items()}
    if len(spec) == 1:
        spec = next(iter(spec.values()))
    config = pipeline.RunConfig(
        model=spec,
        n_sequences=n_sequences,
        seed=4,
        progress=False,
        figures=False,
        report=False,
        methods=("ivw", "egger"),
        n_boot=50,
        effects_cache=None if cache is None else str(cache),
        **settings,
    )
    sim.CALLS.clear()
    result = pipeline.run(config)
    return result, dict(sim.CALLS)


def test_effects_cache_reuses_a_models_ism_across_panels_and_single_runs(tmp_path):
    """A panel {a: M1, b: M2} after a panel {a: M1, c: M3} runs only M2; a panel with D after a
    single run of D runs D zero times; the tables equal those of runs without the cache."""
    cache = tmp_path / "cache"
    _, calls = _cached_run({"a": "counting_a", "c": "counting_c"}, cache)
    assert calls["a"] > 0 and calls["c"] > 0
    assert len(list(cache.glob("*/model.json"))) == 2  # one entry per model
    second, calls = _cached_run({"a": "counting_a", "b": "counting_b"}, cache)
    assert len(list(cache.glob("*/model.json"))) == 3
    assert second.run_info["model"]["effects_cache"] == {
        "folder": str(cache),
        "models": {"a": {"reused": 6, "computed": 0}, "b": {"reused": 0, "computed": 6}},
    }
    # b computed: 5 members x (6 references for the plan + 6 for the ISM + 6 x 50 x 3 mutants)
    assert calls.get("a", 0) == 0 and calls["b"] == 5 * (6 + 6 + 6 * 50 * 3)
    fresh, calls = _cached_run({"a": "counting_a", "b": "counting_b"}, None)
    assert calls["a"] > 0
    for name in ("global_effects", "local_effects"):
        pd.testing.assert_frame_equal(getattr(second, name), getattr(fresh, name))
    # a single run of a two-feature model, then a panel with it: it is not run again
    _, calls = _cached_run({"d": "counting_d"}, cache)
    assert calls["d"] > 0
    panel, calls = _cached_run({"d": "counting_d", "b": "counting_b"}, cache)
    assert calls.get("d", 0) == 0 and calls.get("b", 0) == 0
    fresh, _ = _cached_run({"d": "counting_d", "b": "counting_b"}, None)
    pd.testing.assert_frame_equal(panel.global_effects, fresh.global_effects)
    # one sequence more: only it runs (a reads all 60 bases: 1 + 1 references, 60 x 3 mutants)
    _, calls = _cached_run({"a": "counting_a", "b": "counting_b"}, cache, n_sequences=7)
    assert calls == {"a": 5 * (1 + 1 + 60 * 3), "b": 5 * (1 + 1 + 50 * 3)}
    # another ISM window is another entry: the model runs again on every sequence
    _, calls = _cached_run({"a": "counting_a", "b": "counting_b"}, cache, window=(10, 50))
    assert calls == {"a": 5 * (6 + 40 * 3 * 6), "b": 5 * (6 + 40 * 3 * 6)}


def test_members_with_more_samples_compute_only_the_panels():
    """A member with more samples than the panel predicts only the first S: an ensemble's first
    members, MC dropout's first masks (the same masks as its first S of more)."""
    torch = pytest.importorskip("torch")
    from deepmr_kipoi.predictive import MCDropout, from_torch
    from deepmr_kipoi.predictive.models import first_samples

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Dropout(0.3), torch.nn.Linear(4 * 12, 2)
    ).eval()
    many = MCDropout(from_torch(net, feature_names=["p", "q"], layout="NLC"), n_samples=6, seed=3)
    x = _onehot(4, 12, 5)
    few = first_samples(many, 3)
    assert few.n_samples == 3 and many.n_samples == 6
    np.testing.assert_array_equal(few.predict_samples(x), many.predict_samples(x)[:3])
    calls = []
    ens = DeepEnsemble([_counting_member(np.full((12, 4), float(k)), "y", calls) for k in range(5)])
    panel = ModelPanel({"a": few, "b": ens})
    assert panel.n_samples == 3 and panel.sample_counts == (3, 5)
    pred = panel.predict_samples(x)
    assert len(calls) == 3  # members 4 and 5 of b never run
    np.testing.assert_allclose(pred[:, :, 2], ens.predict_samples(x)[:3, :, 0], rtol=1e-6)
    assert first_samples(ens, 5) is ens
