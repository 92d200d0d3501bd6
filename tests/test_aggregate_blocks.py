"""The aggregate stage by blocks of pairs equals the path before it (one sorted copy of the local
table, the verdict as a loop over pairs: ``tests/_aggregate_reference``) on a 20-feature run of a
cheap ensemble through the run's own stages 1-3, whatever the block size and the row order."""

import numpy as np
import pandas as pd
import pytest

from deepmr_kipoi.run import aggregate, runner
from deepmr_kipoi.run import plan as plan_stage
from deepmr_kipoi.run.chunk import ChunkResult, compute_chunk
from deepmr_kipoi.run.config import RunConfig
from tests._aggregate_reference import reference_global_effects

FACTORY = """
import numpy as np
from deepmr_kipoi.predictive import DeepEnsemble, from_function

def build(n_features=20, length=60, n_members=4, seed=0):
    rng = np.random.default_rng(seed)
    names = ["feature_%02d" % i for i in range(n_features)]
    latent = rng.normal(0, 1, (length * 4, 4)) / np.sqrt(length)
    loads = rng.normal(0, 1, (4, n_features)) * (rng.random((4, n_features)) < 0.4)
    own = rng.normal(0, 0.5, (length * 4, n_features)) / np.sqrt(length)
    base = latent @ loads + own
    members = []
    for s in range(n_members):
        w = base + rng.normal(0, 0.02, base.shape) / np.sqrt(length)
        members.append(from_function(
            lambda x, w=w: np.tanh(x.reshape(len(x), -1) @ w), names, sequence_length=length
        ))
    return DeepEnsemble(members)
"""


@pytest.fixture(scope="module")
def merged_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("blocks")
    (folder / "factory.py").write_text(FACTORY)
    config = RunConfig(
        model=f"{folder / 'factory.py'}:build", n_sequences=8, chunk_size=4, progress=False
    )
    plan = plan_stage.make_plan(config)
    merged = ChunkResult.merge([compute_chunk(plan, i) for i in range(len(plan.bounds))])
    kwargs = runner.global_settings(plan, merged)
    want = reference_global_effects(merged.local, plan.n_sequences, **kwargs)
    return merged, plan.n_sequences, kwargs, want


@pytest.mark.parametrize("block_pairs", [13, 10_000])
def test_global_effects_by_blocks_equal_the_whole_table_path(merged_run, monkeypatch, block_pairs):
    merged, n_seq, kwargs, want = merged_run
    monkeypatch.setattr(aggregate, "PAIR_BLOCK_CELLS", n_seq * block_pairs)
    shares = []
    got = aggregate.global_effects(merged.local, n_seq, on_progress=shares.append, **kwargs)
    pd.testing.assert_frame_equal(got, want, check_exact=False, rtol=1e-12, atol=0)
    assert len(want) == 20 * 19 * 2 and want["verdict"].nunique() >= 2
    n_blocks = -(-len(want) // block_pairs)
    assert len(shares) == n_blocks + 1 and sum(shares) == pytest.approx(1.0)


def test_global_effects_do_not_depend_on_the_local_table_s_row_order(merged_run):
    merged, n_seq, kwargs, want = merged_run
    shuffled = merged.local.iloc[np.random.default_rng(0).permutation(len(merged.local))]
    got = aggregate.global_effects(shuffled.reset_index(drop=True), n_seq, **kwargs)
    pd.testing.assert_frame_equal(got, want, check_exact=False, rtol=1e-12, atol=0)
