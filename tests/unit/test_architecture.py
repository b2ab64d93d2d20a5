"""The one rule of the architecture: the core is pure."""

import ast
from pathlib import Path

CORE = Path(__file__).resolve().parents[2] / "testbed" / "core"
FORBIDDEN = {"mininet", "os_ken", "ryu", "socket", "subprocess", "select", "threading",
             "asyncio", "testbed.emu", "testbed.nodes", "testbed.sim", "testbed.harness",
             "controllers"}
CLOCK_CALLS = {"time", "monotonic", "time_ns", "monotonic_ns", "perf_counter", "now",
               "utcnow", "sleep"}


def _imports(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module


def test_core_imports_nothing_impure():
    files = sorted(CORE.rglob("*.py"))
    assert files, "no core modules found"
    bad = []
    for f in files:
        for mod in _imports(ast.parse(f.read_text())):
            if any(mod == x or mod.startswith(x + ".") for x in FORBIDDEN):
                bad.append(f"{f.name}: {mod}")
    assert not bad, bad


def test_core_never_reads_the_clock():
    bad = []
    for f in sorted(CORE.rglob("*.py")):
        for node in ast.walk(ast.parse(f.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and isinstance(node.func.value, ast.Name)
                    and node.func.value.id in {"time", "datetime"}
                    and node.func.attr in CLOCK_CALLS):
                bad.append(f"{f.name}:{node.lineno}")
    assert not bad, bad
