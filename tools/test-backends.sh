#!/usr/bin/env bash
# tools/test-backends.sh PYTHON BACKEND... [-- PYTEST_ARGS...]
#
# Engine behind `make test` and `make test-full`: the suite once per memory
# backend (ARENA_BACKEND), all runs at the same time. With several backends,
# each backend's run has the tests that make a memory backend, and one more
# run (under the first backend's name) has those marked backend_independent,
# which are the same under any backend (tests/conftest.py checks the marker:
# such a test makes no backend, here or in the commands it starts); with one
# backend, one run has them all. Each run goes over $TEST_JOBS pytest-xdist
# workers (one or fewer means no workers, the run is its pytest process). The
# default is one more than the run's share of the cores: much of the suite
# waits (a real program runs under a lock, one test of programs at a time on
# the machine; a command is a subprocess; a hunt sleeps to its deadline), and a
# waiting worker's core is another worker's. On 2 cores, 2 workers per run
# (6 processes) took 93 s of wall time where 1 (3 processes) took 102 s and
# 3 took 104 s, each worker paying its own start. ARENA_BACKEND=cffi make test
# (one run) has a worker per core and one more. A 32-bit Python's runs have no
# workers: in its 4 GiB space, a worker's threads and buffers took the ranges
# where the documented traces' answers are mapped (10 tests of
# tests/test_trace.py, test_svg.py and others failed in the i386 root). Each
# run's output is shown whole as it ends; the exit status is 1 if any run
# failed.
#
# Every worker is a process of its own: the leak check (tests/conftest.py)
# compares that process's mappings before and after each of its tests.
set -euo pipefail

python="$1"; shift
backends=()
while (($#)) && [[ "$1" != "--" ]]; do backends+=("$1"); shift; done
(($#)) && shift
# Each run: its name, its backend, and its share of the tests (ARENA_TEST_SHARE, tests/conftest.py).
runs=()
if ((${#backends[@]} > 1)); then
    for b in "${backends[@]}"; do runs+=("$b $b backend"); done
    runs+=("independent ${backends[0]} independent")
else
    runs+=("${backends[0]} ${backends[0]} all")
fi
if [[ $("$python" -c 'import sys; print(sys.maxsize > 2**32)') == True ]]; then
    jobs="${TEST_JOBS:-$(( ($(nproc) + ${#runs[@]} - 1) / ${#runs[@]} + 1 ))}"
else
    jobs="${TEST_JOBS:-1}"
fi
((jobs > 1)) && spread=(-n "$jobs" --dist worksteal) || spread=(-p no:xdist)
logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT
# Real programs' runs that every backend's run reads, made once (tests/tracees.py: run_once).
mkdir "$logs/runs"
export ARENA_TEST_RUNS="$logs/runs"

# pytest rewrites the asserts of every module it imports for tests and
# plugins (hypothesis's too) and caches the result as bytecode; with
# PYTHONDONTWRITEBYTECODE set, each worker would redo it at every start.
DEFAULT_SIGINT='import os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_DFL)
os.execv(sys.executable, [sys.executable, "-m", "pytest", *sys.argv[1:]])'
declare -A pid_of name_of share_of
start=$SECONDS
for run in "${runs[@]}"; do
    read -r name b share <<<"$run"
    # A command started with & in a script ignores SIGINT (so does one under
    # nohup or a runner that ignores it), and so would every program the tests
    # start: Python then never raises KeyboardInterrupt. pytest starts with
    # the default, as from a terminal.
    ARENA_BACKEND="$b" ARENA_TEST_SHARE="$share" env -u PYTHONDONTWRITEBYTECODE "$python" -c "$DEFAULT_SIGINT" \
        "${spread[@]}" "$@" >"$logs/$name.log" 2>&1 &
    pid_of[$name]=$!
    name_of[$!]=$name
    share_of[$name]=$share
done
names=() && for run in "${runs[@]}"; do names+=("${run%% *}"); done
how=$([[ ${spread[0]} == -n ]] && echo "$jobs pytest workers" || echo "one process")
echo "== runs ${names[*]}$( ((${#runs[@]} > 1)) && echo " at once"), $how each; each one's output as it ends"

status=0 ran=0 summary=()
while ((${#pid_of[@]})); do
    code=0
    wait -n -p done "${pid_of[@]}" || code=$?
    name="${name_of[$done]}"
    unset "pid_of[$name]"
    echo "== run: $name (after $((SECONDS - start)) s)"
    cat "$logs/$name.log"
    summary+=("$name: $(tail -n 1 "$logs/$name.log" | tr -d '=' | sed 's/^ *//')")
    # pytest's 5, no test collected: a share that PYTEST_ARGS's selection leaves empty (tests/test_tracer.py
    # has no test of a backend's share); a run of them all must have one.
    ((code == 0)) && ran=1
    ((code == 0)) || { ((code == 5)) && [[ ${share_of[$name]} != all ]]; } || status=1
done
((ran)) || status=1  # no run had a test
printf '== %s\n' "${summary[@]}"
echo "== all runs in $((SECONDS - start)) s"
exit $status
