#!/usr/bin/env bash
# The README's test command: set up the machine, build everything, run the
# whole default test suite, and print one line `N passed, N failed` computed
# from Bazel's real per-test results. Exits non-zero if anything failed or if
# no test ran. Extra arguments are passed to `bazel test` (e.g. --config=asan).
set -euo pipefail
cd "$(dirname "$0")/.."

tools/setup.sh
bep="$(mktemp /tmp/hv-bep.XXXXXX.json)"
trap 'rm -f "$bep"' EXIT

set +e
bazel test //... --keep_going --build_event_json_file="$bep" "$@"
bazel_rc=$?
set -e

python3 tools/ci/summarize_tests.py "$bep"
summary_rc=$?
if [[ $bazel_rc -ne 0 && $summary_rc -eq 0 ]]; then
  echo "bazel test exited with $bazel_rc" >&2
  exit "$bazel_rc"
fi
exit "$summary_rc"
