"""The run's outputs: its record, and the files of its folder, written into the folder's stage.

:func:`run_record` builds the typed record behind ``run.json`` (:class:`~deepmr_kipoi.run.record.
RunRecord`). :func:`write_outputs` writes, into the stage of a
:class:`~deepmr_kipoi.run.folder.RunFolder` (which swaps it in whole on commit), the tables,
``effects.h5``, the figures (kept from the folder's last run when they would show the same:
:func:`figures_digest`), ``report.html``, ``config.yaml`` and ``run.json``. A known truth (the demo,
the simulations) reaches only this module: the record, the figures and the report show it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from deepmr_kipoi import __version__, results
from deepmr_kipoi.run.config import portable_config
from deepmr_kipoi.run.folder import stop_point
from deepmr_kipoi.run.plan import RunPlan
from deepmr_kipoi.run.record import ChunkInfo, FeatureSet, RunRecord, SequenceSet, versions

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class RunTables:
    """What a run computed, as the outputs show it.

    Attributes
    ----------
    global_effects, local_effects : DataFrame
    arrays : dict
        The kept ISM effects and instrument masks for the figures and ``effects.h5``
        (``ChunkResult.figure_arrays``).
    """

    global_effects: pd.DataFrame
    local_effects: pd.DataFrame
    arrays: dict


def run_record(plan: RunPlan, resumed, warns, started: float, nonfinite: dict) -> RunRecord:
    """The run's record (``run.json``) before its outputs and timings are added.

    Parameters
    ----------
    plan : RunPlan
    resumed : sequence of int
        Chunks read back from the folder.
    warns : sequence of str
    started : float
        ``time.time()`` when the run started.
    nonfinite : dict
        ``{"sequences": n, "mutants": m}`` with NaN or inf predictions.

    Returns
    -------
    RunRecord
    """
    if plan.model is not None:  # how each member's ISM ran (a reanalysis has no model)
        plan.identity["ism"] = [
            {"member": i, "path": m.ism_path, "reason": m.ism_reason}
            for i, m in enumerate(getattr(plan.model, "members", ()))
            if hasattr(m, "ism_path")
        ]
    config, names, n_seq = plan.config, plan.feature_names, plan.n_sequences
    cal = plan.calibration
    return RunRecord(
        deepmr_kipoi_version=__version__,
        config=config.to_dict(),
        config_hash=plan.config_hash,
        model=plan.identity,
        features=FeatureSet(
            tuple(names[i] for i in plan.exposures), tuple(names[i] for i in plan.outcomes)
        ),
        sequences=SequenceSet(
            n_seq, int(plan.onehot.shape[1]), plan.window, plan.seq_ids[:1000], plan.sequence_source
        ),
        seeds={"sequences": config.seed, "model": config.seed, "bootstrap": config.seed},
        chunks=ChunkInfo(len(plan.bounds), plan.chunk_size, tuple(resumed)),
        calibration=None
        if cal is None
        else {
            "source": cal.source,
            "method": config.calibration_method,
            "se_scale": dict(cal.scale_items()),
        },
        warnings=tuple(warns),
        truth=None,
        versions=versions(),
        platform=platform.platform(),
        started=time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
        nonfinite=dict(nonfinite),
    )


def finish_record(record: RunRecord, truth, timings: dict, started: float) -> RunRecord:
    """The record of a run without a folder: its truth (if known) and its timings."""
    timings["total"] = time.time() - started
    return dataclasses.replace(record, truth=_truth_records(truth), timings_s=timings)


def _truth_records(truth: pd.DataFrame | None):
    return None if truth is None else truth.to_dict(orient="records")


def write_outputs(
    plan: RunPlan,
    stage: Path,
    tables: RunTables,
    record: RunRecord,
    truth: pd.DataFrame | None,
    timings: dict,
    started: float,
) -> RunRecord:
    """Write a run's output files into its folder's stage.

    Parameters
    ----------
    plan : RunPlan
    stage : Path
        ``RunFolder.stage``: the folder the outputs are written to and swapped in from.
    tables : RunTables
    record : RunRecord
        From :func:`run_record`.
    truth : DataFrame or None
        Known global effects (columns exposure, outcome, true_effect), shown by the record, the
        figures and the report.
    timings : dict
        Seconds per stage so far; the outputs' own are added.
    started : float
        ``time.time()`` when the run started.

    Returns
    -------
    RunRecord
        As written to ``run.json``.
    """
    record = dataclasses.replace(record, truth=_truth_records(truth))
    tick = time.perf_counter()
    _write_tables(plan, stage, tables)
    timings["tables"] = time.perf_counter() - tick
    stop_point("outputs")
    tick = time.perf_counter()
    record, figs = _figures(plan, stage, tables, record, truth)
    timings["figures"] = time.perf_counter() - tick
    if plan.config.report:
        from deepmr_kipoi.report import page

        tick = time.perf_counter()
        page.write_report(
            stage / "report.html",
            record,
            tables.global_effects,
            figs,
            calibration=plan.calibration,
            truth=truth,
        )
        timings["report"] = time.perf_counter() - tick
    results.write_text(
        stage / "config.yaml",
        "# resolved Deep MR config: deepmr run --config config.yaml\n"
        + yaml.safe_dump(portable_config(plan.config), sort_keys=False),
    )
    timings["total"] = time.time() - started
    record = dataclasses.replace(
        record,
        timings_s={k: round(v, 3) for k, v in timings.items()},
        finished=time.strftime("%Y-%m-%dT%H:%M:%S"),
    )
    results.write_json(stage / "run.json", record.to_dict())
    return record


def _write_tables(plan: RunPlan, stage: Path, tables: RunTables) -> None:
    """The global and local tables, and ``effects.h5`` when the plan keeps the effects."""
    results.write_table(tables.global_effects, stage / "global_effects.csv")
    results.write_table(tables.global_effects, stage / "global_effects.parquet")
    results.write_table(tables.local_effects, stage / "local_effects.parquet")
    arrays = tables.arrays
    if plan.save_effects and "mean" in arrays:
        results.write_effects_h5(
            stage / "effects.h5",
            arrays,
            sequence_ids=[plan.seq_ids[i] for i in arrays["sequence_index"]],
            feature_names=[plan.feature_names[i] for i in plan.used],
            attrs={
                "se_calibrated": plan.calibration is not None,
                "model": plan.identity.get("name"),
            },
        )


def _figures(plan: RunPlan, stage: Path, tables: RunTables, record: RunRecord, truth):
    """The run's figures (kept from the folder's last run when they show the same, else drawn)
    and the record naming them: ``(record, list of FigureFile)``."""
    config, names = plan.config, plan.feature_names
    # the digest hashes the whole local table: only worth it when there are figures to keep
    digest = (
        figures_digest(plan, tables.global_effects, tables.local_effects, tables.arrays, truth)
        if config.figures
        else ""
    )
    figs = []
    if config.figures:
        figs = _earlier_figures(plan, stage, digest)
    if config.figures and figs is None:
        from deepmr_kipoi.report import figures  # matplotlib: only when figures are drawn

        kept = figures.DetailInputs(
            tables.local_effects,
            tables.arrays,
            tuple(names),
            tuple(plan.used),
            tuple(plan.seq_ids),
            tuple(record.features.exposures),
            _feature_models(plan.model),
        )
        figs = figures.make_figures(
            stage,
            tables.global_effects,
            kept,
            calibration=plan.calibration,
            truth=truth,
            level=config.level,
            n_examples=config.n_examples,
        )
    record = dataclasses.replace(
        record,
        figures=tuple(str(f.path.relative_to(stage)) for f in figs),
        figures_digest=digest,
        figure_info=tuple(
            {"title": f.title, "caption": f.caption, "section": f.section, "pair": f.pair}
            for f in figs
        ),
    )
    return record, figs


def _feature_models(model) -> tuple[str, ...]:
    """The panel label of every feature of a model panel; empty for one model."""
    labels, groups = getattr(model, "labels", None), getattr(model, "feature_groups", None)
    if labels is None or groups is None:
        return ()
    return tuple(labels[g] for g in groups)


def figures_digest(plan: RunPlan, global_table, local_table, arrays: dict, truth) -> str:
    """md5 of everything a run's figures show: the tables, the kept effects, the truth, the
    calibration and the display settings."""
    h = hashlib.md5()
    for table in (global_table, local_table, truth):
        if table is not None:
            h.update(pd.util.hash_pandas_object(table, index=False).to_numpy().tobytes())
            h.update(",".join(map(str, table.columns)).encode())
    for key in sorted(arrays):
        h.update(key.encode())
        h.update(np.ascontiguousarray(np.asarray(arrays[key])).tobytes())
    cal = plan.calibration
    shown = {
        "level": plan.config.level,
        "n_examples": plan.config.n_examples,
        "features": [plan.feature_names, plan.used, plan.exposures],
        "sequences": plan.seq_ids,
        "calibration": None
        if cal is None
        else [cal.scale_items(), getattr(cal, "curve_before", None) is not None],
        "version": __version__,
    }
    h.update(json.dumps(shown, sort_keys=True, default=str).encode())
    return h.hexdigest()


def _earlier_figures(plan: RunPlan, stage: Path, digest: str) -> list | None:
    """The figures of the run the folder holds, linked into the stage, when they show exactly what
    this run's would (same digest); None when they must be drawn."""
    from deepmr_kipoi.report.figure_file import FigureFile
    from deepmr_kipoi.run.contents import link_or_copy

    final = Path(os.path.realpath(plan.config.out))
    try:
        old = json.loads((final / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    names, info = old.get("figures") or [], old.get("figure_info") or []
    if old.get("figures_digest") != digest or len(names) != len(info) or not names:
        return None
    if not all((final / n).is_file() and ".." not in Path(n).parts for n in names):
        return None
    figs = []
    for name, meta in zip(names, info):
        link_or_copy(final / name, stage / name)
        pair = tuple(meta["pair"]) if meta.get("pair") else None
        figs.append(FigureFile(stage / name, meta["title"], meta["caption"], meta["section"], pair))
    logger.info("figures unchanged since the folder's last run: kept, not drawn again")
    return figs
