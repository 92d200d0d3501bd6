"""Shared pytest configuration: every test session runs with HOME in a temporary folder, because
``import kipoi`` writes ``~/.kipoi/config.yaml``."""

import os
import tempfile

import pytest

_SESSION_HOME = tempfile.mkdtemp(prefix="deepmr-test-home-")
os.environ["HOME"] = _SESSION_HOME
os.environ.setdefault("MPLBACKEND", "Agg")
# Keep the 2-core CI machine from oversubscribing: frameworks use one intra-op thread per test.
os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@pytest.fixture
def rng():
    import numpy as np

    return np.random.default_rng(0)
