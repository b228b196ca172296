#!/bin/bash
# hv-hwsim command line: default inventory, generators, config file, errors.
set -u
BIN="$1"
fail() { echo "FAIL: $*"; exit 1; }
out=$("$BIN" --list) || fail "--list exit $?"
[[ $(grep -c ' pci ' <<<"$out") == 4 ]] || fail "expected 4 PCI functions: $out"
grep -q '^plat1 *platform rid=0xff01 vectors=1' <<<"$out" || fail "plat1: $out"
out=$("$BIN" --fire=0000:02:00.0,3,100 --fire=plat1,0,5) || fail "fire exit $?"
grep -q '0000:02:00.0 vector 3: fired=100 queued=100 overflow=0' <<<"$out" || fail "$out"
grep -q 'plat1 vector 0: fired=5 queued=1' <<<"$out" || fail "level: $out"
cfg="$TEST_TMPDIR/inv.txt"
printf 'pci 0000:05:00.0 vectors=2 # comment\nplatform uart\n' >"$cfg"
out=$("$BIN" --config="$cfg") || fail "config exit $?"
grep -q '^0000:05:00.0 *pci *rid=0x0500 vectors=2' <<<"$out" || fail "$out"
printf 'pci 0000:05:00.0 vectors=99\n' >"$cfg"
"$BIN" --config="$cfg" 2>/dev/null && fail "bad config accepted"
[[ $? == 2 ]] || fail "bad config exit code"
"$BIN" --fire=nope,0,1 2>/dev/null && fail "unknown device accepted"
"$BIN" --bogus 2>/dev/null; [[ $? == 2 ]] || fail "usage exit code"
echo PASS
