"""The results people look at: a run's figures and its self-contained HTML report.

* `report.headline` sums a run up from its pair verdicts (claims, what was not claimed and why);
* `report.table` prepares the global table for the report's interactive table;
* `report.overview` draws the claims' causal graph, or a clustered heatmap at zoo scale;
* `report.drawing` draws every other figure (matplotlib, Agg backend);
* `report.figures` decides which figures a run gets and writes them;
* `report.page` renders the HTML pages from the Jinja2 templates in `report/templates`.
"""

from deepmr_kipoi.report.figures import FigureFile, top_pairs, truth_join
from deepmr_kipoi.report.headline import Claim, Headline, build_headline, truth_summary
from deepmr_kipoi.report.page import ASSUMPTIONS, write_compare_report, write_report

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
