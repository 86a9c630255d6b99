# Developer entry points. `make help` lists them.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON_BOOT ?= python3.11
VENV ?= .venv
PYTHON := $(VENV)/bin/python
PYTEST_ARGS ?=

IMAGE ?= bge-predictor:dev
TORCH_VARIANT ?= cuda
BASE_IMAGE ?=
DOCKER_BUILD_ARGS ?=

.PHONY: help install test test-docker image image-ci base-image e2e-kind lint

help: ## list the targets
	@grep -E '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(PYTHON):
	$(PYTHON_BOOT) -m venv $(VENV)

install: $(PYTHON) ## create .venv and install the package with its test extras (pinned by constraints.txt)
	$(PYTHON) -m pip install -c constraints.txt -e ".[test]"

test: ## run the test suite (tests/docker runs when BGE_PREDICTOR_IMAGE names a built image)
	$(PYTHON) -m pytest $(PYTEST_ARGS)

test-docker: ## run the container tests against $(IMAGE)
	BGE_PREDICTOR_IMAGE=$(IMAGE) $(PYTHON) -m pytest -m docker tests/docker -v $(PYTEST_ARGS)

image: ## build the image: make image IMAGE=bge-predictor:dev TORCH_VARIANT=cuda|cpu [BASE_IMAGE=...]
	docker build --build-arg TORCH_VARIANT=$(TORCH_VARIANT) \
		$(if $(BASE_IMAGE),--build-arg BASE_IMAGE=$(BASE_IMAGE)) \
		--build-arg REVISION=$$(git rev-parse HEAD 2>/dev/null || echo unknown) \
		$(DOCKER_BUILD_ARGS) -t $(IMAGE) .

image-ci: ## offline build as CI does it (local Debian base, host pip config): bge-predictor:ci
	bash .ci/docker.sh

base-image: ## build the local debootstrap base image bge-predictor-base:bookworm
	bash hack/build-base-image.sh

e2e-kind: ## kind cluster + cert-manager + KServe (Standard) + the chart, then pytest -m e2e
	bash hack/kind-e2e.sh

lint: ## ruff, shellcheck, helm lint (each when installed)
	$(PYTHON) -m ruff check .
	@if command -v shellcheck >/dev/null; then shellcheck hack/*.sh .ci/*.sh; \
	else echo "shellcheck not installed: skipped"; fi
	@if command -v helm >/dev/null; then helm lint charts/bge-predictor; \
	else echo "helm not installed: skipped"; fi
