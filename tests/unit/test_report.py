"""The report of a run, a comparison and a sweep, built from synthetic run directories:
every file is written, every number shown equals the tables' (summary.csv, points.csv,
aggregate.csv), the fidelity verdict stands by the figures, and what is missing is said."""

from __future__ import annotations

import itertools
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from testbed.harness import stats
from testbed.harness.report import (
    KEY_METRICS,
    PLOT_METRICS,
    ReportError,
    figure_name,
    fmt,
    write_report,
)

PNG = b"\x89PNG\r\n\x1a\n"
SOURCES = ["cache_prefetch", "cache_tree", "cache_mesh", "cache_live", "tree", "mesh", "origin"]
CLASSES = ["tree", "mesh", "prefetch", "telemetry", "prediction", "control", "live", "viewer",
           "origin"]


# -- synthetic run directories ---------------------------------------------------------------

def _topology() -> dict:
    nodes = [{"name": "s1", "role": "switch", "tier": None},
             {"name": "s2", "role": "switch", "tier": None},
             {"name": "s3", "role": "switch", "tier": None},
             {"name": "m1", "role": "master", "tier": None}]
    nodes += [{"name": f"h{i}", "role": "helper", "tier": 1 + (i > 2)} for i in range(1, 5)]
    nodes += [{"name": f"v{i}", "role": "viewer", "tier": None} for i in range(1, 3)]
    links = [("s1", "s2"), ("s1", "s3"), ("m1", "s1"), ("h1", "s2"), ("h2", "s2"),
             ("h3", "s3"), ("h4", "s3"), ("v1", "s2"), ("v2", "s3")]
    return {"nodes": nodes,
            "links": [{"a": a, "b": b, "delay_ms": 2.0, "bw_mbit": 100.0} for a, b in links],
            "tree": [["m1", "h1"], ["m1", "h3"], ["h1", "h2"], ["h3", "h4"]],
            "mesh": [["h1", "h3"], ["h2", "h4"]]}


def _manifest(policy: str | None, seed: int, fidelity: bool) -> dict:
    return {"scenario": {"name": "unit", "duration_s": 60},
            "policy": policy, "seed": seed, "commit": "abc1234",
            "packages": {"pandas": pd.__version__, "numpy": np.__version__},
            "host": {"hostname": "box", "kernel": "6.1", "cpus": 4, "python": "3.11.2",
                     "machine": "x86_64"},
            "link_mode": "netem",
            "fidelity": ({"passed": 12, "measurements": 12, "failed": [], "untrusted": [],
                          "source": "fidelity.json"} if fidelity else None),
            "cpu": {"idle_min": 0.41, "idle_mean": 0.7312, "trusted": True},
            "timings": {"network_s": 3.2, "daemons_s": 1.1, "play_s": 60.0,
                        "teardown_s": 2.5, "total_s": 66.8},
            "workload_sha256": "0" * 64, "started_at": "2026-01-01T00:00:00",
            "finished_at": "2026-01-01T00:01:07", "status": "complete"}


def make_run(out: Path, policy: str | None = "predictive", seed: int = 1, *,
             predictions: bool = True, links: bool = True, summary: dict | None = None,
             fidelity: bool = True, bare: bool = False) -> dict:
    """Write every file of a run directory with seeded, plausible values; return its summary
    row (``summary`` overrides or adds columns).  A ``bare`` run keeps only ``summary.csv``
    and ``manifest.json``, as a run that failed early might."""
    rng = np.random.default_rng(seed)
    tables = out / "tables"
    tables.mkdir(parents=True, exist_ok=True)
    n = 120
    req = pd.DataFrame({
        "helper": rng.choice(["h1", "h2", "h3", "h4"], n),
        "viewer": rng.choice([f"v1-{i}" for i in range(6)], n),
        "video": rng.choice(["vod-0000", "vod-0001", "vod-0002"], n),
        "index": rng.integers(0, 30, n), "version": 1,
        "bytes": rng.integers(50_000, 200_000, n),
        "source": rng.choice(SOURCES, n, p=[.3, .2, .1, .05, .1, .1, .15]),
        "latency_ms": rng.gamma(2.0, 10.0, n).round(2),
        "at": np.sort(rng.uniform(6, 60, n)).round(3)})
    req.to_csv(tables / "requests.csv", index=False)
    sessions = 12
    startup = rng.gamma(2.0, 0.4, sessions).round(3)
    startup[[2, 7]] = np.nan  # never started
    viewers = pd.DataFrame({
        "node": rng.choice(["v1", "v2"], sessions), "viewer": [f"v-{i}" for i in range(sessions)],
        "video": rng.choice(["vod-0000", "vod-0001"], sessions),
        "joined_at": np.sort(rng.uniform(6, 30, sessions)).round(2), "startup_s": startup,
        "stalls": rng.integers(0, 3, sessions), "stall_s": rng.uniform(0, 2, sessions).round(2),
        "played_s": rng.uniform(10, 50, sessions).round(2),
        "rebuffer_ratio": rng.beta(1, 20, sessions).round(4),
        "abandoned": rng.random(sessions) < 0.2, "completed": rng.random(sessions) < 0.5})
    viewers.to_csv(tables / "viewers.csv", index=False)
    t = np.arange(0, 60, 10)
    hits = rng.integers(5, 20, len(t))
    reqs = hits + rng.integers(0, 10, len(t))
    pd.DataFrame({"t": t, "requests": reqs, "hits": hits, "hit_ratio": hits / reqs,
                  "bytes": reqs * 100_000, "serve_offload_bytes": hits * 60_000,
                  "serve_offload": hits * 0.6 / reqs, "pushes": rng.integers(0, 8, len(t)),
                  "push_bytes": rng.integers(0, 800_000, len(t)),
                  "copies": rng.integers(0, 8, len(t)), "copies_used": rng.integers(0, 4, len(t)),
                  "push_precision": rng.uniform(0, 1, len(t)).round(3)}
                 ).to_csv(tables / "intervals.csv", index=False)
    pd.DataFrame({"cls": CLASSES, "tx_bytes": rng.integers(1_000, 10_000_000, len(CLASSES)),
                  "rx_bytes": rng.integers(1_000, 10_000_000, len(CLASSES))}
                 ).to_csv(tables / "by_class.csv", index=False)
    k = 20
    used = rng.random(k) < 0.6
    pd.DataFrame({"push_id": range(k), "helper": rng.choice(["h1", "h2"], k),
                  "video": "vod-0000", "index": rng.integers(0, 30, k),
                  "at": np.sort(rng.uniform(6, 60, k)).round(2), "bytes": 100_000,
                  "dest": rng.choice(["h3", "h4"], k), "used": used,
                  "first_use_at": np.where(used, 61.0, np.nan)}
                 ).to_csv(tables / "prefetch.csv", index=False)
    pred_cols = ["version", "trained_at", "scored_from", "scored_to", "precision", "recall",
                 "mae", "playhead_precision", "playhead_mae"]
    m = 4 if predictions else 0
    pd.DataFrame({"version": range(2, 2 + m), "trained_at": 10.0 * np.arange(1, m + 1),
                  "scored_from": 10.0 * np.arange(1, m + 1),
                  "scored_to": 10.0 * np.arange(2, m + 2),
                  "precision": rng.uniform(.3, .9, m).round(3),
                  "recall": rng.uniform(.3, .9, m).round(3), "mae": rng.uniform(0, 2, m),
                  "playhead_precision": rng.uniform(.2, .6, m).round(3),
                  "playhead_mae": rng.uniform(0, 3, m)}, columns=pred_cols
                 ).to_csv(tables / "predictions.csv", index=False)
    topo = _topology()
    if links:
        pd.DataFrame([{**lk, "bytes_ab": int(rng.integers(0, 10**7)),
                       "bytes_ba": int(rng.integers(0, 10**7)),
                       "utilisation": round(float(rng.uniform(0, 1)), 4)}
                      for lk in topo["links"]]).to_csv(tables / "links.csv", index=False)
    (out / "topology.json").write_text(json.dumps(topo))
    (out / "manifest.json").write_text(json.dumps(_manifest(policy, seed, fidelity)))
    started = viewers["startup_s"].dropna()
    row = {"policy": policy, "seed": seed, "sessions": sessions, "requests": n,
           "answered": n - 1, "hit_ratio": float(rng.uniform(.4, .9)),
           "prefetch_hits": int(rng.integers(0, 40)),
           "serve_offload": float(rng.uniform(.1, .6)),
           "byte_offload": float(rng.uniform(-.2, .9)),
           "origin_per_viewer_byte": float(rng.uniform(.1, 1.2)),
           "origin_peak_mbit": float(rng.uniform(1, 40)),
           "origin_bytes": int(rng.integers(10**6, 10**8)),
           "origin_push_bytes": int(rng.integers(0, 10**7)),
           "push_ratio": float(rng.uniform(0, .5)),
           "push_hop_bytes": int(rng.integers(0, 10**8)),
           "byte_hops_per_viewer_byte": float(rng.uniform(1, 4)),
           "bytes_to_viewers": int(req["bytes"].sum()),
           "startup_p50_s": float(started.median()),
           "startup_p95_s": float(started.quantile(.95)), "never_started": 2,
           "abandoned_at_start": int(rng.integers(0, 3)), "waiting_at_stop": 1, "warmup_s": 20,
           "rebuffer_ratio": float(rng.uniform(0, .05)), "stalls": int(rng.integers(0, 9)),
           "abandoned": int(viewers["abandoned"].sum()),
           "overhead_ratio": float(rng.uniform(0, .1)), "pushes": k, "push_bytes": k * 100_000,
           "prefetch_copies": k, "prefetch_precision": float(used.mean()),
           "prefetch_waste": float(1 - used.mean()), "cpu_idle_min": 0.41,
           "cpu_idle_mean": 0.7312, "cpu_trusted": True, "link_mode": "netem",
           "tiers": json.dumps({"h1": 1, "h3": 2}), "rejected_by_reason": "{}",
           "bytes_huge": 123456789012.0, "tiny": 1.23456e-7}
    if fidelity:
        row.update(fidelity_passed=12, fidelity_rows=12)
    row.update(summary or {})
    pd.DataFrame([row]).to_csv(out / "summary.csv", index=False)
    if bare:
        shutil.rmtree(tables)
        (out / "topology.json").unlink()
    return row


def make_collection(out: Path, kind: str, axes: dict[str, list], failed: tuple = (),
                    bare: bool = False, aggregate: bool = False) -> Path:
    """A comparison or a grid sweep over ``axes``, each point a run made by make_run (``bare``
    passed on); the points in ``failed`` have no summary.  Axis values win over the
    summary's, as in a real points.csv; ``aggregate`` also writes aggregate.csv as a real
    collection does (else the report computes it)."""
    combos = list(itertools.product(*axes.values()))
    rows = []
    for i, combo in enumerate(combos):
        point = f"p{i:02d}"
        values = dict(zip(axes, combo))
        pdir = out / "points" / point
        row = {"point": point, "dir": f"points/{point}", **values}
        if point in failed:
            pdir.mkdir(parents=True)
            rows.append({**row, "status": "failed"})
            continue
        scale = float(values.get("delivery.mesh_degree", 1))
        make_run(pdir, values.get("policy", "predictive"), seed=i + 1,
                 summary={"hit_ratio": 0.1 * scale + 0.05 * i,
                          "seed": values.get("seed", i + 1)}, bare=bare)
        summary = pd.read_csv(pdir / "summary.csv").iloc[0].to_dict()
        check = {"fidelity_check": f"net-{values.get('seed', 1)}"}  # one network per seed
        rows.append({**summary, **row, "status": "complete", **check})
    cols = ["point", "dir", "status", *axes]
    df = pd.DataFrame(rows)
    df = df[cols + [c for c in df.columns if c not in cols]]
    df.to_csv(out / "points.csv", index=False)
    if aggregate:
        stats.aggregate(pd.read_csv(out / "points.csv"), list(axes)).to_csv(
            out / "aggregate.csv", index=False)
    (out / "collection.json").write_text(json.dumps(
        {"kind": kind, "name": f"unit-{kind}", "scenario": "experiments/default.yaml",
         "axes": axes, "mode": "grid", "points": len(combos)}))
    return out


# -- reading the report back -----------------------------------------------------------------

def _md_cells(line: str) -> list[str]:
    inner = line.strip()[1:-1]
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", inner)]


def md_tables(text: str) -> dict[str, list[list[list[str]]]]:
    """Markdown tables by the ``##``-or-deeper heading above them: header row, then rows."""
    out: dict[str, list[list[list[str]]]] = {}
    heading, rows = "", []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            rows.append(_md_cells(line))
            continue
        if rows:
            assert set("".join(rows[1])) <= {"-"}, rows[1]
            out.setdefault(heading, []).append([rows[0]] + rows[2:])
            rows = []
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
    return out


class TableCells(HTMLParser):
    """The HTML's tables by the heading above them, and every image's source."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[list[str]]]] = {}
        self.images: list[str] = []
        self.heading, self._in_heading = "", False
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag in ("h1", "h2", "h3"):
            self.heading, self._in_heading = "", True
        elif tag == "table":
            self.tables.setdefault(self.heading, []).append([])
        elif tag == "tr":
            self.tables[self.heading][-1].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "img":
            self.images.append(dict(attrs)["src"])

    def handle_endtag(self, tag):
        if tag in ("h1", "h2", "h3"):
            self._in_heading = False
        elif tag in ("td", "th"):
            self.tables[self.heading][-1][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        if self._in_heading:
            self.heading += data
        if self._cell is not None:
            self._cell.append(data)


def html_tables(path: Path) -> TableCells:
    parser = TableCells()
    parser.feed(path.read_text(encoding="utf-8"))
    parser.close()
    return parser


def _check_pngs(paths: list[Path]) -> None:
    for p in paths:
        data = p.read_bytes()
        assert len(data) > 1000 and data[:8] == PNG, p


# -- fmt -------------------------------------------------------------------------------------

@pytest.mark.parametrize("value, shown", [
    (0.123456, "0.1235"), (12.0, "12"), (3, "3"), (np.int64(7), "7"), (np.float64(2.5), "2.5"),
    (float("nan"), "—"), (None, "—"), (True, "True"), (np.bool_(False), "False"),
    ("netem", "netem"), (123456789012.0, "123456789012"), (1.23456e-7, "1.235e-07"),
    (pd.NA, "—"),
])
def test_fmt(value, shown):
    assert fmt(value) == shown


# -- run report ------------------------------------------------------------------------------

RUN_FIGURES = ["hit_ratio.png", "startup_cdf.png", "rebuffer.png", "sources.png", "prefetch.png",
               "overhead.png", "prediction.png", "topology.png"]


@pytest.fixture(scope="module")
def run_report(tmp_path_factory):
    run = tmp_path_factory.mktemp("run") / "r1"
    make_run(run, "predictive", 3)
    return run, write_report(run)


def test_run_report_writes_every_file(run_report):
    run, paths = run_report
    assert paths.markdown == run / "report.md" and paths.html == run / "report.html"
    assert paths.markdown.stat().st_size > 0 and paths.html.stat().st_size > 0
    assert sorted(p.name for p in paths.figures) == sorted(RUN_FIGURES)
    _check_pngs(paths.figures)
    md = paths.markdown.read_text(encoding="utf-8")
    for name in RUN_FIGURES:
        assert f"(figures/{name})" in md
    parsed = html_tables(paths.html)
    assert sorted(parsed.images) == sorted(f"figures/{n}" for n in RUN_FIGURES)
    assert all((run / src).exists() for src in parsed.images)


def test_run_summary_shows_every_column_as_in_summary_csv(run_report):
    run, paths = run_report
    summary = pd.read_csv(run / "summary.csv")
    expected = {c: fmt(summary[c].iloc[0]) for c in summary.columns}
    (md_table,) = md_tables(paths.markdown.read_text(encoding="utf-8"))["Summary"]
    (html_table,) = html_tables(paths.html).tables["Summary"]
    for table in (md_table, html_table):
        assert table[0] == ["metric", "value"]
        shown = {k: v for k, v in table[1:]}
        assert shown == expected
        names = [k for k, _ in table[1:]]
        keys = [k for k in KEY_METRICS if k in expected]
        assert names[:len(keys)] == keys
        assert names[len(keys):] == [c for c in summary.columns if c not in KEY_METRICS]
    shown = dict(md_table[1:])
    assert shown["bytes_huge"] == "123456789012" and shown["tiny"] == "1.235e-07"
    assert shown["cpu_trusted"] == "True" and shown["tiers"] == '{"h1": 1, "h3": 2}'


def test_run_provenance(run_report):
    _, paths = run_report
    md = paths.markdown.read_text(encoding="utf-8")
    (prov,) = md_tables(md)["Provenance"]
    rows = dict(prov[1:])
    assert rows["scenario"] == "unit" and rows["policy"] == "predictive"
    assert rows["seed"] == "3" and rows["commit"] == "abc1234"
    assert rows["fidelity"].startswith("12/12 within tolerance")
    assert rows["CPU idle mean"] == "0.7312" and rows["CPU trusted"] == "True"
    assert rows["time total_s"] == "66.8" and "box" in rows["host"]
    (pkgs,) = md_tables(md)["Package versions"]
    assert dict(pkgs[1:])["pandas"] == pd.__version__


def test_short_run_without_predictions_or_links_still_reports(tmp_path):
    run = tmp_path / "short"
    make_run(run, None, 5, predictions=False, links=False, fidelity=False)
    paths = write_report(run)
    names = {p.name for p in paths.figures}
    assert "prediction.png" not in names and "topology.png" in names
    _check_pngs(paths.figures)
    for text in (paths.markdown.read_text(encoding="utf-8"),
                 paths.html.read_text(encoding="utf-8")):
        assert "no model was scored in this run" in text
        assert "tables/links.csv is missing" in text
        assert "not checked" in text
    html_tables(paths.html)


def test_missing_tables_leave_their_figures_out(tmp_path):
    run = tmp_path / "bare"
    make_run(run)
    for name in ("intervals", "viewers", "prefetch"):
        (run / "tables" / f"{name}.csv").unlink()
    (run / "tables" / "requests.csv").write_text("")  # unreadable, not required
    (run / "topology.json").unlink()
    paths = write_report(run)
    assert {p.name for p in paths.figures} == {"overhead.png", "prediction.png"}
    md = paths.markdown.read_text(encoding="utf-8")
    for rel in ("tables/intervals.csv", "tables/viewers.csv", "tables/prefetch.csv",
                "topology.json"):
        assert f"Left out: {rel} is missing." in md
    assert "Left out: tables/requests.csv is unreadable" in md


def test_nan_in_summary_is_a_dash(tmp_path):
    run = tmp_path / "nan"
    make_run(run, summary={"hit_ratio": float("nan"), "startup_p95_s": None, "policy": None},
             bare=True)
    paths = write_report(run)
    assert paths.figures == []
    shown = dict(md_tables(paths.markdown.read_text(encoding="utf-8"))["Summary"][0][1:])
    assert shown["hit_ratio"] == "—" and shown["startup_p95_s"] == "—"
    assert shown["policy"] == "—"
    cells = dict(html_tables(paths.html).tables["Summary"][0][1:])
    assert cells["hit_ratio"] == "—"


def test_neither_run_nor_collection_is_an_error(tmp_path):
    empty = tmp_path / "x"
    empty.mkdir()
    with pytest.raises(ReportError) as err:
        write_report(empty)
    msg = str(err.value)
    assert str(empty) in msg and "\n" not in msg and "not a run or a collection" in msg


def test_unreadable_summary_is_an_error(tmp_path):
    run = tmp_path / "bad"
    make_run(run)
    (run / "summary.csv").write_text("")
    with pytest.raises(ReportError, match="summary.csv") as err:
        write_report(run)
    assert "\n" not in str(err.value)


# -- collections -----------------------------------------------------------------------------

VERDICT = ["fidelity", "CPU-trusted"]


def _check_comparison(out: Path, paths, heading: str = "Comparison") -> list[str]:
    """The per-point table equals points.csv cell for cell; its verdict columns say each
    point's check (rows passed/measured) and CPU verdict."""
    points = pd.read_csv(out / "points.csv")
    (md,) = md_tables(paths.markdown.read_text(encoding="utf-8"))[heading]
    (page,) = html_tables(paths.html).tables[heading]
    assert md == page
    header = md[0]
    assert [k for k in KEY_METRICS if k in points.columns] == [
        c for c in header if c in KEY_METRICS]
    assert header[-2:] == VERDICT
    assert len(md) == len(points) + 1
    for i, row in enumerate(md[1:]):
        for col, cell in zip(header[:-2], row):
            assert cell == fmt(points[col].iloc[i]), (col, i)
        done = points["status"].iloc[i] == "complete"
        assert row[-2:] == (["12/12", "1/1"] if done else ["—", "—"]), i
    return header


def _parse_ci(cell: str) -> tuple[str, str, str | None]:
    """"mean ± ci (n=k)" -> (mean, ci, k); "—" and "mean" alone as they are."""
    n = None
    if cell.endswith(")") and " (n=" in cell:
        cell, n = cell[:-1].split(" (n=")
    mean, _, ci = cell.partition(" ± ")
    return mean, ci or "—", n


def _check_aggregate(out: Path, paths, by: list[str]) -> list[str]:
    """The key-metrics table over seeds equals aggregate.csv cell for cell."""
    agg = pd.read_csv(out / "aggregate.csv")
    (md,) = md_tables(paths.markdown.read_text(encoding="utf-8"))["Comparison"]
    (page,) = html_tables(paths.html).tables["Comparison"]
    assert md == page
    header = md[0]
    metrics = [k for k in KEY_METRICS if f"{k}_mean" in agg.columns]
    left = ["left out"] if agg["left_out"].any() else []
    assert header == [*by, "n", *left, *metrics, *VERDICT]
    assert len(md) == len(agg) + 1
    for i, row in enumerate(md[1:]):
        cells = dict(zip(header, row))
        for a in by:
            assert cells[a] == fmt(agg[a].iloc[i])
        assert cells["n"] == fmt(agg["runs"].iloc[i])
        if left:
            assert cells["left out"] == fmt(agg["left_out"].iloc[i])
        for m in metrics:
            mean, ci, n = _parse_ci(cells[m])
            assert mean == fmt(agg[f"{m}_mean"].iloc[i]), (m, i)
            assert ci == fmt(agg[f"{m}_ci95"].iloc[i]), (m, i)
            assert n == (None if agg[f"{m}_n"].iloc[i] == agg["runs"].iloc[i]
                         else fmt(agg[f"{m}_n"].iloc[i])), (m, i)
        assert cells["fidelity"] == (f"{fmt(agg['fidelity_passed_total'].iloc[i])}/"
                                     f"{fmt(agg['fidelity_rows_total'].iloc[i])}")
        assert cells["CPU-trusted"] == (f"{fmt(agg['cpu_trusted_runs'].iloc[i])}/"
                                        f"{fmt(agg['runs'].iloc[i])}")
    return header


def test_compare_report(tmp_path):
    out = make_collection(tmp_path / "cmp", "compare",
                          {"policy": ["none", "popularity", "predictive"]})
    paths = write_report(out)
    header = _check_comparison(out, paths)
    assert header[:3] == ["point", "status", "policy"]
    assert sorted(p.name for p in paths.figures) == ["metrics.png", "startup_cdf.png"]
    _check_pngs(paths.figures)
    parsed = html_tables(paths.html)
    assert sorted(parsed.images) == ["figures/metrics.png", "figures/startup_cdf.png"]
    md = paths.markdown.read_text(encoding="utf-8")
    for p in ("p00", "p01", "p02"):
        assert (out / "points" / p / "report.html").exists()
        assert f"(points/{p}/report.md)" in md
        assert f'href="points/{p}/report.html"' in paths.html.read_text(encoding="utf-8")


def test_sweep_report(tmp_path):
    axes = {"policy": ["popularity", "predictive"], "delivery.mesh_degree": [2, 4]}
    out = make_collection(tmp_path / "sweep", "sweep", axes, failed=("p03",))
    paths = write_report(out, per_point=False)
    header = _check_comparison(out, paths)
    assert header[:4] == ["point", "status", "policy", "delivery.mesh_degree"]
    assert [p.name for p in paths.figures] == [figure_name("delivery.mesh_degree")]
    assert figure_name("delivery.mesh_degree") == "vs_delivery_mesh_degree.png"
    _check_pngs(paths.figures)
    assert not (out / "points" / "p00" / "report.md").exists()
    assert "No point has a report." in paths.markdown.read_text(encoding="utf-8")


def test_sweep_over_a_categorical_axis_with_per_point_reports(tmp_path):
    axes = {"delivery.tree": ["shortest", "widest", "tiered"]}
    out = make_collection(tmp_path / "cat", "sweep", axes, failed=("p02",), bare=True)
    paths = write_report(out)
    assert [p.name for p in paths.figures] == ["vs_delivery_tree.png"]
    _check_pngs(paths.figures)
    _check_comparison(out, paths)
    md = paths.markdown.read_text(encoding="utf-8")
    assert "(points/p00/report.md)" in md and "(points/p02/report.md)" not in md
    assert "p02: no report" in md
    point = (out / "points" / "p00" / "report.md").read_text(encoding="utf-8")
    assert "Left out: tables/viewers.csv is missing." in point


# -- key metrics, several seeds and the verdict ------------------------------------------------

def test_key_metrics_lead_with_the_costed_figures():
    assert KEY_METRICS[:16] == (
        "hit_ratio", "byte_offload", "origin_per_viewer_byte", "origin_peak_mbit",
        "startup_p50_s", "startup_p95_s", "never_started", "abandoned_at_start",
        "rebuffer_ratio", "prefetch_precision", "prefetch_waste", "push_ratio",
        "overhead_ratio", "byte_hops_per_viewer_byte", "pushes", "push_bytes")
    assert KEY_METRICS[16:] == ("requests", "answered", "sessions", "abandoned",
                                "cpu_idle_mean", "cpu_trusted")
    assert PLOT_METRICS == ("hit_ratio", "byte_offload", "origin_per_viewer_byte",
                            "startup_p95_s", "rebuffer_ratio", "prefetch_waste", "push_ratio")
    assert "offload" not in KEY_METRICS


def _after(md: str, first: str, then: str) -> str:
    """The text between the line ``first`` and the next line starting with ``then``."""
    tail = md.split(first + "\n", 1)[1]
    return tail.split("\n" + then, 1)[0]


SEEDS3 = {"seed": [1, 2, 3], "policy": ["popularity", "predictive"]}


def test_compare_report_over_seeds_shows_mean_ci_from_aggregate_csv(tmp_path):
    out = make_collection(tmp_path / "cmp", "compare", SEEDS3, failed=("p03",), aggregate=True)
    paths = write_report(out)
    header = _check_aggregate(out, paths, ["policy"])
    assert header[:2] == ["policy", "n"]
    agg = pd.read_csv(out / "aggregate.csv")
    assert agg["runs"].tolist() == [3, 2] and agg["left_out"].tolist() == [0, 1]
    (md_table,) = md_tables(paths.markdown.read_text(encoding="utf-8"))["Comparison"]
    assert " ± " in md_table[1][header.index("hit_ratio")]
    _check_comparison(out, paths, heading="Points")  # every point, still cell for cell
    assert sorted(p.name for p in paths.figures) == ["metrics.png", "startup_cdf.png"]
    _check_pngs(paths.figures)
    md = paths.markdown.read_text(encoding="utf-8")
    assert "### Key metrics per policy: mean and 95 % CI over 3 seeds" in md
    assert "### Startup time per policy, sessions of all seeds pooled" in md
    assert "half-width of the two-sided 95 % Student-t interval" in md


def test_verdict_stands_between_the_key_table_and_the_figures(tmp_path):
    out = make_collection(tmp_path / "cmp", "compare", SEEDS3, failed=("p03",), aggregate=True)
    md = write_report(out).markdown.read_text(encoding="utf-8")
    between = _after(md, "## Comparison", "## Figures")
    # one check of 12 rows per seed's network, every policy of that seed sharing it
    assert between.rstrip().endswith("Verdict of the figures: fidelity: 36/36 rows within "
                                     "tolerance (3 networks); CPU-trusted: 5/5 runs.")
    single = make_collection(tmp_path / "one", "compare", {"policy": ["tree", "oracle"]})
    md = write_report(single, per_point=False).markdown.read_text(encoding="utf-8")
    assert "Verdict of the figures: fidelity: 12/12" in _after(md, "## Comparison",
                                                               "## Figures")


def test_report_uses_aggregate_csv_as_written(tmp_path):
    out = make_collection(tmp_path / "cmp", "compare", SEEDS3, aggregate=True)
    agg = pd.read_csv(out / "aggregate.csv")
    agg.loc[0, ["hit_ratio_mean", "hit_ratio_ci95", "hit_ratio_n"]] = [0.123456, 0.0101, 2]
    agg.to_csv(out / "aggregate.csv", index=False)
    paths = write_report(out, per_point=False)
    _check_aggregate(out, paths, ["policy"])
    (md_table,) = md_tables(paths.markdown.read_text(encoding="utf-8"))["Comparison"]
    assert md_table[1][md_table[0].index("hit_ratio")] == "0.1235 ± 0.0101 (n=2)"


def test_a_missing_aggregate_csv_is_computed_from_points_csv(tmp_path):
    out = make_collection(tmp_path / "cmp", "compare", SEEDS3)
    assert not (out / "aggregate.csv").exists()
    paths = write_report(out, per_point=False)
    written = pd.read_csv(out / "aggregate.csv")
    pd.testing.assert_frame_equal(
        written, stats.aggregate(pd.read_csv(out / "points.csv").assign(
            fidelity_passed=12, fidelity_rows=12), ["seed", "policy"]),
        check_dtype=False, check_like=True)
    _check_aggregate(out, paths, ["policy"])
    assert "aggregate.csv was missing: computed from points.csv" in (
        paths.markdown.read_text(encoding="utf-8"))


def test_sweep_report_over_seeds_draws_means_with_error_bars(tmp_path):
    axes = {"delivery.mesh_degree": [2, 4], "seed": [1, 2], "policy": ["tree", "oracle"]}
    out = make_collection(tmp_path / "sweep", "sweep", axes, aggregate=True)
    paths = write_report(out, per_point=False)
    _check_aggregate(out, paths, ["delivery.mesh_degree", "policy"])
    assert [p.name for p in paths.figures] == [figure_name("delivery.mesh_degree")]
    _check_pngs(paths.figures)
    md = paths.markdown.read_text(encoding="utf-8")
    assert "### Key metrics against delivery.mesh_degree: mean and 95 % CI over 2 seeds" in md
    assert "vs_seed" not in md


def test_run_report_shows_its_verdict_under_the_summary(run_report):
    _, paths = run_report
    md = paths.markdown.read_text(encoding="utf-8")
    between = _after(md, "## Summary", "## Figures")
    assert between.rstrip().endswith("Verdict of the figures: fidelity: 12/12 rows within "
                                     "tolerance; CPU-trusted: 1/1 run.")


def _make_old(run: Path) -> None:
    """A run from before the costed metrics: ``offload`` where ``serve_offload`` is now."""
    summary = pd.read_csv(run / "summary.csv")
    new = ["byte_offload", "origin_per_viewer_byte", "origin_peak_mbit", "origin_bytes",
           "origin_push_bytes", "push_ratio", "push_hop_bytes", "byte_hops_per_viewer_byte",
           "abandoned_at_start", "waiting_at_stop", "warmup_s", "fidelity_passed",
           "fidelity_rows"]
    summary.drop(columns=new).rename(columns={"serve_offload": "offload"}).to_csv(
        run / "summary.csv", index=False)
    intervals = pd.read_csv(run / "tables" / "intervals.csv")
    intervals.rename(columns={"serve_offload": "offload", "serve_offload_bytes":
                              "offload_bytes"}).to_csv(run / "tables" / "intervals.csv",
                                                       index=False)


def test_older_runs_without_the_new_columns_still_report(tmp_path):
    run = tmp_path / "old"
    make_run(run)
    _make_old(run)
    paths = write_report(run)
    assert "hit_ratio.png" in {p.name for p in paths.figures}
    shown = dict(md_tables(paths.markdown.read_text(encoding="utf-8"))["Summary"][0][1:])
    assert "byte_offload" not in shown and "offload" in shown
    out = make_collection(tmp_path / "cmp", "compare", {"policy": ["tree", "oracle"]})
    _make_old(out / "points" / "p00")
    points = pd.read_csv(out / "points.csv")
    points.loc[0, "byte_offload"] = np.nan  # p00's summary had no such column
    points.to_csv(out / "points.csv", index=False)
    paths = write_report(out)
    (md_table,) = md_tables(paths.markdown.read_text(encoding="utf-8"))["Comparison"]
    assert md_table[1][md_table[0].index("byte_offload")] == "—"
    _check_comparison(out, paths)


def test_points_csv_without_fidelity_columns_reads_each_manifest(tmp_path):
    out = make_collection(tmp_path / "cmp", "compare", SEEDS3)
    points = pd.read_csv(out / "points.csv")
    points.drop(columns=["fidelity_passed", "fidelity_rows", "fidelity_check"]).to_csv(
        out / "points.csv", index=False)
    paths = write_report(out, per_point=False)
    agg = pd.read_csv(out / "aggregate.csv")
    # every manifest names the same file (fidelity.json): one check, counted once
    assert agg["fidelity_rows_total"].tolist() == [12, 12]
    md = paths.markdown.read_text(encoding="utf-8")
    assert "fidelity: 12/12 rows within tolerance; CPU-trusted: 6/6 runs." in md


def test_a_fault_campaign_is_listed_and_shaded_on_the_time_plots(tmp_path, monkeypatch):
    from testbed.harness.report import run as report_run

    run = tmp_path / "faults"
    make_run(run, "predictive", 1)
    (run / "faults").mkdir()
    pd.DataFrame([{"fault": 0, "kind": "helper_crash", "target": "h3", "planned_start_s": 30.0,
                   "planned_end_s": 36.0, "start_s": 30.1, "end_s": 37.2, "errors": 0},
                  {"fault": 1, "kind": "master_restart", "target": "m1",
                   "planned_start_s": 50.0, "planned_end_s": 50.0, "start_s": 50.1,
                   "end_s": 52.3, "errors": 0}]).to_csv(run / "faults" / "faults.csv",
                                                        index=False)
    spans: list[tuple[float, float]] = []
    real = report_run._mark_faults

    def spy(ax, data):
        before = len(ax.patches)
        real(ax, data)
        spans.extend((p.get_x(), p.get_x() + p.get_width()) for p in ax.patches[before:])

    monkeypatch.setattr(report_run, "_mark_faults", spy)
    paths = write_report(run)
    assert (30.1, 37.2) in [tuple(round(x, 1) for x in s) for s in spans]
    md = paths.markdown.read_text(encoding="utf-8")
    assert "### Faults" in md and "helper_crash" in md and "master_restart" in md
    # a run without a campaign has no such section
    plain = tmp_path / "plain"
    make_run(plain, "predictive", 1)
    assert "### Faults" not in write_report(plain).markdown.read_text(encoding="utf-8")
