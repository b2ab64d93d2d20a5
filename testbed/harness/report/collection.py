"""A comparison's or a sweep's report: ``collection.json``, ``points.csv`` and
``aggregate.csv`` read into :class:`CollectionData`, the key-metrics tables (mean ± 95 % CI
over seeds), the figures per point or against each swept axis, and links to every point's
own report."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from testbed.harness import stats
from testbed.harness.report.common import (
    DASH,
    KEY_METRICS,
    PLOT_METRICS,
    ReportError,
    ReportPaths,
    _numeric,
    _read_csv,
    _read_json,
    _row,
    _verdict_text,
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
    _write,
)
from testbed.harness.report.plotting import _figure, _panels, _save, _Skip


@dataclass
class CollectionData:
    """A comparison's or a sweep's ``collection.json``, ``points.csv`` and ``aggregate.csv``."""

    dir: Path
    meta: dict
    points: pd.DataFrame
    axes: list[str]
    notes: list[str] = field(default_factory=list)
    aggregate: pd.DataFrame | None = None  # one row per combination of the non-seed axes
    note: str = ""  # the verdict of all complete runs, stamped on every figure

    @property
    def seeds(self) -> int:
        """How many seeds the points play (1 when ``seed`` is no axis)."""
        return stats.seed_count(self.points, self.axes)

    @property
    def by(self) -> list[str]:
        """The axes results are reported per: all but the seed."""
        return stats.group_axes(self.axes)

    @property
    def x_axes(self) -> list[str]:
        """The axes a sweep plots against: neither the seed nor the policy."""
        return [a for a in self.by if a != "policy"]

    @property
    def is_compare(self) -> bool:
        return self.meta.get("kind") == "compare" or not self.x_axes


def load_collection(path: Path) -> CollectionData:
    """Read a collection directory: ``collection.json`` and ``points.csv`` are required;
    ``aggregate.csv`` is computed from ``points.csv`` (and written) when it is missing."""
    path = Path(path)
    meta = _read_json(path / "collection.json")
    if not isinstance(meta, dict):
        raise ReportError(f"{path / 'collection.json'}: not a JSON object")
    points = _read_csv(path / "points.csv")
    if "point" not in points.columns:
        raise ReportError(f"{path / 'points.csv'}: no point column")
    declared = meta.get("axes") if isinstance(meta.get("axes"), dict) else {}
    axes = [str(k) for k in declared if str(k) in points.columns]
    notes = [f"axis {k} has no column in points.csv" for k in declared if k not in axes]
    coll = CollectionData(path, meta, points, axes, notes)
    _fill_fidelity(coll)
    coll.aggregate = _load_aggregate(coll)
    coll.note = stats.verdict(points[stats.complete(points)]).text()
    return coll


def _fill_fidelity(coll: CollectionData) -> None:
    """Points tables written before they carried the fidelity check get it from each
    complete point's manifest (in memory only)."""
    if "fidelity_rows" in coll.points.columns:
        return
    done = stats.complete(coll.points)
    found = {}
    for i in range(len(coll.points)):
        if not done.iloc[i]:
            continue
        path = _point_dir(coll, i) / "manifest.json"
        try:
            m = _read_json(path) if path.exists() else None
        except ReportError:
            m = None
        found[coll.points.index[i]] = stats.fidelity_columns(m if isinstance(m, dict) else None)
    for col in ("fidelity_passed", "fidelity_rows", "fidelity_check"):
        coll.points[col] = pd.Series({k: v.get(col) for k, v in found.items()}, dtype=object)


def _load_aggregate(coll: CollectionData) -> pd.DataFrame:
    """``aggregate.csv`` as written beside ``points.csv``; computed and written if absent."""
    path = coll.dir / "aggregate.csv"
    if path.exists():
        return _read_csv(path)
    agg = stats.aggregate(coll.points, coll.axes)
    agg.to_csv(path, index=False)
    coll.notes.append("aggregate.csv was missing: computed from points.csv")
    return agg


def _point_dir(coll: CollectionData, i: int) -> Path:
    rel = coll.points["dir"].iloc[i] if "dir" in coll.points.columns else None
    if rel is None or pd.isna(rel):
        rel = f"points/{coll.points['point'].iloc[i]}"
    return coll.dir / str(rel)


def _label(df: pd.DataFrame, axes: Sequence[str], i: int) -> str:
    """Row ``i`` by its axis values (only the values for a single axis), else its point id
    (or "all runs" for an aggregate row of no axis)."""
    if len(axes) == 1:
        return fmt(df[axes[0]].iloc[i])
    if axes:
        return ", ".join(f"{a}={fmt(df[a].iloc[i])}" for a in axes)
    return fmt(df["point"].iloc[i]) if "point" in df.columns else "all runs"


def _point_label(coll: CollectionData, i: int) -> str:
    """A point by its axis values (only the values for a single axis), else its id."""
    return _label(coll.points, coll.axes, i)


VERDICT_COLUMNS = ("fidelity", "CPU-trusted")


def _comparison_table(coll: CollectionData) -> Table:
    """One row per point: its id and status, the axis keys, the key metrics present, then
    its fidelity check (rows passed/measured) and whether it was CPU-trusted."""
    lead = ["point"] + (["status"] if "status" in coll.points.columns else [])
    cols = lead + [a for a in coll.axes if a not in lead]
    cols += [m for m in KEY_METRICS if m in coll.points.columns and m not in cols]
    rows = []
    for i in range(len(coll.points)):
        v = stats.verdict(coll.points.iloc[[i]])
        rows.append([fmt(coll.points[c].iloc[i]) for c in cols]
                    + [v.fidelity_cell(), v.trusted_cell()])
    return Table(cols + list(VERDICT_COLUMNS), rows)


def _aggregate_table(coll: CollectionData) -> Table:
    """One row per combination of the non-seed axes: n (runs complete), each key metric as
    "mean ± ci95" over the seeds ("(n=k)" when fewer had a value), the verdict."""
    agg = coll.aggregate if coll.aggregate is not None else pd.DataFrame()
    by = [a for a in coll.by if a in agg.columns]
    metrics = [m for m in KEY_METRICS if f"{m}_mean" in agg.columns]
    extra = ["left_out"] if "left_out" in agg and _numeric(agg["left_out"]).fillna(0).any() else []
    rows = []
    for i in range(len(agg)):
        r = _row(agg, i)
        v = stats.aggregate_verdict(r)
        rows.append([fmt(r[a]) for a in by] + [fmt(r.get("runs"))] + [fmt(r[c]) for c in extra]
                    + [stats.mean_ci_text(r[f"{m}_mean"], r.get(f"{m}_ci95"), r.get(f"{m}_n"),
                                          r.get("runs"), fmt) for m in metrics]
                    + [v.fidelity_cell(), v.trusted_cell()])
    heads = [*by, "n", *(c.replace("_", " ") for c in extra), *metrics, *VERDICT_COLUMNS]
    return Table(heads, rows)


def _plot_metrics(df: pd.DataFrame) -> list[str]:
    return [m for m in PLOT_METRICS if m in df.columns and _numeric(df[m]).notna().any()]


def _plot_frame(coll: CollectionData) -> tuple[pd.DataFrame, list[str]]:
    """What the figures draw and the axes that tell its rows apart: with several seeds the
    aggregate rows (each metric's mean under its own name, ``<m>_ci95`` beside it), else
    the points."""
    if coll.seeds > 1 and coll.aggregate is not None:
        agg = coll.aggregate
        df = agg.rename(columns={f"{m}_mean": m for m in PLOT_METRICS})
        return df, [a for a in coll.by if a in df.columns]
    return coll.points, coll.axes


def _error(df: pd.DataFrame, m: str) -> pd.Series | None:
    """The 95 % CI half-widths of metric ``m``'s means, or None (no error bars)."""
    col = f"{m}_ci95"
    return _numeric(df[col]) if col in df.columns else None


def _fig_metric_bars(coll: CollectionData, out: Path) -> None:
    """One panel per key metric, one bar per point (per policy, its mean with the 95 % CI
    as an error bar, when there are several seeds)."""
    df, axes = _plot_frame(coll)
    metrics = _plot_metrics(df)
    if not metrics:
        raise _Skip("Left out: points.csv has no key metric with a value.")
    labels = [_label(df, axes, i) for i in range(len(df))]
    if coll.seeds > 1 and "runs" in df.columns:  # how many seeds each mean stands on
        labels = [f"{label} (n={fmt(n)})" for label, n in zip(labels, df["runs"])]
    fig, panels = _panels(len(metrics))
    colours = [f"C{i % 10}" for i in range(len(labels))]
    for ax, m in zip(panels, metrics):
        err = _error(df, m)
        ax.bar(range(len(labels)), _numeric(df[m]), color=colours, yerr=err,
               capsize=3 if err is not None else 0)
        ax.set_xticks(range(len(labels)), labels, rotation=30 if len(labels) > 3 else 0,
                      fontsize=8)
        ax.set_title(m, fontsize=9)
    _save(fig, out, coll.note)


def _fig_startup_cdfs(coll: CollectionData, out: Path) -> None:
    """One startup CDF per point, read from each point's viewers.csv; with several seeds
    one per combination of the other axes, the sessions of all its seeds pooled."""
    pooled = coll.seeds > 1
    curves: dict[str, tuple[list[np.ndarray], list[int]]] = {}
    absent = []
    for i in range(len(coll.points)):
        path = _point_dir(coll, i) / "tables" / "viewers.csv"
        try:
            df = _read_csv(path) if path.exists() else None
        except ReportError:
            df = None
        if df is None or "startup_s" not in df.columns or len(df) == 0:
            absent.append(str(coll.points["point"].iloc[i]))
            continue
        label = _label(coll.points, coll.by, i) if pooled else _point_label(coll, i)
        started, totals = curves.setdefault(label, ([], []))
        started.append(_numeric(df["startup_s"]).dropna().to_numpy())
        totals.append(len(df))
    if not any(len(a) for started, _ in curves.values() for a in started):
        raise _Skip("Left out: no point has a viewers.csv with a started session.")
    fig, (ax,) = _figure()
    for label, (started, totals) in curves.items():
        x = np.sort(np.concatenate(started))
        ax.step(x, np.arange(1, len(x) + 1) / sum(totals), where="post", label=label)
    ax.set(xlabel="startup (s)", ylabel="fraction of sessions", ylim=(0, 1.02))
    ax.legend(fontsize=8)
    _save(fig, out, coll.note)
    if absent:
        coll.notes.append(f"startup CDF: no viewers.csv for {', '.join(absent)}")


def _x_positions(coll: CollectionData, df: pd.DataFrame,
                 x: str) -> tuple[pd.Series, list[str] | None]:
    """Where each row of ``df`` sits on axis ``x``: its value if numeric, else its
    category's index (categories in the order collection.json lists them) with the
    category names."""
    col = df[x]
    num = _numeric(col)
    if col.notna().any() and num[col.notna()].notna().all():
        return num, None
    declared = coll.meta.get("axes")
    listed = (declared.get(x) if isinstance(declared, dict) else None) or []
    cats = [fmt(v) for v in listed]
    labels = col.map(fmt)
    cats = list(dict.fromkeys([c for c in cats if c in set(labels)] + list(labels)))
    return labels.map({c: i for i, c in enumerate(cats)}).astype(float), cats


def _line_groups(df: pd.DataFrame, axes: Sequence[str], x: str,
                 exact: bool) -> list[tuple[str | None, pd.Series]]:
    """One line per policy when policy is an axis (averaged over any other axes), else one
    per combination of the other axes, else a single line.  ``exact`` (means with error
    bars): always one line per combination of the other axes, so nothing is averaged."""
    others = [a for a in axes if a != x]
    if "policy" in axes and not exact:
        others = ["policy"]
    if not others:
        return [(None, pd.Series(True, index=df.index))]
    keys = df.apply(lambda r: ", ".join(fmt(r[a]) if len(others) == 1 else f"{a}={fmt(r[a])}"
                                        for a in others), axis=1)
    return [(k, keys == k) for k in dict.fromkeys(keys)]


def _fig_vs(coll: CollectionData, x: str, out: Path) -> None:
    """One panel per key metric against axis ``x``, one line per policy (or combination);
    with several seeds the means with 95 % CI error bars."""
    df, axes = _plot_frame(coll)
    metrics = _plot_metrics(df)
    if not metrics:
        raise _Skip("Left out: points.csv has no key metric with a value.")
    xpos, cats = _x_positions(coll, df, x)
    groups = _line_groups(df, axes, x, exact=coll.seeds > 1)
    fig, panels = _panels(len(metrics))
    for ax, m in zip(panels, metrics):
        y, err = _numeric(df[m]), _error(df, m)
        for label, mask in groups:
            line = pd.DataFrame({"x": xpos[mask], "y": y[mask]})
            if err is not None:
                line["e"] = err[mask]
            line = line.dropna(subset=["x", "y"]).groupby("x").mean().sort_index()
            if err is None:
                ax.plot(line.index, line["y"].to_numpy(), marker="o", label=label)
            else:
                ax.errorbar(line.index, line["y"].to_numpy(), yerr=line["e"].to_numpy(),
                            marker="o", capsize=3, label=label)
        if cats is not None:
            ax.set_xticks(range(len(cats)), cats, fontsize=8)
        elif xpos.nunique() <= 10:
            ax.set_xticks(sorted(xpos.dropna().unique()))
        ax.set_title(m, fontsize=9)
        ax.set_xlabel(x, fontsize=8)
    if any(label is not None for label, _ in groups):
        panels[0].legend(fontsize=7)
    _save(fig, out, coll.note)


def figure_name(axis: str) -> str:
    """``vs_<axis>.png`` with anything but letters, digits, ``-`` and ``_`` as ``_``."""
    return "vs_" + re.sub(r"[^A-Za-z0-9_-]+", "_", axis) + ".png"


def _over_seeds(coll: CollectionData) -> str:
    return f": mean and 95 % CI over {coll.seeds} seeds" if coll.seeds > 1 else ""


def _collection_figures(coll: CollectionData) -> list[tuple[str, str, Callable[[Path], None]]]:
    """(file name, title, draw) for each figure this collection gets."""
    if coll.is_compare:
        per = "per policy" if coll.seeds > 1 and coll.by == ["policy"] else "per point"
        pooled = ", sessions of all seeds pooled" if coll.seeds > 1 else ""
        return [("metrics.png", f"Key metrics {per}{_over_seeds(coll)}",
                 lambda out: _fig_metric_bars(coll, out)),
                ("startup_cdf.png", f"Startup time {per}{pooled}",
                 lambda out: _fig_startup_cdfs(coll, out))]
    return [(figure_name(x), f"Key metrics against {x}{_over_seeds(coll)}",
             lambda out, x=x: _fig_vs(coll, x, out)) for x in coll.x_axes]


def _draw_collection_figures(coll: CollectionData,
                             fig_dir: Path) -> tuple[list[Block], list[Path]]:
    blocks: list[Block] = [Heading("Figures")]
    drawn: list[Path] = []
    for name, title, draw in _collection_figures(coll):
        blocks.append(Heading(title, 3))
        try:
            draw(fig_dir / name)
        except _Skip as skip:
            blocks.append(Text(str(skip)))
        else:
            drawn.append(fig_dir / name)
            blocks.append(Image(title, f"figures/{name}"))
    return blocks, drawn


def _point_reports(coll: CollectionData, write: bool) -> list[Block]:
    """Write each point's own report (when ``write``), then link those that exist."""
    from testbed.harness.report.write import write_report  # a point is a run: recursion

    items = []
    for i in range(len(coll.points)):
        point, pdir = str(coll.points["point"].iloc[i]), _point_dir(coll, i)
        if write and (pdir / "summary.csv").exists():
            try:
                write_report(pdir)
            except ReportError as exc:
                coll.notes.append(f"{point}: no report: {exc}")
        elif write:
            coll.notes.append(f"{point}: no report: {pdir / 'summary.csv'} is missing")
        if (pdir / "report.html").exists():
            rel = Path(os.path.relpath(pdir, coll.dir)).as_posix()
            items.append((f"{point}: {_point_label(coll, i)}", f"{rel}/report.md",
                          f"{rel}/report.html"))
    if not items:
        return [Heading("Point reports"), Text("No point has a report.")]
    return [Heading("Point reports"), Links(items)]


def _collection_header(coll: CollectionData) -> list[Block]:
    meta = coll.meta
    axes = meta.get("axes") if isinstance(meta.get("axes"), dict) else {}
    axis_text = "; ".join(f"{k}: {', '.join(fmt(v) for v in vals)}" for k, vals in axes.items())
    line = (f"Directory {coll.dir.name}; scenario {fmt(meta.get('scenario'))}; "
            f"mode {fmt(meta.get('mode'))}; {len(coll.points)} points in points.csv "
            f"({fmt(meta.get('points'))} planned).")
    return [Heading(_collection_title(coll), 1), Text(line), Text(f"Axes: {axis_text or DASH}.")]


def _collection_title(coll: CollectionData) -> str:
    kind = "Comparison" if coll.meta.get("kind") == "compare" else "Sweep"
    return f"{kind} report: {coll.meta.get('name') or coll.dir.name}"


def _key_tables(coll: CollectionData) -> list[Block]:
    """The key-metrics table (aggregated over seeds when there are several), the verdict
    right under it; with several seeds the per-point table follows the figures."""
    verdict = Text(_verdict_text(coll.note))
    if coll.seeds <= 1:
        return [Heading("Comparison"), _comparison_table(coll), verdict]
    how = (f"Each cell: mean ± the half-width of the two-sided 95 % Student-t interval over "
           f"the n seeds whose runs completed ({coll.seeds} planned), from aggregate.csv; "
           f"(n=k) where only k of them had a value.")
    return [Heading("Comparison"), Text(how), _aggregate_table(coll), verdict]


def _report_collection(path: Path, per_point: bool) -> ReportPaths:
    coll = load_collection(path)
    fig_dir = path / "figures"
    fig_dir.mkdir(exist_ok=True)
    links = _point_reports(coll, per_point)
    figs, drawn = _draw_collection_figures(coll, fig_dir)
    points = [Heading("Points"), _comparison_table(coll)] if coll.seeds > 1 else []
    blocks = _collection_header(coll) + _key_tables(coll) + figs + points + links
    if coll.notes:
        blocks += [Heading("Notes"), Bullets(coll.notes)]
    return _write(path, _collection_title(coll), blocks, drawn)
