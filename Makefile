# Two commands: `make run` (install everything, start the agent) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export VOICE_AGENT_WHEELS ?= $(HOME)/.cache/voice-agent/wheels
RUNTIME_STAMP := $(VENV)/.runtime-installed
TEST_STAMP := $(VENV)/.test-installed
BENCH_STAMP := $(VENV)/.bench-installed

.PHONY: run install test lint typecheck test-deps bench clean

run: install
	$(BIN)/python -m stack

install: $(RUNTIME_STAMP)

$(RUNTIME_STAMP): requirements.lock scripts/install-python.sh
	scripts/install-python.sh $(PYTHON) $(VENV) requirements.lock
	$(BIN)/python -m services.llm.model
	touch $@

$(TEST_STAMP): $(RUNTIME_STAMP) requirements-test.lock scripts/install-system.sh tests/browser/package-lock.json
	$(BIN)/pip install --quiet --no-deps -r requirements-test.lock
	scripts/install-system.sh
	cd tests/browser && npm ci --no-audit --no-fund --loglevel=error
	touch $@

test-deps: $(TEST_STAMP)

lint: $(TEST_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(TEST_STAMP)
	$(BIN)/mypy

# Every test runs in a network namespace with only loopback: nothing leaves the machine.
test: lint typecheck
	unshare -n sh -c 'ip link set lo up && exec $(BIN)/pytest -ra $(PYTEST_ARGS)'

$(BENCH_STAMP): $(RUNTIME_STAMP) requirements-bench.lock
	$(BIN)/pip install --quiet --no-deps -r requirements-bench.lock
	touch $@

# Voice-to-voice latency benchmark (README: Benchmark): the agent, headless Chromium with a fake
# microphone playing LibriVox speech, loopback only. Writes bench/results/<time>/. BENCH_ARGS="--help"
bench: $(TEST_STAMP) $(BENCH_STAMP)
	unshare -n sh -c 'ip link set lo up && exec $(BIN)/python -m bench $(BENCH_ARGS)'

clean:
	rm -rf $(VENV) tests/browser/node_modules
