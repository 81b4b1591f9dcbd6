# c2c — the two front-door commands are `make up` (deploy and show the answer) and
# `make test` (every test: lint, unit, integration, end-to-end). `make help` lists the rest.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

STACK ?= dev
PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
REQUIREMENTS := requirements-dev.txt infra/requirements.txt \
	services/internal/requirements.txt services/external/requirements.txt

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(VENV)/.installed: $(REQUIREMENTS)
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

.PHONY: venv
venv: $(VENV)/.installed ## Create .venv with the pinned development packages

.PHONY: up
up: venv ## Deploy the stack (engine, base image, toolchain, pulumi up) and curl it
	scripts/up.sh $(STACK)

.PHONY: down
down: venv ## Destroy the stack's containers, network and images
	scripts/down.sh $(STACK)

# The trace reads Pulumi.$(STACK).yaml: with c2c:hosts (STACK=multihost) it follows the request
# across the hosts, asking each engine and running each host's commands in its namespace (root).
.PHONY: trace
trace: venv ## Trace one request through the deployed stack, hop by hop (STACK=multihost: across hosts)
	scripts/run-with-toolchain.sh $(VPY) -m packet_trace --stack $(STACK)

# dev draws docs/topology.*, the README's picture; any other stack its own docs/topology-<stack>.*
DIAGRAM_OUT := docs/topology$(if $(filter-out dev,$(STACK)),-$(STACK))

.PHONY: diagram
diagram: venv ## Draw docs/topology[-STACK].svg and .png from the deployed stack
	scripts/run-with-toolchain.sh $(VPY) -m packet_trace diagram --stack $(STACK) --out $(DIAGRAM_OUT)

.PHONY: lab
lab: ## Simulated hosts a, b (own netns + dockerd each) on 198.18.0.0/24, Swarm a->b (root)
	$(PYTHON) -m lab up --hosts a,b --swarm

.PHONY: lab-down
lab-down: ## Remove everything `make lab` made (engines, namespaces, bridge, rules, data)
	$(PYTHON) -m lab down

# The bench's own engine runs in a lab namespace (root); BENCH_ARGS e.g. --engine current, --smoke.
.PHONY: bench
bench: venv ## Measure HTTP paths and deploys against docker compose on an engine of its own (root)
	scripts/host-packages.sh
	scripts/base-image.sh >/dev/null
	scripts/wheelhouse.sh
	source scripts/pulumi-env.sh && $(VPY) -m bench $(BENCH_ARGS)

.PHONY: lint
lint: venv ## ruff and mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

.PHONY: test-fast
test-fast: venv ## Unit and integration tests only (no Docker, no Pulumi CLI)
	$(VPY) -m pytest -m "not e2e"

.PHONY: test
test: lint ## All tests; end-to-end ones need Docker + toolchain (prepared here; required when CI=true)
	scripts/test.sh
