"""A tiny deep ensemble with a planted causal chain, for pipeline and CLI tests.

Features ``x, y, z, w`` of a 40 bp sequence, each member a linear function of the one-hot sequence:
``x = <W_x, s>``, ``y = 0.7 x + <W_y, s>``, ``z = -0.5 y + <W_z, s>``, ``w = <W_w, s>``. Members
perturb the weights independently (the ensemble's disagreement), so every mutation effect has a
positive SE. The model is linear, so local effects equal the planted ones up to the direct
(pleiotropic) terms, which average out over instruments.

Used as ``--model tests/_helpers_pipeline.py:tiny_model`` by the CLI tests.
"""

import numpy as np

FEATURES = ("x", "y", "z", "w")
LENGTH = 40
TRUE_EFFECTS = {("x", "y"): 0.7, ("y", "z"): -0.5, ("x", "z"): -0.35}


def tiny_model(seed: int = 0, n_members: int = 4, direct_scale: float = 0.15, features=FEATURES):
    """The tiny ensemble: ``n_members`` members, weights fixed by a constant seed.

    ``seed`` only names the member perturbations, so runs with the same seed are identical.
    ``features`` renames the outputs ``x, y, z, w`` (in that order) without changing them.
    """
    from deepmr_kipoi.predictive import DeepEnsemble, from_function

    rng = np.random.default_rng(1234)
    base = {
        "x": rng.normal(0.0, 1.0, (LENGTH, 4)),
        "y": rng.normal(0.0, direct_scale, (LENGTH, 4)),
        "z": rng.normal(0.0, direct_scale, (LENGTH, 4)),
        "w": rng.normal(0.0, 1.0, (LENGTH, 4)),
    }
    members = []
    for s in range(n_members):
        r = np.random.default_rng([int(seed), s])
        w = {k: v + r.normal(0.0, 0.04, v.shape) for k, v in base.items()}

        def fn(onehot, w=w):
            x = np.einsum("nlc,lc->n", onehot, w["x"])
            y = 0.7 * x + np.einsum("nlc,lc->n", onehot, w["y"])
            z = -0.5 * y + np.einsum("nlc,lc->n", onehot, w["z"])
            ww = np.einsum("nlc,lc->n", onehot, w["w"])
            return np.stack([x, y, z, ww], axis=1)

        members.append(from_function(fn, tuple(features), sequence_length=LENGTH))
    return DeepEnsemble(members)


#: the tiny model's outputs under other names, for ``compare``: ``x`` and ``w`` as two occurrences of
#: one label (numbered as a Kipoi model's repeated labels are), and a different naming scheme
DUPLICATED = ("x#1", "y", "z", "x#2")
SWAPPED = ("x#2", "y", "z", "x#1")
OTHER_SCHEME = ("X_a", "Y_a", "Z_a", "W_a")


def duplicated_labels_model():
    return tiny_model(features=DUPLICATED)


def swapped_labels_model():
    return tiny_model(features=SWAPPED)


def other_scheme_model():
    return tiny_model(features=OTHER_SCHEME)


def deterministic_model():
    """The same network without uncertainty (S = 1), which the pipeline must refuse."""
    from deepmr_kipoi.predictive import Deterministic

    return Deterministic(tiny_model().members[0])


def write_fasta(path, seqs, names=None):
    names = names or [f"s{i}" for i in range(len(seqs))]
    with open(path, "w") as fh:
        for n, s in zip(names, seqs):
            fh.write(f">{n}\n{s}\n")
    return path


def random_dna(n, length, seed=0):
    rng = np.random.default_rng(seed)
    return ["".join(rng.choice(list("ACGT"), size=length)) for _ in range(n)]
