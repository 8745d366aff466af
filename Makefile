# dasc — build, test and demo from nothing.
#
# `make demo` and `make test` work on a fresh Debian machine that has only Python 3.11, make and
# root: they create .venv, install the CPU build of torch FIRST (so no other requirement can pull
# a multi-GB CUDA build), then dasc itself with its test extras, and Graphviz's `dot` via apt when
# it is missing. A stamp file makes the second run instant; editing pyproject.toml reinstalls.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3 2>/dev/null)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.dasc-installed
TORCH_VERSION := 2.13.0
# Parallel tests: one worker per core, each test file on one worker (module fixtures are built
# once), and one torch thread per worker (set in tests/conftest.py) so workers do not fight.
XDIST_VERSION := 3.8.0
PYTEST_FLAGS ?= -n auto --dist loadfile
DEMO_OUT ?= demo-out
SPACES := $(sort $(wildcard spaces/*.das))

.PHONY: help install demo test test-fast fmt-check bench clean distclean graphviz

help:
	@echo "make demo       compile and render every shipped space into $(DEMO_OUT)/"
	@echo "make test       the whole test suite (slow tests included)"
	@echo "make test-fast  the suite without tests marked slow"
	@echo "make fmt-check  check that spaces/*.das are canonically formatted"
	@echo "make bench      run the benchmarks in bench/"
	@echo "make clean      remove generated outputs (keeps .venv); distclean also removes .venv"

# ---------------------------------------------------------------- environment

$(PY):
	@if [ -z "$(PYTHON)" ]; then \
	  echo "dasc: no python3.11 or python3 on PATH; install Python 3.11" >&2; exit 1; fi
	@echo "== creating $(VENV) with $(PYTHON)"
	@if ! $(PYTHON) -m venv $(VENV); then \
	  rm -rf $(VENV); \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "== installing Debian's venv support (python3-venv)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv; \
	    $(PYTHON) -m venv $(VENV); \
	  else \
	    echo "dasc: '$(PYTHON) -m venv' failed; install your distribution's venv package" \
	         "(Debian: apt-get install python3-venv) and run make again" >&2; exit 1; \
	  fi; \
	fi

$(STAMP): pyproject.toml | $(PY)
	@echo "== installing torch $(TORCH_VERSION) (CPU build), then dasc and its test tools"
	$(PY) -m pip install --disable-pip-version-check -q "torch==$(TORCH_VERSION)"
	$(PY) -m pip install --disable-pip-version-check -q -e '.[test]' \
	    "pytest-xdist==$(XDIST_VERSION)"
	@touch $@

install: $(STAMP) graphviz

graphviz:
	@if ! command -v dot >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "== installing Graphviz (for dasc render)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq graphviz; \
	  else \
	    echo "dasc: Graphviz's 'dot' is missing and this is not a root Debian shell;" \
	         "install it (sudo apt-get install graphviz, brew install graphviz) and run" \
	         "make again" >&2; exit 1; \
	  fi; \
	fi

# ---------------------------------------------------------------- targets

test: install
	$(PY) -m pytest -q $(PYTEST_FLAGS)

test-fast: install
	$(PY) -m pytest -q $(PYTEST_FLAGS) -m "not slow"

demo: install
	DASC="$(PY) -m dasc" OUT="$(DEMO_OUT)" bash scripts/demo.sh

fmt-check: install
	$(PY) -m dasc fmt --check $(SPACES)

# Each benchmark prints JSON lines; record the figures in bench/RESULTS.md. Add new ones here.
bench: install
	$(PY) bench/compile_scaling.py
	$(PY) bench/supernet_step.py --C 8 --layers 5 --batch 32 --order 1 --steps 10 --json
	$(PY) bench/supernet_step.py --C 8 --layers 5 --batch 32 --order 2 --steps 10 --json

clean:
	rm -rf $(DEMO_OUT) .pytest_cache .hypothesis build dist *.egg-info
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
