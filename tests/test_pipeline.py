"""The Deep MR run: statistics against brute-force recomputation from the saved effects, planted
effects recovered, resume after an interruption equal to an uninterrupted run, input errors."""

import os
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from deepmr_kipoi import instruments, meta, mr, pipeline, results
from deepmr_kipoi.errors import DeepMRInputError
from deepmr_kipoi.run.config import validate
from deepmr_kipoi.run.local_fit import LocalFitSettings, MutantEffects
from tests import _helpers_pipeline as helpers

FACTORY = f"{Path(__file__).parent / '_helpers_pipeline.py'}:tiny_model"


def _config(tmp_path=None, **kw):
    base = dict(
        model=FACTORY,
        n_sequences=5,
        chunk_size=2,
        methods=("ivw", "egger"),
        progress=False,
        out=None if tmp_path is None else str(tmp_path),
    )
    base.update(kw)
    return pipeline.RunConfig(**base)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    return pipeline.run(_config(out, figures=False, report=False, save_effects=True))


def _brute_force_instruments(mean, se, spread, ie, io, n):
    """Instruments of sequence n for ie -> io by the default rules, written out one by one."""
    bx, sx, by = mean[n, ..., ie], se[n, ..., ie], mean[n, ..., io]
    keep = (np.abs(bx / sx) >= 1.96) & (np.abs(bx) >= 0.01 * spread[ie])
    for w in range(bx.shape[0]):  # one allele per position: the one with the largest |b/se|
        allowed = np.flatnonzero(keep[w])
        if len(allowed) > 1:
            best = allowed[np.argmax(np.abs(bx[w] / sx[w])[allowed])]
            keep[w] = False
            keep[w, best] = True
    # directionality: each effect in units of its feature's root-mean-square mutation effect in
    # this sequence (the default threshold 0: the plain comparison)
    rms_x = np.sqrt(np.mean(mean[n, ..., ie] ** 2))
    rms_y = np.sqrt(np.mean(mean[n, ..., io] ** 2))
    keep &= np.abs(bx) / rms_x > np.abs(by) / rms_y
    return keep.ravel()


def test_global_effect_equals_brute_force_from_saved_effects(finished_run):
    """Scalar mr.ivw per sequence on the instruments recomputed from effects.h5 by the default rules
    (significance, floor, one allele per position, directionality), then the scalar
    meta.random_effects: equal to the run's meta-analysis columns."""
    out = finished_run.out_dir
    with h5py.File(out / "effects.h5") as f:
        mean, se = f["mean"][()].astype(float), f["se"][()].astype(float)
        reference = f["reference"][()].astype(float)
        feats = [s.decode() if isinstance(s, bytes) else s for s in f["feature"][()]]
        assert list(f["mean"].attrs["axes"]) == ["sequence", "position", "allele", "feature"]
    spread = reference.mean(axis=0).std(axis=0, ddof=1)
    glob = pd.read_parquet(out / "global_effects.parquet")
    for exposure, outcome in [("x", "y"), ("y", "z"), ("w", "x")]:
        ie, io = feats.index(exposure), feats.index(outcome)
        estimates, ses = [], []
        for n in range(mean.shape[0]):
            keep = _brute_force_instruments(mean, se, spread, ie, io, n)
            bx, sx = mean[n, ..., ie].ravel(), se[n, ..., ie].ravel()
            by, sy = mean[n, ..., io].ravel(), se[n, ..., io].ravel()
            r = mr.ivw(bx[keep], by[keep], sx[keep], sy[keep])
            estimates.append(r.estimate)
            ses.append(r.se)
        ref = meta.random_effects(np.array(estimates), np.array(ses), method="REML")
        row = glob[
            (glob.exposure == exposure) & (glob.outcome == outcome) & (glob.method == "ivw")
        ].iloc[0]
        # effects.h5 stores float32: the recomputation sees rounded effects
        assert row.meta_estimate == pytest.approx(ref.estimate, rel=1e-4, abs=1e-6)
        assert row.meta_se == pytest.approx(ref.se, rel=1e-3)
        assert row.tau2 == pytest.approx(ref.tau2, rel=1e-2, abs=1e-8)
        assert row.k == 5


def test_planted_effects_are_recovered(finished_run):
    glob = finished_run.global_effects
    for (e, o), true in helpers.TRUE_EFFECTS.items():
        row = glob[(glob.exposure == e) & (glob.outcome == o) & (glob.method == "ivw")].iloc[0]
        assert row.ci_low - 0.05 <= true <= row.ci_high + 0.05, (e, o, row.estimate)
        assert row.significant


def test_results_folder_layout_and_provenance(finished_run):
    out = finished_run.out_dir
    for name in (
        "global_effects.csv",
        "global_effects.parquet",
        "local_effects.parquet",
        "effects.h5",
        "run.json",
        "config.yaml",
    ):
        assert (out / name).is_file(), name
    local = pd.read_parquet(out / "local_effects.parquet")
    assert len(local) == 5 * 12 * 2  # sequences x ordered pairs without x->x x methods
    assert not ((local.exposure.astype(str)) == local.outcome.astype(str)).any()
    glob_csv = pd.read_csv(out / "global_effects.csv")
    assert len(glob_csv) == 12 * 2
    info = results.read_run(out).run_info
    assert info["model"]["name"] == FACTORY and info["model"]["n_samples"] == 4
    assert len(info["model"]["factory_md5"]) == 32
    assert info["config"]["n_sequences"] == 5 and info["chunks"]["n"] == 3
    assert set(info["timings_s"]) >= {"ism", "mr", "meta", "total"}
    assert "numpy" in info["versions"]
    assert not list(out.rglob("*.deepmr-tmp"))


def test_resume_after_interruption_equals_uninterrupted_run(tmp_path, finished_run):
    out = tmp_path / "resumed"
    config = _config(out, figures=False, report=False, save_effects=True)

    class Stop(Exception):
        pass

    def stop_after_second(i, n):
        if i == 1:
            raise Stop

    with pytest.raises(Stop):
        pipeline.run(config, on_chunk=stop_after_second)
    chunks = sorted(p.name for p in (out / "chunks").glob("local_*.parquet"))
    assert chunks == ["local_00000.parquet", "local_00001.parquet"]
    assert not (out / "global_effects.csv").exists()

    resumed = pipeline.run(config)
    assert resumed.run_info["chunks"]["resumed"] == [0, 1]
    ref = finished_run
    pd.testing.assert_frame_equal(resumed.global_effects, ref.global_effects)
    pd.testing.assert_frame_equal(
        pd.read_parquet(out / "local_effects.parquet"),
        pd.read_parquet(ref.out_dir / "local_effects.parquet"),
    )
    again = pipeline.run(config)  # everything finished: only the aggregation is redone
    assert again.run_info["chunks"]["resumed"] == [0, 1, 2]


def test_other_configuration_in_same_folder_is_refused_unless_forced(tmp_path):
    # a setting that changes the ISM effects (the window); analysis settings such as z reuse the
    # stored effects instead (tests/test_reanalyze.py)
    out = tmp_path / "r"
    pipeline.run(_config(out, n_sequences=2, figures=False, report=False))
    with pytest.raises(ValueError, match="different configuration"):
        pipeline.run(_config(out, n_sequences=2, window=(0, 30), figures=False, report=False))
    assert (out / "global_effects.csv").exists()  # the earlier results are untouched
    res = pipeline.run(
        _config(out, n_sequences=2, window=(0, 30), figures=False, report=False, force=True)
    )
    assert res.run_info["config"]["window"] == [0, 30]


def test_local_mr_is_the_same_in_exposure_blocks():
    model = helpers.tiny_model()
    from deepmr_kipoi import ism, sequences

    eff = ism.saturation_effects(model, sequences.random_sequences(2, 40, seed=3), progress=False)
    mean, se = eff.mean.astype(float), eff.se.astype(float)
    ex, oc = [0, 1, 2, 3], [0, 1, 2, 3]
    sel = instruments.select(mean[..., ex], se[..., ex])
    whole = pipeline.local_mr(MutantEffects(mean, se), ex, oc, sel, ["ivw", "egger"])
    blocks = pipeline.local_mr(
        MutantEffects(mean, se),
        ex,
        oc,
        sel,
        ["ivw", "egger"],
        settings=LocalFitSettings(block_cells=1),
    )
    assert whole.estimate.shape == (2, 4, 4, 2)
    for f in ("estimate", "se", "intercept", "n_instruments", "heterogeneity_pvalue"):
        # GEMMs over other block shapes round differently: equal to 1e-12
        np.testing.assert_allclose(whole.fields[f], blocks.fields[f], rtol=1e-12, atol=1e-14)
    r = mr.ivw(
        *(
            a[0, ..., i].ravel()[sel.mask[0, ..., 1].ravel()]
            for a, i in ((mean, 1), (mean, 2), (se, 1), (se, 2))
        )
    )
    assert whole.estimate[0, 1, 2, 0] == pytest.approx(r.estimate, rel=1e-10)


def test_feature_selection_by_name_and_glob():
    names = ["HepG2_CTCF", "HepG2_DNase", "K562_CTCF", "K562_DNase"]
    assert pipeline.select_features(["*CTCF"], names, "exposure") == [0, 2]
    assert pipeline.select_features(["K562_DNase", "HepG2_*"], names, "x") == [3, 0, 1]
    assert pipeline.select_features([], names, "x") == [0, 1, 2, 3]
    with pytest.raises(
        ValueError, match="unknown outcome feature 'HepG2_DNAse'; close matches: HepG2_DNase"
    ):
        pipeline.select_features(["HepG2_DNAse"], names, "outcome")


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"exposures": ("x",), "outcomes": ("x",)}, "exposure and outcome are the same feature"),
        ({"exposures": ("q",)}, "unknown exposure feature 'q'"),
        ({"model": f"{FACTORY.rsplit(':', 1)[0]}:deterministic_model"}, "add uncertainty"),
        ({"methods": ("ivw", "bayes")}, "unknown MR method bayes"),
        ({"window": (30, 50)}, "ISM window 30-50 does not fit"),
        ({"fasta": "/nonexistent/x.fa"}, "FASTA file not found"),
    ],
)
def test_bad_input_raises_and_leaves_nothing(tmp_path, changes, message):
    out = tmp_path / "never"
    with pytest.raises(DeepMRInputError, match=message):
        pipeline.run(_config(out, n_sequences=2, **changes))
    assert not out.exists()


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"z": 1e6}, "no sequence had at least 3 instruments"),
        ({"min_instruments": 500}, "no sequence had at least 500 instruments"),
    ],
)
def test_input_error_found_after_chunks_keeps_them(tmp_path, changes, message):
    """An input error found once chunks are computed leaves the computed chunks (they are valid
    results of that configuration), so nothing computed is thrown away."""
    out = tmp_path / "kept"
    with pytest.raises(DeepMRInputError, match=message):
        pipeline.run(_config(out, n_sequences=2, **changes))
    assert (out / "chunks" / "local_00000.parquet").exists()
    assert not (out / "global_effects.parquet").exists()


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"window": 5}, "window must be two integers"),
        ({"level": "high"}, r"level must be a confidence level in \(0, 1\).*got 'high'"),
        ({"z": "high"}, "z must be a number"),
        ({"chunk_size": None}, "chunk_size must be an integer >= 1, got None"),
        ({"exposures": 5}, "exposures must be a list of names, got 5"),
        ({"meta_method": "bayes"}, "unknown meta-analysis method 'bayes'"),
        ({"figures": "no"}, "figures must be true or false"),
        ({"save_effects": "maybe"}, "save_effects must be auto, true or false"),
    ],
)
def test_config_values_are_type_checked(changes, message):
    with pytest.raises(DeepMRInputError, match=message):
        validate(_config(None, **changes))


def test_config_normalises_single_names_and_choices():
    cfg = validate(
        pipeline.RunConfig.from_dict(
            {
                "exposures": "GATA1",
                "outcomes": ["TAL1", "x"],
                "window": [2, 9],
                "meta-method": "reml",
            }
        )
    )
    assert cfg.exposures == ("GATA1",) and cfg.outcomes == ("TAL1", "x")
    assert cfg.window == (2, 9) and cfg.meta_method == "REML"
    with pytest.raises(DeepMRInputError, match="did you mean n_sequences"):
        pipeline.RunConfig.from_dict({"n_sequence": 3})


def test_wrong_length_and_off_chromosome_inputs(tmp_path):
    fasta = helpers.write_fasta(tmp_path / "s.fa", helpers.random_dna(2, 30))
    with pytest.raises(ValueError, match="the sequences are 30 bp but the model takes 40 bp"):
        pipeline.run(_config(tmp_path / "a", fasta=str(fasta)))
    mixed = helpers.write_fasta(
        tmp_path / "m.fa", helpers.random_dna(1, 40) + helpers.random_dna(1, 41)
    )
    with pytest.raises(ValueError, match="different lengths"):
        pipeline.run(_config(tmp_path / "b", fasta=str(mixed)))
    genome = helpers.write_fasta(tmp_path / "g.fa", helpers.random_dna(1, 100), ["chr1"])
    bed = tmp_path / "r.bed"
    bed.write_text("chr1\t10\t50\nchr1\t80\t100\n")
    with pytest.raises(ValueError, match="runs off chr1"):
        pipeline.run(_config(tmp_path / "c", fasta=str(genome), bed=str(bed), n_sequences=None))
    assert not any((tmp_path / d).exists() for d in "abc")


def test_fasta_and_bed_sequences_are_used(tmp_path):
    genome = helpers.write_fasta(tmp_path / "g.fa", helpers.random_dna(1, 300, seed=5), ["chr1"])
    bed = tmp_path / "r.bed"
    bed.write_text("chr1\t20\t60\tpeakA\nchr1\t100\t140\tpeakB\nchr1\t200\t240\tpeakC\n")
    res = pipeline.run(_config(None, fasta=str(genome), bed=str(bed), n_sequences=None))
    assert sorted(res.local_effects["sequence_id"].unique()) == ["peakA", "peakB", "peakC"]


def test_hard_killed_run_leaves_readable_chunks_and_resumes_equal(tmp_path, finished_run):
    """SIGKILL right after the first chunk is written: the files present are whole; re-running the
    same config resumes and gives the uninterrupted run's tables."""
    import signal

    out = tmp_path / "killed"
    config = _config(out, figures=False, report=False, save_effects=True)
    pid = os.fork()  # a forked child, as a second interpreter would be but without its imports
    if pid == 0:  # the child: never returns into pytest
        try:
            pipeline.run(config, on_chunk=lambda i, n: os.kill(os.getpid(), signal.SIGKILL))
        finally:
            os._exit(3)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, status
    assert [p.name for p in sorted((out / "chunks").glob("local_*"))] == ["local_00000.parquet"]
    pd.read_parquet(out / "chunks" / "local_00000.parquet")
    results.read_npz(out / "chunks" / "arrays_00000.npz")
    resumed = pipeline.run(_config(out, figures=False, report=False, save_effects=True))
    assert resumed.run_info["chunks"]["resumed"] == [0]
    pd.testing.assert_frame_equal(resumed.global_effects, finished_run.global_effects)
    pd.testing.assert_frame_equal(resumed.local_effects, finished_run.local_effects)


def test_resume_refuses_chunks_of_other_weights(tmp_path):
    out = tmp_path / "w"
    model = helpers.tiny_model()
    config = _config(out, n_sequences=2, figures=False, report=False)

    def ident(md5):
        return {
            "name": "tiny",
            "n_samples": 4,
            "n_features": 4,
            "weights": [{"path": "w", "md5": md5}],
        }

    pipeline.run(config, model=model, identity=ident("a" * 32))
    pipeline.run(config, model=model, identity=ident("a" * 32))  # same weights: resumes
    with pytest.raises(ValueError, match="other model weights"):
        pipeline.run(config, model=model, identity=ident("b" * 32))


def test_minimum_instrument_count_is_enforced():
    from deepmr_kipoi import mr as mr_module

    assert mr_module.REASONS[pipeline.TOO_FEW].startswith("too few instruments")
    # all alleles, no floor or directionality: the counts stay high enough to straddle 110
    res = pipeline.run(
        _config(
            None,
            n_sequences=3,
            methods=("ivw",),
            min_instruments=110,
            one_per_position=False,
            floor=0.0,
            directional=False,
        )
    )
    local = res.local_effects
    few = local.n_instruments < 110
    assert few.any() and (~few).any()
    assert (local.reason[few] == pipeline.TOO_FEW).all() and local.estimate[few].isna().all()
    assert local.estimate[~few].notna().all()
    glob = res.global_effects
    for row in glob.itertuples():
        sub = local[(local.exposure == row.exposure) & (local.outcome == row.outcome)]
        assert row.k == int((sub.n_instruments >= 110).sum())


def test_factory_file_with_a_dataclass_and_postponed_annotations(tmp_path):
    # dataclasses look their module up in sys.modules while the file runs
    path = tmp_path / "factory.py"
    path.write_text(
        "from __future__ import annotations\n"
        "from dataclasses import dataclass\n\n\n"
        "@dataclass\nclass Spec:\n    members: int = 3\n\n\n"
        "def make(seed: int = 0):\n"
        "    from tests._helpers_pipeline import tiny_model\n"
        "    return tiny_model(seed=seed, n_members=Spec().members)\n"
    )
    res = pipeline.run(_config(None, model=f"{path}:make", n_sequences=2, methods=("ivw",)))
    assert res.record.model["n_samples"] == 3
