#!/bin/bash
# Runs the vgic-replay binary the way users (and recorded-guest tests) do:
# script on stdin, output on stdout, exit status 0 / 2.
set -u
BIN="$1"
DATA="$2"
fail=0
for script in "$DATA"/*.script; do
  expected="${script%.script}.expected"
  if ! diff -u "$expected" <("$BIN" < "$script"); then
    echo "FAIL: $script"
    fail=1
  fi
done
out=$(printf 'vcpus 1\nits_error\nbogus 7\n' | "$BIN")
status=$?
if [[ $status -ne 2 || "$out" != $'its_error 0\nerror 3: unknown statement \'bogus\'' ]]; then
  echo "FAIL: malformed line: status $status, output: $out"
  fail=1
fi
exit $fail
