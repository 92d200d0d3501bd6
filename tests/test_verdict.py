"""Direction verdicts and IVW-versus-robust disagreement flags."""

import numpy as np
import pandas as pd

from deepmr_kipoi import direction


def _table(rows):
    return pd.DataFrame(rows, columns=["exposure", "outcome", "method", "estimate", "significant",
                                       "ci_low", "ci_high"])  # fmt: skip


def test_verdicts_for_every_combination():
    t = _table([
        ("A", "B", "ivw", 1.0, True, 0.5, 1.5), ("B", "A", "ivw", 0.0, False, -0.1, 0.1),
        ("A", "C", "ivw", 1.0, True, 0.5, 1.5), ("C", "A", "ivw", 0.4, True, 0.1, 0.7),
        ("B", "C", "ivw", 0.0, False, -1, 1), ("C", "B", "ivw", 0.1, False, -1, 1),
        ("A", "D", "ivw", 0.3, True, 0.1, 0.5), ("D", "A", "ivw", np.nan, False, np.nan, np.nan),
        ("E", "A", "ivw", 0.3, True, 0.1, 0.5),
    ])
    assert direction.verdicts(t).tolist() == [
        "A -> B", "A -> B", "both", "both", "neither", "neither", "undetermined", "undetermined",
        "undetermined",
    ]


def test_verdicts_are_per_method():
    t = _table([("A", "B", "ivw", 1, True, 0, 2), ("B", "A", "ivw", 1, False, -1, 2),
                ("A", "B", "egger", 1, False, -1, 2), ("B", "A", "egger", 1, True, 0.5, 2)])
    assert direction.verdicts(t).tolist() == ["A -> B", "A -> B", "B -> A", "B -> A"]


def test_robust_disagreement_needs_disjoint_intervals():
    t = _table([("A", "B", "ivw", 1.0, True, 0.8, 1.2), ("A", "B", "egger", 0.2, False, -0.1, 0.5),
                ("B", "A", "ivw", 1.0, True, 0.8, 1.2), ("B", "A", "egger", 0.9, True, 0.5, 1.3),
                ("C", "A", "egger", 0.9, True, 0.5, 1.3)])
    assert direction.robust_disagreement(t).tolist() == [True, True, False, False, False]
