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
"""

from __future__ import annotations

import html
import json
import math
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Union

import networkx as nx
import numpy as np
import pandas as pd

from testbed.core.metrics import REQUEST_SOURCES, TRAFFIC_CLASSES
from testbed.core.records import is_cache
from testbed.harness import stats

#: Shown first, in this order, wherever they are present.
KEY_METRICS = ("hit_ratio", "byte_offload", "origin_per_viewer_byte", "origin_peak_mbit",
               "startup_p50_s", "startup_p95_s", "never_started", "abandoned_at_start",
               "rebuffer_ratio", "prefetch_precision", "prefetch_waste", "push_ratio",
               "overhead_ratio", "byte_hops_per_viewer_byte", "pushes", "push_bytes",
               "requests", "answered", "sessions", "abandoned", "cpu_idle_mean", "cpu_trusted")
#: The key metrics a collection plots, one panel each.
PLOT_METRICS = ("hit_ratio", "byte_offload", "origin_per_viewer_byte", "startup_p95_s",
                "rebuffer_ratio", "prefetch_waste", "push_ratio")
RUN_TABLES = ("requests", "viewers", "intervals", "by_class", "prefetch", "predictions", "links")
DASH = "—"
LINK_ROWS = 15  # the busiest links the run report lists
DPI = 100


class ReportError(ValueError):
    """A directory that is neither a run nor a collection, or a required file unreadable."""


@dataclass(frozen=True)
class ReportPaths:
    """What :func:`write_report` wrote."""

    markdown: Path
    html: Path
    figures: list[Path]


def fmt(v: object) -> str:
    """The one way the report shows a value: floats to 4 significant digits, ints and
    int-valued floats as plain ints, bools and strings as they are, NaN and None as a dash."""
    if v is None or v is pd.NA or v is pd.NaT:
        return DASH
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        f = float(v)
        if math.isnan(f):
            return DASH
        if f.is_integer():
            return str(int(f))
        return f"{f:.4g}"
    return str(v)


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


# -- the document: blocks rendered to Markdown and HTML --------------------------------------

@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Bullets:
    items: list[str]


@dataclass(frozen=True)
class Table:
    columns: list[str]
    rows: list[list[str]]


@dataclass(frozen=True)
class Image:
    title: str
    src: str


@dataclass(frozen=True)
class Links:
    """(text, Markdown target, HTML target) per item."""

    items: list[tuple[str, str, str]]


Block = Union[Heading, Text, Bullets, Table, Image, Links]


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_table(table: Table) -> str:
    lines = ["| " + " | ".join(_md_cell(c) for c in table.columns) + " |",
             "|" + "|".join("---" for _ in table.columns) + "|"]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in table.rows]
    return "\n".join(lines)


def _md_block(block: Block) -> str:
    if isinstance(block, Heading):
        return "#" * block.level + " " + block.text
    if isinstance(block, Text):
        return block.text
    if isinstance(block, Bullets):
        return "\n".join(f"- {item}" for item in block.items)
    if isinstance(block, Table):
        return _md_table(block)
    if isinstance(block, Image):
        return f"![{block.title}]({block.src})"
    return "\n".join(f"- [{text}]({md})" for text, md, _ in block.items)


def to_markdown(blocks: Sequence[Block]) -> str:
    """The blocks as GitHub Markdown."""
    return "\n\n".join(_md_block(b) for b in blocks) + "\n"


_CSS = """body{font-family:system-ui,sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem;
color:#222}table{border-collapse:collapse;margin:.5rem 0 1.5rem}
th,td{border:1px solid #ccc;padding:.2rem .6rem;text-align:left}th{background:#f2f2f2}
img{max-width:100%}figure{margin:1rem 0}figcaption{color:#555;font-size:.9rem}
p.note{color:#555}"""


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


def _html_table(table: Table) -> str:
    head = "".join(f"<th>{_esc(c)}</th>" for c in table.columns)
    body = "\n".join("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in row) + "</tr>"
                     for row in table.rows)
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>"


def _html_block(block: Block) -> str:
    if isinstance(block, Heading):
        return f"<h{block.level}>{_esc(block.text)}</h{block.level}>"
    if isinstance(block, Text):
        return f'<p class="note">{_esc(block.text)}</p>'
    if isinstance(block, Bullets):
        return "<ul>" + "".join(f"<li>{_esc(i)}</li>" for i in block.items) + "</ul>"
    if isinstance(block, Table):
        return _html_table(block)
    if isinstance(block, Image):
        return (f'<figure><img src="{_esc(block.src)}" alt="{_esc(block.title)}">'
                f"<figcaption>{_esc(block.title)}</figcaption></figure>")
    return "<ul>" + "".join(f'<li><a href="{_esc(h)}">{_esc(t)}</a></li>'
                            for t, _, h in block.items) + "</ul>"


def to_html(title: str, blocks: Sequence[Block]) -> str:
    """The blocks as one self-contained HTML page (images by relative path)."""
    parts = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
             f"<title>{_esc(title)}</title>", f"<style>{_CSS}</style>", "</head>", "<body>"]
    parts += [_html_block(b) for b in blocks]
    parts += ["</body>", "</html>"]
    return "\n".join(parts) + "\n"


def _kv_table(rows: Sequence[tuple[str, object]], head: tuple[str, str]) -> Table:
    return Table(list(head), [[k, fmt(v)] for k, v in rows])


# -- reading ---------------------------------------------------------------------------------

def _read_csv(path: Path) -> pd.DataFrame:
    """A CSV file as a frame; ReportError naming the file when it cannot be read."""
    try:
        return pd.read_csv(path)
    except (OSError, ValueError, pd.errors.EmptyDataError, pd.errors.ParserError) as exc:
        raise ReportError(f"{path}: unreadable: {_one_line(exc)}") from None


def _read_json(path: Path) -> Any:
    """A JSON file's value; ReportError naming the file when it cannot be read."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ReportError(f"{path}: unreadable: {_one_line(exc)}") from None


def _row(df: pd.DataFrame, i: int) -> dict[str, Any]:
    """Row ``i`` as column -> value, each value keeping its own column's type."""
    return {c: df[c].iloc[i] for c in df.columns}


@dataclass
class RunData:
    """A run directory's files, as far as they are there."""

    dir: Path
    summary: dict[str, Any]
    manifest: dict | None
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)  # file -> "is missing" / why not
    topology: dict | None = None
    note: str = ""  # the fidelity verdict, stamped on every figure


def _optional(path: Path, rel: str, missing: dict[str, str],
              read: Callable[[Path], Any]) -> Any:
    """``read(path)``, or None with the reason noted in ``missing``."""
    if not path.exists():
        missing[rel] = "is missing"
        return None
    try:
        return read(path)
    except ReportError as exc:
        missing[rel] = f"is unreadable ({str(exc).split(': ', 1)[-1]})"
        return None


def load_run(path: Path) -> RunData:
    """Read a run directory: ``summary.csv`` is required, everything else optional."""
    path = Path(path)
    summary = _read_csv(path / "summary.csv")
    if len(summary) == 0:
        raise ReportError(f"{path / 'summary.csv'}: no rows")
    missing: dict[str, str] = {}
    manifest = _optional(path / "manifest.json", "manifest.json", missing, _read_json)
    if manifest is not None and not isinstance(manifest, dict):
        raise ReportError(f"{path / 'manifest.json'}: not a JSON object")
    run = RunData(path, _row(summary, 0), manifest, missing=missing)
    for name in RUN_TABLES:
        rel = f"tables/{name}.csv"
        df = _optional(path / rel, rel, missing, _read_csv)
        if df is not None:
            run.tables[name] = df
    topo = _optional(path / "topology.json", "topology.json", missing, _read_json)
    if topo is not None and not isinstance(topo, dict):
        missing["topology.json"] = "is not a JSON object"
        topo = None
    run.topology = topo
    run.note = run_verdict(run).text()
    return run


def run_verdict(run: RunData) -> stats.Verdict:
    """The run's fidelity check and CPU verdict: summary.csv's columns where it has them,
    else the manifest's ``fidelity`` and ``cpu``."""
    m = run.manifest or {}
    row = {k: run.summary.get(k) for k in ("fidelity_passed", "fidelity_rows", "cpu_trusted")}
    fid = m.get("fidelity")
    if _absent(row["fidelity_rows"]) and isinstance(fid, dict):
        row.update(fidelity_passed=fid.get("passed"), fidelity_rows=fid.get("measurements"))
    cpu = m.get("cpu")
    if _absent(row["cpu_trusted"]) and isinstance(cpu, dict):
        row["cpu_trusted"] = cpu.get("trusted")
    return stats.verdict(pd.DataFrame([row], dtype=object))


def _absent(v: object) -> bool:
    return v is None or (isinstance(v, (float, np.floating)) and math.isnan(v))


# -- figures ---------------------------------------------------------------------------------

class _Skip(Exception):
    """A figure left out, with the line the report shows instead."""


def _figure(nrows: int = 1, ncols: int = 1, size: tuple[float, float] = (6.4, 3.6)):
    """A new figure on the Agg backend and its axes as a flat list."""
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    # a Debian-packaged matplotlib beside the venv's makes mpl_toolkits warn; no 3-D here
    warnings.filterwarnings("ignore", message="Unable to import Axes3D")
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, [ax for row in axes for ax in row]


def _panels(n: int, width: float = 3.4, height: float = 2.7):
    """A figure with ``n`` panels, at most four to a row; unused panels hidden."""
    ncols = min(n, 4)
    nrows = math.ceil(n / ncols)
    fig, axes = _figure(nrows, ncols, (width * ncols, height * nrows))
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def _save(fig: Any, out: Path, note: str = "") -> None:
    """Write the figure, with ``note`` (the fidelity verdict) along its top."""
    if note:
        fig.suptitle(note, fontsize=7, color="#555555")
    fig.savefig(out, dpi=DPI)


def _numeric(s: pd.Series) -> pd.Series:
    return pd.to_numeric(s, errors="coerce")


def _truthy(s: pd.Series) -> pd.Series:
    """Bools however the CSV spelt them (True/False, 1/0)."""
    return s.map(lambda v: str(v).strip().lower() in ("true", "1", "1.0", "yes"))


def _table(run: RunData, name: str, *cols: str, rows: bool = True) -> pd.DataFrame:
    """The run's table ``name`` with columns ``cols``, or _Skip saying what is missing."""
    rel = f"tables/{name}.csv"
    if name not in run.tables:
        raise _Skip(f"Left out: {rel} {run.missing.get(rel, 'is missing')}.")
    df = run.tables[name]
    absent = [c for c in cols if c not in df.columns]
    if absent:
        raise _Skip(f"Left out: {rel} has no column {', '.join(absent)}.")
    if rows and len(df) == 0:
        raise _Skip(f"Left out: {rel} has no rows.")
    return df


def _fig_hit_ratio(run: RunData, out: Path) -> None:
    """Hit ratio and serve offload per interval (``offload`` in runs before the rename)."""
    df = _table(run, "intervals", "t")
    offload = "serve_offload" if "serve_offload" in df.columns else "offload"
    cols = [c for c in ("hit_ratio", offload) if c in df.columns]
    if not cols:
        raise _Skip("Left out: tables/intervals.csv has no hit_ratio or serve_offload column.")
    fig, (ax,) = _figure()
    t = _numeric(df["t"])
    for c in cols:
        ax.plot(t, _numeric(df[c]), marker=".", label=c)
    ax.set(xlabel="time since run start (s)", ylabel="fraction", ylim=(0, 1.05))
    ax.legend()
    _save(fig, out, run.note)


def _fig_startup_cdf(run: RunData, out: Path) -> None:
    """CDF of startup time over all sessions, the p95 marked."""
    df = _table(run, "viewers", "startup_s")
    started = np.sort(_numeric(df["startup_s"]).dropna().to_numpy())
    if len(started) == 0:
        raise _Skip("Left out: no session started in this run.")
    p95 = _numeric(pd.Series([run.summary.get("startup_p95_s")])).iloc[0]
    if pd.isna(p95):
        p95 = float(np.percentile(started, 95))
    fig, (ax,) = _figure()
    ax.step(started, np.arange(1, len(started) + 1) / len(df), where="post")
    ax.axvline(p95, color="tab:red", linestyle="--", label=f"p95 = {fmt(p95)} s")
    never = len(df) - len(started)
    ax.set(xlabel="startup (s)", ylabel="fraction of sessions", ylim=(0, 1.02),
           title=f"{len(df)} sessions, {never} never started")
    ax.legend()
    _save(fig, out, run.note)


def _fig_rebuffer(run: RunData, out: Path) -> None:
    """Histogram of per-session rebuffer ratio."""
    df = _table(run, "viewers", "rebuffer_ratio")
    ratio = _numeric(df["rebuffer_ratio"]).dropna()
    if len(ratio) == 0:
        raise _Skip("Left out: no session has a rebuffer ratio.")
    fig, (ax,) = _figure()
    ax.hist(ratio, bins=20, color="tab:purple")
    ax.set(xlabel="rebuffer ratio", ylabel="sessions")
    _save(fig, out, run.note)


def _ordered(index: Sequence[str], known: Sequence[str]) -> list[str]:
    """``index`` in ``known``'s order, the unknown after them, sorted."""
    names = [str(i) for i in index]
    return [k for k in known if k in names] + sorted(n for n in names if n not in known)


def _fig_sources(run: RunData, out: Path) -> None:
    """Bytes to viewers by source."""
    df = _table(run, "requests", "source", "bytes")
    by = _numeric(df["bytes"]).groupby(df["source"].astype(str)).sum()
    order = _ordered(by.index, REQUEST_SOURCES)
    fig, (ax,) = _figure()
    colours = ["tab:green" if is_cache(s) else "tab:blue" for s in order]
    ax.bar(order, [by[s] for s in order], color=colours)
    ax.set(ylabel="bytes to viewers")
    ax.tick_params(axis="x", labelrotation=30)
    _save(fig, out, run.note)


def _interval_width(run: RunData) -> float:
    """The intervals table's bucket width, 10 s when it is not known."""
    df = run.tables.get("intervals")
    if df is not None and "t" in df.columns:
        t = np.unique(_numeric(df["t"]).dropna().to_numpy())
        if len(t) > 1:
            return float(np.median(np.diff(t)))
    return 10.0


def _fig_prefetch(run: RunData, out: Path) -> None:
    """Push precision per interval; pushed bytes used against wasted."""
    df = _table(run, "prefetch", "at", "bytes", "used", rows=False)
    if len(df) == 0:
        raise _Skip("Left out: no pushed copy was kept in this run.")
    used = _truthy(df["used"])
    width = _interval_width(run)
    bucket = np.floor(_numeric(df["at"]) / width) * width
    precision = used.groupby(bucket).mean()
    nbytes = _numeric(df["bytes"]).fillna(0)
    fig, (left, right) = _figure(1, 2, (9.6, 3.6))
    left.plot(precision.index, precision.to_numpy(), marker="o")
    left.set(xlabel="time since run start (s)", ylabel="copies used / kept", ylim=(0, 1.05),
             title=f"push precision per {fmt(width)} s")
    right.bar(["used", "wasted"], [nbytes[used].sum(), nbytes[~used].sum()],
              color=["tab:green", "tab:red"])
    right.set(ylabel="pushed bytes", title="pushed bytes")
    _save(fig, out, run.note)


def _fig_overhead(run: RunData, out: Path) -> None:
    """Bytes sent by traffic class, log scale."""
    df = _table(run, "by_class", "cls", "tx_bytes")
    tx = _numeric(df["tx_bytes"]).groupby(df["cls"].astype(str)).sum()
    tx = tx[tx > 0]
    if len(tx) == 0:
        raise _Skip("Left out: tables/by_class.csv counts no bytes sent.")
    order = _ordered(tx.index, TRAFFIC_CLASSES)
    fig, (ax,) = _figure()
    ax.bar(order, [tx[c] for c in order], color="tab:gray")
    ax.set_yscale("log")
    ax.set(ylabel="bytes sent (log)")
    ax.tick_params(axis="x", labelrotation=30)
    _save(fig, out, run.note)


def _fig_prediction(run: RunData, out: Path) -> None:
    """Model and playhead precision against the end of each model's scored window."""
    df = _table(run, "predictions", "scored_to", rows=False)
    if len(df) == 0:
        raise _Skip("no model was scored in this run")
    cols = [c for c in ("precision", "playhead_precision") if c in df.columns]
    if not cols:
        raise _Skip("Left out: tables/predictions.csv has no precision column.")
    df = df.assign(_x=_numeric(df["scored_to"])).sort_values("_x")
    fig, (ax,) = _figure()
    for c in cols:
        label = "model precision" if c == "precision" else "playhead precision"
        ax.plot(df["_x"], _numeric(df[c]), marker="o", label=label)
    ax.set(xlabel="scored to (s)", ylabel="precision", ylim=(0, 1.05))
    ax.legend()
    _save(fig, out, run.note)


def _layout(g: nx.Graph) -> dict:
    """Deterministic positions: Kamada-Kawai on a connected graph, else seeded spring."""
    if 1 < len(g) <= 200 and nx.is_connected(g):
        try:
            return nx.kamada_kawai_layout(g)
        except ImportError:  # Kamada-Kawai needs scipy
            pass
    return nx.spring_layout(g, seed=1)


def _topology_graph(topo: dict) -> nx.Graph:
    """The physical graph of ``topology.json``: nodes with role and tier, links as edges."""
    g = nx.Graph()
    for node in topo.get("nodes") or []:
        if isinstance(node, dict) and node.get("name") is not None:
            g.add_node(str(node["name"]), role=node.get("role"), tier=node.get("tier"))
    for link in topo.get("links") or []:
        a, b = str(link.get("a")), str(link.get("b"))
        if a in g and b in g:
            g.add_edge(a, b)
    return g


def _pairs(topo: dict, key: str, g: nx.Graph) -> list[tuple[str, str]]:
    """The ``tree`` or ``mesh`` edges of ``topology.json`` whose ends are drawn."""
    out = []
    for pair in topo.get(key) or []:
        if len(pair) == 2 and str(pair[0]) in g and str(pair[1]) in g:
            out.append((str(pair[0]), str(pair[1])))
    return out


def _draw_nodes(g: nx.Graph, pos: dict, ax: Any) -> None:
    """Switches as small grey squares, the master, helpers coloured by tier, viewers."""
    import matplotlib
    from matplotlib.colors import to_hex

    def of(role: str) -> list[str]:
        return [n for n, d in g.nodes(data=True) if d.get("role") == role]

    def draw(nodes: list[str], label: str, **style: Any) -> None:
        if nodes:
            nx.draw_networkx_nodes(g, pos, nodelist=nodes, ax=ax, label=label, **style)

    draw(of("switch"), "switch", node_shape="s", node_color="#999999", node_size=40)
    draw(of("master"), "master", node_shape="*", node_color="#d62728", node_size=260)
    helpers = of("helper")
    tiers = sorted({g.nodes[h].get("tier") for h in helpers}, key=lambda t: (t is None, t or 0))
    cmap = matplotlib.colormaps["viridis"]
    for i, tier in enumerate(tiers):
        colour = to_hex(cmap(i / max(1, len(tiers) - 1) * 0.85))
        label = "helper, no tier" if tier is None else f"helper, tier {tier}"
        draw([h for h in helpers if g.nodes[h].get("tier") == tier], label, node_color=colour,
             node_size=120)
    draw(of("viewer"), "viewer", node_shape="^", node_color="#ff7f0e", node_size=50)
    known = {"switch", "master", "helper", "viewer"}
    draw([n for n, d in g.nodes(data=True) if d.get("role") not in known], "other",
         node_color="#bbbbbb", node_size=40)


def _fig_topology(run: RunData, out: Path) -> None:
    """The topology: physical links, the multicast tree as arrows, the mesh dashed."""
    if run.topology is None:
        raise _Skip(f"Left out: topology.json {run.missing.get('topology.json', 'is missing')}.")
    g = _topology_graph(run.topology)
    if len(g) == 0:
        raise _Skip("Left out: topology.json has no nodes.")
    from matplotlib.lines import Line2D

    pos = _layout(g)
    fig, (ax,) = _figure(size=(8, 6.4))
    nx.draw_networkx_edges(g, pos, ax=ax, edge_color="#bbbbbb", width=0.6)
    tree = nx.DiGraph(_pairs(run.topology, "tree", g))
    if tree.number_of_edges():
        nx.draw_networkx_edges(tree, pos, ax=ax, edge_color="#1f77b4", width=1.3, arrows=True,
                               arrowstyle="-|>", arrowsize=9)
    mesh = nx.Graph(_pairs(run.topology, "mesh", g))
    if mesh.number_of_edges():
        nx.draw_networkx_edges(mesh, pos, ax=ax, edge_color="#2ca02c", width=1.0,
                               style="dashed")
    _draw_nodes(g, pos, ax)
    if len(g) <= 60:
        hosts = [n for n, d in g.nodes(data=True) if d.get("role") != "switch"]
        ys = [y for _, y in pos.values()]
        lift = 0.04 * ((max(ys) - min(ys)) or 1.0)
        above = {n: (pos[n][0], pos[n][1] + lift) for n in hosts}
        nx.draw_networkx_labels(g, above, labels={n: n for n in hosts}, ax=ax, font_size=7)
    handles, _ = ax.get_legend_handles_labels()
    handles += [Line2D([], [], color="#bbbbbb", lw=0.6, label="link"),
                Line2D([], [], color="#1f77b4", lw=1.3, marker=">", label="tree (parent->child)"),
                Line2D([], [], color="#2ca02c", lw=1.0, ls="--", label="mesh")]
    ax.legend(handles=handles, fontsize=7, loc="best", markerscale=0.6)
    ax.set_axis_off()
    _save(fig, out, run.note)


class FigureSpec(NamedTuple):
    """A run figure: file name, title, and the function that draws it (or raises _Skip)."""

    name: str
    title: str
    draw: Callable[[RunData, Path], None]


RUN_FIGURES: list[FigureSpec] = [
    FigureSpec("hit_ratio.png", "Hit ratio and serve offload over time", _fig_hit_ratio),
    FigureSpec("startup_cdf.png", "Startup time", _fig_startup_cdf),
    FigureSpec("rebuffer.png", "Rebuffer ratio per session", _fig_rebuffer),
    FigureSpec("sources.png", "Bytes to viewers by source", _fig_sources),
    FigureSpec("prefetch.png", "Prefetch", _fig_prefetch),
    FigureSpec("overhead.png", "Bytes sent by traffic class", _fig_overhead),
    FigureSpec("prediction.png", "Prediction accuracy", _fig_prediction),
    FigureSpec("topology.png", "Topology, multicast tree and mesh", _fig_topology),
]


# -- the run report --------------------------------------------------------------------------

def _summary_order(summary: dict[str, Any]) -> list[str]:
    """Key metrics first, in their order, then the rest in file order."""
    return [k for k in KEY_METRICS if k in summary] + [k for k in summary if k not in KEY_METRICS]


def _fidelity(fid: object) -> str:
    """"12/12 within tolerance" (with what failed or was untrusted), or "not checked"."""
    if not isinstance(fid, dict):
        return "not checked"
    out = f"{fmt(fid.get('passed'))}/{fmt(fid.get('measurements'))} within tolerance"
    for key in ("failed", "untrusted"):
        if fid.get(key):
            out += f"; {key}: {', '.join(str(x) for x in fid[key])}"
    if fid.get("source"):
        out += f" (source: {fid['source']})"
    return out


def _host(host: object) -> str:
    """The host in one line."""
    if not isinstance(host, dict) or not host:
        return DASH
    parts = [str(host.get("hostname") or "?")]
    if host.get("machine"):
        parts.append(str(host["machine"]))
    if host.get("cpus") is not None:
        parts.append(f"{fmt(host['cpus'])} CPUs")
    if host.get("kernel"):
        parts.append(f"kernel {host['kernel']}")
    if host.get("python"):
        parts.append(f"Python {host['python']}")
    return ", ".join(parts)


def _provenance(manifest: dict | None) -> list[Block]:
    """Where, how and from what the run came."""
    out: list[Block] = [Heading("Provenance")]
    if manifest is None:
        return out + [Text("manifest.json is missing: no provenance.")]
    scenario = manifest.get("scenario") if isinstance(manifest.get("scenario"), dict) else {}
    cpu = manifest.get("cpu") if isinstance(manifest.get("cpu"), dict) else {}
    timings = manifest.get("timings") if isinstance(manifest.get("timings"), dict) else {}
    rows: list[tuple[str, object]] = [
        ("scenario", scenario.get("name")), ("policy", manifest.get("policy")),
        ("seed", manifest.get("seed")), ("commit", manifest.get("commit")),
        ("status", manifest.get("status")), ("started at", manifest.get("started_at")),
        ("finished at", manifest.get("finished_at")), ("host", _host(manifest.get("host"))),
        ("link mode", manifest.get("link_mode")),
        ("fidelity", _fidelity(manifest.get("fidelity"))),
        ("CPU idle min", cpu.get("idle_min")), ("CPU idle mean", cpu.get("idle_mean")),
        ("CPU trusted", cpu.get("trusted")),
        ("workload sha256", manifest.get("workload_sha256")),
    ]
    rows += [(f"time {k}", v) for k, v in timings.items()]
    out.append(_kv_table(rows, ("item", "value")))
    packages = manifest.get("packages") if isinstance(manifest.get("packages"), dict) else {}
    if packages:
        out += [Heading("Package versions", 3),
                _kv_table(sorted(packages.items()), ("package", "version"))]
    return out


def _sources_table(run: RunData) -> list[Block]:
    """Requests and bytes to viewers by source."""
    out: list[Block] = [Heading("Requests by source", 3)]
    try:
        df = _table(run, "requests", "source", "bytes")
    except _Skip as skip:
        return out + [Text(str(skip))]
    src = df["source"].astype(str)
    nbytes = _numeric(df["bytes"])
    total = nbytes.sum()
    rows = [[s, fmt(int((src == s).sum())), fmt(nbytes[src == s].sum()),
             fmt(nbytes[src == s].sum() / total if total else math.nan)]
            for s in _ordered(src.unique(), REQUEST_SOURCES)]
    return out + [Table(["source", "requests", "bytes", "share of bytes"], rows)]


def _links_table(run: RunData) -> list[Block]:
    """The busiest links by utilisation."""
    out: list[Block] = [Heading("Busiest links", 3)]
    try:
        df = _table(run, "links", "a", "b")
    except _Skip as skip:
        return out + [Text(str(skip))]
    if "utilisation" in df.columns:
        df = df.assign(_u=_numeric(df["utilisation"])).sort_values("_u", ascending=False)
        df = df.drop(columns="_u")
    cols = [c for c in ("a", "b", "delay_ms", "bw_mbit", "bytes_ab", "bytes_ba", "utilisation")
            if c in df.columns]
    rows = [[fmt(df[c].iloc[i]) for c in cols] for i in range(min(len(df), LINK_ROWS))]
    return out + [Text(f"{min(len(df), LINK_ROWS)} of {len(df)} links."), Table(cols, rows)]


def _run_title(run: RunData) -> str:
    scenario = (run.manifest or {}).get("scenario")
    name = scenario.get("name") if isinstance(scenario, dict) else None
    return f"Run report: {name or run.dir.name}"


def _run_header(run: RunData) -> list[Block]:
    """Title, the run in one line, and the files that were not there."""
    m = run.manifest or {}
    policy = m.get("policy", run.summary.get("policy"))
    seed = m.get("seed", run.summary.get("seed"))
    line = (f"Directory {run.dir.name}; policy {fmt(policy)}, seed {fmt(seed)}, "
            f"status {fmt(m.get('status'))}.")
    out: list[Block] = [Heading(_run_title(run), 1), Text(line)]
    if run.missing:
        out += [Heading("Missing files"),
                Bullets([f"{rel} {why}" for rel, why in sorted(run.missing.items())])]
    return out


def _draw_run_figures(run: RunData, fig_dir: Path) -> tuple[list[Block], list[Path]]:
    """Every figure of the registry whose tables are there; a line for each left out."""
    blocks: list[Block] = [Heading("Figures")]
    drawn: list[Path] = []
    for spec in RUN_FIGURES:
        blocks.append(Heading(spec.title, 3))
        try:
            spec.draw(run, fig_dir / spec.name)
        except _Skip as skip:
            blocks.append(Text(str(skip)))
        else:
            drawn.append(fig_dir / spec.name)
            blocks.append(Image(spec.title, f"figures/{spec.name}"))
    return blocks, drawn


def _verdict_text(note: str) -> str:
    """The verdict line shown under the key-metrics table (and atop every figure)."""
    return f"Verdict of the figures: {note}."


def _write(path: Path, title: str, blocks: list[Block], figures: list[Path]) -> ReportPaths:
    md, page = path / "report.md", path / "report.html"
    md.write_text(to_markdown(blocks), encoding="utf-8")
    page.write_text(to_html(title, blocks), encoding="utf-8")
    return ReportPaths(md, page, figures)


def _report_run(path: Path) -> ReportPaths:
    run = load_run(path)
    fig_dir = path / "figures"
    fig_dir.mkdir(exist_ok=True)
    figs, drawn = _draw_run_figures(run, fig_dir)
    summary = [[k, fmt(run.summary[k])] for k in _summary_order(run.summary)]
    blocks = (_run_header(run) + [Heading("Summary"), Table(["metric", "value"], summary),
                                  Text(_verdict_text(run.note))]
              + figs + [Heading("Tables")] + _sources_table(run) + _links_table(run)
              + _provenance(run.manifest))
    return _write(path, _run_title(run), blocks, drawn)


# -- collections: comparisons and sweeps -----------------------------------------------------

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
