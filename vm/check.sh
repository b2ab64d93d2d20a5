#!/usr/bin/env bash
# `make vm-check` (run as root): the netem link mode and the Open vSwitch kernel datapath,
# executed for real in a Debian 12 guest with its stock kernel, for machines whose own
# kernel has neither sch_netem nor the openvswitch module.
#   vm/check.sh
# 1. installs what it needs here (qemu-system-x86, qemu-utils, mmdebstrap, e2fsprogs,
#    python3-pip) when missing;
# 2. builds the guest image once (vm/build-image.sh: Debian packages by mmdebstrap, the
#    project's venv from wheels), cached in $MESHCAST_VM_CACHE/image-KEY, KEY a hash of the
#    package list, the build scripts and pyproject.toml;
# 3. boots it under QEMU on a fresh qcow2 overlay, with KVM if a test boot under KVM comes
#    up, else with TCG; the repository is shared read-only (9p), VM_OUT writable;
# 4. the guest (vm/guest.sh) runs the netem link tests and the controller tests and keeps
#    evidence (a tc tree, the kernel datapath's flows) in VM_OUT;
# 5. vm/verdict.py judges what came back.
# Exit status: the guest's pytest status, or 1 when anything else is wrong (no tests ran,
# netem cases skipped, no evidence, timeout).
#
# Settings (environment):
#   VM_OUT                 evidence directory (default vm/out)
#   MESHCAST_VM_ACCEL      auto (default: KVM if it boots, else TCG) | kvm | tcg
#   MESHCAST_VM_CACHE      image cache (default /var/cache/meshcast-vm)
#   MESHCAST_VM_TIMEOUT    seconds for the whole run, build included (default 1800)
#   MESHCAST_VM_MEM, MESHCAST_VM_CPUS   guest memory in MB and CPUs (default 3072, 2)
#   MESHCAST_TIMING_SLACK  passed to the guest's tests; under TCG it defaults to TCG_SLACK
#   VM_PYTEST_ARGS         extra pytest arguments in the guest (e.g. -x)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$REPO/vagrant/debian.sh"

HOST_PACKAGES=(qemu-system-x86 qemu-utils mmdebstrap e2fsprogs python3-pip)
OUT="$(mkdir -p "${VM_OUT:-$REPO/vm/out}" && cd "${VM_OUT:-$REPO/vm/out}" && pwd)"
CACHE="${MESHCAST_VM_CACHE:-/var/cache/meshcast-vm}"
ACCEL="${MESHCAST_VM_ACCEL:-auto}"
TIMEOUT="${MESHCAST_VM_TIMEOUT:-1800}"
MEM="${MESHCAST_VM_MEM:-3072}"
CPUS="${MESHCAST_VM_CPUS:-2}"
# TCG runs the guest several times slower than the host: the tests' timing tolerances (and
# only those) widen by this factor there (tests/integration/timing_slack.py)
TCG_SLACK=4
KVM_PROBE_S=30
CMDLINE="console=ttyS0 root=/dev/vda rw fsck.mode=skip init=/usr/local/sbin/meshcast-vm-init panic=1 quiet"

[ "$(id -u)" -eq 0 ] || die "must run as root (try: sudo make vm-check)"
case "$ACCEL" in auto|kvm|tcg) ;; *) die "MESHCAST_VM_ACCEL=$ACCEL: use auto, kvm or tcg" ;; esac
DEADLINE=$(( SECONDS + TIMEOUT ))
remaining() { echo $(( DEADLINE - SECONDS )); }

ensure_packages vm "${HOST_PACKAGES[@]}" || true

mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock -w "$(remaining)" 9 || die "another vm-check holds $CACHE/.lock"
rm -rf "$CACHE"/build.* "$CACHE"/run.*  # left by a run that was killed
RUN="$(mktemp -d "$CACHE/run.XXXXXX")"
QEMU_PID=""
TAIL_PID=""

stop_qemu() {
    if [ -n "$QEMU_PID" ] && kill -0 "$QEMU_PID" 2>/dev/null; then
        kill "$QEMU_PID" 2>/dev/null || true
        for _ in 1 2 3 4 5 6 7 8 9 10; do
            kill -0 "$QEMU_PID" 2>/dev/null || break
            sleep 0.5
        done
        kill -9 "$QEMU_PID" 2>/dev/null || true
    fi
    QEMU_PID=""
}
cleanup() {
    stop_qemu
    if [ -n "$TAIL_PID" ]; then kill "$TAIL_PID" 2>/dev/null || true; fi
    rm -rf "$RUN"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
# what an earlier run left in VM_OUT (and nothing else there)
rm -rf "$OUT"/{console.log,guest.env,guest-kernel.txt,junit.xml,pytest.log,pytest.rc} \
       "$OUT"/{evidence,evidence.log,qemu.log,verdict.txt,timing.txt}

# -- the image -----------------------------------------------------------------------------
KEY="$(image_key)"
IMAGE="$CACHE/image-$KEY"
t_build=$SECONDS
if [ -f "$IMAGE/manifest.txt" ]; then
    say "guest image $IMAGE (cached)"
else
    say "building the guest image $IMAGE (once for this package list and these scripts)"
    timeout "$(remaining)" bash "$VM_DIR/build-image.sh" "$IMAGE"
    # older images, and the KVM answers kept for them
    find "$CACHE" -maxdepth 1 \( -name 'image-*' ! -name "image-$KEY" -o -name 'kvm-*' \) \
        -exec rm -rf {} +
fi
t_build=$(( SECONDS - t_build ))

# -- one boot ------------------------------------------------------------------------------
# boot ACCEL SERIAL_LOG SECONDS DRIVE_OPTS APPEND [qemu args...]: start QEMU in the
# background (QEMU_PID) and wait until it stops or SECONDS pass (then kill it: status 124)
boot() {
    local accel="$1" serial="$2" seconds="$3" drive="$4" append="$5" cpu=max
    shift 5
    [ "$accel" = kvm ] && cpu=host
    # nice: the host's own measurements come first; pdeathsig: QEMU dies with this script
    # even when it is killed too hard to run its trap
    nice -n 19 setpriv --pdeathsig KILL \
        qemu-system-x86_64 -name meshcast-vm -machine q35 -accel "$accel" -cpu "$cpu" \
        -display none -monitor none -serial "file:$serial" -no-reboot -nic none \
        -kernel "$IMAGE/vmlinuz" -initrd "$IMAGE/initrd.img" -append "$append" \
        -drive "$drive" "$@" </dev/null >>"$OUT/qemu.log" 2>&1 &
    QEMU_PID=$!
    local until=$(( SECONDS + seconds ))
    while kill -0 "$QEMU_PID" 2>/dev/null; do
        if [ "$SECONDS" -ge "$until" ]; then
            stop_qemu
            return 124
        fi
        sleep 1
    done
    local rc=0
    wait "$QEMU_PID" || rc=$?
    QEMU_PID=""
    return "$rc"
}

kvm_boots() {
    [ -r /dev/kvm ] && [ -w /dev/kvm ] || return 1
    local memo
    memo="$CACHE/kvm-$( { uname -r; qemu-system-x86_64 --version | head -n 1; echo "$KEY"; } \
        | sha256sum | cut -c1-16)"
    if [ ! -f "$memo" ]; then
        say "trying a KVM boot (at most $KVM_PROBE_S s)"
        if boot kvm "$RUN/probe.log" "$KVM_PROBE_S" \
                "file=$IMAGE/root.img,format=raw,if=virtio,snapshot=on" \
                "$CMDLINE meshcast.probe" -smp 1 -m 512 \
                && grep -q MESHCAST-VM-UP "$RUN/probe.log"; then
            echo kvm > "$memo"
        else
            echo tcg > "$memo"
        fi
    fi
    [ "$(cat "$memo")" = kvm ]
}

case "$ACCEL" in
    auto) if kvm_boots; then ACCEL=kvm; else ACCEL=tcg; fi ;;
    kvm) [ -w /dev/kvm ] || die "MESHCAST_VM_ACCEL=kvm: no /dev/kvm" ;;
esac
say "accelerator: $ACCEL"

{
    echo "MESHCAST_VM_ACCEL=$ACCEL"
    if [ -n "${MESHCAST_TIMING_SLACK:-}" ]; then
        echo "export MESHCAST_TIMING_SLACK=$(printf '%q' "$MESHCAST_TIMING_SLACK")"
    elif [ "$ACCEL" = tcg ]; then
        echo "export MESHCAST_TIMING_SLACK=$TCG_SLACK"
    fi
    echo "VM_PYTEST_ARGS=$(printf '%q' "${VM_PYTEST_ARGS:-}")"
} > "$OUT/guest.env"

qemu-img create -q -f qcow2 -F raw -b "$IMAGE/root.img" "$RUN/overlay.qcow2"
: > "$OUT/console.log"
tail -n +1 -F "$OUT/console.log" 2>/dev/null &
TAIL_PID=$!
say "booting the guest ($ACCEL, $CPUS CPUs, $MEM MB; at most $(remaining) s)"
t_run=$SECONDS
boot_rc=0
boot "$ACCEL" "$OUT/console.log" "$(remaining)" \
    "file=$RUN/overlay.qcow2,format=qcow2,if=virtio,cache=unsafe" "$CMDLINE" \
    -smp "$CPUS" -m "$MEM" \
    -virtfs "local,path=$REPO,mount_tag=repo,security_model=none,readonly=on" \
    -virtfs "local,path=$OUT,mount_tag=out,security_model=none" || boot_rc=$?
t_run=$(( SECONDS - t_run ))
sleep 1
kill "$TAIL_PID" 2>/dev/null || true
TAIL_PID=""
[ "$boot_rc" -eq 124 ] && say "the guest did not finish within the time limit: stopped"
[ "$boot_rc" -ne 0 ] && [ "$boot_rc" -ne 124 ] && say "QEMU exited with status $boot_rc: $(tail -n 3 "$OUT/qemu.log")"

printf 'accel %s\nimage_build_s %d\nguest_run_s %d\ntotal_s %d\n' \
    "$ACCEL" "$t_build" "$t_run" "$SECONDS" > "$OUT/timing.txt"
status=0
/usr/bin/python3 "$VM_DIR/verdict.py" "$OUT" | tee "$OUT/verdict.txt" || status=${PIPESTATUS[0]}
say "image ${t_build} s, guest ${t_run} s, total ${SECONDS} s; evidence in $OUT"
if [ "$status" -eq 0 ]; then say "vm-check passed"; else say "vm-check FAILED (status $status)"; fi
exit "$status"
