"""The typed record of a run: what ``run.json`` holds and the report renders.

``RunRecord.to_dict()`` gives ``run.json``'s keys in their order; ``RunRecord.from_dict`` reads a
written ``run.json`` back.
"""

from __future__ import annotations

import dataclasses
import platform
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class FeatureSet:
    """The exposure and outcome features of a run, by name."""

    exposures: tuple[str, ...]
    outcomes: tuple[str, ...]


@dataclass(frozen=True)
class SequenceSet:
    """The reference sequences of a run.

    Attributes
    ----------
    n : int
    length : int
    window : (int, int)
        Half-open ISM window.
    ids : tuple of str
        The first 1000 ids.
    source : str
        Where they came from: FASTA records, FASTA regions of BED intervals, the model's Kipoi
        dataloader, or seeded random sequences.
    """

    n: int
    length: int
    window: tuple[int, int]
    ids: tuple[str, ...]
    source: str = ""


@dataclass(frozen=True)
class ChunkInfo:
    """How the sequences were split: ``n`` chunks of ``size``; ``resumed`` read back from disk."""

    n: int
    size: int
    resumed: tuple[int, ...]


@dataclass(frozen=True)
class RunRecord:
    """Everything ``run.json`` records about a run.

    Attributes
    ----------
    deepmr_kipoi_version : str
    config : dict
        The resolved config (``RunConfig.to_dict``).
    config_hash : str
    model : dict
        The model's identity (name, source, weights with md5s, n_samples, n_features, type, ...).
    features : FeatureSet
    sequences : SequenceSet
    seeds : dict
        Seeds of sequences, model and bootstrap.
    chunks : ChunkInfo
    calibration : dict or None
        Source, method and SE scale per calibrated feature.
    warnings : tuple of str
    truth : list of dict or None
        Known global effects (exposure, outcome, true_effect).
    versions : dict
        Package versions.
    platform : str
    started : str
        Local time, ISO format.
    figures : tuple of str
        Figure files relative to the run folder.
    timings_s : dict
        Seconds per step.
    finished : str or None
    nonfinite : dict
        Sequences and mutants with NaN/inf predictions left out (``mask_nonfinite``; else 0).
    """

    deepmr_kipoi_version: str
    config: dict
    config_hash: str
    model: dict
    features: FeatureSet
    sequences: SequenceSet
    seeds: dict
    chunks: ChunkInfo
    calibration: dict | None
    warnings: tuple[str, ...]
    truth: list | None
    versions: dict
    platform: str
    started: str
    figures: tuple[str, ...] = ()
    timings_s: dict = dataclasses.field(default_factory=dict)
    finished: str | None = None
    nonfinite: dict = dataclasses.field(default_factory=dict)
    figures_digest: str = ""
    figure_info: tuple = ()

    def to_dict(self) -> dict:
        """``run.json``'s content: nested plain values, lists instead of tuples."""
        return _plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, d: dict) -> RunRecord:
        """Read a ``run.json`` mapping back (unknown keys are ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        kw["features"] = FeatureSet(*(tuple(d["features"][k]) for k in ("exposures", "outcomes")))
        s = d["sequences"]
        kw["sequences"] = SequenceSet(
            s["n"], s["length"], tuple(s["window"]), tuple(s["ids"]), s.get("source", "")
        )
        c = d["chunks"]
        kw["chunks"] = ChunkInfo(c["n"], c["size"], tuple(c["resumed"]))
        kw["warnings"] = tuple(d.get("warnings") or ())
        kw["figures"] = tuple(d.get("figures") or ())
        kw["figure_info"] = tuple(d.get("figure_info") or ())
        return cls(**kw)


def _plain(obj):
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def versions() -> dict:
    """Versions of Python and the packages a run's numbers depend on (torch/TF only when loaded)."""
    from importlib.metadata import PackageNotFoundError, version

    from deepmr_kipoi import __version__

    out = {"python": platform.python_version(), "deepmr_kipoi": __version__}
    for pkg in (
        "numpy",
        "scipy",
        "pandas",
        "pyarrow",
        "h5py",
        "matplotlib",
        "kipoi",
        "torch",
        "tensorflow",
    ):
        if pkg in ("torch", "tensorflow") and pkg not in sys.modules:
            continue
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            continue
    return out
