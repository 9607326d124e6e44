#!/usr/bin/env bash
# tools/go-toolchains.sh - build the old Go toolchains that real-program runs need.
#
#   tools/go-toolchains.sh [GO_GIT]     (make go-toolchains; GO_GIT or $ARENA_GO_SRC)
#
# GO_GIT is a local git copy of Go's history (bare or a clone; the public fork
# rsc/go carries upstream hashes). Each toolchain is `git archive`d from it,
# given a VERSION file and built with its own make.bash into
#   ${XDG_CACHE_HOME:-$HOME/.cache}/arena/go/<name>
#     go1.4     release-branch.go1.4  the bootstrap (C compilers; gcc 12 needs -w)
#     go1.8     7d8bfdde45            Go 1.8's sysAlloc and 32-bit mallocinit
#     e5a5c03   e5a5c03               the fix for the arena growing downwards
#     go1.9     c8aec4095e            the go1.9 release commit
# Each later one is bootstrapped with go1.4 and gets its 386 standard library
# installed too, so 386 test programs build without recompiling it.
#
# Idempotent: a toolchain whose stamp (.arena-stamp, the source commit, written
# last) matches and whose `go version` runs is kept; anything else there is
# removed and rebuilt. Build output goes to <name>.log next to the toolchain.
# Environment: ARENA_GO_SRC (GO_GIT), XDG_CACHE_HOME, NICE (default 10).
set -euo pipefail

readonly DEST="${XDG_CACHE_HOME:-$HOME/.cache}/arena/go"
readonly SRC="${1:-${ARENA_GO_SRC:-}}"
readonly NICE="${NICE:-10}"
# name, revision, VERSION file contents; go1.4 first: it bootstraps the others.
readonly TOOLCHAINS=(
    "go1.4 release-branch.go1.4 go1.4-bootstrap"
    "go1.8 7d8bfdde45 go1.8-7d8bfdde45"
    "e5a5c03 e5a5c03 devel +e5a5c03"
    "go1.9 c8aec4095e go1.9"
)

log() { printf 'go-toolchains: %s\n' "$*"; }
die() { printf 'go-toolchains: error: %s\n' "$*" >&2; exit 1; }

[[ -n $SRC ]] || die "no Go source given: pass a git copy of Go's history (bare or clone) as the argument or in ARENA_GO_SRC"
git -C "$SRC" rev-parse --git-dir >/dev/null 2>&1 || die "not a git copy of Go's history: $SRC"

# The full hash of $1 in $SRC, or an error naming what is missing.
commit_of() {
    git -C "$SRC" rev-parse --verify -q "$1^{commit}" ||
        die "$SRC has no revision $1 (a copy of Go's history with upstream hashes is needed, e.g. github.com/rsc/go)"
}

# True when $1 holds a finished build of commit $2 whose go command runs.
valid() {
    [[ -f $1/.arena-stamp && $(<"$1/.arena-stamp") == "$2" ]] &&
        GOROOT="$1" "$1/bin/go" version >/dev/null 2>&1
}

build() {
    local name=$1 rev=$2 version=$3 dir="$DEST/$1" commit
    commit=$(commit_of "$rev")
    if valid "$dir" "$commit"; then
        log "$name: already built ($commit) in $dir"
        return
    fi
    log "$name: building $rev ($commit) into $dir (log: $dir.log)"
    rm -rf "$dir"
    mkdir -p "$dir"
    git -C "$SRC" archive "$commit" | tar -x -C "$dir"
    # Without .git the build reads its version from this file.
    echo "$version" >"$dir/VERSION"
    local started=$SECONDS
    (
        cd "$dir/src"
        unset GOROOT GOPATH GOBIN GOOS GOARCH GOFLAGS GO111MODULE
        export CGO_ENABLED=0
        if [[ $name == go1.4 ]]; then
            # dist puts CC's flags before its own -Werror; only -w silences gcc 12.
            CC="gcc -w" nice -n "$NICE" ./make.bash
        else
            GOROOT_BOOTSTRAP="$DEST/go1.4" nice -n "$NICE" ./make.bash
            GOROOT="$dir" GOARCH=386 nice -n "$NICE" "$dir/bin/go" install std
        fi
    ) >"$dir.log" 2>&1 || die "$name: the build failed, see $dir.log"
    # Build intermediates and Go's own test suite: not needed to build programs.
    rm -rf "$dir/pkg/obj" "$dir/pkg/bootstrap" "$dir/test"
    echo "$commit" >"$dir/.arena-stamp"
    log "$name: built in $((SECONDS - started)) s, $(du -sh "$dir" | cut -f1)"
}

mkdir -p "$DEST"
for spec in "${TOOLCHAINS[@]}"; do
    read -r name rev version <<<"$spec"
    build "$name" "$rev" "$version"
done
log "all toolchains ready in $DEST"
