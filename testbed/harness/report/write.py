"""The entry point: a run's or a collection's directory -> its report."""

from __future__ import annotations

from pathlib import Path

from testbed.harness.report.collection import _report_collection
from testbed.harness.report.common import ReportError, ReportPaths
from testbed.harness.report.run import _report_run


def write_report(path: Path, per_point: bool = True) -> ReportPaths:
    """Write ``report.md``, ``report.html`` and ``figures/*.png`` into a run or a collection
    directory (for a collection, each point's own report too when ``per_point``)."""
    path = Path(path)
    if not path.is_dir():
        raise ReportError(f"{path}: not a directory")
    if (path / "points.csv").exists():
        return _report_collection(path, per_point)
    if (path / "summary.csv").exists():
        return _report_run(path)
    raise ReportError(f"{path}: no summary.csv or points.csv: not a run or a collection")
