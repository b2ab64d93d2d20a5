"""The event contract (testbed.core.records): the daemons write only declared record kinds
and fields, the readers filter only on declared kinds, and a segment's source is typed."""

import ast
import json
import re
from pathlib import Path

import pytest

from testbed.core import cache, metrics
from testbed.core import records as R
from testbed.core.records import KINDS, Root, Source

ROOT = Path(__file__).resolve().parents[2] / "testbed"
#: Where event records are written: the daemons and the harness (``events.write``), and
#: the nodes' pure logic (``Record`` effects).
WRITERS = sorted([*(ROOT / "nodes").glob("*.py"), *(ROOT / "harness").rglob("*.py"),
                  *(ROOT / "core" / "node").glob("*.py")])
READERS = [ROOT / "core" / "metrics.py", ROOT / "harness" / "results.py",
           *sorted((ROOT / "harness" / "report").glob("*.py"))]
#: A literal first argument that looks like a kind: ``f.write("at,idle\n")`` does not.
KIND_LIKE = re.compile(r"[a-z][a-z0-9_]*")

#: Helpers that make a ``Record`` effect from ``(kind, **fields)``, seen as writes.
RECORD_HELPERS = {"_record"}
#: Records whose kind is not a literal or a records constant, by (file, function): the
#: pass-throughs (a driver writing a ``Record`` effect, a record helper), whose callers are
#: checked instead.  Each one added here escapes the contract and must be checked by hand.
DYNAMIC_KINDS = {("nodes/master.py", "apply"), ("nodes/helper.py", "apply"),
                 ("nodes/viewer.py", "apply"), ("core/node/helper.py", "_record")}
#: Mappings spread into a record (``**fields``), by (file, kind): allowed only on open
#: kinds (Kind.extra says what they carry).
SPREADS = {("nodes/common.py", "started"), ("nodes/engine.py", "engine_summary"),
           ("nodes/engine.py", "model"), ("nodes/helper.py", "cache"),
           ("core/node/helper.py", "cache"), ("core/node/viewer.py", "player"),
           ("core/node/viewer.py", "qoe")}
MAX_DYNAMIC = 12


def _constant(node: ast.AST) -> str | None:
    """A kind given as a literal, ``R.SERVE`` / ``records.SERVE`` or a bare ``SERVE``
    (resolved against testbed.core.records), else None."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    name = (node.attr if isinstance(node, ast.Attribute)
            else node.id if isinstance(node, ast.Name) else None)
    if name and name.isupper() and isinstance(getattr(R, name, None), str):
        return getattr(R, name)
    return None


def _receiver(node: ast.AST) -> str | None:
    """``events`` for ``events.write``, ``self.events.write``, ``self.host.events.write``."""
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Name):
        return node.id
    return None


def _dict_fields(node: ast.AST | None) -> tuple[list[str], int] | None:
    """Field names of a literal ``{...}`` or ``dict(...)`` and how many ``**`` spreads it
    has; None when the fields are not written out (a variable)."""
    if isinstance(node, ast.Dict):
        names = [k.value for k in node.keys
                 if isinstance(k, ast.Constant) and isinstance(k.value, str)]
        if len(names) + sum(k is None for k in node.keys) != len(node.keys):
            return None
        return names, sum(k is None for k in node.keys)
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id == "dict" and not node.args):
        return ([k.arg for k in node.keywords if k.arg],
                sum(k.arg is None for k in node.keywords))
    return None


class Write:
    def __init__(self, path: Path, line: int, func: str, kind: str | None,
                 fields: list[str] | None, spreads: int):
        self.file, self.line, self.func = path.relative_to(ROOT).as_posix(), line, func
        self.kind, self.fields, self.spreads = kind, fields, spreads

    def __repr__(self) -> str:
        return f"{self.file}:{self.line} ({self.func}) {self.kind!r}"


def _functions(tree: ast.AST) -> dict[ast.AST, str]:
    """Each call node -> the name of the innermost function around it."""
    out: dict[ast.AST, str] = {}

    def visit(node: ast.AST, func: str) -> None:
        for child in ast.iter_child_nodes(node):
            name = child.name if isinstance(child, (ast.FunctionDef,
                                                    ast.AsyncFunctionDef)) else func
            out[child] = name
            visit(child, name)

    visit(tree, "<module>")
    return out


def scan(path: Path) -> list[Write]:
    """Every event record written in ``path``: ``<...>events.write(kind, **fields)``, a
    ``.write("kind", ...)`` on any other receiver, ``Record(kind, {fields})`` and
    ``_record(kind, **fields)``."""
    tree = ast.parse(path.read_text(), str(path))
    where = _functions(tree)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        callee = _receiver(f)
        if callee == "write" or callee in RECORD_HELPERS:
            first = node.args[0] if node.args else None
            literal = (isinstance(first, ast.Constant) and isinstance(first.value, str)
                       and KIND_LIKE.fullmatch(first.value))
            if (callee == "write" and isinstance(f, ast.Attribute)
                    and _receiver(f.value) != "events" and not literal):
                continue  # a file, a manifest: not an event log
            fields = [k.arg for k in node.keywords if k.arg]
            spreads = sum(k.arg is None for k in node.keywords)
            kind = _constant(first) if first is not None and len(node.args) == 1 else None
            found.append(Write(path, node.lineno, where.get(node, "?"), kind, fields,
                               spreads))
        elif callee == "Record":
            args = {**dict(zip(("kind", "fields"), node.args)),
                    **{k.arg: k.value for k in node.keywords if k.arg}}
            kind = _constant(args["kind"]) if "kind" in args else None
            got = _dict_fields(args.get("fields"))
            fields, spreads = got if got is not None else (None, 0)
            found.append(Write(path, node.lineno, where.get(node, "?"), kind, fields,
                               spreads))
    return found


@pytest.fixture(scope="module")
def writes() -> list[Write]:
    return [w for path in WRITERS for w in scan(path)]


def test_the_scan_sees_the_daemons_write(writes):
    """Not a vacuous pass: the writers are found (serve, qoe, egress ...)."""
    kinds = {w.kind for w in writes}
    assert len(writes) >= 40
    assert {R.SERVE, R.QOE, R.EGRESS, R.TRAFFIC, R.REQUEST} <= kinds
    assert {w.file for w in writes} >= {f"nodes/{d}.py" for d in
                                        ("helper", "master", "viewer", "common", "engine")}


def test_every_written_kind_and_field_is_declared(writes):
    bad = []
    for w in writes:
        if w.kind is None:
            continue
        decl = KINDS.get(w.kind)
        if decl is None:
            bad.append(f"{w}: undeclared kind")
            continue
        bad += [f"{w}: undeclared field {f!r}" for f in w.fields or () if not decl.allows(f)]
        if w.spreads and not decl.open:
            bad.append(f"{w}: spreads a mapping into a closed kind")
    assert not bad, "\n".join(bad)


def test_dynamic_records_are_few_and_listed(writes):
    kinds = {(w.file, w.func) for w in writes if w.kind is None}
    spreads = {(w.file, w.kind) for w in writes if w.kind is not None and w.spreads}
    opaque = [w for w in writes if w.kind is not None and w.fields is None]
    assert kinds <= DYNAMIC_KINDS, f"kinds the contract cannot see: {kinds - DYNAMIC_KINDS}"
    assert spreads <= SPREADS, f"new mappings spread into records: {spreads - SPREADS}"
    assert not opaque, f"Record fields the contract cannot see: {opaque}"
    assert len(kinds) + len(spreads) <= MAX_DYNAMIC


def test_every_kind_has_its_constant_and_is_well_formed():
    assert len(KINDS) >= 40
    for name, k in KINDS.items():
        assert k.name == name and getattr(R, name.upper()) == name
        assert k.doc and k.writers
        assert not set(k.fields) & set(R.COMMON_FIELDS)
        assert all(KIND_LIKE.fullmatch(f) for f in k.fields), name
        assert k.allows("node") and k.allows("at") and k.allows("kind")
    assert type(R.SERVE) is str


def _read_kinds(path: Path) -> set[str | None]:
    """Kinds a reader filters on: ``_of(records, KIND)`` and ``r.get("kind") == KIND``,
    and the kinds of ``for kind, ... in ((KIND, ...), ...)`` loops feeding ``_of``."""
    got: set[str | None] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                and node.func.id == "_of" and len(node.args) == 2:
            arg = node.args[1]
            if not (isinstance(arg, ast.Name) and arg.id == "kind"):
                got.add(_constant(arg))
        elif isinstance(node, ast.Compare) and isinstance(node.left, ast.Call) \
                and _receiver(node.left.func) == "get" \
                and [_constant(a) for a in node.left.args] == ["kind"] \
                and isinstance(node.ops[0], ast.Eq):
            other = node.comparators[0]
            if isinstance(other, ast.Name) and not other.id.isupper():
                continue  # _of's own filter, on its argument
            value = _constant(other)
            if value != "compare":  # report/collection.py: a meta kind, not a record
                got.add(value)
        elif isinstance(node, ast.For) and isinstance(node.target, ast.Tuple) \
                and ast.unparse(node.target.elts[0]) == "kind" \
                and isinstance(node.iter, ast.Tuple):
            got |= {_constant(e.elts[0]) for e in node.iter.elts if isinstance(e, ast.Tuple)}
    return got


def test_readers_filter_only_on_declared_kinds():
    read = {p.name: _read_kinds(p) for p in READERS}
    assert read["metrics.py"] == {R.SERVE, R.REQUEST, R.REQUEST_FAILED, R.QOE, R.TRAFFIC,
                                  R.EGRESS, R.MESH_RX, R.PUSH, R.UPSTREAM_SERVE}
    assert {R.INVALIDATED, R.TIERS, R.ROUTING, R.NEIGHBOURS} <= read["results.py"]
    for name, kinds in read.items():
        assert None not in kinds, f"{name}: a kind the test cannot resolve"
        assert kinds <= set(KINDS), f"{name}: undeclared {kinds - set(KINDS)}"


def test_the_tables_read_declared_fields():
    """The fields metrics copies from a record into a table are the declared ones."""
    def declared(kind):
        return set(KINDS[kind].fields) | set(R.COMMON_FIELDS)

    serve = set(metrics.REQUEST_COLUMNS) - {"helper", "warmup"}  # helper: the node
    assert serve <= declared(R.SERVE)
    assert set(metrics.PUSH_COLUMNS) - {"warmup"} <= declared(R.PUSH)
    assert set(metrics.TRAFFIC_COLUMNS) <= declared(R.TRAFFIC)
    hops = set(metrics.HOP_COLUMNS) - {"helper", "warmup"}
    assert hops <= declared(R.MESH_RX)
    qoe = {c for c in metrics.VIEWER_COLUMNS if not c.startswith("bytes")} - {"warmup"}
    assert qoe <= declared(R.QOE)
    asks = set(metrics.ASK_COLUMNS) - {"answered", "warmup"}
    assert asks <= declared(R.REQUEST)
    assert "by_cls" in declared(R.EGRESS) and "bytes_by_source" in declared(R.QOE)


def test_source_round_trips():
    for s in Source:
        assert Source(s.value) is s and str(s) == s.value and f"{s}" == s.value
        assert json.loads(json.dumps({"source": s})) == {"source": s.value}
        assert s.is_cache == s.value.startswith("cache_") == R.is_cache(s)
    for r in Root:
        assert Root(r.value) is r and str(r) == r.value
    assert Source.cached("prefetch") is Source.CACHE_PREFETCH
    assert [Source.cached(o) for o in ("prefetch", "tree", "mesh", "live")] == [
        Source.CACHE_PREFETCH, Source.CACHE_TREE, Source.CACHE_MESH, Source.CACHE_LIVE]
    assert {o for o in cache.ORIGINS if o != "origin"} == {
        s.value.removeprefix(R.CACHE_PREFIX) for s in Source if s.is_cache}
    with pytest.raises(ValueError):
        Source("cache")


def test_the_metrics_sources_are_the_typed_ones():
    assert metrics.REQUEST_SOURCES == ("cache_prefetch", "cache_tree", "cache_mesh",
                                       "cache_live", "tree", "mesh", "origin")
    assert all(type(s) is str for s in metrics.REQUEST_SOURCES)
    for s in [*Source, "cache_other", "cache", "?", None, 3]:
        assert metrics.is_cache_source(s) == (isinstance(s, str) and s.startswith("cache_"))
    assert metrics.is_offload_source(Source.MESH) and not metrics.is_offload_source("tree")
