#!/usr/bin/env bash
# tools/ci-real.sh - CI's part for real programs (the tracer, the Go and C test programs, arena run/demo --real).
#
#   tools/ci-real.sh deps    install from Debian what their tests need (before make test, which runs them),
#                            and say whether the old Go toolchains' tests will run
#   tools/ci-real.sh slow    the real-program tests that take minutes (arena demo --real, 10 runs of 10), once
#
# The tests need: Debian's Go (golang-go: the Go test program for 386 and amd64, Go 1.11+'s heap arenas),
# gcc-multilib (the 32-bit C test programs, among them go_linear.c: Go 1.8's heap calls), libjemalloc-dev and
# libmimalloc-dev (the allocator stress program). The old toolchains (Go 1.8, the e5a5c03 fix, Go 1.9) are
# not packaged: their tests run when `make go-toolchains` has built them into ~/.cache/arena/go (README,
# "Real programs"), and skip, saying so, when not.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'ci-real: %s\n' "$*" >&2; }
readonly PACKAGES=(golang-go gcc-multilib libjemalloc-dev libmimalloc-dev)
PY=.venv/bin/python

deps() {
    local start=$SECONDS missing=() p
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if ((${#missing[@]})); then
        log "installing ${missing[*]} with apt-get"
        # A fresh machine may have no package lists yet: update and retry once.
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" ||
            { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"; }
    fi
    log "Debian packages ready in $((SECONDS - start)) s: $(go version)"
    make -s install
    toolchains
}

toolchains() {
    # One clear line: whether the Go 1.8 / e5a5c03 / Go 1.9 tests run in this CI run.
    "$PY" - <<'EOF'
from arena.tracer import toolchains
old = [n for n in ("go1.8", "e5a5c03", "go1.9") if n in toolchains.toolchains()]
where = toolchains.cache_dir() / "go"
if len(old) == 3:
    print(f"ci-real: old Go toolchains go1.8, e5a5c03, go1.9 found in {where}: their tests RUN")
else:
    print(f"ci-real: old Go toolchains in {where}: {', '.join(old) or 'none'} of go1.8, e5a5c03, go1.9: the missing "
          "ones' tests SKIP (make go-toolchains ARENA_GO_SRC=<a git copy of Go> builds them, ~7 min)")
EOF
}

slow() {
    local start=$SECONDS
    toolchains
    ARENA_SLOW=1 "$PY" -m pytest -m slow -q -rs tests/test_run_cli.py tests/test_real_model.py -s
    log "slow real-program tests passed in $((SECONDS - start)) s"
}

case "${1:-}" in
    deps) deps ;;
    slow) slow ;;
    *) sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
