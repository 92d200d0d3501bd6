"""Predictive models with uncertainty: S deterministic functions of a sequence.

A :class:`PredictiveModel` maps ACGT one-hot sequences ``(N, L, 4)`` to predictions ``(S, N, F)``: S
samples (deep-ensemble members, or MC-dropout samples with one fixed dropout mask each), N sequences, F
named features. Each sample is a deterministic function, so the ISM engine can pair a mutant with its
reference under the same sample.

Members, the deterministic building blocks, come from :func:`from_torch`, :func:`from_keras` or
:func:`from_function`; the frameworks are imported only when those are called. Members always take ACGT
``(N, L, 4)`` input and convert it to their model's alphabet and layout themselves.

Example
-------
>>> member = from_torch(net, feature_names=["a", "b"], layout="NCL")      # doctest: +SKIP
>>> model = MCDropout(member, n_samples=30, seed=0)                      # doctest: +SKIP
>>> model.predict_samples(onehot).shape                                  # doctest: +SKIP
(30, N, 2)
"""

from deepmr_kipoi.predictive._member import DropoutLayer, Member
from deepmr_kipoi.predictive.models import (
    DeepEnsemble,
    Deterministic,
    MCDropout,
    PredictiveModel,
    move_to_device,
)
from deepmr_kipoi.predictive.panel import ModelPanel
from deepmr_kipoi.predictive.transforms import (
    LOGIT_EPS,
    TRANSFORMS,
    apply_transforms,
    resolve_transforms,
)
from deepmr_kipoi.predictive.wrappers import from_function, from_keras, from_torch

__all__ = [
    "move_to_device",
    "LOGIT_EPS",
    "TRANSFORMS",
    "DeepEnsemble",
    "Deterministic",
    "DropoutLayer",
    "MCDropout",
    "Member",
    "ModelPanel",
    "PredictiveModel",
    "apply_transforms",
    "from_function",
    "from_keras",
    "from_torch",
    "resolve_transforms",
]
