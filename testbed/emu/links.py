"""Mininet link and interface classes for the testbed's one link type.

A link is shaped the same way in both modes (htb rate on each end's egress, with a
lower-priority class for prefetch pushes; offloads off); delay, jitter and loss come from
netem on the same interfaces, or, in userspace mode, from the link emulator sitting
between two veth pairs:

    node1:intf1 <-veth-> relay_a (root ns)  [linkemu]  relay_b (root ns) <-veth-> node2:intf2
"""

from __future__ import annotations

from mininet.link import Intf, Link
from mininet.util import quietRun

from testbed.core.spec import LinkParams
from testbed.emu import tc


class ShapingError(RuntimeError):
    """A tc or ip command that should have worked did not."""


def _check(output: str, cmd: str, where: str) -> None:
    if output.strip():
        raise ShapingError(f"{where}: '{cmd}' failed: {output.strip()}")


class EmuIntf(Intf):
    """An interface with offloads off and the link's egress shaping applied."""

    def config(self, link_params: LinkParams | None = None, mode: str = tc.USERSPACE,
               **params):
        result = super().config(**params)
        self.cmd(tc.offload_command(self.name))
        self.link_params = link_params or LinkParams()
        self.mode = mode
        self.apply_shaping()
        return result

    def apply_shaping(self) -> None:
        """(Re)install the egress qdiscs; Open vSwitch drops them when it adds a port."""
        for cmd in tc.tc_commands(self.name, self.link_params, self.mode):
            _check(self.cmd(cmd), cmd, f"{self.node.name}:{self.name}")

    def shaping_problems(self) -> list[str]:
        """What of the link's plan (qdiscs, htb classes, push filter) this interface lacks."""
        plan = tc.shaping_plan(self.link_params, self.mode)
        if not plan.qdiscs:
            return []
        classes = self._tc_show("class") if plan.classes else ""
        filters = self._tc_show("filter") if plan.filters else ""
        return tc.shaping_problems(plan, self._tc_show("qdisc"), classes, filters)

    def _tc_show(self, part: str) -> str:
        return self.cmd(f"tc {part} show dev {self.name}")

    def shaping_in_place(self) -> bool:
        """True when everything the link needs is installed on this interface."""
        return not self.shaping_problems()


class EmuLink(Link):
    """A Mininet link; with ``relays=(a, b)`` it is two veth pairs meeting in the root ns."""

    def __init__(self, node1, node2, relays: tuple[str, str] | None = None, **params):
        self.relays = relays
        params["intf"] = EmuIntf
        super().__init__(node1, node2, **params)

    def makeIntfPair(self, intfname1, intfname2, addr1=None, addr2=None,  # noqa: N802
                     node1=None, node2=None, deleteIntfs=True):  # noqa: N803
        if not self.relays:
            return Link.makeIntfPair(intfname1, intfname2, addr1, addr2, node1, node2,
                                     deleteIntfs=deleteIntfs)
        relay_a, relay_b = self.relays
        for relay, name, addr, node in ((relay_a, intfname1, addr1, node1),
                                        (relay_b, intfname2, addr2, node2)):
            address = f" address {addr}" if addr else ""
            cmd = (f"ip link add name {relay} type veth peer name {name}{address} "
                   f"netns {node.pid}")
            _check(quietRun(cmd), cmd, "relay")
            for cmd in (f"ip link set dev {relay} up", f"ip link set dev {relay} mtu 1500"):
                _check(quietRun(cmd), cmd, "relay")
            quietRun(tc.offload_command(relay))
        return None

    def delete(self):
        super().delete()
        for relay in self.relays or ():
            quietRun(f"ip link del {relay}")
