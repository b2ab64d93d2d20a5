"""What a run changes on the machine is put back: the TCP congestion controls allowed in
namespaces (widened for the hosts' own), and Open vSwitch's PMD sleep keys, also by
``testbed clean`` after a killed run."""

from __future__ import annotations

import json

import pytest

from testbed.emu import kernel, ovs, residue


@pytest.fixture
def allowed(tmp_path, monkeypatch):
    f = tmp_path / "tcp_allowed_congestion_control"
    f.write_text("reno bbr\n")
    monkeypatch.setattr(kernel, "ALLOWED_CC", f)
    return f


def test_a_congestion_control_not_allowed_is_added_then_put_back(allowed):
    before = kernel.allow_congestion_control("cubic")
    assert before == "reno bbr"
    assert allowed.read_text().split() == ["reno", "bbr", "cubic"]
    kernel.restore_allowed(before)
    assert allowed.read_text().split() == ["reno", "bbr"]


def test_an_allowed_one_changes_nothing(allowed):
    assert kernel.allow_congestion_control("bbr") is None
    kernel.restore_allowed(None)
    assert allowed.read_text().split() == ["reno", "bbr"]


def test_clean_puts_back_what_a_killed_run_widened(allowed, tmp_path, monkeypatch):
    state = tmp_path / "state"
    state.mkdir()
    monkeypatch.setattr(residue, "STATE_DIR", state)
    monkeypatch.setattr(residue, "labeled_pids", lambda run: set())
    monkeypatch.setattr(residue, "labeled_bridges", lambda run: [])
    monkeypatch.setattr(residue, "labeled_links", lambda run: [])
    monkeypatch.setattr(ovs, "release_left_pmd_sleep", lambda: [])
    before = kernel.allow_congestion_control("cubic")
    (state / "r1.json").write_text(json.dumps({"run": "r1", "tcp_allowed_before": before}))
    (state / "r2.json").write_text("{not json")
    assert sorted(residue.clean()["states"]) == ["r1", "r2"]
    assert allowed.read_text().split() == ["reno", "bbr"]


def test_clean_removes_the_pmd_sleep_keys_a_killed_network_left(monkeypatch):
    removed: list = []
    monkeypatch.setattr(ovs.shutil, "which", lambda name: "/usr/bin/" + name)
    monkeypatch.setattr(ovs, "_setting", lambda column, key: (
        "pmd-maxsleep;pmd-sleep-max" if (column, key) == ("external_ids", ovs.PMD_SLEEP_MARK)
        else None))
    monkeypatch.setattr(ovs, "release_pmd_sleep", removed.append)
    assert ovs.release_left_pmd_sleep() == ["pmd-maxsleep", "pmd-sleep-max"]
    assert removed == [["pmd-maxsleep", "pmd-sleep-max"]]
    monkeypatch.setattr(ovs, "_setting", lambda column, key: None)
    assert ovs.release_left_pmd_sleep() == [] and removed[-1] == []
