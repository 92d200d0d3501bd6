"""Deep Mendelian Randomization for Kipoi model-zoo and custom genomic deep-learning models.

``deepmr_kipoi.analyze(model, sequences, ...)`` runs the whole analysis on a model object or name
and returns an :class:`Analysis`; ``deepmr_kipoi.load_run(path)`` reads a finished run folder back
as one. They are imported on first use, so ``import deepmr_kipoi`` stays light.

The core modules (``sequences``, ``ism``, ``mr``, ``meta``, ``calibration``, ``pipeline``) import
neither torch nor TensorFlow; framework backends are imported lazily by ``predictive.from_torch`` and
``predictive.from_keras``.
"""

import logging
import os

__version__ = "0.1.0"

# OpenMP threads that wait for work sleep instead of spinning (unless the user chose otherwise):
# torch's CPU threads spin between the small operations of an ISM batch, and on a machine where
# another process holds a core they starve each other: the demo's ISM took 18-26 s at load 3 on
# 2 cores, 0.87 s with passive waiting (0.84 s idle either way). OpenMP reads it when torch is
# imported, so it is set before any of this package's modules imports torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

logging.getLogger(__name__).addHandler(logging.NullHandler())

#: Public names imported on first use: name -> module.
_LAZY = {
    "analyze": "deepmr_kipoi.analysis",
    "load_run": "deepmr_kipoi.analysis",
    "resolve_model": "deepmr_kipoi.analysis",
    "Analysis": "deepmr_kipoi.analysis",
    "DeepMRWarning": "deepmr_kipoi.errors",
    "DeepMRInputError": "deepmr_kipoi.errors",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    # module-level __getattr__ (PEP 562): runs only for names not already set
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'deepmr_kipoi' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_LAZY])
