"""A known-truth panel: three separately constructed ensembles read on the same sequences.

Model A (``L_A`` bases) predicts only X, a linear motif score on positions ``X_SITE``. Model B
(``L_B < L_A`` bases, so it reads the centred window of the common sequence) predicts only Y, which
reads X's motif with slope ``beta_b`` (member ``b`` of B learned ``beta + N(0, BETA_SD^2)``) plus
Y's own motif on ``Y_SITE``. Model C predicts Z, a motif on ``Z_SITE`` unrelated to X and Y. Every
member adds its own small weight noise on every position (its disagreement with the others). The
members are plain numpy functions of the one-hot sequence (``predictive.from_function``): the
panel's ISM runs them as it runs any model. The truth of A/X -> B/Y is ``beta`` (the mean slope
over B's possible members); A/X -> C/Z and B/Y -> A/X have none.
"""

import numpy as np

L_A, L_B = 60, 50
OFFSET_B = (L_A + 1) // 2 - (L_B + 1) // 2  # where B's window starts in the common sequence
X_SITE, Y_SITE, Z_SITE = slice(12, 22), slice(34, 44), slice(24, 32)
BETA_SD, MEMBER_NOISE = 0.1, 0.03


def _linear(weights):
    def fn(onehot):
        return np.einsum("nlc,lc->n", onehot.astype(np.float64), weights)[:, None]

    return fn


def _motif(rng, site, length):
    w = np.zeros((length, 4))
    w[site] = rng.normal(0.0, 1.0, (site.stop - site.start, 4))
    return w


def build_panel(seed: int, beta: float = 0.6, n_members: int = 5):
    """``{"a": A, "b": B, "c": C}`` ensembles of ``n_members`` members each, and the truth.

    Returns
    -------
    models : dict of str to DeepEnsemble
    truth : dict of (str, str) to float
        Planted global effects of the ordered pairs the test reads.
    """
    from deepmr_kipoi.predictive import DeepEnsemble, from_function

    rng = np.random.default_rng(seed)
    gx = _motif(rng, X_SITE, L_A)  # X's motif, in common coordinates
    gy = _motif(rng, Y_SITE, L_A)
    gz = _motif(rng, Z_SITE, L_A)
    window_b = slice(OFFSET_B, OFFSET_B + L_B)

    def noise(length):
        return rng.normal(0.0, MEMBER_NOISE, (length, 4))

    a = [from_function(_linear(gx + noise(L_A)), ["X"], L_A) for _ in range(n_members)]
    b = []
    for _ in range(n_members):
        beta_b = beta + rng.normal(0.0, BETA_SD)
        w = (beta_b * gx + gy)[window_b] + noise(L_B)  # B reads its own, shorter window
        b.append(from_function(_linear(w), ["Y"], L_B))
    c = [from_function(_linear(gz + noise(L_A)), ["Z"], L_A) for _ in range(n_members)]
    models = {"a": DeepEnsemble(a), "b": DeepEnsemble(b), "c": DeepEnsemble(c)}
    truth = {("a/X", "b/Y"): beta, ("a/X", "c/Z"): 0.0, ("b/Y", "a/X"): 0.0}
    return models, truth


def model_a():
    """Factory of the CLI test: model A of the panel of seed 0."""
    return build_panel(0)[0]["a"]


def model_b():
    """Factory of the CLI test: model B of the panel of seed 0."""
    return build_panel(0)[0]["b"]


#: Sequences predicted by each counting factory's members (reference and mutants), by model; the
#: factories below are loaded from this file as ``file.py:function`` specs (a module of their
#: own), so they count into the module imported as ``tests._panel_sim``.
CALLS: dict = {}


def _counting(label: str, model):
    from deepmr_kipoi.predictive import DeepEnsemble, from_function
    from tests import _panel_sim as shared

    def wrap(member):
        def fn(onehot):
            shared.CALLS[label] = shared.CALLS.get(label, 0) + len(onehot)
            return member.fn(onehot)

        return from_function(fn, list(member.feature_names), member.sequence_length)

    return DeepEnsemble([wrap(m) for m in model.members])


def counting_a():
    """Model A of the panel of seed 0, counting its forward passes (``CALLS["a"]``)."""
    return _counting("a", build_panel(0)[0]["a"])


def counting_b():
    """Model B of the panel of seed 0, counting its forward passes (``CALLS["b"]``)."""
    return _counting("b", build_panel(0)[0]["b"])


def counting_c():
    """Model C of the panel of seed 0, counting its forward passes (``CALLS["c"]``)."""
    return _counting("c", build_panel(0)[0]["c"])


def counting_d():
    """Model A of the panel of seed 0 with a second output W (a motif of its own), counting its
    forward passes (``CALLS["d"]``): a model with two features, so it runs alone too."""
    from deepmr_kipoi.predictive import DeepEnsemble, from_function
    from tests import _panel_sim as shared

    a = build_panel(0)[0]["a"]
    rng = np.random.default_rng(7)
    gw = _motif(rng, slice(40, 48), L_A)

    def wrap(member, w):
        def fn(onehot):
            shared.CALLS["d"] = shared.CALLS.get("d", 0) + len(onehot)
            return np.concatenate([member.fn(onehot), _linear(w)(onehot)], axis=1)

        return from_function(fn, ["X", "W"], L_A)

    members = [wrap(m, gw + rng.normal(0.0, MEMBER_NOISE, gw.shape)) for m in a.members]
    return DeepEnsemble(members)
