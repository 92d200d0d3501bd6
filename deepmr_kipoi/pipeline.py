"""The public face of a Deep MR run: ``pipeline.run(RunConfig(...))`` and ``pipeline.compare``.

The run itself lives in :mod:`deepmr_kipoi.run`, one module per stage (config -> inputs -> effects
-> local -> aggregate, driven by the runner); its docstring draws the stages. This module keeps the
names users and scripts import from ``deepmr_kipoi.pipeline``.

Assumptions the results rest on (repeated in the report): local linearity of the model around each
reference sequence; MR's exclusion restriction (a mutation acting on the outcome other than through
the exposure biases IVW; Egger/median/mode relax it); the model's quality and inherited biases; the
calibration of its uncertainty; and no causal direction from the data alone.
"""

from __future__ import annotations

from deepmr_kipoi.compare import CompareResult, compare
from deepmr_kipoi.run.aggregate import (
    META_COLUMNS,
    GlobalSettings,
    benjamini_hochberg,
    global_effects,
    plain_warnings,
)
from deepmr_kipoi.run.config import (
    AUTO_EFFECTS_LIMIT,
    SEQUENCE_SOURCES,
    RunConfig,
    config_hash,
    weights_signature,
)
from deepmr_kipoi.run.inputs import load_sequences, prepare_model, select_features
from deepmr_kipoi.run.local_fit import (
    LOCAL_FIELDS,
    MR_BLOCK_CELLS,
    TOO_FEW,
    MutantEffects,
    local_mr,
)
from deepmr_kipoi.run.resume import run
from deepmr_kipoi.run.runner import DeepMRResult

__all__ = [
    "AUTO_EFFECTS_LIMIT",
    "LOCAL_FIELDS",
    "META_COLUMNS",
    "MR_BLOCK_CELLS",
    "MutantEffects",
    "SEQUENCE_SOURCES",
    "TOO_FEW",
    "CompareResult",
    "DeepMRResult",
    "GlobalSettings",
    "RunConfig",
    "benjamini_hochberg",
    "compare",
    "config_hash",
    "global_effects",
    "load_sequences",
    "local_mr",
    "plain_warnings",
    "prepare_model",
    "run",
    "select_features",
    "weights_signature",
]
