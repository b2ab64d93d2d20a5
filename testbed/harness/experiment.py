"""Sets of runs: a comparison of policies and a sweep over scenario keys.

Both are a *collection* directory::

    collection.json        what was asked (kind, scenario, mode, fixed overrides, axes)
    points.csv             one row per point: id, status, axis values, then its summary
                           (and its fidelity check: fidelity_passed, _rows, _check)
    aggregate.csv          one row per combination of the axes but ``seed``: mean, 95 % CI
                           and n of every metric over the seeds (testbed.harness.stats)
    fidelity/<net>.json    the fidelity check of each distinct network, run once
    points/<id>/           one run directory per point (manifest.json, summary.csv ...)

Running a collection again in the same directory resumes it: points whose manifest says
"complete" are kept as they are; the rest (never started, interrupted, failed) run.  A
directory that holds a different collection is refused rather than mixed.

A comparison over several seeds is a grid over ``seed`` and ``policy`` (every policy plays
each seed's network and viewers; all policies of one seed run before the next seed, so an
interrupted comparison is still a comparison).  With ``require_fidelity`` every distinct
network is checked before anything plays, and one row out of tolerance refuses the lot.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from testbed.core.sweep import Point, Sweep
from testbed.harness import manifest, stats
from testbed.harness.report import KEY_METRICS
from testbed.scenario import POLICIES, Scenario

ALL_POLICIES = tuple(POLICIES)


class CollectionError(ValueError):
    """A collection that cannot run: a mismatched directory, a bad point."""


class FidelityRefused(CollectionError):
    """``require_fidelity`` and a fidelity check out of tolerance (or not run): nothing
    played."""


@dataclass
class Collection:
    """What to run: a kind ("compare" or "sweep"), the base scenario and the points."""

    kind: str
    sweep: Sweep
    base: Scenario
    backend: str = "emu"  # where its runs play: "emu" or "sim"

    @property
    def points(self) -> list[Point]:
        return self.sweep.points()

    def describe(self) -> dict[str, Any]:
        """What ``collection.json`` holds (the backend only when it is not the emulation,
        so collections from before the simulation resume as they are)."""
        extra = {"backend": self.backend} if self.backend != "emu" else {}
        return {"kind": self.kind, **self.sweep.describe(), **extra}


def comparison(base: Scenario, policies: Iterable[str], scenario_path: Path,
               fixed: dict[str, Any] | None = None,
               seeds: Sequence[int] | None = None, backend: str = "emu") -> Collection:
    """The policies side by side on one scenario: same seed, network and viewers.

    With ``seeds``, every policy plays every seed (axes ``seed`` then ``policy``)."""
    names = list(policies)
    unknown = [p for p in names if p not in POLICIES]
    if unknown:
        raise CollectionError(f"unknown policy {unknown[0]!r}: expected some of "
                              f"{', '.join(POLICIES)}")
    if len(set(names)) != len(names) or not names:
        raise CollectionError(f"policies must be distinct and at least one, got {names}")
    axes: dict[str, tuple[Any, ...]] = {"policy": tuple(names)}
    if seeds is not None:
        axes = {stats.SEED_AXIS: _seeds(seeds, fixed or {}), **axes}
    sweep = Sweep(name=f"compare-{base.name}", scenario=scenario_path, axes=axes,
                  fixed=dict(fixed or {}))
    return Collection("compare", sweep, base, backend)


def _seeds(seeds: Sequence[int], fixed: dict[str, Any]) -> tuple[int, ...]:
    """``seeds`` checked: distinct whole numbers >= 0, at least one, not also fixed."""
    out = tuple(seeds)
    if not out or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in out):
        raise CollectionError(f"seeds must be whole numbers >= 0, at least one, got {list(out)}")
    if len(set(out)) != len(out):
        raise CollectionError(f"seeds must be distinct, got {list(out)}")
    if stats.SEED_AXIS in fixed:
        raise CollectionError(f"seed is given twice: {fixed[stats.SEED_AXIS]!r} as a fixed "
                              f"value and {list(out)} as seeds")
    return out


def of_sweep(sweep: Sweep, base: Scenario, backend: str = "emu") -> Collection:
    return Collection("sweep", sweep, base, backend)


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
            row.update({k: v for k, v in stats.fidelity_columns(m).items() if k not in row})
        rows.append(row)
    return pd.DataFrame(rows)


def _cell(v: Any) -> Any:
    return json.dumps(v) if isinstance(v, (list, dict)) else v


def write_points(out: Path, c: Collection) -> pd.DataFrame:
    """Write ``points.csv`` and ``aggregate.csv`` (each replaced whole); the points table."""
    table = points_table(out, c)
    _write_csv(table, out / "points.csv")
    _write_csv(stats.aggregate(table, list(c.sweep.axes)), out / "aggregate.csv")
    return table


def _write_csv(df: pd.DataFrame, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    df.to_csv(tmp, index=False)
    tmp.replace(path)


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
                   progress: Callable[[Point, str], None] | None = None,
                   require_fidelity: bool = False) -> Outcome:
    """Run every point of ``c`` not yet complete in ``out``, in order.

    ``run(scenario, run_dir, fidelity)`` plays one point (``run_scenario``); ``check(scenario,
    path)`` runs the fidelity check of a network into ``path`` and returns its summary (once
    per distinct network; None skips checks).  ``progress(point, state)`` is told "start",
    "kept", "done" or "failed" for each point.  A failing point is recorded and the rest
    still run; an interruption (KeyboardInterrupt, SystemExit) propagates after
    ``points.csv`` is written.  ``require_fidelity``: the networks of the points still to
    run are checked first, and FidelityRefused is raised, nothing played, unless every row
    of every check is within tolerance.
    """
    t0 = time.monotonic()
    out = Path(out)
    planned = scenarios(c)
    if require_fidelity and check is None:
        raise CollectionError("require_fidelity needs a fidelity check")
    check_directory(out, c)
    result = Outcome(out=out)
    fidelity: dict[str, dict | None] = {}
    if require_fidelity:
        todo = [planned[p.id] for p in c.points if not manifest.is_complete(out / "points" / p.id)]
        fidelity = _check_all(out, todo, check)
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


@dataclass(frozen=True)
class FidelityProblem:
    """A fidelity check that does not allow a run: its file, its rows, what is wrong."""

    path: Path
    failed: int  # rows out of tolerance
    rows: int  # rows measured
    why: str  # "3 of 25 rows out of tolerance", "measured no rows", "could not run (...)"


def fidelity_problem(path: Path, summary: dict | None) -> FidelityProblem | None:
    """What is wrong with a fidelity check's summary, or None when every row it measured
    is within tolerance."""
    if not isinstance(summary, dict):
        return FidelityProblem(path, 0, 0, "did not run")
    if summary.get("error"):
        return FidelityProblem(path, 0, 0, f"could not run ({summary['error']})")
    rows = int(summary.get("measurements") or 0)
    failed = max(len(summary.get("failed") or []), rows - int(summary.get("passed") or 0))
    if rows == 0:
        return FidelityProblem(path, 0, 0, "measured no rows")
    if failed:
        return FidelityProblem(path, failed, rows, f"{failed} of {rows} rows out of tolerance")
    return None


def refusal(problems: Sequence[FidelityProblem], networks: int) -> str:
    """The one line that refuses to play: how many rows failed, and where the checks are."""
    first = problems[0]
    if len(problems) == 1:
        head = f"fidelity check: {first.why} ({first.path})"
    else:
        failed, rows = sum(p.failed for p in problems), sum(p.rows for p in problems)
        head = (f"fidelity check: {len(problems)} of {networks} networks failed"
                + (f", {failed} of {rows} rows out of tolerance" if failed else "")
                + f" ({first.path}: {first.why}; and {len(problems) - 1} more in "
                  f"{first.path.parent})")
    return head + "; nothing played (without --require-fidelity runs go ahead, the verdict " \
                  "recorded)"


def _check_all(out: Path, todo: Sequence[Scenario], check: Checker) -> dict[str, dict | None]:
    """Check every distinct network of ``todo`` (stored checks reused); FidelityRefused
    unless each is within tolerance.  Returns the summaries by network key."""
    found: dict[str, dict | None] = {}
    problems: list[FidelityProblem] = []
    for sc in todo:
        key = network_key(sc)
        if key in found:
            continue
        path = out / "fidelity" / f"{key}.json"
        try:
            found[key] = _fidelity(path, sc, check)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # a check that cannot run refuses like one that fails
            found[key] = {"error": " ".join(f"{type(exc).__name__}: {exc}".split())}
        problem = fidelity_problem(path, found[key])
        if problem is not None:
            problems.append(problem)
    if problems:
        raise FidelityRefused(refusal(problems, len(found)))
    return found


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


def aggregate_rows(table: pd.DataFrame, axes: Iterable[str]) -> pd.DataFrame:
    """``aggregate.csv`` of a points table: per combination of the non-seed axes, the mean,
    95 % CI and n of every metric over the seeds (:func:`testbed.harness.stats.aggregate`)."""
    return stats.aggregate(table, list(axes))


__all__ = ["ALL_POLICIES", "Collection", "CollectionError", "FidelityProblem", "FidelityRefused",
           "KEY_METRICS", "Outcome", "aggregate_rows", "comparison", "comparison_rows",
           "fidelity_problem", "network_key", "of_sweep", "points_table", "refusal",
           "run_collection", "scenarios", "write_points"]
