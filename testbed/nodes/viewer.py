"""A viewer host: many emulated players (asyncio tasks) watching through their helpers.

With ``viewers.model: players`` each player follows the sessions the behaviour model
planned for it (:class:`testbed.core.player.BehaviourModel`); with ``viewers.model:
workload`` each session the calibrated workload planned (:mod:`testbed.core.workload`)
starts at its arrival time and leaves if its first frame takes longer than its patience.
A session fetches the signed manifest from its helper,
fills the start-up buffer, plays in real time (:class:`testbed.core.player.Player`), stalls
when the buffer runs dry, pauses, seeks and abandons.  Every segment's SHA-256 is checked
against the manifest the master signed.  Player events go to the helper as telemetry; the
log gets a ``request`` record per segment and a ``qoe`` record per session.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import logging
import time
from collections import Counter

from aiohttp import ClientError, ClientSession, ClientTimeout

from testbed.core import security as sec
from testbed.core.content import CatalogueConfig, ManifestError, build_catalogue
from testbed.core.player import BehaviourModel, Player, SessionPlan
from testbed.nodes import common as C
from testbed.nodes.manifests import ManifestBook

log = logging.getLogger("meshcast.viewer")
RETRIES = 4


class Session:
    """One player's session: the fetches it makes and what it checks."""

    def __init__(self, host: ViewerHost, player_id: str, helper_ip: str, plan: SessionPlan,
                 patience_s: float | None = None):
        self.host = host
        self.patience_s = patience_s  # leave if the first frame takes longer than this
        self.id = player_id
        self.base = f"http://{helper_ip}:{C.HTTP_PORT}"
        self.plan = plan
        self.requests = 0        # finished: answered or given up
        self.answered = 0
        self.cut_at_stop = 0     # in flight when the run ended
        self.digest_failures = 0
        self.bytes_by_source: Counter[str] = Counter()
        self.latencies: list[float] = []
        self.wake = asyncio.Event()
        self.telemetry: list[dict] = []

    async def manifest(self, min_version: int = 0):
        book = self.host.book
        m = book.get(self.plan.video_id)
        if m is not None and m.version >= min_version:
            return m
        for attempt in range(RETRIES):
            try:
                async with self.host.http.get(f"{self.base}/manifest/{self.plan.video_id}") as r:
                    body = await r.read()
                    self.host.traffic.received("viewer", len(body))
                    if r.status == 200:
                        return book.add(json.loads(body))
            except (ClientError, asyncio.TimeoutError, ManifestError, sec.AuthError,
                    ValueError) as exc:
                self.host.events.write("manifest_error", player=self.id, error=str(exc)[:200])
            await asyncio.sleep(0.5 * (attempt + 1))
        return None

    async def fetch(self, player: Player, index: int) -> None:
        video = self.plan.video_id
        t0 = time.monotonic()
        for attempt in range(RETRIES):
            try:
                async with self.host.http.get(f"{self.base}/seg/{video}/{index}",
                                              headers={"X-Viewer": self.id}) as r:
                    data = await r.read()
                    self.host.traffic.received("viewer", len(data))
                    if r.status != 200:
                        raise ClientError(f"HTTP {r.status}")
                    version = int(r.headers.get("X-Meshcast-Version", "0"))
                    source = r.headers.get("X-Meshcast-Source", "?")
            except (ClientError, asyncio.TimeoutError, ValueError) as exc:
                self.host.events.write("request_retry", player=self.id, video=video, index=index,
                                       attempt=attempt, error=str(exc)[:120])
                await asyncio.sleep(0.2 * (attempt + 1))
                continue
            m = await self.manifest(version)
            m = self.host.book.get(video, version) if m is not None else None
            ok = m is not None and m.digest_ok(index, data)
            if not ok:
                self.digest_failures += 1
            self.requests += 1
            self.answered += 1
            self.bytes_by_source[source] += len(data)
            ms = (time.monotonic() - t0) * 1000
            self.latencies.append(ms)
            self.host.events.write("request", player=self.id, video=video, index=index,
                                   version=version, source=source, bytes=len(data),
                                   latency_ms=round(ms, 3), digest_ok=ok,
                                   sha256=hashlib.sha256(data).hexdigest()[:16])
            for e in player.on_segment(index, self.host.clock.now(), ok):
                self.note(e)
            self.wake.set()
            return
        self.requests += 1
        self.host.events.write("request_failed", player=self.id, video=video, index=index)
        for e in player.on_segment(index, self.host.clock.now(), False):
            self.note(e)
        self.wake.set()

    def note(self, event) -> None:
        fields = dict(event.fields)
        playhead = float(fields.get("playhead_s", 0.0))
        self.host.events.write("player", player=self.id, video=self.plan.video_id,
                               event=event.kind, t=round(event.at, 3), **fields)
        self.telemetry.append({"kind": event.kind, "video": self.plan.video_id,
                               "playhead_s": playhead, "at": event.at})

    async def flush_telemetry(self) -> None:
        if not self.telemetry:
            return
        batch, self.telemetry = self.telemetry, []
        data = json.dumps({"viewer": self.id, "events": batch}).encode()
        self.host.traffic.sent("telemetry", len(data))
        with contextlib.suppress(ClientError, asyncio.TimeoutError):
            async with self.host.http.post(f"{self.base}/telemetry", data=data) as r:
                await r.read()

    async def play(self) -> dict:
        clock = self.host.clock
        await asyncio.sleep(max(0.0, self.plan.start_at - clock.now()))
        asked_at = clock.now()  # the session's first request: start-up counts from here
        manifest = await self.manifest()
        if manifest is None:  # never started: recorded, not lost
            self.host.events.write(
                "qoe", viewer=self.id, video=self.plan.video_id, helper=self.base,
                asked_at=asked_at, startup_s=None, abandoned=True, abandoned_at_start=True,
                ended=True, requests=self.requests, answered=self.answered, error="no manifest")
            return {"error": "no manifest"}
        video = self.host.catalogue[self.plan.video_id]
        live_edge = None
        if video.kind == "live":
            live_edge = functools.partial(video.live_edge, started=self.host.live_t0)
        player = Player(self.id, self.plan, video.n_segments, video.segment_s,
                        startup_buffer_s=float(self.host.vcfg["startup_buffer_s"]),
                        max_buffer_s=float(self.host.vcfg["max_buffer_s"]),
                        max_inflight=2, live_edge=live_edge, asked_at=asked_at)
        inflight: set[asyncio.Task] = set()
        try:
            # the stop event as well as cancellation: asyncio.wait_for in Python <= 3.11 can
            # swallow a cancel that races with the wake-up, and the player would play on
            while not self.host.stopping.is_set():
                now = clock.now()
                fetches, events = player.poll(now)
                for e in events:
                    self.note(e)
                for f in fetches:
                    t = asyncio.get_running_loop().create_task(self.fetch(player, f.index))
                    inflight.add(t)
                    t.add_done_callback(inflight.discard)
                if (self.patience_s is not None and player.state == "startup"
                        and now - self.plan.start_at > self.patience_s):
                    for e in player.abandon(now):  # start-up took longer than it would wait
                        self.note(e)
                if self.telemetry:
                    await self.flush_telemetry()
                if player.done:
                    break
                self.wake.clear()
                delay = max(0.01, min(1.0, player.next_wakeup(now) - now))
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), delay)
        finally:
            for t in inflight:
                if not t.done():
                    self.cut_at_stop += 1
                    t.cancel()
            if player.done:
                await self.flush_telemetry()
            self.record(player)
        return player.qoe()

    def record(self, player: Player) -> None:
        q = player.qoe()
        lat = sorted(self.latencies)
        self.host.events.write(
            "qoe", viewer=self.id, video=self.plan.video_id, helper=self.base,
            requests=self.requests, answered=self.answered, cut_at_stop=self.cut_at_stop,
            digest_failures=self.digest_failures, bytes_by_source=dict(self.bytes_by_source),
            latency_p50_ms=round(lat[len(lat) // 2], 3) if lat else None,
            ended=player.done, **q)


class ViewerHost:
    def __init__(self, cfg: C.NodeConfig):
        self.cfg = cfg
        self.vcfg = cfg.viewers
        self.clock = C.Clock(cfg.t0)
        self.events = C.EventLog(cfg.run_dir / "logs" / f"{cfg.name}.jsonl", cfg.name, self.clock)
        self.traffic = C.Traffic()
        self.catalogue = build_catalogue(CatalogueConfig(**cfg.catalogue))
        self.live_t0 = float(cfg.extra["live_t0"])
        self.book = ManifestBook(sec.Verifier(bytes.fromhex(cfg.ca_public_key)))
        v = self.vcfg
        self.model = BehaviourModel(cfg.seed, zipf_s=float(v["zipf_s"]),
                                    pause_prob=float(v["pause_prob"]),
                                    seek_prob=float(v["seek_prob"]),
                                    abandon_prob=float(v["abandon_prob"]),
                                    live_share=float(v["live_share"]),
                                    mean_gap_s=float(v["mean_gap_s"]))

    async def player(self, player_id: str, helper_ip: str) -> None:
        vod = self.catalogue.ids("vod")
        live = self.catalogue.ids("live")
        durations = {vid: self.catalogue[vid].duration_s for vid in self.catalogue.ids()}
        start = float(self.cfg.extra.get("viewers_start_s", 0.0))
        plans = self.model.sessions(player_id, vod, durations, live,
                                    self.cfg.duration_s - start)
        for plan in plans:
            if self.stopping.is_set():
                return
            plan = SessionPlan(plan.video_id, plan.start_at + start, plan.start_index,
                               plan.actions)
            if plan.video_id in live:  # join at the live edge when the session starts
                edge = self.catalogue[plan.video_id].live_edge(plan.start_at, self.live_t0)
                plan = SessionPlan(plan.video_id, plan.start_at, max(0, edge), plan.actions)
            await Session(self, player_id, helper_ip, plan).play()

    async def session(self, s: dict) -> None:
        """One session the workload planned (``viewers.model: workload``)."""
        start = float(self.cfg.extra.get("viewers_start_s", 0.0))
        plan = SessionPlan(s["video"], float(s["start_at"]) + start, int(s["start_index"]),
                           tuple((float(p), str(k), float(a)) for p, k, a in s["actions"]))
        if plan.video_id in self.catalogue.ids("live"):
            edge = self.catalogue[plan.video_id].live_edge(plan.start_at, self.live_t0)
            plan = SessionPlan(plan.video_id, plan.start_at, max(0, edge), plan.actions)
        patience = s.get("patience_s")
        await Session(self, s["id"], s["helper_ip"], plan,
                      None if patience is None else float(patience)).play()

    async def run(self, stop: asyncio.Event) -> None:
        self.stopping = stop
        self.http = ClientSession(timeout=ClientTimeout(total=10, connect=3))
        loop = asyncio.get_running_loop()
        if "sessions" in self.cfg.extra:
            sessions = self.cfg.extra["sessions"]
            tasks = [loop.create_task(self.session(s)) for s in sessions]
            C.announce_ready(self.cfg, self.events, sessions=len(sessions))
        else:
            players = self.cfg.extra["players"]
            tasks = [loop.create_task(self.player(p["id"], p["helper_ip"])) for p in players]
            C.announce_ready(self.cfg, self.events, players=len(players))
        try:
            await stop.wait()
        finally:
            await C.cancel_tasks(tasks)
            C.closing_records(self.events, self.traffic)
            await self.http.close()
            self.events.close()


def main() -> None:
    C.main_loop(ViewerHost)


if __name__ == "__main__":
    main()
