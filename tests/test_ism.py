"""Saturation ISM: exactness against single-mutant prediction, pairing, N handling, batching."""

import numpy as np
import pytest

from deepmr_kipoi import ism, sequences
from deepmr_kipoi.predictive import DeepEnsemble, Deterministic, MCDropout, from_function

torch = pytest.importorskip("torch")

from deepmr_kipoi.predictive import from_torch  # noqa: E402
from tests._helpers_ism import L, PositionBlind, conv_net  # noqa: E402

NAMES = ["a", "b", "c"]


@pytest.fixture
def x():
    seqs = sequences.random_sequences(4, L, seed=21)
    seqs[1, 3] = 0
    seqs[1, 9] = 0
    seqs[3, 0] = 0
    return seqs


@pytest.fixture
def ensemble():
    return DeepEnsemble([from_torch(conv_net(s), feature_names=NAMES) for s in range(4)])


def _brute(model, x, positions):
    """Every mutant predicted on its own: (mean, sd) of the paired differences, (N, W, 3, F)."""
    ref = model.predict_samples(x).astype(np.float64)
    n, w = len(x), len(positions)
    mean = np.full((n, w, 3, ref.shape[-1]), np.nan)
    sd = np.full_like(mean, np.nan)
    for i in range(n):
        for j, pos in enumerate(positions):
            base = np.flatnonzero(x[i, pos])
            if not base.size:
                continue
            alts = [b for b in range(4) if b != base[0]]
            for k, alt in enumerate(alts):
                m = x[i].copy()
                m[pos] = 0
                m[pos, alt] = 1
                d = model.predict_samples(m[None])[:, 0].astype(np.float64) - ref[:, i]
                mean[i, j, k] = d.mean(0)
                sd[i, j, k] = d.std(0, ddof=1) if len(d) > 1 else np.nan
    return mean, sd


def test_torch_ensemble_effects_equal_single_mutant_predictions(ensemble, x):
    eff = ism.saturation_effects(ensemble, x, batch_size=50, progress=False)
    assert eff.mean.shape == eff.se.shape == (4, L, 3, 3)
    assert eff.mean.dtype == np.float32 and eff.reference.shape == (4, 4, 3)
    mean, sd = _brute(ensemble, x, range(L))
    np.testing.assert_allclose(eff.mean, mean, atol=2e-6, rtol=1e-5)
    np.testing.assert_allclose(eff.se, sd, atol=2e-6, rtol=1e-5)
    np.testing.assert_allclose(eff.reference, ensemble.predict_samples(x), rtol=1e-6)
    assert eff.feature_names == tuple(NAMES) and eff.n_samples == 4


def test_alt_bases_and_n_positions(ensemble, x):
    eff = ism.saturation_effects(ensemble, x, progress=False)
    np.testing.assert_array_equal(eff.positions, np.arange(L))
    expected_n = np.zeros((4, L), bool)
    expected_n[1, [3, 9]] = expected_n[3, 0] = True
    np.testing.assert_array_equal(eff.is_n, expected_n)
    assert eff.n_masked == 3 and eff.n_mutants == 3 * (4 * L - 3)
    assert np.isnan(eff.mean[expected_n]).all() and np.isnan(eff.se[expected_n]).all()
    assert np.isfinite(eff.mean[~expected_n]).all()
    refs = sequences.one_hot(sequences.decode(x))  # round trip keeps N as all-zero
    for i, w in zip(*np.nonzero(~expected_n)):
        base = int(refs[i, w].argmax())
        assert eff.ref_bases[i, w] == base
        assert list(eff.alt_bases[i, w]) == [
            b for b in range(4) if b != base
        ]  # ACGT order, no identity
    assert (eff.ref_bases[expected_n] == 4).all()


def test_no_identity_mutants_and_memory_bounded_by_batch(x):
    seen = []

    def count(a):
        seen.append(len(a))
        return a.reshape(len(a), -1) @ np.arange(L * 4, dtype=np.float32)[:, None]

    model = Deterministic(from_function(count, feature_names=["lin"]))
    eff = ism.saturation_effects(model, x, batch_size=13, progress=False)
    # the reference once, then exactly 3 mutants per non-N position, in batches of at most 13 that
    # span sequences
    assert sum(seen) == 4 + 3 * (4 * L - 3)
    assert max(seen) <= 13 and seen.count(13) >= (3 * (4 * L - 3)) // 13
    # a linear model: effect = weight(alt) - weight(ref) at that position; S = 1 gives no SE
    weights = np.arange(L * 4).reshape(L, 4)
    i, w = 0, 5
    ref = int(x[i, w].argmax())
    np.testing.assert_allclose(
        eff.mean[i, w, :, 0], [weights[w, b] - weights[w, ref] for b in eff.alt_bases[i, w]]
    )
    assert np.isnan(eff.se).all()


def test_batch_size_and_window_invariance(ensemble, x):
    full = ism.saturation_effects(ensemble, x, batch_size=1024, progress=False)
    # one mutant per batch on two sequences (one with N positions), seven per batch (crossing
    # from one sequence to the next) on all four: 1-mutant batches cost a model call each
    for bs, rows in ((1, slice(1, 3)), (7, slice(None))):
        other = ism.saturation_effects(ensemble, x[rows], batch_size=bs, progress=False)
        want = full.mean[rows], full.se[rows]
        np.testing.assert_allclose(other.mean, want[0], atol=1e-6, rtol=1e-6, equal_nan=True)
        np.testing.assert_allclose(other.se, want[1], atol=1e-6, rtol=1e-6, equal_nan=True)
    win = ism.saturation_effects(ensemble, x, window=(2, 11), progress=False)
    np.testing.assert_array_equal(win.positions, np.arange(2, 11))
    np.testing.assert_allclose(win.mean, full.mean[:, 2:11], atol=1e-6, equal_nan=True)
    np.testing.assert_array_equal(win.is_n, full.is_n[:, 2:11])
    np.testing.assert_array_equal(win.alt_bases, full.alt_bases[:, 2:11])


def test_mc_dropout_pairing_gives_exact_zero_where_the_model_is_blind(x):
    cut = 10
    model = MCDropout(
        from_torch(PositionBlind.build(0, cut), feature_names=["u", "v"]), n_samples=8, seed=2
    )
    for bs in (5, 1024):
        eff = ism.saturation_effects(model, x, batch_size=bs, progress=False)
        blind = eff.mean[:, cut:][~eff.is_n[:, cut:]]
        assert np.all(blind == 0.0)
        assert np.all(eff.se[:, cut:][~eff.is_n[:, cut:]] == 0.0)
        seen = ~eff.is_n[:, :cut]
        assert np.all(
            eff.se[:, :cut][seen].max(-1).max(-1) > 0
        )  # dropout does make the samples differ
    # an unpaired comparison (different masks on the two sides) would not give zero: the masks matter
    other = MCDropout(
        from_torch(PositionBlind.build(0, cut), feature_names=["u", "v"]), n_samples=8, seed=3
    )
    assert not np.allclose(other.predict_samples(x), model.predict_samples(x))


def test_mc_dropout_effects_exact(x):
    model = MCDropout(
        from_torch(conv_net(7, dropout=torch.nn.Dropout1d(0.3)), feature_names=NAMES),
        n_samples=5,
        seed=0,
    )
    eff = ism.saturation_effects(model, x, window=(4, 12), batch_size=16, progress=False)
    mean, sd = _brute(model, x, range(4, 12))
    np.testing.assert_allclose(eff.mean, mean, atol=2e-6, rtol=1e-5)
    np.testing.assert_allclose(eff.se, sd, atol=2e-6, rtol=1e-5)
    again = ism.saturation_effects(
        MCDropout(model.members[0], n_samples=5, seed=0),
        x,
        window=(4, 12),
        batch_size=3,
        progress=False,
    )
    np.testing.assert_allclose(again.mean, eff.mean, atol=1e-6, equal_nan=True)


def test_agct_twin_has_the_same_effects(x):
    nets = [conv_net(s) for s in range(3)]
    perm = ["ACGT".index(b) for b in "AGCT"]
    twins = []
    for net in nets:
        twin = conv_net(99)
        twin.load_state_dict(net.state_dict())
        with torch.no_grad():
            twin[0].weight.copy_(net[0].weight[:, perm])
        twins.append(twin)
    a = ism.saturation_effects(
        DeepEnsemble([from_torch(n, feature_names=NAMES) for n in nets]), x, progress=False
    )
    b = ism.saturation_effects(
        DeepEnsemble([from_torch(n, feature_names=NAMES, alphabet="AGCT") for n in twins]),
        x,
        progress=False,
    )
    np.testing.assert_allclose(a.mean, b.mean, atol=2e-6, equal_nan=True)
    np.testing.assert_allclose(a.se, b.se, atol=2e-6, equal_nan=True)
    np.testing.assert_array_equal(a.alt_bases, b.alt_bases)


class _RecordingFast(DeepEnsemble):
    """A model that declares a fast-ISM path and records what the engine hands it."""

    fast_ism = True

    def __init__(self, members):
        super().__init__(members)
        self.calls = []

    def predict_mutants(self, reference, mutants):
        diff = (np.asarray(mutants) != np.asarray(reference)[None]).any(-1).sum(-1)
        self.calls.append((len(mutants), diff))
        return super().predict_mutants(reference, mutants)


def test_fast_ism_hook_gets_mutants_of_one_reference(x):
    members = [from_torch(conv_net(s), feature_names=NAMES) for s in range(3)]
    fast = _RecordingFast(members)
    eff = ism.saturation_effects(fast, x, batch_size=20, progress=False)
    plain = ism.saturation_effects(DeepEnsemble(members), x, batch_size=20, progress=False)
    np.testing.assert_allclose(eff.mean, plain.mean, atol=1e-6, equal_nan=True)
    assert all(n <= 20 and np.all(diff == 1) for n, diff in fast.calls)  # one changed position each
    assert sum(n for n, _ in fast.calls) == eff.n_mutants


def test_input_errors(ensemble, x):
    with pytest.raises(ValueError, match="window"):
        ism.saturation_effects(ensemble, x, window=(5, 5), progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        ism.saturation_effects(ensemble, x, batch_size=0, progress=False)
    with pytest.raises(ValueError, match="hard one-hot"):
        ism.saturation_effects(ensemble, x * 0.5, progress=False)
    with pytest.raises(ValueError, match="model takes 16"):
        fixed = DeepEnsemble([from_torch(conv_net(0), feature_names=NAMES, sequence_length=L)])
        ism.saturation_effects(fixed, np.zeros((1, 8, 4), np.float32), progress=False)


def test_progress_bar_runs(ensemble, x, capsys):
    eff = ism.saturation_effects(ensemble, x[:1], window=(0, 2), progress=True)
    assert eff.mean.shape == (1, 2, 3, 3)
    assert "ISM" in capsys.readouterr().err


def test_per_sample_effects_are_the_members_own_and_give_mean_and_se(ensemble, x):
    """per_sample=True: mean/se unchanged; samples[s] equals a Deterministic(member s) run; their
    mean and SD over s equal eff.mean/eff.se."""
    plain = ism.saturation_effects(ensemble, x, window=(2, 9), batch_size=7, progress=False)
    eff = ism.saturation_effects(
        ensemble, x, window=(2, 9), batch_size=7, progress=False, per_sample=True
    )
    assert plain.samples is None
    np.testing.assert_array_equal(eff.mean, plain.mean)
    np.testing.assert_array_equal(eff.se, plain.se)
    assert eff.samples.shape == (4, *eff.mean.shape) and eff.samples.dtype == np.float32
    members = np.stack(
        [
            ism.saturation_effects(
                Deterministic(m), x, window=(2, 9), batch_size=7, progress=False
            ).mean
            for m in ensemble.members
        ]
    )
    np.testing.assert_allclose(eff.samples, members, rtol=1e-6, atol=1e-6, equal_nan=True)
    np.testing.assert_allclose(eff.samples.mean(axis=0), eff.mean, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(eff.samples.std(axis=0, ddof=1), eff.se, rtol=1e-5, atol=1e-7)
    assert np.isnan(eff.samples[:, 1, 1]).all()  # position 3 of sequence 1 holds N
