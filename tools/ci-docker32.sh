#!/usr/bin/env bash
# tools/ci-docker32.sh - CI's 32-bit run in Docker: the i386 image built here
# (its base too, without a registry, when it cannot be pulled) and the whole
# suite in it on both backends, with no network and the 32-bit proof printed.
#
# Needs root. When no Docker engine answers, it installs Debian's docker.io
# (if dockerd is missing), starts dockerd in the background for this run, and
# stops that dockerd, by its PID, when the script exits, passed or failed. An
# engine that was already running is used and left running.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'ci-docker32: %s\n' "$*" >&2; }

DOCKERD_PID=
DOCKERD_LOG=

# shellcheck disable=SC2317  # called from the EXIT trap
stop_dockerd() {
    local i
    [[ -n "$DOCKERD_PID" ]] || return 0
    log "stopping the dockerd this run started (pid $DOCKERD_PID)"
    kill -TERM "$DOCKERD_PID" 2>/dev/null || true
    # dockerd stops its containers and the containerd it started before it
    # exits; only one that hangs is killed.
    for i in $(seq 120); do
        kill -0 "$DOCKERD_PID" 2>/dev/null || break
        [[ $i -lt 120 ]] || { log "dockerd did not stop in 60 s: killing it"; kill -KILL "$DOCKERD_PID"; }
        sleep 0.5
    done
    wait "$DOCKERD_PID" 2>/dev/null || true
    rm -f "$DOCKERD_LOG"
}

engine_answers() {
    command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1
}

start_engine() {
    local start=$SECONDS i
    if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker >/dev/null 2>&1; then
        log "installing docker.io with apt-get"
        # A fresh machine may have no package lists yet: update and retry once.
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io ||
            { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io; }
    fi
    DOCKERD_LOG=$(mktemp "${TMPDIR:-/var/tmp}/arena-dockerd.XXXXXX")
    log "starting dockerd in the background (log: $DOCKERD_LOG)"
    dockerd >"$DOCKERD_LOG" 2>&1 &
    DOCKERD_PID=$!
    trap stop_dockerd EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    for i in $(seq 120); do
        engine_answers && break
        if ! kill -0 "$DOCKERD_PID" 2>/dev/null || [[ $i -eq 120 ]]; then
            tail -n 30 "$DOCKERD_LOG" >&2
            log "error: dockerd did not answer"
            exit 1
        fi
        sleep 0.5
    done
    log "dockerd (pid $DOCKERD_PID) answers after $((SECONDS - start)) s"
}

main() {
    local start=$SECONDS
    [[ $(id -u) -eq 0 ]] || { log "error: needs root (it may install and start a Docker engine)"; exit 2; }
    if engine_answers; then
        log "a Docker engine answers already: using it"
    else
        start_engine
    fi
    log "engine: Docker $(docker version -f '{{.Server.Version}}' 2>/dev/null)"
    make docker32
    log "passed in $((SECONDS - start)) s"
}

main "$@"
