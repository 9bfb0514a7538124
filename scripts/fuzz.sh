#!/usr/bin/env bash
# Runs every Go fuzz target of the given packages (default: every package
# that has one) for a bounded time each, one after the other, and prints a
# summary line. A crash fails the run; its input is written by `go test`
# under <pkg>/testdata/fuzz/<Target>/ and becomes a regression seed once
# committed. The seed corpora also run as ordinary tests in `go test`.
#
#   scripts/fuzz.sh                      # all packages, FUZZTIME per target
#   FUZZTIME=30s scripts/fuzz.sh ./hostdisk
#
# FUZZTIME (default 5s) is per target; FUZZ_PARALLEL (default 1) is the
# number of fuzz workers per target (the machines are shared: keep it low);
# FUZZMINIMIZETIME (default 1s) bounds the minimisation of each new input
# (go's default, 60s, would spend a short run minimising and not fuzzing;
# the "execs" column does not count minimisation runs).
set -euo pipefail

cd "$(dirname "$0")/.."
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-5s}
FUZZ_PARALLEL=${FUZZ_PARALLEL:-1}
FUZZMINIMIZETIME=${FUZZMINIMIZETIME:-1s}

if [ $# -gt 0 ]; then
  pkgs=("$@")
else
  # Packages with a `func FuzzXxx(` in a test file.
  mapfile -t pkgs < <(git ls-files '*_test.go' | xargs grep -l '^func Fuzz[A-Z][A-Za-z0-9_]*(f \*testing\.F)' |
    xargs -n1 dirname | sort -u | sed 's|^|./|')
fi

start=$(date +%s)
targets=0
failed=()
for pkg in "${pkgs[@]}"; do
  mapfile -t names < <("$GO" test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true)
  for name in "${names[@]}"; do
    targets=$((targets + 1))
    t0=$(date +%s)
    if out=$("$GO" test -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" -fuzzminimizetime "$FUZZMINIMIZETIME" -parallel "$FUZZ_PARALLEL" "$pkg" 2>&1); then
      execs=$(printf '%s\n' "$out" | grep -o 'execs: [0-9]*' | tail -1 | cut -d' ' -f2)
      printf 'fuzz: ok   %-22s %-24s %4ss %9s execs\n' "$pkg" "$name" "$(($(date +%s) - t0))" "${execs:-?}"
    else
      printf 'fuzz: FAIL %-22s %s\n' "$pkg" "$name"
      printf '%s\n' "$out" | grep -v '^fuzz: elapsed' | sed 's/^/    /'
      failed+=("$pkg $name")
    fi
  done
done
printf 'fuzz: %d targets in %d packages, %s each, %ds in all, %d failed\n' \
  "$targets" "${#pkgs[@]}" "$FUZZTIME" "$(($(date +%s) - start))" "${#failed[@]}"
[ ${#failed[@]} -eq 0 ]
