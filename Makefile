# todo-agent — every command a person or CI needs. Run `make help` for the list.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: help run test test-unit check fmt lint typecheck stack-up stack-down stack-status image test-prereqs clean \
	cluster-up cluster-deploy cluster-down cluster-status test-cluster

help:
	@echo "make run          start the embedded default on http://127.0.0.1:8000 (no server, no API key)"
	@echo "make test         install what the tests need and run the whole suite"
	@echo "make test-unit    the fast tier only (tests/unit: no stack, no Dapr build)"
	@echo "make typecheck    mypy: strict on the product packages, tests and benchmarks checked (check_untyped_defs)"
	@echo "make check        format check, ruff, mypy and the whole suite"
	@echo "make stack-up     start PostgreSQL, Kafka and the Dapr scheduler under .devstack/"
	@echo "make stack-down   stop them"
	@echo "make image        build the container image todo-agent:VERSION with podman"
	@echo "make cluster-up   a single-node Kubernetes cluster with Dapr's control plane (root; builds once)"
	@echo "make cluster-deploy  todo-agent onto it (k8s/overlays/local; needs the image: make image)"
	@echo "make test-cluster build or reuse the image and the cluster, deploy, run tests/cluster"
	@echo "make cluster-down stop the cluster"

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/todo-agent run

test-prereqs: $(STAMP)
	./scripts/test-prereqs.sh

test: test-prereqs
	$(PY) -m pytest -ra $(PYTEST_ARGS)

test-unit: $(STAMP)
	$(PY) -m pytest -ra tests/unit $(PYTEST_ARGS)

fmt: $(STAMP)
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

lint: $(STAMP)
	$(PY) -m ruff format --check .
	$(PY) -m ruff check .

typecheck: $(STAMP)
	$(PY) -m mypy tasks auth sidecar observability mcp_server agent events todo_agent devstack tests benchmarks

check: lint typecheck test

stack-up: $(STAMP)
	$(PY) -m devstack up

stack-down: $(STAMP)
	$(PY) -m devstack down

stack-status: $(STAMP)
	$(PY) -m devstack status

# IMAGE_ARGS: e.g. --base debian, --ca-bundle none (see `python -m devstack image build --help`).
image: $(STAMP)
	$(PY) -m devstack image build $(IMAGE_ARGS)

cluster-up: $(STAMP)
	$(PY) -m devstack cluster up

cluster-deploy: $(STAMP)
	$(PY) -m devstack cluster deploy

cluster-down: $(STAMP)
	$(PY) -m devstack cluster down

cluster-status: $(STAMP)
	$(PY) -m devstack cluster status

# Not part of `make test`: a cold first run builds Kubernetes, Helm, CoreDNS and Dapr's control
# plane (see README "Kubernetes on this machine" for the times).
test-cluster: test-prereqs image
	$(PY) -m pytest tests/cluster -m cluster -ra $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
