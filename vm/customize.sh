#!/usr/bin/env bash
# mmdebstrap's customize hook for the check VM's image (see vm/build-image.sh):
#   customize.sh ROOT WORK
# ROOT is the new root file system, WORK the build directory with src/ (a copy of the
# tree) and wheels/.  Installs the init, and the project's venv at /opt/venv for the tree
# at /opt/meshcast, where vm/guest.sh puts the current tree at every boot.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROOT="$1"
WORK="$2"
in_root() { chroot "$ROOT" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 "$@"; }

install -m 0755 "$VM_DIR/init.sh" "$ROOT/usr/local/sbin/meshcast-vm-init"
echo meshcast-vm > "$ROOT/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 meshcast-vm\n' > "$ROOT/etc/hosts"

copy_source "$WORK/src" "$ROOT/opt/meshcast"
rm -rf "$ROOT/opt/meshcast/build"
mkdir -p "$ROOT/tmp/wheels"
cp "$WORK"/wheels/*.whl "$ROOT/tmp/wheels/"

say "installing the project's Python environment in /opt/venv (from wheels, no network)"
in_root /usr/bin/python3 -m venv --system-site-packages /opt/venv
in_root /opt/venv/bin/pip install -q --disable-pip-version-check --no-index \
    --find-links /tmp/wheels -e '/opt/meshcast[dev]'
# what vagrant/provision.sh checks to find the environment up to date
sha256sum "$ROOT/opt/meshcast/pyproject.toml" | cut -c1-16 > "$ROOT/opt/venv/.meshcast-installed"
in_root /opt/venv/bin/python -c "import mininet.net, os_ken, testbed, pytest"
rm -rf "$ROOT/tmp/wheels" "$ROOT/root/.cache"
