#!/usr/bin/env bash
# Static checks: gofmt, go vet, staticcheck, govulncheck. Installs the tools
# it lacks from the Go module proxy into $(go env GOBIN) (or GOPATH/bin), at
# pinned versions. govulncheck reads an offline copy of the Go vulnerability
# database: golang.org/x/vulndb is served by the module proxy as a module
# whose data/osv holds every report; its cmd/indexdb turns that folder into
# the v1 database that `govulncheck -db file://...` reads. No request goes
# to vuln.go.dev.
#
#   scripts/lint.sh                 # everything
#   scripts/lint.sh ./hostdisk/...  # only these packages
#   LINT_SKIP=govulncheck scripts/lint.sh
#
# Exit status: non-zero when any check finds something.
set -uo pipefail

cd "$(dirname "$0")/.."
GO=${GO:-go}
STATICCHECK_VERSION=${STATICCHECK_VERSION:-v0.8.2}   # works with go1.26
GOVULNCHECK_VERSION=${GOVULNCHECK_VERSION:-v1.9.0}
# A pseudo-version of golang.org/x/vulndb (it has no tags); bump it to get
# newer reports: go list -m golang.org/x/vulndb@latest
VULNDB_VERSION=${VULNDB_VERSION:-v0.0.0-20261105234957-e22db6528018}
LINT_SKIP=${LINT_SKIP:-}

pkgs=("$@")
[ ${#pkgs[@]} -gt 0 ] || pkgs=(./...)

log() { printf '[lint] %s\n' "$*" >&2; }
skip() { case " $LINT_SKIP " in *" $1 "*) return 0 ;; esac; return 1; }

bindir=$("$GO" env GOBIN)
[ -n "$bindir" ] || bindir="$("$GO" env GOPATH)/bin"

# tool NAME PACKAGE VERSION: path of NAME, installed at VERSION if missing
# or at another version.
tool() {
  local name=$1 pkg=$2 version=$3 bin="$bindir/$1"
  if ! [ -x "$bin" ] || ! "$GO" version -m "$bin" 2>/dev/null | grep -q "[[:space:]]$version[[:space:]]"; then
    log "installing $pkg@$version into $bindir"
    (cd / && GOFLAGS=-mod=mod "$GO" install "$pkg@$version") >&2 || return 1
  fi
  printf '%s\n' "$bin"
}

status=0
fail() { log "FAIL: $*"; status=1; }

# gofmt over the tracked Go files of the selected packages.
if ! skip gofmt; then
  dirs=()
  for p in "${pkgs[@]}"; do dirs+=("${p%/...}"); done
  files=$(git ls-files -- "${dirs[@]/%//*.go}" "${dirs[@]/%/*.go}" 2>/dev/null | sort -u)
  [ -n "$files" ] || files=$(git ls-files '*.go')
  out=$(gofmt -l $files)
  if [ -n "$out" ]; then printf 'gofmt: needs formatting:\n%s\n' "$out"; fail gofmt; else log "gofmt: clean"; fi
fi

if ! skip vet; then
  if "$GO" vet "${pkgs[@]}"; then log "go vet: clean"; else fail "go vet"; fi
fi

if ! skip staticcheck; then
  if sc=$(tool staticcheck honnef.co/go/tools/cmd/staticcheck "$STATICCHECK_VERSION"); then
    if "$sc" "${pkgs[@]}"; then log "staticcheck: clean"; else fail staticcheck; fi
  else
    fail "staticcheck: cannot install honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION"
  fi
fi

if ! skip govulncheck; then
  db="${XDG_CACHE_HOME:-$HOME/.cache}/cinderwarden/vulndb-$VULNDB_VERSION"
  if ! [ -f "$db/index/db.json" ]; then
    log "building the vulnerability database from golang.org/x/vulndb@$VULNDB_VERSION"
    src=$(cd / && "$GO" mod download -json "golang.org/x/vulndb@$VULNDB_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')
    idx=$(tool indexdb golang.org/x/vulndb/cmd/indexdb "$VULNDB_VERSION")
    if [ -n "$src" ] && [ -n "$idx" ] && rm -rf "$db.tmp" && "$idx" -vulns "$src/data/osv" -out "$db.tmp"; then
      rm -rf "$db" && mv "$db.tmp" "$db"
    else
      fail "govulncheck: cannot build the database from golang.org/x/vulndb@$VULNDB_VERSION"
    fi
  fi
  if [ -f "$db/index/db.json" ]; then
    if gv=$(tool govulncheck golang.org/x/vuln/cmd/govulncheck "$GOVULNCHECK_VERSION"); then
      if "$gv" -db "file://$db" "${pkgs[@]}"; then log "govulncheck: no called vulnerabilities"; else fail govulncheck; fi
    else
      fail "govulncheck: cannot install golang.org/x/vuln/cmd/govulncheck@$GOVULNCHECK_VERSION"
    fi
  fi
fi

exit $status
