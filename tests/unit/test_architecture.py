"""The one rule of the architecture: the core is pure."""

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[2] / "testbed" / "core"
FORBIDDEN = {"mininet", "os_ken", "ryu", "socket", "subprocess", "select", "threading",
             "asyncio", "logging", "testbed.emu", "testbed.nodes", "testbed.sim",
             "testbed.harness", "testbed.traces", "controllers"}
#: Methods that touch files whatever they are called on: pathlib's, os.open, pandas' readers.
FILE_CALLS = {"open", "read_text", "write_text", "read_bytes", "write_bytes", "read_csv",
              "read_parquet", "read_json", "read_table", "read_excel", "read_pickle"}
#: pandas' writers: file I/O when given a path (without one they return the text or bytes).
WRITER_CALLS = {"to_csv", "to_parquet", "to_json", "to_excel", "to_pickle"}
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


def _touches_files(call: ast.Call) -> bool:
    func = call.func
    if isinstance(func, ast.Name):
        return func.id == "open"
    if not isinstance(func, ast.Attribute):
        return False
    if func.attr in FILE_CALLS:
        return True
    return func.attr in WRITER_CALLS and bool(
        call.args or any(k.arg in ("path", "path_or_buf", "excel_writer") for k in call.keywords))


def file_io(tree: ast.AST) -> list[int]:
    """Lines of ``tree`` that read or write a file (see :data:`FILE_CALLS`)."""
    return [node.lineno for node in ast.walk(tree)
            if isinstance(node, ast.Call) and _touches_files(node)]


def test_core_does_no_file_io():
    bad = [f"{f.name}:{line}" for f in sorted(CORE.rglob("*.py"))
           for line in file_io(ast.parse(f.read_text()))]
    assert not bad, bad


@pytest.mark.parametrize("code", [
    "open('f').read()", "with open(p, 'w') as f: pass", "Path(p).read_text()",
    "p.write_text('x')", "p.read_bytes()", "p.write_bytes(b'')", "p.open()", "os.open(p, 0)",
    "pd.read_csv(p)", "pd.read_parquet(p)", "pd.read_json(p)", "df.to_csv(p, index=False)",
    "df.to_parquet(path=p)", "df.to_json(p)"])
def test_the_file_io_rule_sees(code):
    assert file_io(ast.parse(code)) == [1]


@pytest.mark.parametrize("code", ["df.to_csv(index=False)", "df.to_json()", "s.to_json()",
                                  "Path(p).stem", "p.suffix.lower()"])
def test_the_file_io_rule_lets_pure_calls_be(code):
    assert file_io(ast.parse(code)) == []
