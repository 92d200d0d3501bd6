"""The result object of :func:`deepmr_kipoi.analyze` and :func:`deepmr_kipoi.load_run`.

An :class:`Analysis` holds a run's global effects and verdicts in memory and reads the rest of its
run folder (local effects, ISM effects) only when asked. It shows itself in a notebook as a short
HTML summary (headline, verdict table, small heatmap; at most a screen high) and in a terminal as
one line; its plot methods draw the report's figures.
"""

from __future__ import annotations

import base64
import html
import io
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from deepmr_kipoi.errors import DeepMRInputError

logger = logging.getLogger(__name__)

#: Rows of the verdict table shown in the notebook summary (the table itself has all).
HTML_ROWS = 12
#: Columns of :attr:`Analysis.verdicts`.
VERDICT_COLUMNS = (
    "exposure",
    "outcome",
    "verdict",
    "verdict_reason",
    "method",
    "estimate",
    "ci_low",
    "ci_high",
    "n_sequences",
)


@dataclass(frozen=True)
class StoredEffects:
    """A run's saved ISM effects (``effects.h5``), labelled.

    Attributes
    ----------
    mean, se : ndarray of float32, shape (N, W, 3, U)
        Paired effect means and the SEs MR used, over N sequences, W positions, 3 alternative
        alleles and the U exposure and outcome features.
    reference : ndarray of float32, shape (S, N, U)
        Reference predictions per model sample.
    alt_bases : ndarray of uint8, shape (N, W, 3)
        Codes into ``"ACGT"`` of each allele slot.
    positions : ndarray of int64, shape (W,)
    sequence_ids : tuple of str, length N
    feature_names : tuple of str, length U
    samples : ndarray of float32, shape (S, N, W, 3, U), or None
        Every model sample's paired differences (the run's effects store); ``mean`` and ``se`` are
        their mean and SD (ddof = 1) over samples, before any calibration of the SEs. None when
        read from an ``effects.h5`` of an older run (whose ``se`` is the one MR used).
    """

    mean: np.ndarray
    se: np.ndarray
    reference: np.ndarray
    alt_bases: np.ndarray
    positions: np.ndarray
    sequence_ids: tuple[str, ...]
    feature_names: tuple[str, ...]
    samples: np.ndarray | None = None


def read_effects_store(run_dir: Path) -> StoredEffects | None:
    """The per-sample ISM effects a run keeps in ``chunks/effects_*.npz``, joined over its chunks
    (None when the folder has no effects store)."""
    from deepmr_kipoi import results
    from deepmr_kipoi.run.chunk_store import CHUNKS, EFFECTS_FILE, RUN_EFFECTS

    store = Path(run_dir) / CHUNKS
    files = sorted(p for p in store.glob("effects_*.npz") if EFFECTS_FILE.match(p.name))
    if not files or not (store / RUN_EFFECTS).exists():
        return None
    ids = [str(i) for i in results.read_npz(store / RUN_EFFECTS)["seq_ids"]]
    parts = [results.read_npz(p) for p in files]
    samples = np.concatenate([p["samples"] for p in parts], axis=1)
    return StoredEffects(
        mean=samples.mean(axis=0, dtype=np.float64),
        se=samples.std(axis=0, ddof=1, dtype=np.float64),
        reference=np.concatenate([p["reference"] for p in parts], axis=1),
        alt_bases=np.concatenate([p["alt_bases"] for p in parts]),
        positions=parts[0]["positions"],
        sequence_ids=tuple(ids),
        feature_names=tuple(str(f) for f in parts[0]["feature_names"]),
        samples=samples,
    )


def read_effects_h5(path: Path) -> StoredEffects:
    """Read ``effects.h5`` (written by ``results.write_effects_h5``)."""
    import h5py

    with h5py.File(path, "r") as f:
        return StoredEffects(
            mean=f["mean"][()],
            se=f["se"][()],
            reference=f["reference"][()],
            alt_bases=f["alt_base"][()],
            positions=f["position"][()],
            sequence_ids=tuple(s.decode() if isinstance(s, bytes) else s for s in f["sequence_id"]),
            feature_names=tuple(s.decode() if isinstance(s, bytes) else s for s in f["feature"]),
        )


@dataclass(frozen=True, eq=False)
class Analysis:
    """A Deep MR run's results (see the module docstring).

    Attributes
    ----------
    global_effects : DataFrame
        One row per (exposure, outcome, method): the headline inference, the verdict and its reason,
        the meta-analysis over sequences and diagnostics (``pipeline.run``'s table).
    run_info : dict
        ``run.json``'s record: config, model identity, sequences, timings, warnings, calibration.
    warnings : tuple of str
        Plain-words caveats about the results (also issued as ``DeepMRWarning`` by ``analyze``),
        naming settings by their Python keywords (``calibration_table=``; ``run.json`` keeps the
        command line's ``--calibration-table``).
    out_dir : Path or None
        The run folder (None: a run kept in memory).
    """

    global_effects: pd.DataFrame
    run_info: dict
    warnings: tuple[str, ...]
    out_dir: Path | None
    _cache: dict = field(default_factory=dict, repr=False)

    # -- building --------------------------------------------------------------------------------

    @classmethod
    def from_result(cls, result) -> Analysis:
        """The analysis of a ``pipeline.run`` result (a ``DeepMRResult``)."""
        from deepmr_kipoi.analysis.terms import python_terms

        warns = tuple(python_terms(w) for w in result.warnings)
        out = cls(result.global_effects, result.run_info, warns, result.out_dir)
        out._cache["local_effects"] = result.local_effects
        out._cache["config"] = result.config
        return out

    @classmethod
    def from_folder(cls, path) -> Analysis:
        """The analysis of a finished run folder (``deepmr run``, ``deepmr demo``, ``analyze(out=)``).

        Raises
        ------
        DeepMRInputError
            The folder is missing or holds no finished run.
        """
        from deepmr_kipoi import results
        from deepmr_kipoi.analysis.terms import python_terms

        data = results.read_run(path)
        info = data.run_info
        warns = tuple(python_terms(w) for w in info.get("warnings") or ())
        return cls(data.global_effects, info, warns, data.path)

    # -- tables ----------------------------------------------------------------------------------

    @property
    def config(self):
        """The run's resolved ``RunConfig``."""
        if "config" not in self._cache:
            from deepmr_kipoi.run.config import RunConfig

            self._cache["config"] = RunConfig.from_dict(self.run_info.get("config") or {})
        return self._cache["config"]

    @property
    def local_effects(self) -> pd.DataFrame:
        """One row per (sequence, exposure, outcome, method), read from the folder when first used."""
        if "local_effects" not in self._cache:
            path = self._folder_file("local_effects.parquet")
            self._cache["local_effects"] = pd.read_parquet(path)
        return self._cache["local_effects"]

    @property
    def effects(self) -> StoredEffects:
        """The run's ISM effects on its exposure and outcome features, read when first used (the
        per-sample effects store; ``effects.h5`` for runs of older versions)."""
        if "effects" not in self._cache:
            found = None if self._effects_dir() is None else read_effects_store(self._effects_dir())
            if found is None:
                path = self._folder_file("effects.h5", hint="this run kept no ISM effects")
                found = read_effects_h5(path)
            self._cache["effects"] = found
        return self._cache["effects"]

    def reanalyze(self, **settings) -> Analysis:
        """Analyse this run's stored ISM effects again with other analysis settings; runs no model.

        Parameters
        ----------
        **settings
            Analysis settings (``z``, ``methods``, ``exposures``/``outcomes`` among the run's,
            ``min_instruments``, ``instrument_rule``, ``level``, ``calibrator``, ...) and output
            settings (``out``: a new run folder; default: in memory).

        Returns
        -------
        Analysis
            The tables a full run with these settings gives.

        Raises
        ------
        DeepMRInputError
            A setting that changes the ISM effects (it needs the model), or a run kept in memory.

        Warns
        -----
        DeepMRWarning
            Each caveat about the new results.
        """
        import warnings

        from deepmr_kipoi.errors import DeepMRWarning
        from deepmr_kipoi.run.reanalysis import reanalyze

        source = self._effects_dir()
        if source is None:
            raise DeepMRInputError(
                "this run was kept in memory, so its ISM effects were not stored; pass out= to "
                "analyze, then reanalyze"
            )
        if "exposures" in settings and isinstance(settings["exposures"], str):
            settings["exposures"] = [settings["exposures"]]
        if "outcomes" in settings and isinstance(settings["outcomes"], str):
            settings["outcomes"] = [settings["outcomes"]]
        from deepmr_kipoi.analysis.terms import python_terms

        try:
            result = reanalyze(source, **settings)
        except DeepMRInputError as err:  # the run names options as the command line does
            raise type(err)(python_terms(str(err))) from err
        out = Analysis.from_result(result)
        out._cache["effects_dir"] = Path(out.out_dir) if out.out_dir else source
        for text in out.warnings:
            warnings.warn(text, DeepMRWarning, stacklevel=2)
        return out

    def _effects_dir(self) -> Path | None:
        """The run folder whose stored effects this result's reanalysis reads."""
        return self._cache.get("effects_dir") or (Path(self.out_dir) if self.out_dir else None)

    @property
    def verdicts(self) -> pd.DataFrame:
        """One row per ordered (exposure, outcome) pair: its verdict, reason and the headline
        estimator's estimate and interval (``VERDICT_COLUMNS``)."""
        from deepmr_kipoi.report.headline import primary_method

        g = self.global_effects
        rows = g[g["method"].astype(str) == primary_method(g)]
        cols = [c for c in VERDICT_COLUMNS if c in rows]
        return rows[cols].reset_index(drop=True)

    @property
    def truth(self) -> pd.DataFrame | None:
        """The planted effects of a simulated or demo run (exposure, outcome, true_effect), else None."""
        rows = self.run_info.get("truth")
        return None if not rows else pd.DataFrame(rows)

    def headline(self) -> str:
        """The verdicts in plain-text lines (the command line's summary)."""
        from deepmr_kipoi.report.headline import build_headline

        return "\n".join(build_headline(self.global_effects, self.truth).lines())

    # -- figures ---------------------------------------------------------------------------------

    def plot_heatmap(self, method: str | None = None):
        """The report's heatmap of global effects for ``method`` (default: the headline one).

        Returns
        -------
        matplotlib.figure.Figure
        """
        from deepmr_kipoi.report.drawing import global_heatmap
        from deepmr_kipoi.report.headline import primary_method

        method = method or primary_method(self.global_effects)
        self._check_method(method)
        return global_heatmap(self.global_effects, method, level=self._level())

    def plot_clustered_heatmap(self, method: str | None = None):
        """The report's clustered heatmap (for many features), as a Figure."""
        from deepmr_kipoi.report.overview import clustered_heatmap

        if method is not None:
            self._check_method(method)
        return clustered_heatmap(self.global_effects, method=method)

    def plot_graph(self):
        """The report's causal graph of the claims, as a Figure."""
        from deepmr_kipoi.report.overview import causal_graph

        return causal_graph(self.global_effects)

    def plot_truth(self):
        """The report's estimated-versus-true scatter (runs with a known truth), as a Figure."""
        from deepmr_kipoi.report.drawing import truth_scatter
        from deepmr_kipoi.report.headline import primary_method, truth_join

        if self.truth is None:
            raise DeepMRInputError("this run has no known truth; plot_truth needs a simulated run")
        first = primary_method(self.global_effects)
        j = truth_join(self.global_effects, self.truth, first)
        return truth_scatter(
            j["true_effect"],
            j["estimate"],
            j["ci_low"],
            j["ci_high"],
            [f"{e}->{o}" for e, o in zip(j["exposure"], j["outcome"])],
            title=f"Estimated ({first}) vs true global effects",
        )

    # -- display ---------------------------------------------------------------------------------

    def __repr__(self) -> str:
        from deepmr_kipoi.report.headline import build_headline

        seqs = self.run_info.get("sequences") or {}
        model = (self.run_info.get("model") or {}).get("name") or "model"
        where = f", folder {self.out_dir}" if self.out_dir else ""
        summary = build_headline(self.global_effects).summary().rstrip(":.")
        return (
            f"<Analysis of {model}: {summary}; {seqs.get('n', '?')} sequences, "
            f"{len(self.warnings)} warnings{where}>"
        )

    def _repr_html_(self) -> str:
        from deepmr_kipoi.report.headline import build_headline

        h = build_headline(self.global_effects, self.truth)
        claims = "".join(f"<li>{html.escape(c.sentence('→'))}</li>" for c in h.listed())
        table = self.verdicts.head(HTML_ROWS)
        more = len(self.verdicts) - len(table)
        rows = table.to_html(index=False, float_format=lambda v: f"{v:.3g}", border=0)
        warns = "".join(f"<li>{html.escape(w)}</li>" for w in self.warnings)
        parts = [
            f"<b>Deep MR: {html.escape(h.summary())}</b>",
            f"<ul>{claims}</ul>" if claims else "",
            f"<p>{html.escape(h.truth_text())}</p>" if h.truth else "",
            f"<div style='display:flex;gap:1em;align-items:flex-start'><div>{rows}"
            + (f"<i>... {more} more pairs in .verdicts</i>" if more > 0 else "")
            + f"</div>{self._heatmap_img()}</div>",
            f"<details><summary>{len(self.warnings)} warnings</summary><ul>{warns}</ul></details>"
            if warns
            else "",
        ]
        return (
            "<div style='max-height:600px;overflow:auto;font-size:90%'>" + "".join(parts) + "</div>"
        )

    def _heatmap_img(self) -> str:
        """A small PNG of the headline heatmap (none for more than 30 features: unreadable)."""
        import matplotlib.pyplot as plt

        from deepmr_kipoi.report.overview import features_of

        if len(features_of(self.global_effects)) > 30:
            return ""
        fig = self.plot_heatmap()
        fig.set_size_inches(4, 3.2)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=72, bbox_inches="tight")
        plt.close(fig)
        data = base64.b64encode(buf.getvalue()).decode()
        return f"<img style='max-width:320px' src='data:image/png;base64,{data}'/>"

    # -- helpers ---------------------------------------------------------------------------------

    def _level(self) -> float:
        return float((self.run_info.get("config") or {}).get("level", 0.95))

    def _check_method(self, method: str) -> None:
        have = list(dict.fromkeys(self.global_effects["method"].astype(str)))
        if method not in have:
            raise DeepMRInputError(
                f"method {method!r} is not in this run; choose {', '.join(have)}"
            )

    def _folder_file(self, name: str, hint: str = "") -> Path:
        if self.out_dir is None:
            raise DeepMRInputError(
                f"this run was kept in memory, so it has no {name}; pass out= to analyze"
            )
        path = Path(self.out_dir) / name
        if not path.exists():
            raise DeepMRInputError(
                f"{path} does not exist" + (f"; {hint}" if hint else "; re-run that run")
            )
        return path
