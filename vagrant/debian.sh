# shellcheck shell=bash
# Sourced by vagrant/provision.sh (make setup) and vm/check.sh (make vm-check): the Debian
# packages the testbed runs on, and one way of installing whichever are missing.

TESTBED_PACKAGES=(mininet openvswitch-switch iperf3 ethtool iproute2 iputils-ping tcpdump
                  python3-venv python3-pip python3-networkx python3-yaml kmod procps git make)
# Real media (testbed.media): make setup installs these too; the check VM does not need them.
MEDIA_PACKAGES=(ffmpeg fonts-dejavu-core)

# ensure_packages TAG PKG...: installs the packages that are not installed (apt-get,
# non-interactive, without recommends) and says which, prefixed by [TAG]; silent when all
# are present, and returns whether anything was installed (0) or not (1).
ensure_packages() {
    local tag="$1" p missing=()
    shift
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
            || missing+=("$p")
    done
    [ "${#missing[@]}" -gt 0 ] || return 1
    printf '[%s] installing Debian packages: %s\n' "$tag" "${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
}
