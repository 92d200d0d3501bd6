"""A figure file of a run, as the report shows it (no matplotlib here: the report of a run whose
figures are kept, not drawn, never imports it)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class FigureFile:
    """A figure written to the run folder.

    Attributes
    ----------
    path : Path
        PNG or SVG file.
    title : str
    caption : str
    section : str
        Where the report shows it: ``overview``, ``pair`` (the pair's details) or ``figures``.
    pair : (str, str) or None
        The (exposure, outcome) a ``pair`` figure belongs to.
    """

    path: Path
    title: str
    caption: str
    section: str = "figures"
    pair: tuple[str, str] | None = None
