"""Shared test set-up: integration tests need root, Mininet and Open vSwitch."""

import os

import pytest


def pytest_collection_modifyitems(config, items):
    """Integration tests are root-only; elsewhere they are skipped with the reason."""
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root (Mininet, Open vSwitch): run `sudo make test`")
    for item in items:
        if "integration" in item.keywords:
            item.add_marker(skip)
