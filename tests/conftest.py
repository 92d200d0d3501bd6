"""Shared pytest configuration and session fixtures.

Every test session runs with HOME in a temporary folder, because ``import kipoi`` writes
``~/.kipoi/config.yaml``. The Kipoi model directories and the zoo-like source are built once per
session, split by framework: the PyTorch ones need only torch (DeepSEA and Basset are PyTorch models),
the Keras model directory and BPNet-OSKN need tf_keras. Tests that change a model copy it first.
"""

import os
import tempfile

import pytest

_SESSION_HOME = tempfile.mkdtemp(prefix="deepmr-test-home-")
os.environ["HOME"] = _SESSION_HOME
os.environ.setdefault("MPLBACKEND", "Agg")
# Keep the 2-core CI machine from oversubscribing: frameworks use one intra-op thread per test.
os.environ.setdefault("OMP_NUM_THREADS", "2")
# as ``import deepmr_kipoi`` does, set before any test module imports torch: waiting OpenMP
# threads sleep, so a loaded machine does not make every torch call spin (20-30x slower ISM)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

#: the Kipoi source name under which the session's torch zoo is registered
ZOO_SOURCE = "deepmr-test-zoo"


@pytest.fixture
def rng():
    import numpy as np

    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def torch_dir(tmp_path_factory):
    """A Kipoi PyTorchModel directory (TinyCNN with dropout, input (4, 40), 3 features)."""
    pytest.importorskip("torch")
    from tests import _kipoi_fixtures as fx

    return fx.write_torch_model_dir(tmp_path_factory.mktemp("torch_model"))


@pytest.fixture(scope="session")
def dict_dir(tmp_path_factory):
    """A Kipoi PyTorchModel directory whose network returns a dict of two output vectors."""
    pytest.importorskip("torch")
    from tests import _kipoi_fixtures as fx

    return fx.write_dict_output_model_dir(tmp_path_factory.mktemp("dict_model"))


@pytest.fixture(scope="session")
def keras_dir(tmp_path_factory):
    """A Kipoi KerasModel directory (architecture JSON + h5 weights, input (32, 4))."""
    pytest.importorskip("tf_keras")
    from tests import _kipoi_fixtures as fx

    return fx.write_keras_model_dir(tmp_path_factory.mktemp("keras_model"))


@pytest.fixture(scope="session")
def zoo_torch(tmp_path_factory):
    """A zoo-like folder with the PyTorch models (DeepSEA predict/variantEffects/beluga, Basset),
    also registered as the Kipoi source :data:`ZOO_SOURCE`."""
    pytest.importorskip("torch")
    from deepmr_kipoi.kipoi_models import add_local_source
    from tests import _kipoi_fixtures as fx

    root = fx.write_torch_zoo(tmp_path_factory.mktemp("zoo"))
    add_local_source(ZOO_SOURCE, root)
    return root


@pytest.fixture(scope="session")
def zoo(zoo_torch):
    """The same folder with BPNet-OSKN added (its h5 is written by tf_keras)."""
    pytest.importorskip("tf_keras")
    from tests import _kipoi_fixtures as fx

    return fx.write_bpnet_zoo(zoo_torch)


@pytest.fixture(scope="session")
def kipoi_groups(tmp_path_factory):
    """A zoo-like folder with templated model groups shaped like DeepBind, CpGenie and rbp_eclip
    (``model-template.yaml`` + ``models.tsv``, Keras networks with random weights)."""
    pytest.importorskip("tf_keras")
    from tests import _kipoi_groups as kg

    return kg.write_groups(tmp_path_factory.mktemp("groups"))
