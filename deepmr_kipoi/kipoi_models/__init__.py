"""The Kipoi side: Kipoi models as :class:`~deepmr_kipoi.predictive.PredictiveModel` s.

``load_model`` accepts a model-zoo name (``"DeepSEA/predict"``), a local Kipoi model directory, or the
name of a registered adapter, and returns a predictive model that takes ACGT one-hot input of shape
``(N, L, 4)``. The package is a few steps, each module importing only those before it:

* :mod:`~deepmr_kipoi.kipoi_models._compat` -- importing Kipoi on this Python (shims, no network);
* :mod:`~deepmr_kipoi.kipoi_models.sources` -- which Kipoi source serves a name or directory;
* :mod:`~deepmr_kipoi.kipoi_models.groups` -- members of templated model groups
  (``model-template.yaml`` + ``models.tsv``), rendered and checked as Kipoi would read them;
* :mod:`~deepmr_kipoi.kipoi_models.files` -- the files Kipoi reads for a model, their YAML checked for
  Python tags before Kipoi opens any, and the model's code listed for the run's fingerprint;
* :mod:`~deepmr_kipoi.kipoi_models.describe` -- a model's description (``model.yaml``: layout,
  alphabet, outputs, model files);
* :mod:`~deepmr_kipoi.kipoi_models.dataloader` -- reference sequences from a model's own dataloader;
* :mod:`~deepmr_kipoi.kipoi_models.load` -- :func:`load_model`, through the adapter registry.
"""

from deepmr_kipoi.adapters import (
    DEFAULT_MC_SAMPLES,
    UNCERTAINTY_METHODS,
    LoadRequest,
    with_uncertainty,
)
from deepmr_kipoi.kipoi_models._compat import WeightsNotFoundError
from deepmr_kipoi.kipoi_models.dataloader import dataloader_sequences
from deepmr_kipoi.kipoi_models.describe import (
    DOWNLOAD_OPTION,
    LAYOUTS,
    ModelDescription,
    WeightFile,
    derive_layout,
    describe_model,
)
from deepmr_kipoi.kipoi_models.load import (
    KipoiBackend,
    feature_names_from,
    kipoi_request,
    load_model,
)
from deepmr_kipoi.kipoi_models.sources import add_local_source

__all__ = [
    "LAYOUTS",
    "UNCERTAINTY_METHODS",
    "DEFAULT_MC_SAMPLES",
    "DOWNLOAD_OPTION",
    "KipoiBackend",
    "LoadRequest",
    "ModelDescription",
    "WeightFile",
    "WeightsNotFoundError",
    "add_local_source",
    "dataloader_sequences",
    "derive_layout",
    "describe_model",
    "feature_names_from",
    "kipoi_request",
    "load_model",
    "with_uncertainty",
]
