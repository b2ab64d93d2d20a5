#!/usr/bin/env bash
# Inside the check VM, as root (the image's init runs it from the host's share):
# the netem link mode and the Open vSwitch kernel datapath, for real.
#   1. copy the shared tree to /opt/meshcast (the share stays read-only; the image's venv
#      /opt/venv has the project installed in editable mode from there);
#   2. load sch_netem and openvswitch, run vagrant/provision.sh (everything is in the image
#      already: it starts Open vSwitch and finds the rest in place);
#   3. run the netem cases of the link tests and the controller tests (links: netem, since
#      the kernel has it; bridges: datapath_type=system, since it has the module);
#   4. bring up one network and keep its tc tree and kernel datapath flows (vm/evidence.py).
# Everything it writes goes to /mnt/out, the host's VM_OUT; pytest's exit status to
# /mnt/out/pytest.rc.
set -uo pipefail

SHARE=/mnt/repo
OUT=/mnt/out
REPO=/opt/meshcast
export MESHCAST_VENV=/opt/venv
PY="$MESHCAST_VENV/bin/python"

say() { printf '[guest %s] %s\n' "$(date +%T)" "$*"; }
die() { say "$*"; exit 1; }

# Settings from the host: MESHCAST_TIMING_SLACK (under TCG), VM_PYTEST_ARGS.
# shellcheck source=/dev/null
[ -f "$OUT/guest.env" ] && . "$OUT/guest.env"
TESTS=(tests/integration/test_tc_apply.py tests/integration/test_fidelity.py
       tests/integration/test_push_class.py
       tests/integration/test_controller_ovs.py tests/integration/test_multicast_ovs.py
       tests/integration/test_mesh_ovs.py)
# the link tests' netem cases (their userspace cases run on the host), all controller tests
SELECT="netem or ovs"

say "kernel $(uname -r), $(nproc) CPUs, accel ${MESHCAST_VM_ACCEL:-?}, timing slack ${MESHCAST_TIMING_SLACK:-1}"
rm -rf "$REPO"
mkdir -p "$REPO"
(cd "$SHARE" && tar --exclude=./.git --exclude=./.venv --exclude=./vm/out --exclude=./runs \
    --exclude=./results --exclude='*.egg-info' --exclude=./.pytest_cache \
    --exclude=./.ruff_cache --exclude=./.hypothesis --exclude=__pycache__ -cf - .) \
    | (cd "$REPO" && tar -xf -) || die "copying the tree failed"

# every 2 minutes, the newest processes, on the console: where a slow step is (and if these
# lines stop, the whole guest stopped)
( while sleep 120; do
      say "running: $(ps -eo etimes=,stat=,wchan:16=,args= --sort=start_time \
                     | grep -Ev ' (ps|grep|tail|cut|tr|paste|sleep) |vm/guest.sh' \
                     | tail -n 2 | cut -c1-110 | tr -s ' ' | paste -sd '|')"
  done ) &
HEARTBEAT=$!
trap 'kill "$HEARTBEAT" 2>/dev/null' EXIT

for mod in sch_netem sch_htb cls_u32 openvswitch; do
    modprobe "$mod" || die "modprobe $mod failed"
done
bash "$REPO/vagrant/provision.sh" || die "vagrant/provision.sh failed"
{ echo "# lsmod"; lsmod; echo; echo "# ovs-vsctl --version"; ovs-vsctl --version; } \
    > "$OUT/guest-kernel.txt" 2>&1

cd "$REPO" || exit 1
say "pytest ${TESTS[*]} -k '$SELECT' ${VM_PYTEST_ARGS:-}"
# shellcheck disable=SC2086 # VM_PYTEST_ARGS is a list of words
"$MESHCAST_VENV/bin/pytest" -v --durations=0 -p no:cacheprovider --basetemp=/tmp/pytest \
    --junitxml="$OUT/junit.xml" -o junit_logging=all -o junit_family=xunit1 \
    -k "$SELECT" ${VM_PYTEST_ARGS:-} "${TESTS[@]}" 2>&1 | tee "$OUT/pytest.log"
rc=${PIPESTATUS[0]}
echo "$rc" > "$OUT/pytest.rc"
say "pytest exit status $rc"

say "evidence: one network up, its tc tree and the kernel datapath's flows"
"$PY" "$REPO/vm/evidence.py" "$OUT/evidence" 2>&1 | tee "$OUT/evidence.log"
say "evidence exit status ${PIPESTATUS[0]}"
sync
exit "$rc"
