"""Which port type userspace bridges get: XDP where it pays, works and fits in memory."""

import pytest

from testbed.emu import network as N


@pytest.fixture
def xdp_here(monkeypatch):
    monkeypatch.delenv(N.PORTS_ENV, raising=False)
    monkeypatch.setattr(N, "has_xdp_sockets", lambda: True)
    monkeypatch.setattr(N, "interface_types", lambda: {"system", N.XDP_PORT_TYPE})
    monkeypatch.setattr(N, "available_mb", lambda: 20_000.0)


def test_xdp_ports_on_the_userspace_datapath_with_userspace_links(xdp_here):
    assert N.switch_port_type("user", "userspace", ports=40) == N.XDP_PORT_TYPE


@pytest.mark.parametrize("datapath,mode", [("kernel", "userspace"), ("kernel", "netem"),
                                           ("user", "netem")])
def test_af_packet_ports_elsewhere(xdp_here, datapath, mode):
    # a kernel bridge has no port types to choose; netem qdiscs on a switch port would be
    # passed by an XDP socket
    assert N.switch_port_type(datapath, mode, ports=4) == ""


def test_system_ports_when_asked(xdp_here, monkeypatch):
    monkeypatch.setenv(N.PORTS_ENV, "system")
    assert N.switch_port_type("user", "userspace", ports=4) == ""


def test_a_mistyped_choice_is_one_clear_error(xdp_here, monkeypatch):
    monkeypatch.setenv(N.PORTS_ENV, "xdp")
    with pytest.raises(ValueError, match="MESHCAST_SWITCH_PORTS='xdp'"):
        N.switch_port_type("user", "userspace")


def test_too_many_ports_for_memory_fall_back_with_a_note(xdp_here, capsys):
    ports = int(0.25 * 20_000 / N.XDP_PORT_MB) + 1
    assert N.switch_port_type("user", "userspace", ports=ports) == ""
    assert "would lock" in capsys.readouterr().err


def test_no_xdp_here(monkeypatch, xdp_here, capsys):
    monkeypatch.setattr(N, "has_xdp_sockets", lambda: False)
    assert N.switch_port_type("user", "userspace", ports=4) == ""
    assert "no afxdp ports" in capsys.readouterr().err
    monkeypatch.setenv(N.PORTS_ENV, "afxdp")
    with pytest.raises(RuntimeError, match="afxdp"):
        N.switch_port_type("user", "userspace", ports=4)


def test_main_thread_xdp_ports_when_asked(xdp_here, monkeypatch):
    monkeypatch.setattr(N, "interface_types", lambda: {"system", "afxdp", "afxdp-nonpmd"})
    monkeypatch.setenv(N.PORTS_ENV, "afxdp-nonpmd")
    assert N.switch_port_type("user", "userspace", ports=4) == "afxdp-nonpmd"
    monkeypatch.setattr(N, "interface_types", lambda: {"system", "afxdp"})
    with pytest.raises(RuntimeError, match="no afxdp-nonpmd ports"):
        N.switch_port_type("user", "userspace", ports=4)


class FakeOvs:
    """ovs-vsctl's Open_vSwitch other_config and external_ids, in memory."""

    def __init__(self, config: dict[str, str], ids: dict[str, str] | None = None):
        self.config = dict(config)
        self.ids = dict(ids or {})

    def column(self, name: str) -> dict[str, str]:
        return {"other_config": self.config, "external_ids": self.ids}[name]

    def __call__(self, *args: str, timeout: float = 30.0) -> str:
        if args[:4] == ("--if-exists", "get", "Open_vSwitch", "."):
            column, _, key = args[4].partition(":")
            value = self.column(column).get(key)
            return "" if value is None else f'"{value}"\n'
        if args[:3] == ("set", "Open_vSwitch", "."):
            for item in args[3:]:
                column, _, rest = item.partition(":")
                key, _, value = rest.partition("=")
                self.column(column)[key] = value.strip('"')
            return ""
        if args[:3] == ("remove", "Open_vSwitch", "."):
            self.column(args[3]).pop(args[4], None)
            return ""
        raise AssertionError(args)


def test_pmd_sleep_is_set_for_the_network_and_removed_after(monkeypatch):
    from testbed.emu import ovs

    fake = FakeOvs({"emc-insert-inv-prob": "100"})
    monkeypatch.setattr(ovs, "vsctl", fake)
    us, keys = ovs.claim_pmd_sleep()
    assert us == ovs.PMD_SLEEP_US == 100
    assert fake.config == {"emc-insert-inv-prob": "100", "pmd-maxsleep": "100",
                           "pmd-sleep-max": "100"}
    assert fake.ids == {ovs.PMD_SLEEP_MARK: "pmd-maxsleep;pmd-sleep-max"}
    ovs.release_pmd_sleep(keys)
    assert fake.config == {"emc-insert-inv-prob": "100"} and fake.ids == {}


def test_keys_a_killed_network_left_are_removed_by_the_next_one(monkeypatch):
    from testbed.emu import ovs

    fake = FakeOvs({})
    monkeypatch.setattr(ovs, "vsctl", fake)
    ovs.claim_pmd_sleep()  # ... and the network is killed before its stop
    us, keys = ovs.claim_pmd_sleep()
    assert us == 100 and keys == list(ovs.PMD_SLEEP_KEYS)
    ovs.release_pmd_sleep(keys)
    assert fake.config == {} and fake.ids == {}


def test_a_pmd_sleep_the_owner_set_is_kept(monkeypatch):
    from testbed.emu import ovs

    fake = FakeOvs({"pmd-sleep-max": "0"})
    monkeypatch.setattr(ovs, "vsctl", fake)
    assert ovs.claim_pmd_sleep() == (0, [])
    ovs.release_pmd_sleep([])
    assert fake.config == {"pmd-sleep-max": "0"}
