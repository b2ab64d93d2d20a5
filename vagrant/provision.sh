#!/usr/bin/env bash
# One idempotent set-up step for meshcast-testbed (run as root).
#   vagrant/provision.sh           install Debian packages, start Open vSwitch, make .venv
#   vagrant/provision.sh --smoke   the same, then run the smoke tests (the Vagrant VM does this)
# A second run finds everything in place and takes seconds.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${MESHCAST_VENV:-$REPO/.venv}"
source "$REPO/vagrant/debian.sh"

say() { printf '[setup] %s\n' "$*"; }

if [ "$(id -u)" -ne 0 ]; then
    echo "setup: must run as root (try: sudo make setup)" >&2
    exit 1
fi

ensure_packages setup "${TESTBED_PACKAGES[@]}" "${MEDIA_PACKAGES[@]}" \
    || say "Debian packages present"

# Open vSwitch: kernel datapath where the module exists, else the userspace datapath
# (the testbed chooses per bridge); the daemons are the same.
modprobe -q openvswitch 2>/dev/null || say "no openvswitch kernel module: bridges will use the userspace datapath"
if ovs-vsctl --timeout=5 show >/dev/null 2>&1; then
    say "Open vSwitch running"
else
    say "starting Open vSwitch"
    if [ -d /run/systemd/system ]; then
        systemctl start openvswitch-switch || true
    fi
    if ! ovs-vsctl --timeout=5 show >/dev/null 2>&1; then
        /usr/share/openvswitch/scripts/ovs-ctl start --system-id=random >/dev/null 2>&1 || true
    fi
    ovs-vsctl --timeout=10 show >/dev/null || { echo "setup: Open vSwitch did not start" >&2; exit 1; }
fi

# Python: a venv that sees Debian's mininet module.
STAMP="$VENV/.meshcast-installed"
WANT="$(sha256sum "$REPO/pyproject.toml" | cut -c1-16)"
if [ ! -x "$VENV/bin/python" ]; then
    say "creating $VENV"
    /usr/bin/python3 -m venv --system-site-packages "$VENV"
fi
if [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
    say "installing the project and its Python dependencies"
    "$VENV/bin/pip" install -q --disable-pip-version-check -e "$REPO[dev]"
    echo "$WANT" > "$STAMP"
else
    say "Python environment up to date"
fi
"$VENV/bin/python" -c "import mininet.net, os_ken, testbed" || { echo "setup: imports failed" >&2; exit 1; }

if [ "${1:-}" = "--smoke" ]; then
    say "smoke tests"
    cd "$REPO" && "$VENV/bin/pytest" -q -m smoke tests
fi
say "ready"
