#!/usr/bin/env bash
# Installs everything hv's build, tests and demo need on Debian 12, then reports
# whether /dev/kvm is usable. Idempotent: re-running installs nothing new.
# Must run as root (or with sudo available).
set -euo pipefail

PACKAGES=(
  bazel-bootstrap          # Bazel 4.2.3 (offline build, see BUILD-NOTES)
  g++ clang clang-format libclang-rt-14-dev   # compilers, sanitizers, libFuzzer
  protobuf-compiler protobuf-compiler-grpc libprotobuf-dev libgrpc++-dev
  libabsl-dev libgtest-dev libgmock-dev libbenchmark-dev libsqlite3-dev
  python3                  # test-result summary (tools/ci/summarize_tests.py)
  procps psmisc            # pgrep/kill used by the demo and tests
)

SUDO=""
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null; then SUDO="sudo"; else
    echo "setup: must run as root (or install sudo)" >&2; exit 1
  fi
fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
    missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
else
  echo "setup: all ${#PACKAGES[@]} packages already installed"
fi

# KVM: tests that need it fail loudly when /dev/kvm exists but is unusable,
# and skip (printing why) only where it is absent.
if [[ ! -e /dev/kvm ]]; then
  echo "setup: /dev/kvm is ABSENT: KVM tests will be skipped and the demo cannot run guests"
elif [[ -r /dev/kvm && -w /dev/kvm ]]; then
  echo "setup: /dev/kvm is usable"
else
  echo "setup: /dev/kvm exists but is not readable+writable by $(id -un); KVM tests will fail" >&2
fi
