#!/usr/bin/env bash
# Fails if any project C++/proto file is not clang-format clean (Google style,
# see .clang-format). third_party/ is excluded.
set -euo pipefail
cd "$(dirname "$0")/../.."
mapfile -t files < <(git ls-files -- '*.cc' '*.h' '*.c' '*.proto' | grep -v '^third_party/')
if ((${#files[@]} == 0)); then echo "format: no files"; exit 0; fi
bad=()
for f in "${files[@]}"; do
  if ! clang-format --dry-run --Werror "$f" >/dev/null 2>&1; then bad+=("$f"); fi
done
if ((${#bad[@]})); then
  echo "format: these files need clang-format -i:" >&2
  printf '  %s\n' "${bad[@]}" >&2
  exit 1
fi
echo "format: ${#files[@]} files clean"
