"""Run os-ken apps: ``python -m testbed.ctlmain --port 6653 [--host 127.0.0.1]
[--tls DIR] APP...``.

os-ken ships no manager command; this is the few lines that replace ``ryu-manager``.
APP is a short name from :data:`APPS` (``l2``) or a path to an app file.  The
controller listens on a loopback address only; with ``--tls DIR`` (the files
:func:`testbed.emu.tls.make_pki` wrote there) it speaks OpenFlow over TLS only, and
requires the switches' certificate.  Blocks until the process is killed.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import sys
from pathlib import Path
from typing import Optional

#: Short app names -> file in ``controllers/``.
APPS = {"l2": "l2_proactive.py", "multicast": "multicast.py", "mesh": "mesh.py",
        "api": "meshcast_api.py"}

DEFAULT_PORT = 6653
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def controllers_dir() -> Path:
    """Where the app files live (the ``controllers`` package, installed or not)."""
    import controllers

    return Path(controllers.__file__).resolve().parent


def resolve_app(app: str) -> str:
    """Short name or path -> absolute path of an app file; ValueError if none."""
    if app in APPS:
        path = controllers_dir() / APPS[app]
    else:
        path = Path(app)
        if path.suffix != ".py":
            known = ", ".join(sorted(APPS))
            raise ValueError(f"app {app!r}: not a known name ({known}) nor a .py file")
    if not path.is_file():
        raise ValueError(f"app {app!r}: {path} does not exist")
    return str(path.resolve())


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m testbed.ctlmain", description=__doc__)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help=f"OpenFlow TCP port (default {DEFAULT_PORT})")
    parser.add_argument("--host", default="127.0.0.1",
                        help="loopback address to listen on (default 127.0.0.1)")
    parser.add_argument("--tls", type=Path, default=None, metavar="DIR",
                        help="OpenFlow over TLS with the run's certificates in DIR")
    parser.add_argument("apps", nargs="+", metavar="APP",
                        help=f"app short name ({', '.join(sorted(APPS))}) or path")
    args = parser.parse_args(argv)
    try:
        if not ipaddress.ip_address(args.host).is_loopback:
            parser.error(f"--host {args.host}: must be a loopback address")
    except ValueError:
        parser.error(f"--host {args.host!r}: not an IP address")
    if not 1 <= args.port <= 65535:
        parser.error(f"--port {args.port}: must be in 1..65535")
    try:
        args.paths = [resolve_app(app) for app in args.apps]
    except ValueError as exc:
        parser.error(str(exc))
    return args


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, stream=sys.stderr)

    from os_ken.lib import hub

    hub.patch(thread=False)
    from os_ken import cfg
    from os_ken.base.app_manager import AppManager

    if args.tls is None:
        listen = ["--ofp-tcp-listen-port", str(args.port)]
    else:
        from testbed.emu.tls import TlsFiles

        listen = TlsFiles.at(args.tls).controller_args(args.port)
    cfg.CONF(args=[*listen, "--ofp-listen-host", args.host], project="os_ken")
    logging.getLogger("testbed.ctlmain").info(
        "starting on %s %s:%d with apps %s", "ssl" if args.tls else "tcp", args.host,
        args.port, " ".join(args.paths))
    AppManager.run_apps(args.paths)
    return 0


if __name__ == "__main__":
    sys.exit(main())
