#!/usr/bin/env bash
# tools/test-backends.sh PYTHON BACKEND... [-- PYTEST_ARGS...]
#
# Engine behind `make test` and `make test-full`: the suite once per memory
# backend (ARENA_BACKEND), every backend's run at the same time, each over
# $TEST_JOBS pytest-xdist workers (default: the cores shared out among the
# runs; one means no workers, the run is its pytest process). Two backends on
# two cores: a process each, as fast as two workers each and with less start-up
# work (measured); one backend: a worker per core. Each run's output is shown
# whole as it ends; the exit status is 1 if any run failed.
#
# Every worker is a process of its own: the leak check (tests/conftest.py)
# compares that process's mappings before and after each of its tests.
set -euo pipefail

python="$1"; shift
backends=()
while (($#)) && [[ "$1" != "--" ]]; do backends+=("$1"); shift; done
(($#)) && shift
jobs="${TEST_JOBS:-$(($(nproc) / ${#backends[@]}))}"
((jobs > 1)) && spread=(-n "$jobs" --dist worksteal) || spread=(-p no:xdist)
logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT

# pytest rewrites the asserts of every module it imports for tests and
# plugins (hypothesis's too) and caches the result as bytecode; with
# PYTHONDONTWRITEBYTECODE set, each worker would redo it at every start.
DEFAULT_SIGINT='import os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_DFL)
os.execv(sys.executable, [sys.executable, "-m", "pytest", *sys.argv[1:]])'
declare -A pid_of backend_of
start=$SECONDS
for b in "${backends[@]}"; do
    # A command started with & in a script ignores SIGINT (so does one under
    # nohup or a runner that ignores it), and so would every program the tests
    # start: Python then never raises KeyboardInterrupt. pytest starts with
    # the default, as from a terminal.
    ARENA_BACKEND="$b" env -u PYTHONDONTWRITEBYTECODE "$python" -c "$DEFAULT_SIGINT" \
        "${spread[@]}" "$@" >"$logs/$b.log" 2>&1 &
    pid_of[$b]=$!
    backend_of[$!]=$b
done
echo "== backends ${backends[*]}: at once, $([[ ${spread[0]} == -n ]] && echo "$jobs pytest workers" || echo "one process") each; each one's output as it ends"

status=0 summary=()
while ((${#pid_of[@]})); do
    code=0
    wait -n -p done "${pid_of[@]}" || code=$?
    b="${backend_of[$done]}"
    unset "pid_of[$b]"
    echo "== backend: $b (after $((SECONDS - start)) s)"
    cat "$logs/$b.log"
    summary+=("$b: $(tail -n 1 "$logs/$b.log" | tr -d '=' | sed 's/^ *//')")
    ((code == 0)) || status=1
done
printf '== %s\n' "${summary[@]}"
echo "== all backends in $((SECONDS - start)) s"
exit $status
