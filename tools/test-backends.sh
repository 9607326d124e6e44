#!/usr/bin/env bash
# tools/test-backends.sh PYTHON BACKEND... [-- PYTEST_ARGS...]
#
# Engine behind `make test` and `make test-full`: the suite once per memory
# backend (ARENA_BACKEND), every backend's run at the same time, each spread
# over $TEST_JOBS pytest-xdist workers (default: the number of cores). The runs
# share the cores, so one run's slow tail overlaps the other's. Each run's
# output is shown whole as it ends; the exit status is 1 if any run failed.
#
# Every worker is a process of its own: the leak check (tests/conftest.py)
# compares that process's mappings before and after each of its tests.
set -euo pipefail

python="$1"; shift
backends=()
while (($#)) && [[ "$1" != "--" ]]; do backends+=("$1"); shift; done
(($#)) && shift
jobs="${TEST_JOBS:-$(nproc)}"
logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT

# pytest rewrites the asserts of every module it imports for tests and
# plugins (hypothesis's too) and caches the result as bytecode; with
# PYTHONDONTWRITEBYTECODE set, each worker would redo it at every start.
declare -A pid_of backend_of
start=$SECONDS
for b in "${backends[@]}"; do
    ARENA_BACKEND="$b" env -u PYTHONDONTWRITEBYTECODE \
        "$python" -m pytest -n "$jobs" --dist worksteal "$@" >"$logs/$b.log" 2>&1 &
    pid_of[$b]=$!
    backend_of[$!]=$b
done
echo "== backends ${backends[*]}: at once, $jobs pytest workers each; each one's output as it ends"

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
