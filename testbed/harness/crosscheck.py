"""Does the simulation tell the same story as the emulation?  (pure, over two comparisons)

Given the ``aggregate.csv`` of a comparison played on each backend (same scenario, same
seeds, same policies), :func:`crosscheck` puts each key metric's means side by side per
policy and judges each pair:

* **agrees** when the simulated mean lies within ``rel_tol`` (10 %) of the emulated
  mean, or inside the emulation's 95 % confidence interval across seeds (mean ± ci95);
  two means that are both 0 agree;
* and, per metric, whether the **ranking** of the policies is the same: ``same_order``
  (the sorted orders are identical) and ``discordant`` (the pairs the two backends order
  differently), of which ``separated`` are the ones the emulation itself tells apart
  (their means differ by more than the sum of their CIs): a swap of two policies the
  emulation cannot separate is noise, one it can separate is a disagreement.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import pandas as pd

#: The metrics cross-checked, and whether more is better.
METRICS = {"hit_ratio": True, "byte_offload": True, "origin_per_viewer_byte": False,
           "startup_p50_s": False, "startup_p95_s": False, "rebuffer_ratio": False}
REL_TOL = 0.10


@dataclass
class Ranking:
    metric: str
    emu: list[str]
    sim: list[str]
    discordant: list[tuple[str, str]] = field(default_factory=list)
    separated: list[tuple[str, str]] = field(default_factory=list)

    @property
    def same_order(self) -> bool:
        return self.emu == self.sim


def _num(x: object) -> float:
    try:
        v = float(x)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan
    return v


def judge(emu_mean: float, emu_ci: float, sim_mean: float, rel_tol: float = REL_TOL
          ) -> dict:
    """One metric of one policy: the relative difference and the verdicts."""
    diff = sim_mean - emu_mean
    rel = abs(diff) / abs(emu_mean) if emu_mean else (0.0 if diff == 0 else math.inf)
    within_rel = rel <= rel_tol
    within_ci = not math.isnan(emu_ci) and abs(diff) <= emu_ci
    if math.isnan(emu_mean) or math.isnan(sim_mean):
        within_rel = within_ci = False
    return {"rel_diff": rel, "within_rel": within_rel, "within_ci": within_ci,
            "agrees": within_rel or within_ci}


def crosscheck(emu: pd.DataFrame, sim: pd.DataFrame, metrics: dict[str, bool] | None = None,
               axis: str = "policy", rel_tol: float = REL_TOL
               ) -> tuple[pd.DataFrame, list[Ranking]]:
    """(one row per policy and metric, one :class:`Ranking` per metric) of two aggregate
    tables; policies in only one of them are left out."""
    metrics = METRICS if metrics is None else metrics
    e = emu.set_index(axis)
    s = sim.set_index(axis)
    policies = [p for p in e.index if p in s.index]
    rows = []
    for p in policies:
        for m in metrics:
            em, ec = _num(e.at[p, f"{m}_mean"]), _num(e.at[p, f"{m}_ci95"])
            sm, sc = _num(s.at[p, f"{m}_mean"]), _num(s.at[p, f"{m}_ci95"])
            rows.append({axis: p, "metric": m, "emu_mean": em, "emu_ci95": ec,
                         "sim_mean": sm, "sim_ci95": sc, **judge(em, ec, sm, rel_tol)})
    table = pd.DataFrame(rows)
    rankings = []
    def order(frame: pd.DataFrame, m: str, more_better: bool) -> list[str]:
        vals = {p: _num(frame.at[p, f"{m}_mean"]) for p in policies}
        return sorted(policies, key=lambda p: (-vals[p] if more_better else vals[p], p))

    for m, more_better in metrics.items():
        eo, so = order(e, m, more_better), order(s, m, more_better)
        r = Ranking(m, eo, so)
        pos_e = {p: i for i, p in enumerate(eo)}
        pos_s = {p: i for i, p in enumerate(so)}
        for a, b in itertools.combinations(policies, 2):
            if (pos_e[a] - pos_e[b]) * (pos_s[a] - pos_s[b]) < 0:
                r.discordant.append((a, b))
                ea, eb = _num(e.at[a, f"{m}_mean"]), _num(e.at[b, f"{m}_mean"])
                ca = _num(e.at[a, f"{m}_ci95"])
                cb = _num(e.at[b, f"{m}_ci95"])
                ci = (0.0 if math.isnan(ca) else ca) + (0.0 if math.isnan(cb) else cb)
                if abs(ea - eb) > ci:
                    r.separated.append((a, b))
        rankings.append(r)
    return table, rankings


def summary(table: pd.DataFrame, rankings: list[Ranking]) -> dict:
    """The verdict in numbers: pairs agreeing, rankings the same, swaps that count."""
    return {"pairs": len(table), "agree": int(table["agrees"].sum()) if len(table) else 0,
            "within_rel": int(table["within_rel"].sum()) if len(table) else 0,
            "within_ci": int(table["within_ci"].sum()) if len(table) else 0,
            "rankings_same": sum(r.same_order for r in rankings),
            "rankings": len(rankings),
            "separated_swaps": sum(len(r.separated) for r in rankings),
            "disagreeing": [f"{row.policy}/{row.metric}" for row in table.itertuples()
                            if not row.agrees] if "policy" in table else []}
