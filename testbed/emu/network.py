"""Build a topology spec into a running Mininet network, and take it down again.

``with TestbedNetwork(spec, run_dir, mode="auto") as tn:`` gives a network in
which every host is a namespace with its address, every switch an Open vSwitch
bridge driven by the testbed's controller, and every link has the latency,
jitter, loss and bandwidth the spec says (netem, or the userspace link
emulator).  Leaving the block removes all of it, even after an error.
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import networkx as nx
from mininet.log import setLogLevel
from mininet.net import Mininet
from mininet.node import Host, OVSSwitch, RemoteController

from testbed.core import floor as F
from testbed.core import spec as S
from testbed.core.floor import SwitchLatency
from testbed.emu import netlock, residue, switchprobe, tc, tls
from testbed.emu.controller import ControllerProcess, free_port
from testbed.emu.kernel import (
    allow_congestion_control,
    ensure_congestion_control,
    has_ovs_module,
    has_xdp_sockets,
    resolve_link_mode,
    restore_allowed,
)
from testbed.emu.links import EmuIntf, EmuLink
from testbed.emu.ovs import (
    OvsError,
    bridge_connected,
    claim_pmd_sleep,
    dump_flows,
    ensure_ovs_running,
    interface_types,
    release_pmd_sleep,
)
from testbed.emu.proc import ManagedProcess

HOST_NET = ipaddress.ip_network("10.0.0.0/8")
ROLE_ORDER = {S.MASTER: 0, S.HELPER: 1, S.VIEWER: 2, S.PROBE: 3}


COMPENSATION_ENV = "MESHCAST_SWITCH_COMPENSATION"  # "off": delay lines keep the configuration
XDP_PORT_TYPE = "afxdp"
PORTS_ENV = "MESHCAST_SWITCH_PORTS"  # "system" keeps AF_PACKET ports on userspace bridges
#: auto: XDP_PORT_TYPE where it works; afxdp-nonpmd: XDP sockets polled by the switch's
#: main thread (no PMD thread; for comparison)
PORT_CHOICES = ("auto", "system", "afxdp", "afxdp-nonpmd")


class LabeledOVSSwitch(OVSSwitch):
    """An OVS bridge that carries the run label, so clean-up can find it.

    ``port_type`` (class-wide, set per network): the Interface type of its ports, e.g.
    ``afxdp``; empty for OVS's default (``system``).
    """

    run_label = ""
    port_type = ""

    def bridgeOpts(self):  # noqa: N802 (Mininet API)
        return super().bridgeOpts() + f" external_ids:{residue.OVS_KEY}={self.run_label}"

    def intfOpts(self, intf):  # noqa: N802 (Mininet API)
        opts = super().intfOpts(intf)
        if self.port_type and opts:
            opts += f" type={self.port_type}"
        return opts

    def start(self, controllers):
        super().start(controllers)
        for intf in self.intfList():
            if isinstance(intf, EmuIntf) and intf.shape_at is None:
                intf.apply_shaping()  # OVS removed the qdiscs when it took the port


XDP_PORT_MB = 64  # OVS gives each XDP port 16,384 frames of 4 kB, locked in memory
XDP_MEMORY_SHARE = 0.25  # XDP ports only while they take at most this share of free memory


def switch_port_type(datapath: str, mode: str, ports: int = 0) -> str:
    """XDP ports where they pay and work: the userspace datapath, userspace link mode
    (netem qdiscs on a switch port would be passed by), a kernel with XDP sockets, an
    OVS that offers the type, and memory for ``ports`` of them (each locks
    ``XDP_PORT_MB``); ``MESHCAST_SWITCH_PORTS=system`` keeps AF_PACKET ports and
    ``afxdp-nonpmd`` asks for XDP ports polled by the switch's main thread."""
    wanted = os.environ.get(PORTS_ENV, "auto")
    if wanted not in PORT_CHOICES:
        raise ValueError(f"{PORTS_ENV}={wanted!r}: use {', '.join(PORT_CHOICES)}")
    if datapath != "user" or mode != tc.USERSPACE or wanted == "system":
        return ""
    kind = wanted if wanted.startswith("afxdp") else XDP_PORT_TYPE
    why = ""
    if not (has_xdp_sockets() and kind in interface_types()):
        why = f"this kernel or Open vSwitch has no {kind} ports"
    elif ports * XDP_PORT_MB > XDP_MEMORY_SHARE * available_mb():
        why = (f"{ports} XDP ports would lock {ports * XDP_PORT_MB} MB, more than "
               f"{XDP_MEMORY_SHARE:.0%} of the {available_mb():.0f} MB available")
    if not why:
        return kind
    if wanted != "auto":
        raise RuntimeError(f"{PORTS_ENV}={wanted}: {why}")
    print(f"note: switch ports are AF_PACKET (system): {why}", file=sys.stderr)
    return ""


def available_mb() -> float:
    """MemAvailable from /proc/meminfo, in MB (0 if unreadable)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0.0


class ExternalController(RemoteController):
    """The testbed's own controller process; readiness is checked by its launcher."""

    def checkListening(self):  # noqa: N802 (Mininet API)
        return True


def roles_of(g: nx.Graph, n: str) -> str:
    return g.nodes[n]["role"]


def host_order(g: nx.Graph) -> list[str]:
    """Hosts by role (master, helpers, viewers, probes), then by name."""
    return sorted(S.hosts(g), key=lambda n: (ROLE_ORDER[g.nodes[n]["role"]], S.natural_key(n)))


def address_plan(g: nx.Graph) -> dict[str, dict]:
    """Deterministic IP, MAC and switch dpid for every node."""
    plan: dict[str, dict] = {}
    for i, name in enumerate(host_order(g), start=1):
        ip = HOST_NET.network_address + i
        plan[name] = {"ip": str(ip), "mac": "02:00:" + ":".join(f"{b:02x}" for b in ip.packed)}
    for i, name in enumerate(S.switches(g), start=1):
        plan[name] = {"dpid": i}
    return plan


def add_probes(g: nx.Graph) -> nx.Graph:
    """A copy of ``g`` with a probe host on every switch (unshaped link), for calibration."""
    g = g.copy()
    for i, sw in enumerate(S.switches(g), start=1):
        name = f"pr{i}"
        g.add_node(name, role=S.PROBE, switch=sw)
        g.add_edge(name, sw)
    return g


class TestbedNetwork:
    """A running emulated network built from a spec; a context manager."""

    __test__ = False  # not a pytest test class

    def __init__(self, spec: nx.Graph, run_dir: Path, mode: str = "auto", seed: int = 0,
                 apps: tuple[str, ...] = ("l2", "multicast", "mesh"),
                 run_id: str | None = None, controller_env: dict[str, str] | None = None,
                 compensate: bool = True, tls: bool = False, tcp_congestion: str = "cubic"):
        S.validate(spec)
        self.spec = spec
        self.run_dir = Path(run_dir).resolve()
        self.requested_mode = mode
        self.seed = seed
        self.apps = apps
        self.controller_env = dict(controller_env or {})
        self.tls = tls  # the OpenFlow channel over TLS (testbed.emu.tls)
        # every host's TCP congestion control, set in its namespace: the host machine's own
        # default (BBR here, CUBIC on most machines) must not decide how a run's TCP behaves
        self.tcp_congestion = tcp_congestion
        self._cc_allowed_before: str | None = None  # the machine's list, put back at stop
        self._ovs_ssl = False  # Open vSwitch's SSL settings are this network's, to remove
        self.run_id = run_id or f"{self.run_dir.name}-{uuid.uuid4().hex[:6]}"
        self.tag = uuid.uuid4().hex[:3]
        self.mode = ""
        self.port_type = ""
        self.pmd_sleep_us: int | None = None  # PMD threads' max sleep (XDP ports only)
        self._pmd_keys: list[str] = []  # OVS settings this network made, undone at stop
        self._user_datapath = False
        self.net: Mininet | None = None
        self.controller: ControllerProcess | None = None
        self.linkemu: ManagedProcess | None = None
        self.relays: list[tuple[str, str, str, S.LinkParams]] = []
        self.plan = address_plan(spec)
        self.timings: dict[str, float] = {}
        self.api_port: int | None = None
        self._saved_label: str | None = None
        self._locked = False
        self.compensate = compensate and os.environ.get(COMPENSATION_ENV, "on") != "off"
        self.switch_latency: dict[str, SwitchLatency] = {}

    # -- life cycle -------------------------------------------------------------------
    def __enter__(self) -> TestbedNetwork:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        t0 = time.monotonic()
        netlock.acquire(f"run {self.run_id}")  # one network per machine: names are global
        self._locked = True
        self.run_dir.mkdir(parents=True, exist_ok=True)
        ensure_ovs_running()
        self.mode = resolve_link_mode(self.requested_mode)
        ensure_congestion_control(self.tcp_congestion)
        self._cc_allowed_before = allow_congestion_control(self.tcp_congestion)
        self._saved_label = os.environ.get(residue.LABEL_ENV)
        os.environ[residue.LABEL_ENV] = self.run_id  # every child carries the label
        self._write_state()
        setLogLevel(os.environ.get("MESHCAST_MN_LOG", "warning"))
        self._build()
        self.timings["build_s"] = time.monotonic() - t0
        self._write_topology_files()
        if self.relays:
            self._start_linkemu()  # links forward from the first moment, as configured
        self.api_port = free_port()
        tls_dir = None
        if self.tls:
            tls_dir = self.run_dir / "tls"
            files = tls.make_pki(tls_dir)
            self._ovs_ssl = True
            tls.ovs_set_ssl(files)
        self.controller = ControllerProcess(
            list(self.apps), self.run_dir,
            env={"MESHCAST_TOPOLOGY": str(self.run_dir / "topology.json"),
                 "MESHCAST_API_PORT": str(self.api_port),
                 residue.LABEL_ENV: self.run_id, **self.controller_env},
            tls_dir=tls_dir,
        )
        self.controller.start()
        self.net.addController(ExternalController("c0", ip="127.0.0.1", port=self.controller.port,
                                                  protocol="ssl" if self.tls else "tcp"))
        self.net.start()
        self._wait_switches_ready()
        self._measure_switches()
        if self.relays:
            self._compensate_linkemu()
        self._verify_shaping()
        self.net.staticArp()
        self.timings["start_s"] = time.monotonic() - t0
        self._write_state()

    def stop(self) -> None:
        t0 = time.monotonic()
        if self.net is not None:
            try:
                self.net.stop()
            except Exception as exc:  # keep tearing down whatever is left
                print(f"warning: mininet stop: {type(exc).__name__}: {exc}".rstrip(": "),
                      file=sys.stderr)
            self.net = None
        if self.linkemu is not None:
            self.linkemu.stop()
            self.linkemu = None
        if self.controller is not None:
            self.controller.stop()
            self.controller = None
        residue.clean(self.run_id)
        if self._ovs_ssl:
            tls.ovs_del_ssl()
            self._ovs_ssl = False
        release_pmd_sleep(self._pmd_keys)
        self._pmd_keys = []
        restore_allowed(self._cc_allowed_before)
        self._cc_allowed_before = None
        if self._saved_label is None:
            os.environ.pop(residue.LABEL_ENV, None)
        else:
            os.environ[residue.LABEL_ENV] = self._saved_label
        if self._locked:
            self._locked = False
            netlock.release()
        self.timings["stop_s"] = time.monotonic() - t0

    # -- building ---------------------------------------------------------------------
    def _build(self) -> None:
        g = self.spec
        LabeledOVSSwitch.run_label = self.run_id
        datapath = "kernel" if has_ovs_module() else "user"
        self._user_datapath = datapath == "user"
        ports = sum((roles_of(g, u) == S.SWITCH) + (roles_of(g, v) == S.SWITCH)
                    for u, v in g.edges) + 2 * len(S.switches(g))  # + the switch probe's
        self.port_type = switch_port_type(datapath, self.mode, ports)
        LabeledOVSSwitch.port_type = self.port_type
        xdp = bool(self.port_type)
        if self.port_type == XDP_PORT_TYPE:  # before the first port: its PMD thread sleeps
            self.pmd_sleep_us, self._pmd_keys = claim_pmd_sleep()
        net = Mininet(topo=None, build=False, controller=None, host=Host,
                      switch=LabeledOVSSwitch, link=EmuLink, intf=EmuIntf, autoSetMacs=False,
                      waitConnected=False)
        self.net = net
        for name in host_order(g):
            p = self.plan[name]
            net.addHost(name, ip=f"{p['ip']}/{HOST_NET.prefixlen}", mac=p["mac"])
        for name in S.switches(g):
            net.addSwitch(name, dpid=f"{self.plan[name]['dpid']:016x}", datapath=datapath,
                          failMode="secure", protocols="OpenFlow13")
        for index, (u, v) in enumerate(sorted(g.edges, key=self._edge_key)):
            a, b = self._orient(u, v)
            params = S.link_params(g, a, b)
            relays = None
            between_switches = S.SWITCH == roles_of(g, a) == roles_of(g, b)
            shaped = bool(tc.shaping_plan(params, self.mode).qdiscs)
            if self.mode == tc.USERSPACE and (tc.impairs(params)
                                              or (xdp and between_switches and shaped)):
                relays = (f"mc{self.tag}{index}a", f"mc{self.tag}{index}b")
                self.relays.append((f"{a}-{b}", relays[0], relays[1], params))
            net.addLink(a, b, relays=relays, xdp_ports=xdp, link_params=params,
                        mode=self.mode)
        net.build()
        for host in net.hosts:
            host.cmd("sysctl -qw net.ipv6.conf.all.disable_ipv6=1")
            host.cmd(f"sysctl -qw net.ipv4.tcp_congestion_control={self.tcp_congestion}")
            got = host.cmd("cat /proc/sys/net/ipv4/tcp_congestion_control").strip()
            if got != self.tcp_congestion:
                raise RuntimeError(f"links.tcp_congestion: {host.name} runs {got!r}, "
                                   f"not {self.tcp_congestion!r}")
            # IP multicast (content groups) leaves and arrives by the host's one interface
            host.cmd(f"ip route add 224.0.0.0/4 dev {host.defaultIntf()}")
        self._label_root_interfaces()

    def _edge_key(self, e: tuple[str, str]) -> tuple:
        a, b = self._orient(*e)
        return (S.natural_key(a), S.natural_key(b))

    def _orient(self, u: str, v: str) -> tuple[str, str]:
        """Hosts first on host links; switches in natural order otherwise."""
        roles = self.spec.nodes
        if roles[u]["role"] == S.SWITCH and roles[v]["role"] != S.SWITCH:
            return v, u
        if roles[u]["role"] == roles[v]["role"] == S.SWITCH:
            return tuple(sorted((u, v), key=S.natural_key))  # type: ignore[return-value]
        return u, v

    def _label_root_interfaces(self) -> None:
        names = [r for _, ra, rb, _ in self.relays for r in (ra, rb)]
        for sw in self.net.switches:
            names += [i.name for i in sw.intfList() if i.name != "lo"]
        batch = "".join(f"link set dev {name} alias {residue.ALIAS_PREFIX}{self.run_id}\n"
                        for name in names)
        res = subprocess.run(["ip", "-batch", "-"], input=batch, text=True,
                             capture_output=True, check=False)
        if res.returncode != 0:
            raise RuntimeError(f"labelling interfaces failed: {res.stderr.strip()}")

    def _measure_switches(self) -> None:
        """Each switch's one-way forwarding time, recorded in ``switch-latency.json`` with
        what each link gives up for it (see :mod:`testbed.core.floor`).  Not with netem
        links on the kernel datapath: nothing is compensated there, the switches forward in
        microseconds, and under a slow virtual CPU the probe alone takes seconds a switch."""
        t0 = time.monotonic()
        if self.mode != tc.USERSPACE and not self._user_datapath:
            self.switch_latency = {}
            (self.run_dir / "switch-latency.json").write_text(
                json.dumps(self.floor_report(), indent=1))
            return
        self.switch_latency = switchprobe.measure(
            [sw.name for sw in self.net.switches], self.tag, self.run_id, self.port_type)
        self.timings["switch_probe_s"] = time.monotonic() - t0
        report = self.floor_report()
        (self.run_dir / "switch-latency.json").write_text(json.dumps(report, indent=1))
        try:
            switchprobe.FLOOR_CACHE.parent.mkdir(parents=True, exist_ok=True)
            switchprobe.FLOOR_CACHE.write_text(json.dumps({
                "datapath": report["datapath"], "port_type": self.port_type,
                "median_ms": report["median_ms"], "at": time.time()}))
        except OSError:
            pass  # only a hint for the next scenario load

    def latency_ms(self) -> dict[str, float]:
        return {sw: lat.median_ms for sw, lat in self.switch_latency.items()}

    def link_share_ms(self, a: str, b: str) -> float:
        """What link a-b gives up for its switches (0 without compensation)."""
        if not self.compensate or self.mode != tc.USERSPACE:
            return 0.0
        return F.link_share_ms(self.spec, a, b, self.latency_ms())

    def emulated(self, name: str, params: S.LinkParams) -> S.LinkParams:
        """The delay line's parameters for link ``name`` (``a-b``): its delay less its share."""
        a, b = name.split("-", 1)
        return params.replace(delay_ms=F.compensated_delay_ms(params.delay_ms,
                                                              self.link_share_ms(a, b)))

    def floor_report(self) -> dict:
        """The measured switch times and, per link, what it gives up and cannot."""
        lat = self.latency_ms()
        medians = sorted(lat.values())
        links = {}
        for u, v in self.spec.edges:
            a, b = self._orient(u, v)
            if S.PROBE in (self.spec.nodes[a]["role"], self.spec.nodes[b]["role"]):
                continue
            p = S.link_params(self.spec, a, b)
            share = F.link_share_ms(self.spec, a, b, lat)
            applied = self.link_share_ms(a, b)
            links[f"{a}-{b}"] = {
                "configured_ms": p.delay_ms, "share_ms": round(share, 4),
                "emulated_ms": round(F.compensated_delay_ms(p.delay_ms, applied), 4)
                if any(r[0] == f"{a}-{b}" for r in self.relays) else None,
                "floor_ms": round(F.shortfall_ms(p.delay_ms, share), 4),
            }
        return {
            "datapath": "user" if self.port_type or self._user_datapath else "kernel",
            "port_type": self.port_type or "system", "pmd_sleep_us": self.pmd_sleep_us,
            "compensated": self.compensate
            and self.mode == tc.USERSPACE,
            "measured": bool(self.switch_latency),
            "median_ms": medians[len(medians) // 2] if medians else None,
            "switches": {sw: x.as_dict() for sw, x in self.switch_latency.items()},
            "links": links,
        }

    def _start_linkemu(self) -> None:
        ready = self.run_dir / "linkemu.ready"
        ready.unlink(missing_ok=True)
        config = {
            "seed": self.seed,
            "control_file": str(self.run_dir / "linkemu-control.json"),
            "applied_file": str(self.run_dir / "linkemu-applied.json"),
            "ready_file": str(ready),
            "stats_file": str(self.run_dir / "linkemu-stats.json"),
            "links": [
                {"name": name, "a": ra, "b": rb, "params": {
                    f: getattr(self.emulated(name, p), f)
                    for f in ("delay_ms", "jitter_ms", "loss_pct", "bw_mbit")}}
                for name, ra, rb, p in self.relays
            ],
        }
        path = self.run_dir / "linkemu.json"
        path.write_text(json.dumps(config, indent=1))
        self.linkemu = ManagedProcess(
            "linkemu", [sys.executable, "-m", "testbed.emu.linkemu", str(path)],
            self.run_dir, ready=ready.exists, label=self.run_id,
        )
        self.linkemu.start()

    def _compensate_linkemu(self, timeout: float = 10.0) -> None:
        """Give the delay lines their compensated delays (measured after they started) and
        wait until the emulator reports them applied (``linkemu-applied.json``)."""
        fields = ("delay_ms", "jitter_ms", "loss_pct")
        changes = {name: {f: getattr(self.emulated(name, p), f) for f in fields}
                   for name, _, _, p in self.relays}
        if all(v["delay_ms"] == p.delay_ms for (_, _, _, p), v in zip(self.relays,
                                                                       changes.values())):
            return
        applied = self.run_dir / "linkemu-applied.json"
        applied.unlink(missing_ok=True)
        (self.run_dir / "linkemu-control.json").write_text(json.dumps(changes))
        os.kill(self.linkemu.pid, signal.SIGHUP)
        deadline = time.monotonic() + timeout
        while not applied.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        if not applied.exists():
            raise RuntimeError(f"link emulator did not apply the compensated delays within "
                               f"{timeout:.0f} s; see {self.run_dir}")

    def _wait_switches_ready(self, timeout: float = 30.0) -> None:
        """Until every bridge is connected to the controller and has its flows."""
        deadline = time.monotonic() + timeout
        pending = [sw.name for sw in self.net.switches]
        while pending and time.monotonic() < deadline:
            pending = [br for br in pending if not _bridge_ready(br)]
            if pending:
                time.sleep(0.1)
        if pending:
            raise RuntimeError(
                f"switches {', '.join(pending)} not programmed by the controller within "
                f"{timeout:.0f} s; see {self.run_dir / 'controller.log'}"
            )

    def _verify_shaping(self) -> None:
        bad = [f"{node.name}:{intf.name}" for node in self.net.hosts + self.net.switches
               for intf in node.intfList()
               if isinstance(intf, EmuIntf) and not intf.shaping_in_place()]
        if bad:
            raise RuntimeError(f"link shaping missing on {', '.join(bad)}")

    # -- descriptions -----------------------------------------------------------------
    def topology_view(self) -> dict:
        """The controller's input: switches with ports, hosts with attachment, links."""
        g = self.spec
        switches = {}
        for sw in self.net.switches:
            switches[sw.name] = {
                "dpid": self.plan[sw.name]["dpid"],
                "ports": {i.name: sw.ports[i] for i in sw.intfList() if i.name != "lo"},
            }
        hosts, links = {}, []
        for link in self.net.links:
            i1, i2 = link.intf1, link.intf2
            n1, n2 = i1.node, i2.node
            params = S.link_params(g, n1.name, n2.name)
            if n1 in self.net.hosts:
                hosts[n1.name] = {
                    "ip": self.plan[n1.name]["ip"], "mac": self.plan[n1.name]["mac"],
                    "switch": n2.name, "port": n2.ports[i2], "role": g.nodes[n1.name]["role"],
                }
            else:
                links.append({
                    "a": n1.name, "a_port": n1.ports[i1], "b": n2.name, "b_port": n2.ports[i2],
                    "delay_ms": params.delay_ms, "bw_mbit": params.bw_mbit,
                })
        return {"switches": switches, "hosts": hosts, "links": links}

    def link_ports(self) -> dict[tuple[str, str], str]:
        """Per link (a, b) of the spec: an interface of ``a`` in the switches' namespace
        (a switch's port), whose counters measure that link's traffic."""
        out = {}
        for link in self.net.links:
            i1, i2 = link.intf1, link.intf2
            if i1.node in self.net.switches:
                out[(i1.node.name, i2.node.name)] = i1.name
            elif i2.node in self.net.switches:
                out[(i2.node.name, i1.node.name)] = i2.name
        return out

    def port_bytes(self) -> dict[str, tuple[int, int]]:
        """(tx, rx) bytes so far of every interface :meth:`link_ports` names."""
        out = {}
        for name in self.link_ports().values():
            stats = Path("/sys/class/net") / name / "statistics"
            try:
                out[name] = (int((stats / "tx_bytes").read_text()),
                             int((stats / "rx_bytes").read_text()))
            except (OSError, ValueError):
                continue
        return out

    def hosts_view(self) -> dict:
        g = self.spec
        out = {}
        for h in self.net.hosts:
            attrs = g.nodes[h.name]
            out[h.name] = {
                "name": h.name, "role": attrs["role"], "pid": h.pid,
                "ip": self.plan[h.name]["ip"], "mac": self.plan[h.name]["mac"],
                "region": attrs.get("region"), "tier": attrs.get("tier"),
                "tcp_congestion": self.tcp_congestion,
                "interfaces": [{"name": i.name, "mac": i.MAC(), "ip": i.IP()}
                               for i in h.intfList()],
            }
        return out

    def _write_topology_files(self) -> None:
        (self.run_dir / "topology.json").write_text(json.dumps(self.topology_view(), indent=1))
        (self.run_dir / "hosts.json").write_text(json.dumps(self.hosts_view(), indent=1))

    def _write_state(self) -> None:
        """Record this run for ``testbed down`` / ``testbed clean`` (in /run/meshcast)."""
        residue.STATE_DIR.mkdir(parents=True, exist_ok=True)
        state = {
            "run": self.run_id, "run_dir": str(self.run_dir.resolve()), "pid": os.getpid(),
            "mode": self.mode, "relays": [[ra, rb] for _, ra, rb, _ in self.relays],
            "controller_pid": self.controller.pid if self.controller else None,
            "api": f"http://127.0.0.1:{self.api_port}" if self.api_port else None,
            "linkemu_pid": self.linkemu.pid if self.linkemu else None,
            "tcp_allowed_before": self._cc_allowed_before,
        }
        (residue.STATE_DIR / f"{self.run_id}.json").write_text(json.dumps(state, indent=1))

    # -- changing links at run time -----------------------------------------------------
    def set_link(self, a: str, b: str, **changes: float) -> S.LinkParams:
        """Change delay_ms, jitter_ms or loss_pct of link a-b now (both directions).

        The spec is updated too, so later checks compare against the new values.
        """
        allowed = {"delay_ms", "jitter_ms", "loss_pct"}
        if not changes or set(changes) - allowed:
            raise ValueError(f"set_link: change only {', '.join(sorted(allowed))}")
        if not self.spec.has_edge(a, b):
            raise ValueError(f"set_link: no link {a}-{b}")
        params = S.link_params(self.spec, a, b).replace(**changes)
        self.spec.edges[a, b].update(changes)
        relay = next((r for r in self.relays if r[0] in (f"{a}-{b}", f"{b}-{a}")), None)
        if relay is not None:
            control = self.run_dir / "linkemu-control.json"
            current = json.loads(control.read_text()) if control.exists() else {}
            emulated = self.emulated(relay[0], params)
            current[relay[0]] = {f: getattr(emulated, f) for f in sorted(allowed)}
            control.write_text(json.dumps(current))
            os.kill(self.linkemu.pid, signal.SIGHUP)
        elif self.mode == tc.USERSPACE:
            raise ValueError(f"set_link: link {a}-{b} was built without a delay line "
                             "(give it a delay in the scenario to change it at run time)")
        else:
            for link in self.net.linksBetween(self.net.get(a), self.net.get(b)):
                for intf in (link.intf1, link.intf2):
                    intf.link_params = params
                    intf.cmd(f"tc qdisc del dev {intf.name} root")
                    intf.apply_shaping()
        return params

    # -- helpers for callers ----------------------------------------------------------
    def host(self, name: str):
        return self.net.get(name)

    def linkemu_stats(self) -> dict | None:
        return read_linkemu_stats(self.run_dir)


def read_linkemu_stats(net_dir: Path) -> dict | None:
    """The link emulator's counters, written when it stops (None: no emulator ran)."""
    path = Path(net_dir) / "linkemu-stats.json"
    return json.loads(path.read_text()) if path.exists() else None


def _bridge_ready(bridge: str) -> bool:
    """Connected to its controller and holding at least the table-miss flow."""
    try:
        return bridge_connected(bridge) and "priority=0" in dump_flows(bridge)
    except OvsError:
        return False
