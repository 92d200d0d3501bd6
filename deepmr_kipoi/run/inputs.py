"""Stage 1, inputs: the features, the model, the reference sequences and the calibration of a run.

One module per concern, each reading what a ``RunConfig`` names and checking it (a user mistake
raises :class:`~deepmr_kipoi.errors.DeepMRInputError` with one line naming the fix; nothing writes
files); this module is the stage's face, the names the runner, the Dask workers and the facade use:

* :mod:`~deepmr_kipoi.run.features` -- exposure and outcome patterns to feature indices;
* :mod:`~deepmr_kipoi.run.model` -- the model (Kipoi, adapters, ``file.py:function`` factories),
  its identity, on the configured device;
* :mod:`~deepmr_kipoi.run.references` -- the reference sequences (random, FASTA, FASTA + BED, the
  model's Kipoi dataloader);
* :mod:`~deepmr_kipoi.run.se_calibration` -- the SE calibration: a saved calibrator or one fitted on a
  labelled table (:func:`deepmr_kipoi.calibration.fit_calibration`).
"""

from deepmr_kipoi.calibration.labelled import Calibration, LabelledSequences, fit_calibration
from deepmr_kipoi.run.features import select_features
from deepmr_kipoi.run.model import check_applicable, load_configured_model, prepare_model
from deepmr_kipoi.run.references import load_sequences, sequence_source
from deepmr_kipoi.run.se_calibration import load_calibration

__all__ = [
    "Calibration",
    "LabelledSequences",
    "check_applicable",
    "fit_calibration",
    "load_calibration",
    "load_configured_model",
    "load_sequences",
    "prepare_model",
    "select_features",
    "sequence_source",
]
