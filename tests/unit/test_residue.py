"""Residue snapshots read what iproute2 prints, including its quirks."""

import subprocess

from testbed.emu import residue


def _ip_prints(monkeypatch, text: str) -> None:
    monkeypatch.setattr(residue, "_run", lambda cmd: subprocess.CompletedProcess(cmd, 0, text, ""))


def test_veths_lists_the_veth_names(monkeypatch):
    _ip_prints(monkeypatch, '[{"ifindex": 7, "ifname": "s1-eth1"}, '
                            '{"ifindex": 9, "ifname": "h1-eth0"}]')
    assert residue.veths() == {"s1-eth1", "h1-eth0"}


def test_veths_skips_the_empty_objects_of_filtered_out_links(monkeypatch):
    # iproute2 6.1 on Debian 12's kernel, no veth present: one {} per other link
    _ip_prints(monkeypatch, "[{}]")
    assert residue.veths() == set()
    _ip_prints(monkeypatch, '[{}, {"ifindex": 7, "ifname": "s1-eth1"}, {}]')
    assert residue.veths() == {"s1-eth1"}


def test_veths_of_no_output_is_empty(monkeypatch):
    _ip_prints(monkeypatch, "")
    assert residue.veths() == set()
