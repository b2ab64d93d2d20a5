"""The northbound API's WSGI shim and app, driven in-process: no sockets are opened."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

with warnings.catch_warnings():  # webob 1.8 imports the deprecated cgi module
    warnings.simplefilter("ignore", DeprecationWarning)
    from webob import Request

from controllers.meshcast_api import MeshcastApi, load_view, mesh_degree
from controllers.northbound import (
    API_PORT_ENV,
    DEFAULT_API_PORT,
    NorthboundController,
    WSGIApplication,
    api_port,
    make_server,
)
from testbed.core.l2 import NetView, TopologyError
from testbed.core.northbound import NorthboundState

REPO = Path(__file__).resolve().parents[2]
API_APP = REPO / "controllers" / "meshcast_api.py"
TIERS = {"h1": 1, "h2": 2, "h3": 2}


def topology() -> dict:
    """s1 - s2 - s3 in a line, a helper on each, a viewer on s3."""
    switches = {f"s{i}": {"dpid": i, "ports": {f"s{i}-eth{p}": p for p in (1, 2, 3, 4)}}
                for i in (1, 2, 3)}
    placed = [("h1", "helper", "s1", 1), ("h2", "helper", "s2", 1), ("h3", "helper", "s3", 1),
              ("v1", "viewer", "s3", 2)]
    hosts = {name: {"ip": f"10.0.0.{n}", "mac": f"00:00:00:00:00:{n:02x}", "switch": sw,
                    "port": port, "role": role}
             for n, (name, role, sw, port) in enumerate(placed, start=1)}
    links = [{"a": "s1", "a_port": 3, "b": "s2", "b_port": 3, "delay_ms": 2.0, "bw_mbit": 10},
             {"a": "s2", "a_port": 4, "b": "s3", "b_port": 3, "delay_ms": 3.0}]
    return {"switches": switches, "hosts": hosts, "links": links}


@pytest.fixture
def app() -> NorthboundController:
    return NorthboundController(NorthboundState(NetView.from_dict(topology())))


def call(app: NorthboundController, path: str, method: str = "GET", body: object = None,
         raw: bytes | None = None):
    req = Request.blank(path, method=method)
    if raw is not None or body is not None:
        req.body = raw if raw is not None else json.dumps(body).encode()
    return req.get_response(app)


def test_get_answers_json(app: NorthboundController) -> None:
    resp = call(app, "/health")
    assert resp.status == "200 OK" and resp.content_type == "application/json"
    assert resp.headers["Cache-Control"] == "no-store"
    assert int(resp.headers["Content-Length"]) == len(resp.body)
    assert resp.json["status"] == "ok" and resp.json["helpers"] == 3


def test_put_changes_the_state(app: NorthboundController) -> None:
    resp = call(app, "/mesh/neighbours/h1", "PUT", {"neighbours": ["h2", "h3"]})
    assert resp.status_int == 200 and resp.json["peers"] == ["h2", "h3"]
    assert call(app, "/mesh/neighbours").json["pairs"] == [["h1", "h2"], ["h1", "h3"]]
    resp = call(app, "/tiers", "PUT", {"tiers": TIERS, "version": 4})
    assert resp.json == {"version": 4, "tiers": TIERS, "previous_version": 0}


def test_topology_nulls_unknown_capacity(app: NorthboundController) -> None:
    links = call(app, "/topology").json["links"]
    assert [(k["a"], k["b"], k["avail_mbit"]) for k in links] == [("s1", "s2", 10.0),
                                                                  ("s2", "s3", None)]


@pytest.mark.parametrize("path, method, body, raw, status, fragment", [
    ("/mesh/neighbours/h1", "PUT", None, b'{"neighbours": [', 400, "body: not valid JSON"),
    ("/mesh/neighbours/h1", "PUT", {"neighbours": [3]}, None, 400, "neighbours[0]: must be"),
    ("/mesh/neighbours/h1", "PUT", {"neighbours": ["h7"]}, None, 404, "unknown host 'h7'"),
    ("/mesh/neighbours/h7", "GET", None, None, 404, "helper: unknown host 'h7'"),
    ("/mesh/neighbours/h1", "PUT", {"neighbours": ["h1"]}, None, 422, "is the helper itself"),
    ("/tiers", "PUT", {"tiers": {"h1": 1}}, None, 422, "missing helper h2, h3"),
    ("/multicast/10.1.1.1", "GET", None, None, 422, "not a multicast address"),
    ("/nowhere", "GET", None, None, 404, "no such resource '/nowhere'"),
])
def test_refusals_are_4xx_with_a_message(app: NorthboundController, path: str, method: str,
                                         body: object, raw: bytes | None, status: int,
                                         fragment: str) -> None:
    resp = call(app, path, method, body, raw)
    assert resp.status_int == status and fragment in resp.json["error"]
    assert call(app, "/health").json["mesh_pairs"] == 0  # and the state is as it was


def test_wrong_method_has_an_allow_header(app: NorthboundController) -> None:
    resp = call(app, "/tiers", "DELETE")
    assert resp.status == "405 Method Not Allowed" and resp.headers["Allow"] == "GET, PUT"
    assert "method 'DELETE' not allowed on '/tiers'" in resp.json["error"]


class CountingStream(io.BytesIO):
    """A request body that records how much of it was read."""

    def __init__(self, data: bytes):
        super().__init__(data)
        self.asked = 0

    def read(self, size: int = -1) -> bytes:
        self.asked += size if size >= 0 else len(self.getvalue())
        return super().read(size)


def test_oversize_body_is_413_and_read_only_up_to_the_limit() -> None:
    state = NorthboundState(NetView.from_dict(topology()), max_body=64)
    app = NorthboundController(state)
    stream = CountingStream(b"x" * 100_000)
    req = Request.blank("/tiers", method="PUT")
    req.environ.update({"wsgi.input": stream, "CONTENT_LENGTH": "100000"})
    resp = req.get_response(app)
    assert resp.status == "413 Request Entity Too Large"
    assert "larger than the limit of 64 bytes" in resp.json["error"]
    assert stream.asked == 65


@pytest.mark.parametrize("length", ["abc", "-5", "1e3"])
def test_bad_content_length_is_400(app: NorthboundController, length: str) -> None:
    req = Request.blank("/tiers", method="PUT")
    req.environ["CONTENT_LENGTH"] = length
    resp = req.get_response(app)
    assert resp.status_int == 400 and "Content-Length" in resp.json["error"]


def test_missing_body_on_put_is_400(app: NorthboundController) -> None:
    resp = call(app, "/tiers", "PUT")
    assert resp.status_int == 400 and resp.json["error"] == "body: empty (expected a JSON object)"


def test_no_state_yet_is_503() -> None:
    resp = call(NorthboundController(), "/health")
    assert resp.status_int == 503 and "no controller state" in resp.json["error"]


def test_an_unexpected_fault_is_500_and_the_api_keeps_answering() -> None:
    state = NorthboundState(NetView.from_dict(topology()),
                            paths=lambda: {"paths": object()})  # not JSON
    app = NorthboundController(state)
    resp = call(app, "/paths")
    assert resp.status_int == 500 and "internal error" in resp.json["error"]
    assert call(app, "/health").status_int == 200


def test_the_wsgi_callable_directly(app: NorthboundController) -> None:
    seen: list = []
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/tiers", "wsgi.input": io.BytesIO()}
    chunks = app(environ, lambda status, headers: seen.append((status, dict(headers))))
    assert seen[0][0] == "200 OK" and seen[0][1]["Content-Type"] == "application/json"
    assert json.loads(b"".join(chunks)) == {"version": 0, "tiers": {}}


# --------------------------------------------------------------------------- configuration


def test_api_port_from_the_environment() -> None:
    assert api_port({}) == DEFAULT_API_PORT == 8080
    assert api_port({API_PORT_ENV: " 9090 "}) == 9090
    assert api_port({API_PORT_ENV: "0"}) == 0
    for bad in ("http", "-1", "65536", "80.5"):
        with pytest.raises(ValueError, match=f"{API_PORT_ENV}='{bad}'"):
            api_port({API_PORT_ENV: bad})


def test_server_listens_on_loopback_only(app: NorthboundController) -> None:
    for host in ("0.0.0.0", "10.0.0.1", "::"):
        with pytest.raises(ValueError, match="only 127.0.0.1"):
            make_server(app, 8080, host)


def test_context_registers_one_state() -> None:
    wsgi = WSGIApplication()
    state = NorthboundState(NetView.from_dict(topology()))
    controller = wsgi.register(state)
    assert controller is wsgi.controller and wsgi.register(state) is controller
    assert wsgi.lock is controller.lock and wsgi.port is None
    with pytest.raises(RuntimeError, match="already registered"):
        wsgi.register(NorthboundState(NetView.from_dict(topology())))
    assert Request.blank("/health").get_response(controller).status_int == 200


# --------------------------------------------------------------------------- the app


@pytest.fixture
def topology_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "topology.json"
    path.write_text(json.dumps(topology()))
    monkeypatch.setenv("MESHCAST_TOPOLOGY", str(path))
    monkeypatch.delenv("MESHCAST_MESH_DEGREE", raising=False)
    return path


def test_app_serves_the_topology_and_repaths_the_mesh(topology_file: Path) -> None:
    wsgi = WSGIApplication()
    MeshcastApi(wsgi=wsgi)
    app = wsgi.controller
    assert call(app, "/health").json["helpers"] == 3
    assert call(app, "/mesh/neighbours").json["k"] == 3
    assert call(app, "/mesh/neighbours/h3", "PUT", {"neighbours": ["h1"]}).status_int == 200
    assert call(app, "/paths").json == {"paths": [
        {"a": "h1", "b": "h3", "path": ["h1", "s1", "s2", "s3", "h3"], "delay_ms": 5.0}]}
    assert call(app, "/tiers", "PUT", {"tiers": TIERS}).json["version"] == 1
    assert call(app, "/mesh/neighbours/h3", "PUT", {"neighbours": []}).status_int == 200
    assert call(app, "/paths").json == {"paths": []}


def test_app_logs_a_failing_listener(topology_file: Path,
                                     caplog: pytest.LogCaptureFixture) -> None:
    wsgi = WSGIApplication()
    api = MeshcastApi(wsgi=wsgi)

    def broken(change: object) -> None:
        raise RuntimeError("boom")

    api.state.add_listener(broken)
    with caplog.at_level(logging.ERROR):
        assert call(wsgi.controller, "/tiers", "PUT", {"tiers": TIERS}).status_int == 200
    failed = [r for r in caplog.records if "failed on TierChange" in r.getMessage()]
    assert len(failed) == 1 and failed[0].exc_info[0] is RuntimeError


def test_app_degree_from_the_environment(topology_file: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MESHCAST_MESH_DEGREE", "1")
    wsgi = WSGIApplication()
    MeshcastApi(wsgi=wsgi)
    resp = call(wsgi.controller, "/mesh/neighbours/h2", "PUT", {"neighbours": ["h1", "h3"]})
    assert resp.status_int == 422 and "k=1" in resp.json["error"]
    assert mesh_degree({}) == 3
    with pytest.raises(ValueError, match="MESHCAST_MESH_DEGREE='0'"):
        mesh_degree({"MESHCAST_MESH_DEGREE": "0"})


@pytest.mark.parametrize("env", [{"MESHCAST_TOPOLOGY": ""}, {"MESHCAST_MESH_DEGREE": "x"},
                                 {"MESHCAST_TOPOLOGY": "/nonexistent/topology.json"}])
def test_app_exits_on_bad_configuration(topology_file: Path, monkeypatch: pytest.MonkeyPatch,
                                        env: dict) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SystemExit) as info:
        MeshcastApi(wsgi=WSGIApplication())
    assert info.value.code == 2


def test_load_view_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "topology.json"
    bad.write_text("{")
    with pytest.raises(TopologyError, match=f"{bad}: topology: not valid JSON"):
        load_view(str(bad))


def test_app_file_loads_by_path_with_its_context(tmp_path: Path) -> None:
    """As the app manager loads it (``ctlmain controllers/meshcast_api.py``), from elsewhere."""
    code = (
        "import sys\n"
        "sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in repr(f)]\n"
        f"sys.path[:] = [p for p in sys.path if p not in ('', {str(REPO)!r})]\n"
        "from os_ken.base.app_manager import AppManager\n"
        "mgr = AppManager()\n"
        f"mgr.load_apps([{str(API_APP)!r}])\n"
        "print(sorted(c.__name__ for c in mgr.applications_cls.values()),"
        " {k: c.__name__ for k, c in mgr.contexts_cls.items()})\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['MeshcastApi'] {'wsgi': 'WSGIApplication'}"
