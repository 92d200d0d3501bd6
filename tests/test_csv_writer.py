"""Large tables are written as CSV by pyarrow: read back, they equal pandas' own CSV of them."""

import numpy as np
import pandas as pd

from deepmr_kipoi import results


def _table(n: int = 2_000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    est = rng.normal(0, 1, n) * 10.0 ** rng.integers(-8, 8, n)
    est[::7] = np.nan
    est[3], est[5] = np.inf, -np.inf
    names = pd.Categorical(rng.choice(["A", "b,c", 'q "r"', "x/y"], n))
    reason = rng.choice(["ok", "too few sequences, 2 of 5", None], n).astype(object)
    return pd.DataFrame(
        {
            "exposure": names,
            "outcome": rng.choice(["u", "v"], n),
            "estimate": est,
            "whole": np.round(rng.normal(0, 5, n)),  # integral floats
            "k": rng.integers(0, 100, n),
            "significant": rng.random(n) < 0.3,
            "verdict_reason": reason,
        }
    )


def test_fast_csv_reads_back_as_pandas_csv(tmp_path, monkeypatch):
    table = _table()
    slow = tmp_path / "slow.csv"
    table.to_csv(slow, index=False)
    monkeypatch.setattr(results, "FAST_CSV_CELLS", 0)
    fast = results.write_table(table, tmp_path / "fast.csv")
    assert fast.read_bytes() != slow.read_bytes()  # the pyarrow writer did write it
    pd.testing.assert_frame_equal(pd.read_csv(fast), pd.read_csv(slow), check_exact=True)


def test_small_tables_keep_pandas_csv(tmp_path):
    table = _table(50)
    path = results.write_table(table, tmp_path / "t.csv")
    assert path.read_text() == table.to_csv(index=False)
