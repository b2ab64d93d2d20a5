"""Sets of runs: a comparison of policies and a sweep over scenario keys.

Both are a *collection* directory::

    collection.json        what was asked (kind, scenario, mode, fixed overrides, axes)
    points.csv             one row per point: id, status, axis values, then its summary
    fidelity/<net>.json    the fidelity check of each distinct network, run once
    points/<id>/           one run directory per point (manifest.json, summary.csv ...)

Running a collection again in the same directory resumes it: points whose manifest says
"complete" are kept as they are; the rest (never started, interrupted, failed) run.  A
directory that holds a different collection is refused rather than mixed.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from testbed.core.sweep import Point, Sweep
from testbed.harness import manifest
from testbed.harness.report import KEY_METRICS
from testbed.scenario import POLICIES, Scenario

ALL_POLICIES = tuple(POLICIES)


class CollectionError(ValueError):
    """A collection that cannot run: a mismatched directory, a bad point."""


@dataclass
class Collection:
    """What to run: a kind ("compare" or "sweep"), the base scenario and the points."""

    kind: str
    sweep: Sweep
    base: Scenario

    @property
    def points(self) -> list[Point]:
        return self.sweep.points()

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, **self.sweep.describe()}


def comparison(base: Scenario, policies: Iterable[str], scenario_path: Path,
               fixed: dict[str, Any] | None = None) -> Collection:
    """The policies side by side on one scenario: same seed, network and viewers."""
    names = list(policies)
    unknown = [p for p in names if p not in POLICIES]
    if unknown:
        raise CollectionError(f"unknown policy {unknown[0]!r}: expected some of "
                              f"{', '.join(POLICIES)}")
    if len(set(names)) != len(names) or not names:
        raise CollectionError(f"policies must be distinct and at least one, got {names}")
    sweep = Sweep(name=f"compare-{base.name}", scenario=scenario_path,
                  axes={"policy": tuple(names)}, fixed=dict(fixed or {}))
    return Collection("compare", sweep, base)


def of_sweep(sweep: Sweep, base: Scenario) -> Collection:
    return Collection("sweep", sweep, base)


def network_key(sc: Scenario) -> str:
    """Runs whose networks are built the same share a key (and one fidelity check)."""
    d = sc.to_dict()
    body = json.dumps({"topology": d["topology"], "links": d["links"], "seed": d["seed"]},
                      sort_keys=True, default=str)
    return hashlib.sha256(body.encode()).hexdigest()[:12]


def scenarios(c: Collection) -> dict[str, Scenario]:
    """Every point's scenario, each checked down to its topology, before anything runs;
    CollectionError names the first point that is wrong."""
    out = {}
    for point in c.points:
        try:
            sc = c.base.with_overrides(point.overrides(c.sweep.fixed))
            sc.build_spec()
        except ValueError as exc:  # ScenarioError: names the point's overrides
            raise CollectionError(str(exc)) from None
        out[point.id] = sc
    return out


def check_directory(out: Path, c: Collection) -> None:
    """Claim ``out`` for ``c``, or refuse when it holds a different collection."""
    path = out / "collection.json"
    want = c.describe()
    if path.exists():
        try:
            have = json.loads(path.read_text())
        except ValueError:
            have = None
        if have != json.loads(json.dumps(want, default=str)):
            raise CollectionError(f"{out} holds a different comparison or sweep than this "
                                  f"one ({path}); give another --out, or remove it")
        return
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(want, indent=1, default=str))


def points_table(out: Path, c: Collection) -> pd.DataFrame:
    """One row per point: id, directory, status, axis values, then its summary."""
    rows = []
    for p in c.points:
        run = out / "points" / p.id
        m = manifest.read(run)
        if manifest.is_complete(run):
            status = "complete"
        elif m is None or m.get("status") == manifest.COMPLETE:  # a complete run lacks files
            status = "pending"
        else:
            status = str(m.get("status", "pending"))
        row: dict[str, Any] = {"point": p.id, "dir": f"points/{p.id}", "status": status,
                               **{k: _cell(v) for k, v in p.values.items()}}
        if status == "complete":
            summary = pd.read_csv(run / "summary.csv").iloc[0].to_dict()
            row.update({k: v for k, v in summary.items() if k not in row})
        rows.append(row)
    return pd.DataFrame(rows)


def _cell(v: Any) -> Any:
    return json.dumps(v) if isinstance(v, (list, dict)) else v


def write_points(out: Path, c: Collection) -> pd.DataFrame:
    table = points_table(out, c)
    tmp = out / "points.csv.tmp"
    table.to_csv(tmp, index=False)
    tmp.replace(out / "points.csv")
    return table


@dataclass
class Outcome:
    """What a collection run did: points run now, kept from before, failed."""

    out: Path
    ran: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    table: pd.DataFrame | None = None
    seconds: float = 0.0


Runner = Callable[[Scenario, Path, "dict | None"], Any]
Checker = Callable[[Scenario, Path], "dict | None"]


def run_collection(c: Collection, out: Path, run: Runner, check: Checker | None = None,
                   say: Callable[[str], None] = print,
                   progress: Callable[[Point, str], None] | None = None) -> Outcome:
    """Run every point of ``c`` not yet complete in ``out``, in order.

    ``run(scenario, run_dir, fidelity)`` plays one point (``run_scenario``); ``check(scenario,
    path)`` runs the fidelity check of a network into ``path`` and returns its summary (once
    per distinct network; None skips checks).  ``progress(point, state)`` is told "start",
    "kept", "done" or "failed" for each point.  A failing point is recorded and the rest
    still run; an interruption (KeyboardInterrupt, SystemExit) propagates after
    ``points.csv`` is written.
    """
    t0 = time.monotonic()
    out = Path(out)
    planned = scenarios(c)
    check_directory(out, c)
    result = Outcome(out=out)
    fidelity: dict[str, dict | None] = {}
    try:
        for p in c.points:
            run_dir = out / "points" / p.id
            if manifest.is_complete(run_dir):
                result.kept.append(p.id)
                if progress:
                    progress(p, "kept")
                continue
            sc = planned[p.id]
            if run_dir.exists():  # interrupted or failed before: start it afresh
                shutil.rmtree(run_dir)
            if progress:
                progress(p, "start")
            say(f"{p.id}: {p.label()}")
            try:
                key = network_key(sc)
                if check is not None and key not in fidelity:
                    fidelity[key] = _fidelity(out / "fidelity" / f"{key}.json", sc, check)
                run(sc, run_dir, fidelity.get(key))
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as exc:  # one broken point must not stop the sweep
                result.failed[p.id] = f"{type(exc).__name__}: {exc}"
                say(f"{p.id} failed: {result.failed[p.id]}")
                _mark_failed(run_dir, sc, result.failed[p.id])
                if progress:
                    progress(p, "failed")
                continue
            result.ran.append(p.id)
            if progress:
                progress(p, "done")
            write_points(out, c)
    finally:
        result.table = write_points(out, c)
        result.seconds = time.monotonic() - t0
    return result


def _fidelity(path: Path, sc: Scenario, check: Checker) -> dict | None:
    """The summary of the network's fidelity check: the stored one, or a new check."""
    try:
        return json.loads(path.read_text())["summary"] | {"source": str(path)}
    except (OSError, ValueError, KeyError, TypeError):
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    summary = check(sc, path)
    return None if summary is None else {**summary, "source": str(path)}


def _mark_failed(run_dir: Path, sc: Scenario, error: str) -> None:
    fresh = {"status": "failed", "error": error[:500], "scenario": sc.to_dict(),
             "policy": sc.policy, "seed": sc.seed}
    kept = {k: v for k, v in (manifest.read(run_dir) or {}).items()
            if k not in fresh and k not in ("commit", "dirty", "packages", "host")}
    manifest.write(run_dir, **kept, **fresh)


def comparison_rows(table: pd.DataFrame, axes: Iterable[str]) -> pd.DataFrame:
    """The comparison table: one row per complete point, axis keys then key metrics."""
    done = table[table["status"] == "complete"] if "status" in table else table
    cols = [a for a in axes if a in done] + [m for m in KEY_METRICS if m in done]
    return done[["point", *cols]].reset_index(drop=True)


__all__ = ["ALL_POLICIES", "Collection", "CollectionError", "KEY_METRICS", "Outcome",
           "comparison", "comparison_rows", "network_key", "of_sweep", "points_table",
           "run_collection", "scenarios", "write_points"]
