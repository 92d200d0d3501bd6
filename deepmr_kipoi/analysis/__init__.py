"""The notebook user's path: :func:`analyze` any model on any sequences in one call, get an
:class:`Analysis` back; :func:`load_run` reads a finished run folder as one.

* :mod:`~deepmr_kipoi.analysis.inputs` -- any model form as a ``PredictiveModel``
  (:func:`resolve_model`), any sequence form as run settings or arrays (``resolve_sequences``);
* :mod:`~deepmr_kipoi.analysis.entry` -- :func:`analyze` and :func:`load_run`;
* :mod:`~deepmr_kipoi.analysis.result` -- the result object, :class:`Analysis`.

Nothing here imports torch or TensorFlow until a model object of theirs is handed over.
"""

from deepmr_kipoi.analysis.entry import analyze, load_run
from deepmr_kipoi.analysis.inputs import resolve_model, resolve_sequences
from deepmr_kipoi.analysis.result import Analysis, StoredEffects

__all__ = ["Analysis", "StoredEffects", "analyze", "load_run", "resolve_model", "resolve_sequences"]
