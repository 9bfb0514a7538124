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

# run_target PKG NAME: one bounded fuzz run; sets $out and returns go's status.
run_target() {
  out=$("$GO" test -run '^$' -fuzz "^${2}\$" -fuzztime "$FUZZTIME" -fuzzminimizetime "$FUZZMINIMIZETIME" \
    -parallel "$FUZZ_PARALLEL" "$1" 2>&1)
}

# deadline_flake: the run failed only with "context deadline exceeded" at the
# -fuzztime boundary, no input written: go1.26's coordinator race
# (go.dev/issue/75804, fixed in go1.27), never a finding of the target.
deadline_flake() {
  grep -q 'context deadline exceeded' <<<"$out" && ! grep -q 'Failing input written to\|panic:' <<<"$out"
}

start=$(date +%s)
targets=0
failed=()
flaked=0
for pkg in "${pkgs[@]}"; do
  mapfile -t names < <("$GO" test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true)
  for name in "${names[@]}"; do
    targets=$((targets + 1))
    t0=$(date +%s)
    status=ok
    if ! run_target "$pkg" "$name"; then
      status=FAIL
      if deadline_flake; then
        printf 'fuzz: %s %s hit the -fuzztime deadline race (go.dev/issue/75804); running it again\n' "$pkg" "$name"
        if run_target "$pkg" "$name"; then
          status=ok
        elif deadline_flake; then
          status=flake
        fi
      fi
    fi
    case $status in
      ok | flake)
        execs=$(printf '%s\n' "$out" | grep -o 'execs: [0-9]*' | tail -1 | cut -d' ' -f2 || true)
        printf 'fuzz: %-5s %-22s %-24s %4ss %9s execs\n' "$status" "$pkg" "$name" "$(($(date +%s) - t0))" "${execs:-?}"
        [ "$status" = ok ] || flaked=$((flaked + 1))
        ;;
      *)
        printf 'fuzz: FAIL  %-22s %s\n' "$pkg" "$name"
        printf '%s\n' "$out" | grep -v '^fuzz: elapsed' | sed 's/^/    /'
        failed+=("$pkg $name")
        ;;
    esac
  done
done
printf 'fuzz: %d targets in %d packages, %s each, %ds in all, %d failed, %d deadline flakes\n' \
  "$targets" "${#pkgs[@]}" "$FUZZTIME" "$(($(date +%s) - start))" "${#failed[@]}" "$flaked"
[ ${#failed[@]} -eq 0 ]
