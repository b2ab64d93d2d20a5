"""A viewer host: many emulated players watching through their helpers.

With ``viewers.model: players`` each player follows the sessions the behaviour model
planned for it (:class:`testbed.core.player.BehaviourModel`), back to back; with
``viewers.model: workload`` each session the calibrated workload planned
(:mod:`testbed.core.workload`) starts at its arrival time and leaves if its first frame
takes longer than its patience.  The sessions are played by
:class:`testbed.core.node.viewer.ViewerHostLogic` (manifest, player, segment checks,
retries, telemetry, QoE); this daemon is its driver: it fetches what the logic asks for
(verifying each manifest's signature before the logic sees it), posts the players'
telemetry to their helpers, and keeps the logic's timers and records.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

from aiohttp import ClientError, ClientSession, ClientTimeout

from testbed.core import security as sec
from testbed.core.content import ManifestError
from testbed.core.node import viewer as V
from testbed.core.node.effects import Record, SetTimer, Timer
from testbed.core.records import TOKEN_HEADER
from testbed.nodes import common as C
from testbed.nodes.manifests import ManifestBook

log = logging.getLogger("meshcast.viewer")


class ViewerHost:
    def __init__(self, cfg: C.NodeConfig):
        self.cfg = cfg
        self.plan = plan = cfg.node_plan()  # what this run asks of this viewer host, typed
        self.clock = C.Clock(cfg.t0)
        self.events = C.EventLog(cfg.run_dir / "logs" / f"{cfg.name}.jsonl", cfg.name, self.clock)
        self.traffic = C.Traffic()
        self.catalogue = plan.catalogue()
        self.live_t0 = plan.live_t0
        self.book = ManifestBook(sec.Verifier(bytes.fromhex(cfg.ca_public_key)))
        v = plan.viewers
        self.logic = V.ViewerHostLogic(
            V.ViewerSettings(self.catalogue, self.live_t0, v.startup_buffer_s,
                             v.max_buffer_s),
            self.chains())
        self.timers = C.Timers(self.clock, lambda name, token: self.feed(Timer(name, token)))
        self.io: set[asyncio.Task] = set()
        self.stopping = False

    def chains(self) -> list[list[V.PlannedSession]]:
        base = f"http://{{}}:{C.HTTP_PORT}"
        return self.plan.viewer_chains(lambda name, ip: base.format(ip), self.catalogue)

    # -- the logic's effects ----------------------------------------------------------------
    def feed(self, event: object) -> None:
        if self.stopping:
            return
        try:
            effects = self.logic.handle(event, self.clock.now())
        except Exception:  # one bad answer never stops the other sessions
            log.exception("viewer logic: %s", type(event).__name__)
            return
        self.apply(effects)

    def apply(self, effects: list) -> None:
        for e in effects:
            if isinstance(e, Record):
                self.events.write(e.kind, **e.fields)
            elif isinstance(e, SetTimer):
                self.timers.set(e)
            elif isinstance(e, V.GetSegment):
                self._task(self._segment(e))
            elif isinstance(e, V.GetManifest):
                self._task(self._manifest(e))
            elif isinstance(e, V.PostTelemetry):
                self._task(self._telemetry(e))
            else:
                log.error("viewer: unknown effect %r", e)

    def _task(self, coro) -> None:
        t = self.loop.create_task(coro)
        self.io.add(t)
        t.add_done_callback(self.io.discard)

    async def _manifest(self, e: V.GetManifest) -> None:
        try:
            async with self.http.get(f"{e.helper}/manifest/{e.video}",
                                     headers={"X-Viewer": e.viewer} if e.viewer else None) as r:
                body = await r.read()
                self.traffic.received("viewer", len(body))
                if r.status != 200:
                    self.feed(V.ManifestResult(e.ref, error=f"HTTP {r.status}"))
                    return
                token = r.headers.get(TOKEN_HEADER, "")
            m = self.book.add(json.loads(body))
        except (ClientError, asyncio.TimeoutError, ManifestError, sec.AuthError,
                ValueError) as exc:
            self.feed(V.ManifestResult(e.ref, error=str(exc) or type(exc).__name__))
            return
        self.feed(V.ManifestResult(e.ref, m, token=token[:64]))

    async def _segment(self, e: V.GetSegment) -> None:
        try:
            async with self.http.get(f"{e.helper}/seg/{e.video}/{e.index}",
                                     headers={"X-Viewer": e.viewer}) as r:
                data = await r.read()
                self.traffic.received("viewer", len(data))
                if r.status != 200:
                    self.feed(V.SegmentResult(e.ref, r.status, error=f"HTTP {r.status}"))
                    return
                version = int(r.headers.get("X-Meshcast-Version", "0"))
                source = r.headers.get("X-Meshcast-Source", "?")
        except (ClientError, asyncio.TimeoutError, ValueError) as exc:
            self.feed(V.SegmentResult(e.ref, error=str(exc) or type(exc).__name__))
            return
        self.feed(V.SegmentResult(e.ref, 200, data, version, source))

    async def _telemetry(self, e: V.PostTelemetry) -> None:
        data = json.dumps(e.batch).encode()
        self.traffic.sent("telemetry", len(data))
        with contextlib.suppress(ClientError, asyncio.TimeoutError):
            async with self.http.post(f"{e.helper}/telemetry", data=data) as r:
                await r.read()

    # -- running ------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        self.loop = asyncio.get_running_loop()
        # a server that cannot be reached is given up soon (the session fails over): a
        # connection within 1.5 s, and no 3 s without a byte of the answer
        self.http = ClientSession(timeout=ClientTimeout(total=10, connect=1.5, sock_read=3))
        self.apply(self.logic.start(self.clock.now()))
        if self.plan.viewers.model == "workload":
            C.announce_ready(self.cfg, self.events, sessions=len(self.plan.sessions))
        else:
            C.announce_ready(self.cfg, self.events, players=len(self.plan.players))
        try:
            await stop.wait()
        finally:
            self.stopping = True
            self.timers.cancel_all()
            self.apply(self.logic.stop(self.clock.now()))
            await C.cancel_tasks(self.io)
            C.closing_records(self.events, self.traffic)
            await self.http.close()
            self.events.close()


def main() -> None:
    C.main_loop(ViewerHost)


if __name__ == "__main__":
    main()
