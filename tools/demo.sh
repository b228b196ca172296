#!/usr/bin/env bash
# The README's main job (issue 9, DESIGN §2/§7): set up, build, start hvd,
# create and start VMs through the gRPC API with hvctl, stream a guest's
# console, hot-attach a (simulated) PCI device to a running VM and watch the
# guest count its interrupts, detach it, stop and delete the VMs — and leave
# nothing running.
#
# hv-hwsim runs as a library inside hvd (docs/management.md); the demo never
# prints results it did not get.
#
#   tools/demo.sh [--keep]   (--keep: leave hvd running at the end)
set -euo pipefail
cd "$(dirname "$0")/.."

KEEP=0
[[ "${1:-}" == "--keep" ]] && KEEP=1

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "setup"
tools/setup.sh

say "build (hvd, hvctl, hv-vmm)"
bazel build //tools/hvd //tools/hvctl //hv/vmm:hv-vmm
BIN="$(bazel info bazel-bin 2>/dev/null)"
HVD="$BIN/tools/hvd/hvd"
HVCTL_BIN="$BIN/tools/hvctl/hvctl"
VMM="$BIN/hv/vmm/hv-vmm"

WORK="$(mktemp -d /tmp/hv-demo.XXXXXX)"
SOCK="$WORK/hvd.sock"
STATE="$WORK/state"
HVD_PID=""
hvctl() { "$HVCTL_BIN" --socket="$SOCK" "$@"; }

cleanup() {
  local rc=$?
  if [[ -n "$HVD_PID" && $KEEP -eq 0 ]] && kill -0 "$HVD_PID" 2>/dev/null; then
    kill -TERM "$HVD_PID" 2>/dev/null || true   # hvd stops every VMM it owns
    wait "$HVD_PID" 2>/dev/null || true
  fi
  if [[ $KEEP -eq 0 ]]; then
    left=$(pgrep -f -- "--state_dir=$STATE" || true)
    if [[ -n "$left" ]]; then
      echo "demo: leftover processes: $left" >&2
      rc=1
    fi
    rm -rf "$WORK"
  fi
  exit $rc
}
trap cleanup EXIT INT TERM

if [[ ! -r /dev/kvm ]]; then
  echo "demo: /dev/kvm is not usable here; hv cannot run guests on this machine." >&2
  exit 1
fi

say "start hvd (socket $SOCK, state $STATE)"
"$HVD" --socket="$SOCK" --state_dir="$STATE" --vmm_path="$VMM" \
  2>"$WORK/hvd.log" &
HVD_PID=$!
for _ in $(seq 1 200); do
  [[ -S "$SOCK" ]] && hvctl vm ls >/dev/null 2>&1 && break
  sleep 0.05
done
hvctl vm ls >/dev/null
echo "hvd running as pid $HVD_PID"

say "create a VM with the built-in guest 'hello' (2 vCPUs, 64 MiB)"
hvctl vm create demo --image=builtin:hello --vcpus=2 --memory_mib=64

say "start it and stream its console through WatchVm"
hvctl vm console demo --events &
CONSOLE_PID=$!
sleep 0.3
hvctl vm start demo >/dev/null
wait "$CONSOLE_PID"
hvctl vm show demo

say "a long-running guest ('idle', halts waiting for interrupts)"
hvctl vm create idle --image=builtin:idle --vcpus=2
hvctl vm start idle

say "host devices (hv-hwsim inside hvd: 4 PCI functions, 2 platform devices)"
hvctl dev ls

say "a VM with the built-in guest 'hotplug-counter' (drives the hot-plug controller)"
hvctl vm create counter --image=builtin:hotplug-counter
hvctl vm start counter >/dev/null
hvctl vm console counter --events &
COUNTER_CONSOLE=$!
sleep 0.5

say "hot-attach 0000:02:00.0 to the running VM; the guest counts its MSIs per vector"
hvctl dev attach counter 0000:02:00.0
sleep 2
hvctl attach ls
hvctl dev ls

say "detach (two-phase: eject request, guest quiesces and acks)"
hvctl dev detach counter 0000:02:00.0
for _ in $(seq 1 100); do
  hvctl attach ls | grep -q '0000:02:00.0' || break
  sleep 0.05
done
hvctl attach ls
hvctl dev ls | head -3

say "stop the counter VM"
hvctl vm stop counter
wait "$COUNTER_CONSOLE" || true

say "kill -9 of the idle VM's hv-vmm: hvd notices at once and records it"
PID=$(hvctl --json vm show idle | sed -n 's/.*"pid": \([0-9]*\).*/\1/p')
kill -9 "$PID"
for _ in $(seq 1 100); do
  hvctl vm show idle | grep -q 'state: *crashed' && break
  sleep 0.02
done
hvctl vm ls
say "restart it, then stop it gracefully"
hvctl vm start idle >/dev/null
hvctl vm stop idle

say "delete the VMs"
hvctl vm rm demo
hvctl vm rm idle
hvctl vm rm counter
hvctl vm ls

if [[ $KEEP -eq 1 ]]; then
  say "hvd left running (pid $HVD_PID, socket $SOCK) as asked"
else
  say "stopping hvd; nothing is left running"
fi
