"""Models for the Dask executor tests: the tiny ensemble, counting its loads or made slow.

Used as ``--model tests/_helpers_dask.py:counting_model`` / ``slow_model``: workers load them
through the same factory code as the client.
"""

import os
import time

from tests._helpers_pipeline import FEATURES, LENGTH, tiny_model

#: Environment variable naming a file each model load appends its process id to.
LOAD_LOG = "DEEPMR_TEST_LOAD_LOG"
#: Seconds each slow member sleeps per forward pass (a chunk then takes about a second).
SLEEP_S = 0.08


def counting_model(seed: int = 0):
    """The tiny ensemble; appends this process's id to the file named by ``$DEEPMR_TEST_LOAD_LOG``."""
    path = os.environ.get(LOAD_LOG)
    if path:
        with open(path, "a") as fh:
            fh.write(f"{os.getpid()}\n")
    return tiny_model(seed)


def slow_model(seed: int = 0):
    """The tiny ensemble with a pause in every forward pass, so a worker can be killed mid-chunk."""
    from deepmr_kipoi.predictive import DeepEnsemble, from_function

    def slow(member):
        def fn(onehot):
            time.sleep(SLEEP_S)
            return member.predict(onehot)

        return from_function(fn, FEATURES, sequence_length=LENGTH)

    return DeepEnsemble([slow(m) for m in tiny_model(seed).members])


def torch_model(seed: int = 0):
    """A small PyTorch ensemble (two Conv1d members on the CPU), built as a user's factory would."""
    import torch

    from deepmr_kipoi.predictive import DeepEnsemble, from_torch

    members = []
    for s in range(2):
        torch.manual_seed(100 * int(seed) + s)
        net = torch.nn.Sequential(
            torch.nn.Conv1d(4, len(FEATURES), 5),
            torch.nn.Flatten(1),
            torch.nn.LazyLinear(len(FEATURES)),
        )
        net(torch.zeros(1, 4, LENGTH))  # materialise the lazy layer
        members.append(
            from_torch(net, feature_names=FEATURES, layout="NCL", sequence_length=LENGTH)
        )
    return DeepEnsemble(members)


def worker_model_devices(config, shipped=None) -> set[str]:
    """Device types of the parameters of the model a Dask worker prepares for ``config``."""
    from deepmr_kipoi.run import executors

    executors._MODELS.clear()
    model = executors._worker_model("device-test", config, shipped)
    return {p.device.type for m in model.members for p in m.module.parameters()}
