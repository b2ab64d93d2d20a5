"""The OpenFlow channel over TLS (scenario ``controller: {tls: true}``): the switches reach
the controller at ``ssl:`` with the run's own certificates, the controller programs them
(hosts reach each other), a plain-TCP OpenFlow client gets no OpenFlow from it, and Open
vSwitch's SSL settings are gone when the network stops."""

from __future__ import annotations

import socket
import struct
import subprocess

import pytest
from nets import small_net

from testbed.emu.network import TestbedNetwork
from testbed.scenario import loads_scenario

pytestmark = pytest.mark.integration

OFP_HELLO = struct.pack("!BBHI", 4, 0, 8, 1)  # OpenFlow 1.3 hello, xid 1


def vsctl(*args: str) -> str:
    return subprocess.run(["ovs-vsctl", *args], capture_output=True, text=True,
                          check=True).stdout.strip()


def test_the_switches_talk_to_the_controller_over_tls_only(run_dir):
    sc = loads_scenario("topology: {generator: line}\ncontroller: {tls: true}\n")
    assert sc.controller.tls and sc.to_dict()["controller"] == {"tls": True}
    spec = small_net({("s1", "s2"): 1.0}, {"m1": "s1", "h1": "s2", "h2": "s2"})
    with TestbedNetwork(spec, run_dir, tls=sc.controller.tls) as tn:
        port = tn.controller.port
        for sw in tn.net.switches:
            assert vsctl("get-controller", sw.name) == f"ssl:127.0.0.1:{port}"
        assert vsctl("--bare", "--columns=is_connected", "list", "controller").split() == [
            "true", "true"]
        ssl = vsctl("get-ssl")
        assert str(run_dir / "tls" / "switch-key.pem") in ssl
        assert oct((run_dir / "tls" / "switch-key.pem").stat().st_mode & 0o777) == "0o600"
        # the controller programmed the switches: every host reaches every other
        assert tn.net.pingAll(timeout=2) == 0.0
        # a client without TLS gets no OpenFlow answer from the controller
        with socket.create_connection(("127.0.0.1", port), timeout=3) as s:
            s.sendall(OFP_HELLO)
            try:
                got = s.recv(64)
            except (TimeoutError, ConnectionResetError):
                got = b""
        assert not got.startswith(b"\x04\x00"), got
    assert vsctl("get-ssl") == ""
