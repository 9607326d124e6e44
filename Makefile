# One target per job; `make` alone lists them.
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The tests of real programs (the tracer, the Go and C test programs, arena run/replay/demo --real).
REAL_TESTS := tests/test_tracer.py tests/test_tracer_record.py tests/test_adversaries.py tests/test_programs.py \
	tests/test_real_model.py tests/test_run_cli.py
# The whole suite runs once per backend (compiled, then ctypes); ARENA_BACKEND=... picks one.
BACKENDS := $(if $(ARENA_BACKEND),$(ARENA_BACKEND),cffi ctypes)
# The install compiles the shim or fails, so that the cffi run of the suite
# tests the compiled backend; ARENA_REQUIRE_SHIM=0 lets it skip the shim
# (with ARENA_BACKEND=ctypes, on a machine without a C compiler).
ARENA_REQUIRE_SHIM ?= 1
export ARENA_REQUIRE_SHIM

.PHONY: help install lint demo demo-real test test-full test-real bench bench-quick bench-ab bench-ab-quick profile test32 bench32 docker32 go-toolchains dist check-dist clean

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z0-9-]+:.*## / {printf "  %-15s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(VENV)/.installed: pyproject.toml setup.py arena/__init__.py native/shim.h native/shim.c native/build.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed ## Create .venv and install the package, compiled shim and test extras

$(VENV)/.lint-installed: $(VENV)/.installed
	$(PY) -m pip install -q -e '.[lint]'
	touch $@

lint: $(VENV)/.lint-installed ## The layers contract (lint-imports), ruff, mypy --strict on the package and on the docs' examples
	$(VENV)/bin/lint-imports --no-cache
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(PY) tools/check-doc-types.py

demo: install ## Replay Go issue 20259 with real memory under every rule
	$(PY) -m arena demo

demo-real: install ## Go 1.8, its fix, Go 1.9 and Debian's Go under an adversarial kernel, for real (old Go: make go-toolchains)
	$(PY) -m arena demo --real

test-real: install ## The real-program tests once, the slow ones too (arena demo --real 10 times); ~5 min
	ARENA_SLOW=1 $(PY) -m pytest $(REAL_TESTS) $(PYTEST_ARGS)

# Both backends' runs at once, sharing the cores (tools/test-backends.sh): each backend's
# run has the tests that make a memory backend, a third run the backend_independent ones,
# once; each run over pytest-xdist workers, one more than its share of the cores (a
# waiting worker's core is another's), as ARENA_BACKEND=cffi make test (one run of everything).
# The profile (tests/budget.py): dev, a fifth of each property test's examples and
# loop's repeats, unless $$CI is set or ARENA_TEST_PROFILE=ci names the whole budget.
test: install ## Run the test suite once per backend (cffi, ctypes), both at once (dev profile: see README)
	@tools/test-backends.sh $(PY) $(BACKENDS) -- $(PYTEST_ARGS)

test-full: install ## The same with every test's whole budget (the ci profile, as CI runs it)
	@ARENA_TEST_PROFILE=ci tools/test-backends.sh $(PY) $(BACKENDS) -- $(PYTEST_ARGS)

$(VENV)/.bench-installed: $(VENV)/.installed
	$(PY) -m pip install -q -e '.[bench]'
	touch $@

bench: $(VENV)/.bench-installed ## Benchmark the OS layer, arena growth and allocation, and scale against the C limit (< 5 min)
	$(MAKE) -C benchmarks
	$(PY) benchmarks/run.py

bench-quick: $(VENV)/.bench-installed ## The benchmark in quick mode (< 60 s), as CI runs it
	$(MAKE) -C benchmarks
	$(PY) benchmarks/run.py --quick

$(VENV)/.profile-installed: $(VENV)/.bench-installed
	$(PY) -m pip install -q -e '.[bench,profile]'
	touch $@

# BASE: a commit, tag or branch; empty: the newest tag, else benchmarks/last-release.
BASE ?=
bench-ab: $(VENV)/.bench-installed ## Compare BASE=<rev> with the working tree, case by case, interleaved (~10 min)
	$(PY) benchmarks/ab.py $(BASE) $(AB_ARGS)

bench-ab-quick: $(VENV)/.bench-installed ## The same in quick mode (< 2 min), as CI runs it against the last release
	$(PY) benchmarks/ab.py $(BASE) --quick $(AB_ARGS)

profile: $(VENV)/.profile-installed ## Profile the benchmark's hot paths with pyinstrument (benchmarks/results/profile-*.txt)
	$(PY) benchmarks/profile.py

test32: ## Run the tests as a 32-bit i386 program (Docker if an engine answers, else a debootstrap root; says which)
	tools/i386.sh test

bench32: ## Run the benchmarks as a 32-bit i386 program (results in benchmarks/results/i386/)
	tools/i386.sh bench

docker32: ## Run the tests in the i386 Docker image (docker/Dockerfile.i386; base made here if it cannot be pulled)
	tools/i386.sh docker test

go-toolchains: ## Build Go 1.4, 1.8, e5a5c03, 1.9 from a git copy of Go (ARENA_GO_SRC) into ~/.cache/arena/go
	tools/go-toolchains.sh "$(ARENA_GO_SRC)"

dist: ## Build the sdist and manylinux wheels (x86-64; i686 in the i386 root, as root) into dist/
	tools/check-dist.sh build

check-dist: ## Build the sdist and both wheels, install each as a user would and check it (what CI runs; root; ~7 min)
	tools/check-dist.sh

clean: ## Remove .venv, build products and caches
	rm -rf $(VENV) build dist *.egg-info arena/_native*.so arena/_native.c arena/_native.o \
		.pytest_cache .hypothesis .bench-ab .mypy_cache .ruff_cache
	$(MAKE) -C benchmarks clean
	find . -name __pycache__ -prune -exec rm -rf {} +
