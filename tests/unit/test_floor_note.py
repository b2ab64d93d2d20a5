"""Loading a scenario that asks for less delay than the switches add says so in one line."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from testbed import cli
from testbed.emu import switchprobe

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def userspace_here(monkeypatch, tmp_path):
    monkeypatch.setattr("testbed.emu.kernel.has_netem", lambda: False)
    monkeypatch.setattr(switchprobe, "has_ovs_module", lambda: False)
    monkeypatch.setattr(switchprobe, "FLOOR_CACHE", tmp_path / "none.json")
    console = Console(record=True, width=400)
    monkeypatch.setattr(cli, "err", console)
    return console


def _scenario(tmp_path: Path, access_ms: float) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(f"name: s\ntopology:\n  generator: tiered\n  params:\n"
                    f"    regions: 2\n    access_delay_ms: {access_ms}\n")
    return path


def test_zero_delay_links_next_to_userspace_switches_are_told(userspace_here, tmp_path):
    cli._load(_scenario(tmp_path, 0))
    text = userspace_here.export_text()
    assert text.count("\n") == 1 and "ask for less one-way delay" in text
    assert "userspace switches, nominal" in text and "h1-s2" in text


def test_the_default_scenario_asks_for_nothing_below_the_floor(userspace_here):
    cli._load(ROOT / "experiments" / "default.yaml")
    assert userspace_here.export_text() == ""


def test_the_last_measurement_here_is_used(userspace_here, tmp_path, monkeypatch):
    cache = tmp_path / "floor.json"
    cache.write_text('{"datapath": "user", "median_ms": 2.5}')
    monkeypatch.setattr(switchprobe, "FLOOR_CACHE", cache)
    cli._load(ROOT / "experiments" / "default.yaml")  # 1 ms links, 2.5 ms switches
    text = userspace_here.export_text()
    # a host link gives up half a switch
    assert "as last measured here" in text and "up to 1.25 ms" in text


def test_nothing_is_said_on_a_kernel_datapath(userspace_here, tmp_path, monkeypatch):
    monkeypatch.setattr(switchprobe, "has_ovs_module", lambda: True)
    cli._load(_scenario(tmp_path, 0))
    assert userspace_here.export_text() == ""
