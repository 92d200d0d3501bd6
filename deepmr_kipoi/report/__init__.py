"""The results people look at: a run's figures and its self-contained HTML report.

* `report.headline` sums a run up from its pair verdicts (claims, what was not claimed and why);
* `report.table` prepares the global table for the report's interactive table;
* `report.overview` draws the claims' causal graph, or a clustered heatmap at zoo scale;
* `report.drawing` draws every other figure (matplotlib, Agg backend);
* `report.figures` decides which figures a run gets and writes them (`report.figure_file`: the
  record of one);
* `report.page` renders the HTML pages from the Jinja2 templates in `report/templates`.

The drawing modules are imported when first used (``report.figures``, ``report.top_pairs``):
matplotlib costs about a second, which a run whose figures are kept or off never needs.
"""

import importlib

from deepmr_kipoi.report.figure_file import FigureFile
from deepmr_kipoi.report.headline import Claim, Headline, build_headline, truth_join, truth_summary
from deepmr_kipoi.report.page import ASSUMPTIONS, write_compare_report, write_report

_DRAWING = ("figures", "drawing", "overview")


def __getattr__(name: str):
    if name in _DRAWING:
        return importlib.import_module(f"deepmr_kipoi.report.{name}")
    if name == "top_pairs":
        return importlib.import_module("deepmr_kipoi.report.figures").top_pairs
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ASSUMPTIONS",
    "Claim",
    "FigureFile",
    "Headline",
    "build_headline",
    "top_pairs",
    "truth_join",
    "truth_summary",
    "write_compare_report",
    "write_report",
]
