#!/usr/bin/env bash
# Build the check VM's disk image (run as root; vm/check.sh calls it when its cache lacks one):
#   vm/build-image.sh DIR    write DIR/root.img (ext4), DIR/vmlinuz, DIR/initrd.img
# A Debian 12 root file system made by mmdebstrap from Debian's packages, with the project's
# Python environment in /opt/venv, installed from wheels built on this machine (the guest
# needs no network), and an init that runs vm/guest.sh from the host's share.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DIR="${1:?usage: vm/build-image.sh DIR}"
MIRROR="${MESHCAST_VM_MIRROR:-http://deb.debian.org/debian}"
SECURITY="${MESHCAST_VM_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"

[ "$(id -u)" -eq 0 ] || die "build-image.sh: must run as root"
WORK="$(mktemp -d "$(dirname "$DIR")/build.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

# Wheels for the guest's /usr/bin/python3 (Debian's 3.11, the same as this machine's), made
# from a copy of the tree so that nothing is built inside the repository.
copy_source "$REPO" "$WORK/src"
say "building wheels for the guest's Python environment"
(cd "$WORK" && nice -n 19 /usr/bin/python3 -m pip wheel -q --disable-pip-version-check \
    --wheel-dir "$WORK/wheels" "$WORK/src[dev]" setuptools wheel) 2>&1 \
    | grep -v "is neither a file nor a directory" || true
ls "$WORK"/wheels/os_ken-*.whl >/dev/null 2>&1 || die "no wheels were built (pip wheel failed)"

mapfile -t packages < <(guest_packages)
say "building the Debian $SUITE root file system (mmdebstrap, ${#packages[@]} packages and their dependencies)"
nice -n 19 mmdebstrap --mode=root --variant=minbase --quiet \
    --aptopt='APT::Install-Recommends "false"' \
    --include="$(IFS=,; echo "${packages[*]}")" \
    --customize-hook="bash '$VM_DIR/customize.sh' \"\$1\" '$WORK'" \
    "$SUITE" "$WORK/root" \
    "deb $MIRROR $SUITE main" "deb $MIRROR $SUITE-updates main" \
    "deb $SECURITY $SUITE-security main" </dev/null

mkdir -p "$WORK/out"
kernel="$(ls "$WORK"/root/boot/vmlinuz-* | sort -V | tail -n 1)"
release="${kernel##*/vmlinuz-}"
cp "$kernel" "$WORK/out/vmlinuz"
cp "$WORK/root/boot/initrd.img-$release" "$WORK/out/initrd.img"
used_mb="$(du -sm "$WORK/root" | cut -f1)"
size_mb=$(( used_mb + 3072 ))
say "making the ext4 image (${used_mb} MB used, ${size_mb} MB in all)"
nice -n 19 mkfs.ext4 -q -F -L meshcast-root -d "$WORK/root" "$WORK/out/root.img" "${size_mb}M"
{
    echo "key $(image_key)"
    echo "built $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "kernel $release"
    chroot "$WORK/root" dpkg-query -W -f='${Package} ${Version}\n'
} > "$WORK/out/manifest.txt"

rm -rf "$DIR"
mv "$WORK/out" "$DIR"
say "image ready in $DIR"
