"""One run's report: its files read into :class:`RunData`, its figures (the
:data:`RUN_FIGURES` registry), its summary, tables and provenance."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import networkx as nx
import numpy as np
import pandas as pd

from testbed.core.metrics import REQUEST_SOURCES, TRAFFIC_CLASSES
from testbed.core.records import is_cache
from testbed.harness import stats
from testbed.harness.report.common import (
    DASH,
    KEY_METRICS,
    ReportError,
    ReportPaths,
    _numeric,
    _read_csv,
    _read_json,
    _row,
    _truthy,
    _verdict_text,
    fmt,
)
from testbed.harness.report.document import (
    Block,
    Bullets,
    Heading,
    Image,
    Table,
    Text,
    _kv_table,
    _write,
)
from testbed.harness.report.plotting import _figure, _save, _Skip

RUN_TABLES = ("requests", "viewers", "intervals", "by_class", "prefetch", "predictions", "links")
LINK_ROWS = 15  # the busiest links the run report lists


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
    faults: pd.DataFrame | None = None  # faults/faults.csv of a fault campaign


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
    if (path / "faults" / "faults.csv").exists():  # a fault campaign's run only
        run.faults = _optional(path / "faults" / "faults.csv", "faults/faults.csv", missing,
                               _read_csv)
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
    _mark_faults(ax, run)
    ax.legend()
    _save(fig, out, run.note)


def _mark_faults(ax: Any, run: RunData) -> None:
    """Shade each fault of a campaign on a time axis, its kind and target written on it."""
    if run.faults is None or len(run.faults) == 0:
        return
    top = ax.get_ylim()[1]
    for _, f in run.faults.iterrows():
        start = f.get("start_s")
        end = f.get("end_s")
        if pd.isna(start):
            continue
        end = start if pd.isna(end) else end
        ax.axvspan(start, max(end, start + 0.5), color="tab:red", alpha=0.15, lw=0)
        ax.text(start, top, f" {f['kind']} {f['target']}", rotation=90, va="top",
                ha="left", fontsize=6, color="tab:red")


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
    _mark_faults(left, run)
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


def _faults_table(run: RunData) -> list[Block]:
    """A fault campaign's faults, as planned and as carried out (run seconds)."""
    if run.faults is None or len(run.faults) == 0:
        return []
    cols = ["kind", "target", "planned_start_s", "start_s", "end_s", "errors"]
    rows = [[fmt(r[c]) for c in cols] for _, r in run.faults.iterrows()]
    return [Heading("Faults", 3), Table(cols, rows)]


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


def _report_run(path: Path) -> ReportPaths:
    run = load_run(path)
    fig_dir = path / "figures"
    fig_dir.mkdir(exist_ok=True)
    figs, drawn = _draw_run_figures(run, fig_dir)
    summary = [[k, fmt(run.summary[k])] for k in _summary_order(run.summary)]
    blocks = (_run_header(run) + [Heading("Summary"), Table(["metric", "value"], summary),
                                  Text(_verdict_text(run.note))]
              + figs + [Heading("Tables")] + _faults_table(run) + _sources_table(run)
              + _links_table(run)
              + _provenance(run.manifest))
    return _write(path, _run_title(run), blocks, drawn)
