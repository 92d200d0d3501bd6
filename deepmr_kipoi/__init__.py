"""Deep Mendelian Randomization for Kipoi model-zoo and custom genomic deep-learning models.

The core modules (``sequences``, ``ism``, ``mr``, ``meta``, ``calibration``, ``pipeline``) import
neither torch nor TensorFlow; framework backends are imported lazily by ``predictive.from_torch`` and
``predictive.from_keras``.
"""

import logging

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())
