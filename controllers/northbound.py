"""The northbound API over HTTP: a WSGI callable in front of a ``NorthboundState``.

os-ken 4.2 ships no ``os_ken.app.wsgi`` (Ryu's REST framework), and its default native
hub has no WSGI server, so this module brings the two small pieces it needs:

* :class:`NorthboundController`, a plain WSGI application: it reads the method, the
  path and at most ``max_body + 1`` bytes of body, asks the pure
  :class:`~testbed.core.northbound.NorthboundState`, and writes the JSON answer.  All
  requests (and anything else that touches the state, see :attr:`lock`) run under one
  lock, since the server's threads and the controller's event loop share the state;
* :class:`WSGIApplication`, an app context (``_CONTEXTS = {"wsgi": WSGIApplication}``)
  that owns one controller and, once the app manager starts its apps, serves it with
  the standard library's WSGI server on 127.0.0.1 only, port ``MESHCAST_API_PORT``
  (default 8080).  An app calls ``kwargs["wsgi"].register(state)`` in its ``__init__``.

Providers and listeners run in a server thread, under :attr:`WSGIApplication.lock`: an
app that changes what they read from its event loop takes the same lock, and a listener
with slow work (sending flows) hands it to the event loop rather than doing it there.
"""

from __future__ import annotations

import logging
import os
import socketserver
import threading
from collections.abc import Iterable, Mapping
from http import HTTPStatus
from typing import Any, Callable, Optional
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

try:
    from controllers import compat
except ImportError:  # loaded by path: the manager has put controllers/ on sys.path
    import compat  # type: ignore[no-redef]  # and compat adds the repository root

from testbed.core.northbound import NorthboundError, NorthboundState, encode

API_PORT_ENV = "MESHCAST_API_PORT"
DEFAULT_API_PORT = 8080
API_HOST = "127.0.0.1"

LOG = logging.getLogger("northbound")

StartResponse = Callable[..., Any]


def api_port(environ: Mapping[str, str] = os.environ) -> int:
    """The API's TCP port from ``MESHCAST_API_PORT`` (default 8080; 0 picks a free one)."""
    text = environ.get(API_PORT_ENV, "").strip()
    if not text:
        return DEFAULT_API_PORT
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise ValueError(f"{API_PORT_ENV}={text!r}: must be a port number in 0..65535")
    return port


class NorthboundController:
    """WSGI application answering the northbound API from one registered state."""

    def __init__(self, state: Optional[NorthboundState] = None,
                 lock: Optional[threading.RLock] = None):
        self.state = state
        #: Held while a request runs; hold it too when changing the state from elsewhere.
        self.lock = lock or threading.RLock()

    def __call__(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "") or "/"
        headers: list[tuple[str, str]] = []
        try:
            with self.lock:
                status, doc = self._answer(environ, method, path)
                if status == 405 and self.state is not None:
                    headers.append(("Allow", ", ".join(self.state.allowed_methods(path))))
            body = encode(doc)
        except Exception:  # the API must never take the controller down
            LOG.exception("northbound: %s %s failed", method, path)
            status = 500
            body = encode({"error": "internal error (see the controller log)"})
            headers = []
        if status >= 400:
            LOG.info("northbound: %s %s -> %d", method, path, status)
        headers += [("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                    ("Cache-Control", "no-store")]
        start_response(f"{status} {HTTPStatus(status).phrase}", headers)
        return [body]

    def _answer(self, environ: dict, method: str, path: str) -> tuple[int, dict]:
        state = self.state
        if state is None:
            return 503, {"error": "the northbound API has no controller state yet"}
        body = b""
        if method == "PUT":
            try:
                body = self._read_body(environ, state.max_body)
            except NorthboundError as exc:
                return exc.response()
        return state.handle(method, path, body)

    @staticmethod
    def _read_body(environ: dict, max_body: int) -> bytes:
        """At most ``max_body + 1`` bytes: enough for the state to tell "too large"."""
        text = (environ.get("CONTENT_LENGTH") or "0").strip()
        if not text.isdigit():
            raise NorthboundError(400, f"Content-Length: {text[:20]!r} (must be a "
                                       "non-negative integer)")
        length = min(int(text), max_body + 1)
        stream = environ.get("wsgi.input")
        return stream.read(length) if length and stream is not None else b""


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    """The standard WSGI server, one thread per request, no reverse DNS at start."""

    daemon_threads = True

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]
        self.setup_environ()


class _Handler(WSGIRequestHandler):
    """Request logging goes to the controller log, not to stderr."""

    def log_message(self, format: str, *args: Any) -> None:
        LOG.debug("northbound: %s %s", self.address_string(), format % args)


def make_server(controller: NorthboundController, port: int,
                host: str = API_HOST) -> WSGIServer:
    """A bound (not yet serving) server for ``controller`` on ``host:port`` (loopback)."""
    if host != API_HOST:
        raise ValueError(f"northbound API host {host!r}: only {API_HOST} is allowed")
    server = _Server((host, port), _Handler)
    server.set_app(controller)
    return server


class WSGIApplication(compat.BaseApp):
    """App context ``"wsgi"``: one :class:`NorthboundController`, served on loopback from
    the time the app manager starts the apps until it stops them."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.controller = NorthboundController()
        self.server: Optional[WSGIServer] = None
        self._serving = False

    def register(self, state: NorthboundState) -> NorthboundController:
        """Serve ``state``; one state per controller process (a second one is an error)."""
        if self.controller.state is not None and self.controller.state is not state:
            raise RuntimeError("northbound: a state is already registered; one per process")
        self.controller.state = state
        return self.controller

    @property
    def lock(self) -> threading.RLock:
        """The lock requests run under (take it to change the state from the app)."""
        return self.controller.lock

    @property
    def port(self) -> Optional[int]:
        """The port being served (None before :meth:`start`)."""
        return None if self.server is None else self.server.server_address[1]

    def start(self) -> Any:
        """Bind 127.0.0.1 and serve; a port already taken stops the controller (exit 2).

        Returns the serving thread, which the app manager waits on: the API alone
        (without an OpenFlow app) keeps the controller process running.
        """
        try:  # before any thread of ours exists, so that exiting here really exits
            self.server = make_server(self.controller, api_port())
        except (OSError, ValueError) as exc:
            self.logger.error("northbound: cannot listen on %s:%s (%s)", API_HOST,
                              os.environ.get(API_PORT_ENV, DEFAULT_API_PORT), exc)
            raise SystemExit(2) from None
        super().start()
        thread = compat.hub.spawn(self.server.serve_forever)
        self.threads.append(thread)
        self._serving = True
        self.logger.info("northbound: serving on http://%s:%d/", API_HOST, self.port)
        return thread

    def stop(self) -> None:
        """Stop serving, then stop the app's event loop."""
        if self.server is not None:
            if self._serving:
                self.server.shutdown()
            self.server.server_close()
            self._serving = False
        super().stop()
