#!/usr/bin/env bash
# tools/i386.sh - run the arena project on 32-bit i386 Debian bookworm.
#
# Engine behind `make test32`, `make bench32` and `make docker32`.
#
#   tools/i386.sh test           make test  inside i386 bookworm
#   tools/i386.sh bench          make bench inside i386 bookworm (results copied
#                                to benchmarks/results/i386/)
#   tools/i386.sh run CMD...     any command, run in the fresh source copy
#   tools/i386.sh wheel SDIST DIR [build]
#                                the manylinux i686 wheel of SDIST, built, repaired,
#                                installed and tested in the root (`build`: not
#                                installed) by tools/check-dist.sh wheel-here, then
#                                copied to DIR; chroot back end only
#   tools/i386.sh shell          interactive shell in the i386 root
#   tools/i386.sh docker [test|bench|run CMD...|shell]
#                                force the Docker back end (fails without an engine)
#   tools/i386.sh docker-base    make the Docker base image here, without a
#                                registry (debootstrap; needs root)
#   tools/i386.sh build-root     only (re)build the cached root if needed
#   tools/i386.sh clean          delete the cached root (next run rebuilds it)
#
# Two back ends; every run says which one runs, and why:
#   * docker: a Docker engine answers (`docker info` works). Builds
#     docker/Dockerfile.i386 on its base image (pulled, or made here by
#     docker-base when it cannot be pulled) and runs the command in a
#     container; test and bench run with --network none.
#   * chroot: otherwise. A debootstrap'ed i386 bookworm root, built once and
#     cached in $ARENA_I386_ROOT (default /var/cache/arena-i386/root), entered
#     with `linux32 chroot`. Needs root.
#
# Environment:
#   ARENA_I386_ROOT    cached root directory   (default /var/cache/arena-i386/root)
#   ARENA_I386_MIRROR  Debian mirror URL       (default: the host's apt mirror)
#   ARENA_I386_BACKEND auto|docker|chroot      (default auto)
#   ARENA_I386_IMAGE   Docker image tag        (default arena-i386:latest)
#   ARENA_I386_BASE    Docker base image       (default: the Dockerfile's ARG BASE)
#   ARENA_DOCKER_BUILD_FLAGS, ARENA_DOCKER_RUN_FLAGS
#                      extra flags for `docker build` / `docker run`
#   ARENA_BACKEND, CI, PYTEST_ADDOPTS, ARENA_*, proxy variables are passed
#   through to the command.
set -euo pipefail

SELF="$(readlink -f "${BASH_SOURCE[0]}")"
REPO="$(cd "$(dirname "$SELF")/.." && pwd)"
readonly SELF REPO
readonly ROOT="${ARENA_I386_ROOT:-/var/cache/arena-i386/root}"
readonly IMAGE="${ARENA_I386_IMAGE:-arena-i386:latest}"
readonly SUITE=bookworm
# Everything the project's build and tests need. gcc, libffi-dev and
# python3-dev: the project's cffi shim, and dependencies with no i386 wheel
# for CPython 3.11, which pip compiles (psutil 7.2.2 has none; cffi 2.1.1 has
# a manylinux i686 wheel today, but that is not guaranteed for every release).
# ca-certificates: pip over https.
readonly PACKAGES=(python3 python3-dev python3-venv gcc libc6-dev libffi-dev make ca-certificates)
# Paths inside the root. The venv lives outside the source copy so it survives
# the per-run fresh copy of the sources (no reinstall of dependencies each run).
readonly SRC_IN_ROOT=/src/arena
readonly VENV_IN_ROOT=/opt/arena-venv
readonly CA_IN_ROOT=/etc/ssl/arena-host-ca.crt
# A completed build writes this stamp last; without it the root is half-built
# (crash, Ctrl-C, network error) and gets rebuilt from scratch, never reused.
readonly STAMP="$ROOT/.arena-i386-complete"
# Prints the proof line and fails unless the Python it runs in is 32-bit.
readonly PROOF=tools/proof32.py

log() { printf 'i386.sh: %s\n' "$*" >&2; }
die() { local code="$1"; shift; log "error: $*"; exit "$code"; }

usage() {
    sed -n '2,/^set -euo/p' "$SELF" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//' >&2
    exit 2
}

require_root() {
    [[ $(id -u) -eq 0 ]] ||
        die 2 "'$1' needs root (debootstrap, chroot and mount do). Re-run as root, e.g. 'sudo $0 $1', or use a Docker engine (make docker32)."
}

# ---------------------------------------------------------------- sources ----

# NUL-separated list of the project's files, relative to $REPO: tracked plus
# untracked-not-ignored, minus build outputs. The 64-bit host's .venv, *.so and
# build/ must never reach the 32-bit build; the patterns are repeated in the
# case filter because tracked files ignore `-x` and a .gitignore may be missing.
list_sources() {
    local f
    {
        if git -C "$REPO" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
            git -C "$REPO" ls-files -z -co --exclude-standard \
                -x .venv -x build -x dist -x __pycache__ -x .hypothesis \
                -x .pytest_cache -x '*.so' -x '*.pyc' -x '*.o' -x '*.egg-info'
        else
            (cd "$REPO" && find . -name .git -prune -o \( -type f -o -type l \) -print0 |
                sed -z 's|^\./||')
        fi
    } | while IFS= read -r -d '' f; do
        case "/$f" in
            # The README's picture: the packaging tests check every path the README names.
            */benchmarks/results/bench.png) ;;
            */.git/* | */.venv/* | */build/* | */dist/* | */__pycache__/* | \
                */.hypothesis/* | */.pytest_cache/* | */.mypy_cache/* | \
                */.ruff_cache/* | */.tox/* | */benchmarks/results/* | \
                *.egg-info/* | *.so | *.pyc | *.o) continue ;;
        esac
        # `ls-files -c` still lists a tracked file deleted in the work tree.
        [[ -e "$REPO/$f" || -L "$REPO/$f" ]] || continue
        printf '%s\0' "$f"
    done
}

# tar stream of the project's sources on stdout (also the Docker build context).
source_tar() {
    list_sources | tar -C "$REPO" --null --no-recursion -T - -cf -
}

# Where a bench run left benchmarks/results ($1): its bench* files go to
# benchmarks/results/i386/, since the copy the run used is thrown away.
keep_bench_results() {
    local from="$1" dest="$REPO/benchmarks/results/i386"
    compgen -G "$from/bench*" >/dev/null || { log "no bench results to copy from $from"; return; }
    mkdir -p "$dest"
    cp "$from"/bench* "$dest/"
    log "results copied to benchmarks/results/i386/"
}

# Fresh copy of the sources in the root for every run. -m (mtime = now): a
# stamp-based Makefile rule in the persistent venv must see the sources as new,
# so the cffi extension is rebuilt into this copy, which has no .so yet.
copy_sources() {
    local dest="$ROOT$SRC_IN_ROOT"
    rm -rf --one-file-system "$dest"
    mkdir -p "$dest"
    source_tar | tar -C "$dest" -xmf -
}

# ----------------------------------------------------------------- mounts ----

# Mount points below $ROOT, deepest first.
mounts_under_root() {
    findmnt -rn -o TARGET | awk -v r="$ROOT" 'index($0, r "/") == 1' | sort -r
}

# Mounts normally live in a private namespace (see in_root) and vanish with
# it, but a run of an older script, a manual mount or a debootstrap killed
# half-way can leave some on the host: remove them before they confuse a run
# or make `rm -rf` walk into /proc or /dev.
sweep_stale_mounts() {
    local m
    while IFS= read -r m; do
        [[ -n "$m" ]] || continue
        log "removing stale mount $m"
        umount "$m" 2>/dev/null || umount -l "$m"
    done < <(mounts_under_root)
}

# ------------------------------------------------------------ root build ----

# The Debian mirror this host's apt uses (the one reachable from here).
host_mirror() {
    local url
    if [[ -n "${ARENA_I386_MIRROR:-}" ]]; then
        echo "$ARENA_I386_MIRROR"
        return
    fi
    # deb822 files (URIs: ...) and one-line sources.list (deb URL suite ...);
    # keep the main archive, not debian-security / third-party repositories.
    url=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
        /etc/apt/sources.list.d/*.sources 2>/dev/null |
        awk '/^[[:space:]]*URIs:/ { for (i = 2; i <= NF; i++) print $i }
             /^[[:space:]]*deb[[:space:]]/ { for (i = 2; i <= NF; i++) if ($i ~ /:\/\//) { print $i; break } }' |
        grep -E '^https?://' | grep -v -E 'security|updates' |
        grep -E '/debian/?$' | head -n 1 || true)
    echo "${url:-http://deb.debian.org/debian}"
}

stamp_text() {
    printf 'suite=%s arch=i386 packages=%s\n' "$SUITE" "${PACKAGES[*]}"
}

root_is_ready() {
    [[ -f "$STAMP" && "$(cat "$STAMP")" == "$(stamp_text)" ]]
}

ensure_debootstrap() {
    command -v debootstrap >/dev/null && return
    log "installing debootstrap with apt-get"
    # A fresh machine may have no package lists yet: update and retry once.
    apt-get install -y --no-install-recommends debootstrap ||
        { apt-get update && apt-get install -y --no-install-recommends debootstrap; }
}

# debootstrap_i386 DIR [OPTION...]: an i386 $SUITE minbase root in DIR, from
# the host's mirror.
debootstrap_i386() {
    local dir="$1"
    shift
    ensure_debootstrap
    log "debootstrap: i386 $SUITE minbase in $dir from $(host_mirror)"
    # Own mount namespace: debootstrap mounts /proc and /sys in the target and
    # may die before unmounting them; the namespace takes them along.
    unshare --mount --propagation private -- \
        linux32 debootstrap --arch=i386 --variant=minbase "$@" "$SUITE" "$dir" "$(host_mirror)"
}

build_root() {
    local start=$SECONDS
    log "building the i386 root in $ROOT (first time only, about a minute)"
    sweep_stale_mounts
    rm -rf --one-file-system "$ROOT"
    mkdir -p "$ROOT"
    debootstrap_i386 "$ROOT" --include="$(IFS=,; echo "${PACKAGES[*]}")"
    # Safety net: debootstrap's --include resolves dependencies only roughly;
    # apt-get finishes the job (a no-op when all is there).
    prepare_run_files
    in_root / sh -c "apt-get update -q && DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends ${PACKAGES[*]} && apt-get clean"
    stamp_text >"$STAMP"
    log "root ready after $((SECONDS - start)) s"
}

ensure_root() {
    root_is_ready || build_root
}

# -------------------------------------------------- network / pip config ----

# The host's pip configuration (files and PIP_* variables merged by pip
# itself), as `pip config list` prints it; read once per run (~0.4 s).
HOST_PIP_CONFIG=
load_host_pip_config() {
    HOST_PIP_CONFIG="$(python3 -m pip config list 2>/dev/null || true)"
}

# One value from it; empty when pip or the key is absent.
host_pip_value() {
    local key="$1"
    sed -n -E "s/^[^.]*\.${key}='(.*)'\$/\1/p" <<<"$HOST_PIP_CONFIG" | tail -n 1 || true
}

# Keep only index locations the root can reach: http(s) URLs. Host paths and
# file:// indexes (local wheel caches for x86-64) do not exist in the root.
reachable_urls() {
    local u out=()
    for u in $1; do [[ "$u" =~ ^https?:// ]] && out+=("$u"); done
    echo "${out[*]:-}"
}

# The host's network settings, written below DIR where a root (the chroot,
# the Docker base, or the overlay a Docker build applies) sees them: the
# host's CA bundle at $CA_IN_ROOT (this host may reach PyPI through a
# TLS-intercepting proxy whose CA only the host trusts) and an /etc/pip.conf
# that mirrors the host's reachable pip settings.
write_host_settings() {
    local dir="$1" ca v
    load_host_pip_config
    ca="${PIP_CERT:-$(host_pip_value cert)}"
    [[ -n "$ca" && -f "$ca" ]] || ca=/etc/ssl/certs/ca-certificates.crt
    rm -f "$dir$CA_IN_ROOT"
    if [[ -f "$ca" ]]; then
        mkdir -p "$(dirname "$dir$CA_IN_ROOT")"
        cp -L "$ca" "$dir$CA_IN_ROOT"
    fi
    mkdir -p "$dir/etc"
    {
        echo "# written by tools/i386.sh from the host's pip settings; do not edit"
        echo "[global]"
        echo "disable-pip-version-check = true"
        [[ -f "$dir$CA_IN_ROOT" ]] && echo "cert = $CA_IN_ROOT"
        v=$(reachable_urls "$(host_pip_value index-url)")
        [[ -n "$v" ]] && echo "index-url = $v"
        v=$(reachable_urls "$(host_pip_value extra-index-url)")
        [[ -n "$v" ]] && echo "extra-index-url = $v"
        v=$(reachable_urls "$(host_pip_value find-links)")
        [[ -n "$v" ]] && echo "find-links = $v"
        v=$(host_pip_value trusted-host)
        [[ -n "$v" ]] && echo "trusted-host = $v"
        v=$(host_pip_value default-timeout)
        [[ -n "$v" ]] || v=$(host_pip_value timeout)
        [[ -n "$v" ]] && echo "timeout = $v"
        true
    } >"$dir/etc/pip.conf"
}

# Files the root needs before each run: DNS and the host's network settings.
prepare_run_files() {
    cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"
    write_host_settings "$ROOT"
}

readonly PROXY_VARS=(http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY)

# NAME=VALUE, NUL-separated: what the command inside gets from this
# environment, on either back end. $1 = yes when the root or image holds the
# host's CA bundle. The script's own settings (ARENA_I386_*, ARENA_DOCKER_*)
# stay outside.
passed_env() {
    local v commit
    [[ "$1" == yes ]] &&
        printf '%s\0' "SSL_CERT_FILE=$CA_IN_ROOT" "REQUESTS_CA_BUNDLE=$CA_IN_ROOT"
    # The source copy has no .git: a benchmark run inside names the commit it came from by this.
    if [[ -z "${ARENA_COMMIT:-}" ]] && commit=$(git -C "$REPO" rev-parse HEAD 2>/dev/null); then
        [[ -n "$(git -C "$REPO" status --porcelain --untracked-files=no 2>/dev/null)" ]] && commit+="+dirty"
        printf '%s\0' "ARENA_COMMIT=$commit"
    fi
    for v in TERM CI PYTEST_ADDOPTS PYTEST_ARGS HYPOTHESIS_PROFILE "${PROXY_VARS[@]}" \
        $(compgen -v ARENA_ || true); do
        case "$v" in ARENA_I386* | ARENA_DOCKER*) continue ;; esac
        [[ -n "${!v+x}" ]] && printf '%s\0' "$v=${!v}"
    done
    true
}

# The environment inside the root: clean, plus what the tests legitimately need.
inner_env() {
    printf '%s\0' PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        HOME=/root LANG=C.UTF-8 ARENA_I386=1 "VENV=$VENV_IN_ROOT"
    passed_env "$([[ -f "$ROOT$CA_IN_ROOT" ]] && echo yes)"
}

# ------------------------------------------------------------- execution ----

# in_root WORKDIR CMD...: run CMD as i386 inside the root, with /proc and a
# minimal /dev mounted in a private mount namespace (so nothing can leak onto
# the host, and a killed run leaves no mount behind).
in_root() {
    unshare --mount --propagation private -- "$SELF" __ns "$@"
}

# Runs inside the private namespace (re-executed by in_root).
ns_main() {
    local workdir="$1" env=()
    shift
    # Unmount explicitly on every exit path (error, Ctrl-C); the namespace
    # would drop the mounts anyway, this keeps the root clean for inspection.
    trap 'ns_unmount' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    mount -t proc proc "$ROOT/proc"
    # Minimal /dev instead of binding the host's: no host disks in the root.
    mount -t tmpfs -o mode=0755,nosuid devtmp "$ROOT/dev"
    mknod -m 666 "$ROOT/dev/null" c 1 3
    mknod -m 666 "$ROOT/dev/zero" c 1 5
    mknod -m 666 "$ROOT/dev/full" c 1 7
    mknod -m 666 "$ROOT/dev/random" c 1 8
    mknod -m 666 "$ROOT/dev/urandom" c 1 9
    mknod -m 666 "$ROOT/dev/tty" c 5 0
    ln -s /proc/self/fd "$ROOT/dev/fd"
    ln -s /proc/self/fd/0 "$ROOT/dev/stdin"
    ln -s /proc/self/fd/1 "$ROOT/dev/stdout"
    ln -s /proc/self/fd/2 "$ROOT/dev/stderr"
    # /dev/shm for POSIX shared memory and multiprocessing locks.
    mkdir -m 1777 "$ROOT/dev/shm"
    mkdir -m 0755 "$ROOT/dev/pts"
    if mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts "$ROOT/dev/pts" 2>/dev/null; then
        ln -s pts/ptmx "$ROOT/dev/ptmx"
    fi
    mapfile -d '' env < <(inner_env)
    # Not `exec`: the EXIT trap must run after the command.
    local rc=0
    # shellcheck disable=SC2016  # $1/$@ expand in the inner sh
    linux32 chroot "$ROOT" /usr/bin/env -i "${env[@]}" \
        /bin/sh -c 'cd "$1" && shift && exec "$@"' sh "$workdir" "$@" || rc=$?
    exit "$rc"
}

# shellcheck disable=SC2317  # called from the EXIT trap
ns_unmount() {
    local m
    while IFS= read -r m; do
        [[ -n "$m" ]] && { umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; }
    done < <(mounts_under_root)
}

# Serialise runs on one root: they share /src/arena, the venv and the mounts.
take_lock() {
    mkdir -p "$(dirname "$ROOT")"
    exec 9>"$ROOT.lock"
    if ! flock -n 9; then
        log "another tools/i386.sh run holds $ROOT.lock; waiting"
        flock 9
    fi
}

# enter_root MODE: the root built and locked for this run, a fresh copy of the
# sources in it, and the proof that it runs 32-bit code (else no run at all).
enter_root() {
    require_root "$1"
    take_lock
    ensure_root
    sweep_stale_mounts
    prepare_run_files
    copy_sources
    in_root "$SRC_IN_ROOT" python3 "$PROOF" ||
        die 1 "the root does not run 32-bit code (pointer size != 4)"
}

chroot_main() {
    local mode="$1"
    shift
    enter_root "$mode"
    # The inner command's status becomes the script's.
    local rc=0
    in_root "$SRC_IN_ROOT" "$@" || rc=$?
    [[ "$mode" == bench ]] && keep_bench_results "$ROOT$SRC_IN_ROOT/benchmarks/results"
    exit "$rc"
}

# wheel SDIST DIR [build]: tools/check-dist.sh wheel-here in the root, on a
# copy of SDIST; the wheel it makes is copied to DIR. Chroot only, whatever
# engine answers: the files go into the root and come out of it.
chroot_wheel() {
    [[ $# -ge 2 && -f "$1" && -d "$2" ]] || die 2 "usage: $0 wheel SDIST DIR [build] (an sdist file and a directory)"
    local sdist dist box=/tmp/arena-wheel rc=0
    sdist="$(realpath "$1")" dist="$(realpath "$2")"
    shift 2
    log "back end: chroot, i386 root $ROOT (the wheel mode copies files in and out of the root)"
    enter_root wheel
    rm -rf --one-file-system "$ROOT$box"
    mkdir -p "$ROOT$box/out"
    cp "$sdist" "$ROOT$box/"
    in_root "$SRC_IN_ROOT" tools/check-dist.sh wheel-here "$box/$(basename "$sdist")" "$box/out" "$@" || rc=$?
    if ((rc == 0)); then
        cp "$ROOT$box"/out/*.whl "$dist/"
        log "copied $(cd "$ROOT$box/out" && echo *.whl) to $dist"
    fi
    rm -rf --one-file-system "$ROOT$box"
    exit "$rc"
}

# The Docker back end and the base image made without a registry.
# shellcheck source=tools/i386-docker.sh
source "$REPO/tools/i386-docker.sh"

main() {
    local mode="${1:-}" backend="${ARENA_I386_BACKEND:-auto}" why="ARENA_I386_BACKEND=${ARENA_I386_BACKEND:-}"
    [[ $# -gt 0 ]] && shift
    case "$mode" in
        __ns) ns_main "$@" ;;
        docker)
            backend=docker why="tools/i386.sh docker"
            mode="${1:-test}"
            [[ $# -gt 0 ]] && shift
            ;;
        docker-base)
            docker_available || die 2 "no Docker engine answers ('docker info' fails)"
            build_docker_base "$BASE"
            exit 0
            ;;
        clean)
            require_root clean
            take_lock
            sweep_stale_mounts
            rm -rf --one-file-system "$ROOT"
            log "removed $ROOT"
            exit 0
            ;;
        wheel) chroot_wheel "$@" ;;
        build-root)
            require_root build-root
            take_lock
            ensure_root
            log "root ready: $ROOT"
            exit 0
            ;;
        test | bench | shell) ;;
        run | shell-cmd)
            [[ $# -gt 0 ]] || die 2 "'$mode' needs a command, e.g. $0 run python3 -V"
            mode=run
            ;;
        -h | --help | help | "") usage ;;
        *) log "unknown mode '$mode'"; usage ;;
    esac

    if [[ "$backend" == auto ]]; then
        if docker_available; then
            backend=docker why="a Docker engine answers; ARENA_I386_BACKEND=chroot for the debootstrap root"
        else
            backend=chroot why="no Docker engine answers"
        fi
    fi
    # The chroot keeps its venv outside the per-run source copy; the image
    # sets VENV itself (docker/Dockerfile.i386).
    local cmd=()
    case "$mode" in
        test | bench) cmd=(make "$mode") ;;
        run) cmd=("$@") ;;
        shell) cmd=(bash -l) ;;
    esac
    [[ "$backend" == chroot && "$mode" != run && "$mode" != shell ]] &&
        cmd+=("VENV=$VENV_IN_ROOT")
    case "$backend" in
        docker)
            log "back end: docker, image $IMAGE on base $BASE ($why)"
            docker_available || die 2 "no Docker engine answers ('docker info' fails); use ARENA_I386_BACKEND=chroot make test32 (needs root) instead"
            docker_main "$mode" "${cmd[@]}"
            ;;
        chroot)
            log "back end: chroot, i386 root $ROOT ($why)"
            chroot_main "$mode" "${cmd[@]}"
            ;;
        *) die 2 "ARENA_I386_BACKEND must be auto, docker or chroot (got '$backend')" ;;
    esac
}

main "$@"
