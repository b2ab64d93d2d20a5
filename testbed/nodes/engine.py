"""The demand prediction engine daemon: helpers' telemetry in, per-helper predictions out.

Runs on the master's host (or the host the scenario's ``engine.host`` names) as its own
process, on port ``engine.port``:

- ``POST /telemetry``: a helper's signed ``telemetry`` message (the records it anonymised,
  :func:`testbed.core.telemetry.telemetry_record`).  Every record is checked again here
  (:func:`testbed.core.telemetry.check_record`): a record that is malformed, from the
  future, names another helper or carries anything but a pseudonym is refused and counted
  by reason; the rest are kept.  The answer says how many of each.
- ``POST /predict``: the master's signed ``predict`` message ``{"helpers": [...], "top":
  N, "predictor": "model"}``; the answer (JSON) lists, per helper, the ``N`` segments
  expected to be requested most in the next ``horizon_s`` seconds, with the expected
  count, and the segments each helper's viewers last asked for.  ``predictor``
  ``popularity`` or ``playhead`` answers with that baseline instead of the model; an
  optional ``horizon_s`` (1..600) sets the popularity answer's horizon (default the
  engine's own); the answer's ``horizon_s`` is the one used.
- ``GET /status``: model version, telemetry accepted and refused, the last training.

Every ``retrain_s`` seconds a new model is trained in a separate process on the sliding
window (:func:`testbed.core.engine.train`) while predictions go on with the current one;
each model is saved under ``<run>/engine/models/`` (joblib, and JSON with what it was
trained on and, once replaced, how it did on the telemetry that came after), and the
telemetry it accepted is kept as a trace in ``<run>/engine/telemetry.csv``.  Bytes in and out are
counted as ``telemetry`` and ``prediction`` traffic.
"""

from __future__ import annotations

import asyncio
import csv
import json
import logging
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor

from aiohttp import web

from testbed.core.engine import DemandEngine, EngineConfig, EngineError, train
from testbed.core.workload import TRACE_COLUMNS
from testbed.nodes import common as C

log = logging.getLogger("meshcast.engine")


def engine_config(cfg: C.NodeConfig) -> EngineConfig:
    """The engine's settings: its part of the run plan."""
    return cfg.node_plan().engine_config()


def _init_worker() -> None:
    """Training workers keep to one core and a low priority: the emulation comes first."""
    os.environ["OMP_NUM_THREADS"] = "1"
    try:
        os.nice(10)
    except OSError:
        pass


def _import_models() -> None:
    """Import what models need, in the training worker (a new interpreter) and here (a
    trained model arrives pickled, then is saved and queried): seconds of CPU, spent
    before the run is played rather than in the middle of it at the first training."""
    import joblib  # noqa: F401  (Engine.save)
    import sklearn.ensemble  # noqa: F401  (D.DemandModel.fit imports it lazily)

    from testbed.core import engine  # noqa: F401


class Engine:
    def __init__(self, cfg: C.NodeConfig):
        self.cfg = cfg
        self.clock = C.Clock(cfg.t0)
        self.events = C.EventLog(cfg.run_dir / "logs" / f"{cfg.name}.jsonl", cfg.name,
                                 self.clock)
        self.traffic = C.Traffic()
        catalogue = cfg.node_plan().catalogue()
        self.ecfg = engine_config(cfg)
        self.engine = DemandEngine(self.ecfg, {v: catalogue[v].n_segments
                                               for v in catalogue.ids()},
                                   live=catalogue.ids("live"))
        self.models_dir = cfg.run_dir / "engine" / "models"
        self.models_dir.mkdir(parents=True, exist_ok=True)
        self.archive_path = cfg.run_dir / "engine" / "telemetry.csv"
        self.training: asyncio.Future | None = None
        self.predictions = 0

    async def run(self, stop: asyncio.Event) -> None:
        identity = await asyncio.to_thread(C.load_identity, self.cfg)
        self.secure = C.Secure(identity, bytes.fromhex(self.cfg.ca_public_key), self.clock,
                               self.events, C.load_directory(self.cfg))
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        self.pool = ProcessPoolExecutor(
            1, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker)
        runner = await C.serve_http([
            web.post("/telemetry", self.h_telemetry),
            web.post("/predict", self.h_predict),
            web.get("/status", self.h_status),
        ], self.cfg.ip, self.cfg.node_plan().engine_at.port)
        tasks = C.watch(self.events,
                        [C.every(1.0, self.maybe_train, "training", first_delay=1.0)])
        try:
            # serving already (the master asks for forecasts from its first seconds); ready
            # once the model libraries are in
            await asyncio.gather(
                asyncio.get_running_loop().run_in_executor(self.pool, _import_models),
                asyncio.to_thread(_import_models))
            C.announce_ready(self.cfg, self.events, port=self.cfg.node_plan().engine_at.port)
            await stop.wait()
        finally:
            await C.cancel_tasks(tasks)
            await runner.cleanup()
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.events.write("engine_summary", **self.engine.status(),
                              predictions=self.predictions)
            C.closing_records(self.events, self.traffic)
            self.events.close()

    # -- telemetry ------------------------------------------------------------------------
    async def h_telemetry(self, request: web.Request) -> web.Response:
        raw = await request.read()
        self.traffic.received("telemetry", len(raw))
        msg = self.secure.decode(raw, "telemetry", roles=("helper",),
                                 peer=request.remote or "?")
        if msg is None:
            self.engine.reject(self.secure.last_reason)
            return self.secure.refusal()
        if msg.type != "telemetry":
            self.engine.reject("wrong_type")
            return web.Response(status=400, text=f"expected telemetry, got {msg.type}\n")
        rows, errors = self.engine.ingest(msg.body["events"], msg.sender, self.clock.now())
        accepted = len(rows)
        if rows:
            self.archive(rows)
        if errors:
            self.events.write("telemetry_refused", helper=msg.sender, refused=len(errors),
                              accepted=accepted, first=errors[0][:200])
        status = 400 if errors and not accepted else 200
        return web.json_response({"accepted": accepted, "refused": len(errors),
                                  "errors": [e[:200] for e in errors[:3]]}, status=status)

    def archive(self, rows: list[dict]) -> None:
        """Append accepted records to ``engine/telemetry.csv`` (a trace file)."""
        new = not self.archive_path.exists()
        with open(self.archive_path, "a", newline="") as f:
            w = csv.writer(f)
            if new:
                w.writerow(TRACE_COLUMNS)
            w.writerows([r[c] for c in TRACE_COLUMNS] for r in rows)

    # -- predictions ----------------------------------------------------------------------
    async def h_predict(self, request: web.Request) -> web.Response:
        raw = await request.read()
        self.traffic.received("prediction", len(raw))
        msg = self.secure.decode(raw, "predict", roles=("master",), peer=request.remote or "?")
        if msg is None:
            return self.secure.refusal()
        helpers = msg.body["helpers"]
        if msg.type != "predict" or not all(isinstance(h, str) for h in helpers):
            return web.Response(status=400, text="predict: helpers must be a list of names\n")
        try:
            answer = self.engine.predict(self.clock.now(), helpers or None, msg.body["top"],
                                         str(msg.body.get("predictor", "model")),
                                         msg.body.get("horizon_s"))
        except EngineError as exc:
            return web.Response(status=400, text=f"predict: {exc}\n")
        body = json.dumps(answer, separators=(",", ":")).encode()
        self.traffic.sent("prediction", len(body))
        self.predictions += 1
        return web.Response(body=body, content_type="application/json")

    async def h_status(self, request: web.Request) -> web.Response:
        return web.json_response(self.engine.status())

    # -- training -------------------------------------------------------------------------
    async def maybe_train(self) -> None:
        now = self.clock.now()
        if self.training is not None or not self.engine.due(now):
            return
        data = self.engine.training_input(now)
        loop = asyncio.get_running_loop()
        t = time.monotonic()
        self.training = loop.run_in_executor(self.pool, train, data, now, self.ecfg,
                                             self.engine.n_segments, self.engine.model)
        try:
            result = await self.training
        finally:
            self.training = None
        version = self.engine.install(result)
        metrics = {**result.metrics, "wall_s": round(time.monotonic() - t, 3),
                   "events": len(data)}
        if result.model is not None:
            await asyncio.to_thread(self.save, version, result, metrics)
            scores = metrics.get("scores", {})
            if "previous" in scores:  # the model just replaced, scored on what it never saw
                await asyncio.to_thread(self.evaluated, version - 1, scores, now)
        self.events.write("model", version=version, **metrics)

    def save(self, version: int, result, metrics: dict) -> None:
        import joblib

        path = self.models_dir / f"model-v{version:04d}.joblib"
        joblib.dump({"version": version, "model": result.model, "metrics": metrics,
                     "config": self.ecfg.demand.as_dict()}, path)
        (self.models_dir / f"model-v{version:04d}.json").write_text(
            json.dumps(metrics, indent=1, default=str))


    def evaluated(self, version: int, scores: dict, now: float) -> None:
        """Add to model ``version``'s metrics how it did on the telemetry that came after it."""
        path = self.models_dir / f"model-v{version:04d}.json"
        try:
            metrics = json.loads(path.read_text())
        except (OSError, ValueError):
            return
        metrics["evaluation"] = {"until": now, "model": scores["previous"],
                                 "playhead": scores.get("playhead")}
        path.write_text(json.dumps(metrics, indent=1, default=str))


def main() -> None:
    C.main_loop(Engine)


if __name__ == "__main__":
    main()
