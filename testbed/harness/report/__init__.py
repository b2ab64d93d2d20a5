"""A run's, a comparison's or a sweep's directory -> ``report.md``, ``report.html`` and
``figures/*.png`` beside its tables.

The report is drawn from the files only: ``summary.csv``, ``manifest.json``,
``tables/*.csv`` and ``topology.json`` for a run; ``collection.json``, ``points.csv``,
``aggregate.csv`` and each point's run directory for a collection.  Every value shown from
``summary.csv``, ``points.csv`` or ``aggregate.csv`` goes through :func:`fmt`, so what the
report says equals what the tables hold.  A collection over several seeds shows, per
combination of the other axes, mean ± 95 % CI (from ``aggregate.csv``) and draws the means
with error bars.  The fidelity verdict (rows within tolerance, CPU-trusted runs) stands
under the key-metrics table and above every figure.  A missing optional table leaves its
figure out with a line saying which table was missing: a short or failed run still reports.

- :mod:`.common`: key metrics, :func:`fmt`, :class:`ReportError`, reading the files;
- :mod:`.document`: the blocks and their Markdown and HTML rendering;
- :mod:`.plotting`: the matplotlib canvas every figure is drawn on;
- :mod:`.run`: one run's figures and tables;
- :mod:`.collection`: a comparison's or a sweep's figures and tables;
- :mod:`.write`: :func:`write_report`, for either kind of directory.
"""

from testbed.harness.report.collection import (
    VERDICT_COLUMNS,
    CollectionData,
    figure_name,
    load_collection,
)
from testbed.harness.report.common import (
    DASH,
    KEY_METRICS,
    PLOT_METRICS,
    ReportError,
    ReportPaths,
    fmt,
)
from testbed.harness.report.document import (
    Block,
    Bullets,
    Heading,
    Image,
    Links,
    Table,
    Text,
    to_html,
    to_markdown,
)
from testbed.harness.report.plotting import DPI
from testbed.harness.report.run import (
    LINK_ROWS,
    RUN_FIGURES,
    RUN_TABLES,
    FigureSpec,
    RunData,
    load_run,
    run_verdict,
)
from testbed.harness.report.write import write_report

__all__ = [
    "DASH", "DPI", "KEY_METRICS", "LINK_ROWS", "PLOT_METRICS", "RUN_FIGURES", "RUN_TABLES",
    "VERDICT_COLUMNS", "Block", "Bullets", "CollectionData", "FigureSpec", "Heading", "Image",
    "Links", "ReportError", "ReportPaths", "RunData", "Table", "Text", "figure_name", "fmt",
    "load_collection", "load_run", "run_verdict", "to_html", "to_markdown", "write_report",
]
