"""Deep MR on a published trained model: the SpliceAI ensemble on human HBB exon 2.

The weights come from PyPI at run time (``examples/real_model/spliceai_adapter.py``); the test skips
when the registry cannot be reached. HBB_GRCh38.fa is GRCh38 chr11:5,225,464-5,227,071 (minus
strand) in transcript orientation; exon 2 spans indexes 272-494, its intron-1 AG sits at 270-271 and
its intron-2 GT at 495-496.
"""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from deepmr_kipoi import kipoi_models, pipeline, registry, sequences

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parents[1] / "examples" / "real_model"
FASTA = HERE / "HBB_GRCh38.fa"


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


@pytest.fixture(scope="module")
def adapter():
    pytest.importorskip("tf_keras")
    spec = importlib.util.spec_from_file_location(
        "spliceai_adapter_under_test", HERE / "spliceai_adapter.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    try:
        module.fetch_weights()
    except module.WeightsUnavailable as err:
        pytest.skip(f"SpliceAI weights unavailable (PyPI unreachable?): {err}")
    yield module
    registry.unregister_adapter("SpliceAI/HBB-exon2")


@pytest.fixture(scope="module")
def model(adapter):
    return kipoi_models.load_model("SpliceAI/HBB-exon2")


@pytest.fixture(scope="module")
def hbb():
    return "".join(FASTA.read_text().splitlines()[1:])


def test_sequence_is_hbb_gene_with_canonical_exon2_sites(hbb):
    # GRCh38 NC_000011.10:c5227071-5225464 is 1,608 bp; exon 2 is 223 bp, flanked by AG ... GT
    assert len(hbb) == 1608
    assert hbb[270:272] == "AG" and hbb[495:497] == "GT"
    assert hbb[272:495].startswith("GCTGCTGGTGGTCTACCCTTGG")  # beta-globin codons 31-38 (LLVVYPW)
    assert 494 - 272 + 1 == 223


def test_spliceai_hbb_exon2_deep_mr(adapter, model, hbb, tmp_path):
    assert model.n_samples == 5 and model.feature_names == ("acceptor", "donor")
    ref_seq = sequences.one_hot(hbb)
    mutant = hbb[:271] + "C" + hbb[272:]  # intron-1 AG -> AC
    gt_dead = hbb[:495] + "A" + hbb[496:]  # intron-2 GT -> AT
    direct = model.predict_samples(
        np.concatenate([ref_seq, sequences.one_hot(mutant), sequences.one_hot(gt_dead)])
    )
    # both sites of this constitutive exon are called with high confidence by every member
    prob = _sigmoid(direct[:, 0])
    assert prob.shape == (5, 2) and (prob > 0.9).all()
    # killing the donor GT wipes out the donor call (logit drop far beyond the members' spread)
    gt_effect = direct[:, 2, 1] - direct[:, 0, 1]
    assert gt_effect.mean() < -5 and gt_effect.max() < -3

    config = pipeline.RunConfig(
        fasta=str(FASTA),
        window=(270, 274),
        exposures=("acceptor",),
        outcomes=("donor",),
        # four positions only (the test's time): all three alleles may be instruments
        methods=("ivw",),
        seed=0,
        out=str(tmp_path / "run"),
        save_effects=True,
        one_per_position=False,
        figures=False,
        report=False,
        progress=False,
    )
    result = pipeline.run(config, model=model, identity={"name": "SpliceAI/HBB-exon2"})

    import h5py

    with h5py.File(tmp_path / "run" / "effects.h5") as f:
        mean = f["mean"][0]  # (W, 3, F)
        alt = f["alt_base"][0]
        positions = list(f["position"][:])
    acc = mean[..., 0]
    # every substitution of the AG dinucleotide destroys the acceptor (logit drop > 5)
    assert positions == [270, 271, 272, 273]
    assert (acc[:2] < -5).all()
    # the engine's paired effect equals the brute-force difference of the two predictions
    slot = int(np.flatnonzero(alt[1] == "ACGT".index("C"))[0])
    brute = (direct[:, 1] - direct[:, 0]).mean(axis=0)
    np.testing.assert_allclose(mean[1, slot], brute, rtol=1e-4, atol=1e-4)

    row = result.global_effects.query(
        "exposure == 'acceptor' and outcome == 'donor' and method == 'ivw'"
    )
    assert len(row) == 1 and np.isfinite(row[["estimate", "se"]].to_numpy()).all()
