"""The results people look at: a run's figures and its self-contained HTML report.

* `report.page` renders the HTML pages (a run's report, ``deepmr compare``'s page);
* `report.figures` decides which figures a run gets and writes them;
* `report.drawing` draws each figure (matplotlib, Agg backend).
"""

from deepmr_kipoi.report.figures import FigureFile, top_pairs, truth_join
from deepmr_kipoi.report.page import (
    ASSUMPTIONS,
    table_html,
    truth_headline,
    truth_summary,
    write_compare_report,
    write_report,
)

__all__ = [
    "ASSUMPTIONS",
    "FigureFile",
    "table_html",
    "top_pairs",
    "truth_headline",
    "truth_join",
    "truth_summary",
    "write_compare_report",
    "write_report",
]
