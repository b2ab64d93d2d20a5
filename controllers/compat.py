"""One set of controller-framework names for app files, from os-ken or else Ryu.

os-ken is Ryu's maintained fork with the same API under other names (``os_ken``,
``OSKenApp``).  App files import from here only, so they run under either framework.
Importing this module also puts the repository root on ``sys.path``, so an app file
loaded by path (``ryu-manager controllers/l2_proactive.py``) can import ``testbed``.
"""

from __future__ import annotations

import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

try:
    from os_ken.base import app_manager
    from os_ken.base.app_manager import OSKenApp as BaseApp
    from os_ken.controller import ofp_event
    from os_ken.controller.handler import CONFIG_DISPATCHER, MAIN_DISPATCHER, set_ev_cls
    from os_ken.lib import hub
    from os_ken.ofproto import ofproto_v1_3

    FRAMEWORK = "os_ken"
except ImportError:  # pragma: no cover - exercised only where Ryu is installed
    from ryu.base import app_manager  # type: ignore[no-redef]
    from ryu.base.app_manager import RyuApp as BaseApp  # type: ignore[no-redef]
    from ryu.controller import ofp_event  # type: ignore[no-redef]
    from ryu.controller.handler import (  # type: ignore[no-redef]
        CONFIG_DISPATCHER,
        MAIN_DISPATCHER,
        set_ev_cls,
    )
    from ryu.lib import hub  # type: ignore[no-redef]
    from ryu.ofproto import ofproto_v1_3  # type: ignore[no-redef]

    FRAMEWORK = "ryu"

__all__ = [
    "BaseApp",
    "CONFIG_DISPATCHER",
    "FRAMEWORK",
    "MAIN_DISPATCHER",
    "app_manager",
    "hub",
    "ofp_event",
    "ofproto_v1_3",
    "set_ev_cls",
]
