"""The verdict of a whole run on models with known causal structure.

A linear toy ensemble where every instrument is valid: the exposure x reads the first half of the
sequence, the outcome y = beta x + its own motif in the second half, a bystander w reads positions
of its own. Members perturb the weights (the model's noise). Known truth: x -> y causal with
effect beta, y -> x and every pair with w have a zero effect. A reverse variant, x = 0.6 y + own
part, checks that the verdict names the true direction, and a pleiotropic variant (a shared block
of positions acts on x and y directly, no causal arrow) that no causal claim is made.
"""

import numpy as np
import pytest

from deepmr_kipoi import pipeline
from deepmr_kipoi.predictive import DeepEnsemble, from_function

LENGTH = 60


def _ensemble(kind: str, n_members: int = 10, noise: float = 0.03):
    rng = np.random.default_rng(7)
    first, second, third = np.zeros((LENGTH, 4)), np.zeros((LENGTH, 4)), np.zeros((LENGTH, 4))
    first[:20], second[20:40], third[40:] = (rng.normal(0, 1, (20, 4)) for _ in range(3))
    members = []
    for s in range(n_members):
        r = np.random.default_rng([11, s])
        a, b, c = (m + r.normal(0, noise, m.shape) * (m != 0) for m in (first, second, third))
        # the members also disagree slightly about every feature at every position (no effect is
        # known exactly: an SE of 0 would make an instrument unusable)
        jitter = r.normal(0, noise / 4, (3, LENGTH, 4))

        def fn(onehot, a=a, b=b, c=c, jitter=jitter):
            own_x, own_y, own_w = (np.einsum("nlc,lc->n", onehot, m) for m in (a, b, c))
            noise_x, noise_y, noise_w = np.einsum("nlc,flc->fn", onehot, jitter)
            if kind == "forward":
                x, y, w = own_x, 0.8 * own_x + own_y, own_w
            elif kind == "reverse":
                x, y, w = own_x + 0.6 * own_y, own_y, own_w
            else:  # pleiotropy: block c acts on x and y directly, in a ratio of 2
                x, y, w = own_x + 0.5 * own_w, own_y + own_w, own_w
            return np.stack([x + noise_x, y + noise_y, w + noise_w], axis=1)

        members.append(from_function(fn, ("x", "y", "w"), sequence_length=LENGTH))
    return DeepEnsemble(members)


def _verdicts(kind):
    config = pipeline.RunConfig(
        n_sequences=8,
        chunk_size=8,
        progress=False,
        figures=False,
        report=False,
        methods=("ivw", "egger", "weighted_median"),
        seed=1,
        n_boot=200,
    )
    g = pipeline.run(config, model=_ensemble(kind), identity={"name": kind}).global_effects
    assert (g.groupby(["exposure", "outcome"])["verdict"].nunique() == 1).all()
    return g[g.method == "ivw"].set_index(["exposure", "outcome"])


def test_a_planted_effect_with_valid_instruments_is_causal_in_its_direction_only():
    g = _verdicts("forward")
    assert g.loc[("x", "y"), "verdict"] == "causal", g.loc[("x", "y"), "verdict_reason"]
    assert g.loc[("x", "y"), "estimate"] == pytest.approx(0.8, abs=0.05)
    assert g.loc[("x", "y"), "direction"] == "x -> y"
    assert (g.drop(index=[("x", "y")])["verdict"] != "causal").all()
    assert g.loc[("y", "x"), "verdict"] != "causal"


def test_reverse_causation_is_named_in_its_true_direction():
    g = _verdicts("reverse")
    assert g.loc[("y", "x"), "verdict"] == "causal", g.loc[("y", "x"), "verdict_reason"]
    assert g.loc[("y", "x"), "estimate"] == pytest.approx(0.6, abs=0.05)
    assert g.loc[("x", "y"), "verdict"] != "causal"
    assert g.loc[("x", "y"), "direction"] == "y -> x"


def test_a_shared_driver_without_a_causal_arrow_is_not_called_causal():
    g = _verdicts("pleiotropy")
    assert g.loc[("x", "y"), "verdict"] != "causal", g.loc[("x", "y"), "verdict_reason"]
    assert g.loc[("y", "x"), "verdict"] != "causal"
    assert not (g["verdict"] == "causal").loc[[("x", "y"), ("y", "x")]].any()


def test_every_row_has_a_verdict_and_no_headline_is_nan_without_a_reason():
    for kind in ("forward", "reverse", "pleiotropy"):
        g = _verdicts(kind)
        assert g["verdict"].isin(["causal", "not causal", "undetermined"]).all()
        unexplained = g["estimate"].isna() & ~g["verdict_reason"].str.startswith("too few")
        assert not unexplained.any()


def _complement_ensemble(seed: int = 1, n_members: int = 5, length: int = 60):
    """CpGenie's output shape: two outputs p and 1 - p (a softmax over two classes), random
    sparse weights, members with a fixed dropout mask each, float32 outputs as Keras gives them;
    the effects are small enough that float32 rounding makes the two outputs' instruments differ
    (p near 0.3 is rounded finer than 1 - p near 0.7)."""
    rng = np.random.default_rng(seed)
    weights = rng.normal(0, 1, (length, 4)) * (rng.random((length, 1)) < 0.1)
    members = []
    for s in range(n_members):
        keep = (np.random.default_rng([seed, s]).random((length, 4)) > 0.3) / 0.7

        def fn(onehot, w=weights * keep):
            p = 1.0 / (1.0 + np.exp(0.85 - 3e-7 * np.einsum("nlc,lc->n", onehot, w)))
            return np.stack([p, 1.0 - p], axis=1).astype(np.float32)

        members.append(from_function(fn, ("unmethylated", "methylated"), sequence_length=length))
    return DeepEnsemble(members)


def test_a_reverse_direction_that_could_not_be_tested_blocks_the_claim():
    # 6 sequences: unmethylated -> methylated has a local fit in 5, the reverse in 4 only, too
    # few for its own verdict; its instruments pooled over the sequences test it and find the
    # same effect read the other way (-1): both directions, so nothing is claimed (the version
    # that claimed this pair "causal, reverse not supported" never tested the reverse)
    config = pipeline.RunConfig(
        n_sequences=6, chunk_size=6, progress=False, figures=False, report=False, seed=1
    )
    g = pipeline.run(config, model=_complement_ensemble(), identity={"name": "p, 1-p"})
    g = g.global_effects[g.global_effects.method == "ivw"].set_index(["exposure", "outcome"])
    forward, reverse = g.loc[("unmethylated", "methylated")], g.loc[("methylated", "unmethylated")]
    assert (forward.n_sequences, reverse.n_sequences) == (5, 4)
    assert forward.estimate == pytest.approx(-1.0, abs=0.1)
    assert forward.verdict == "undetermined"
    assert "but the reverse direction is supported by its instruments pooled over 6" in (
        forward.verdict_reason
    )
    assert reverse.pooled_sequences == 6
    assert reverse.pooled_estimate == pytest.approx(-1.0, abs=0.1)
    assert reverse.pooled_ci_high < -reverse.min_effect
    assert forward.direction == "undetermined"
