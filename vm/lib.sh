# shellcheck shell=bash
# Shared by vm/check.sh and vm/build-image.sh (sourced, not run).

VM_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$VM_DIR/.." && pwd)"
SUITE=bookworm

# What the guest image holds besides Debian's minimal base: the packages that
# make setup installs (vagrant/debian.sh, shared with vagrant/provision.sh), the kernel
# and its initramfs, and what the image's init and the 9p share need.
VM_EXTRA_PACKAGES=(linux-image-amd64 initramfs-tools tini netbase util-linux)

# The source tree without what a run, a build or a venv leaves in it.
SOURCE_EXCLUDES=(--exclude=./.git --exclude=./.venv --exclude=./vm/out --exclude=./runs
                 --exclude=./results --exclude=./build --exclude=./dist --exclude='*.egg-info'
                 --exclude=./.pytest_cache --exclude=./.ruff_cache --exclude=./.hypothesis
                 --exclude=./benchmarks/out --exclude=./.vagrant --exclude=__pycache__)

say() { printf '[vm] %s\n' "$*"; }
die() { printf 'vm-check: %s\n' "$*" >&2; exit 1; }

# The packages make setup installs (vagrant/debian.sh), one name a line.
provision_packages() {
    (source "$REPO/vagrant/debian.sh" && printf '%s\n' "${TESTBED_PACKAGES[@]}")
}

guest_packages() {
    { provision_packages; printf '%s\n' "${VM_EXTRA_PACKAGES[@]}"; } | sort -u
}

# The cache key of the guest image: everything that goes into it.
image_key() {
    {
        echo "$SUITE"
        guest_packages
        cat "$VM_DIR/build-image.sh" "$VM_DIR/customize.sh" "$VM_DIR/init.sh" "$VM_DIR/lib.sh"
        cat "$REPO/pyproject.toml"
    } | sha256sum | cut -c1-16
}

# Copy the source tree at $1 into the directory $2.
copy_source() {
    mkdir -p "$2"
    (cd "$1" && tar "${SOURCE_EXCLUDES[@]}" -cf - .) | (cd "$2" && tar -xf -)
}
