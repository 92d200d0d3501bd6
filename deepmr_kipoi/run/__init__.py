"""The Deep MR run as stages, one module each, in the order the data flows::

    RunConfig ──► config ──► inputs ──► effects ──► local ──► aggregate ──► global effects
                  validate   features   chunked     instru-   meta-analysis,
                  hash       model      ISM         ments,    q-values,
                             sequences  (n,W,3,F)   local MR  model-aware
                             calibration            (n,E,O,M) interval, warnings
                                        └──── plan, runner (chunks, resume), outputs ─────────┘

* :mod:`~deepmr_kipoi.run.config` -- ``RunConfig`` (what defines a run), ``validate`` (type and
  value checks, normalisation); its setting groups and the accepted values of the choice fields
  are in :mod:`~deepmr_kipoi.run.settings`, ``config_hash``/``weights_signature`` (what resume
  compares) in :mod:`~deepmr_kipoi.run.resume_key` (both re-exported by ``config``).
* :mod:`~deepmr_kipoi.run.arguments` -- a ``RunConfig`` from ``deepmr run``'s options and a
  ``--config`` YAML file.
* :mod:`~deepmr_kipoi.run.inputs` -- the stage's face over one module per concern:
  exposure/outcome selection (:mod:`~deepmr_kipoi.run.features`), model loading (Kipoi, adapters,
  ``file.py:function`` factories: :mod:`~deepmr_kipoi.run.model`), reference sequences (random,
  FASTA, FASTA + BED, Kipoi dataloader: :mod:`~deepmr_kipoi.run.references`), calibration (saved
  calibrator or fitted on a labelled table: :mod:`~deepmr_kipoi.run.se_calibration`).
* :mod:`~deepmr_kipoi.run.effects` -- saturation-ISM effects of a chunk through the engine
  (``ism.saturation_effects``), with every member's own effects for deep ensembles.
* :mod:`~deepmr_kipoi.run.local` -- instruments and local MR per (sequence, exposure, outcome,
  method) as arrays (``LocalEstimates``, (n, E, O, M)) and the local table, on
  :mod:`~deepmr_kipoi.run.local_fit` (the estimators over the cells, ``local_mr``),
  :mod:`~deepmr_kipoi.run.local_checks` (heterogeneity, instrument strength) and
  :mod:`~deepmr_kipoi.run.local_samples` (per-sample local estimates, ``SampleEstimates``,
  (S, n, E, O, M), which the headline inference reads).
* :mod:`~deepmr_kipoi.run.aggregate` -- global effects (the crossed inference over sequences and
  model samples, random-effects meta-analysis over sequences), Benjamini-Hochberg q-values, the
  verdicts, plain warnings.
* :mod:`~deepmr_kipoi.run.chunk` -- ``compute_chunk`` (effects + local of one chunk, no files)
  and the typed ``ChunkResult`` (its file format and its merge over the chunks of a run).
* :mod:`~deepmr_kipoi.run.executors` -- where the chunks run: the ``Executor`` protocol
  (``map_chunks(plan, chunk_indices)``), this process or Dask tasks.
* :mod:`~deepmr_kipoi.run.plan` -- ``make_plan`` (all input checks, then a frozen ``RunPlan``
  the stages share) and ``run_key`` (what a chunk file's results are computed from).
* :mod:`~deepmr_kipoi.run.runner` -- ``run`` (plan, chunk store and resume, stage 4,
  ``DeepMRResult``); ``run_plan`` takes a chunk from the folder's finished chunks, else from the
  stored ISM effects (only the analysis runs), else from the model.
* :mod:`~deepmr_kipoi.run.outputs` -- the run record and the output files, written into the run
  folder's stage.
* :mod:`~deepmr_kipoi.run.reanalysis` -- ``reanalyze``: a finished run's stored ISM effects
  analysed again with other analysis settings, no model (``deepmr reanalyze``).
* :mod:`~deepmr_kipoi.run.record` -- ``RunRecord``, the typed content of ``run.json`` that the
  report renders.
* :mod:`~deepmr_kipoi.run.fingerprint` -- md5s of the inputs and of the user code behind the model.
* :mod:`~deepmr_kipoi.run.folder` -- ``RunFolder``: the run folder's lock, chunk store, stage and
  whole-folder swap, built from :mod:`~deepmr_kipoi.run.contents` (the names a run writes, whose
  files are the tool's), :mod:`~deepmr_kipoi.run.chunk_store` (chunk files and the key each carries,
  verified on read) and :mod:`~deepmr_kipoi.run.lock` (the lock, the ``--out`` check).

Where a change goes:

* a new local estimator (an MR method) goes into ``deepmr_kipoi.mr``; the run picks it up by name
  through ``RunConfig.methods``;
* a new per-sample estimator (local MR recomputed per model sample) is a function in
  ``local_samples.py`` returning ``SampleEstimates``, kept in the chunk files (``ChunkResult``),
  plus its reduction to global columns in ``aggregate.py``;
* a new global statistic or warning goes into ``aggregate.py``;
* a new stage gets its own module here, takes the ``RunPlan`` (or plain arrays, so that the
  simulation can call it without a run folder), and is called from ``chunk.compute_chunk`` (per
  chunk) or ``runner.run`` (once per run); a field it needs goes into ``RunConfig`` and, when it
  changes numbers, into ``config_hash`` automatically.

Modules import only stages before them (config < inputs, effects < local_fit, local_checks <
local < local_samples < chunk < executors <
aggregate < record < plan < outputs < runner < reanalysis, resume); figures, report and compare sit outside this package.
"""

from deepmr_kipoi.run.chunk import ChunkResult, compute_chunk
from deepmr_kipoi.run.config import RunConfig
from deepmr_kipoi.run.plan import RunPlan, make_plan
from deepmr_kipoi.run.resume import run
from deepmr_kipoi.run.runner import DeepMRResult

__all__ = [
    "ChunkResult",
    "DeepMRResult",
    "RunConfig",
    "RunPlan",
    "compute_chunk",
    "make_plan",
    "run",
]
