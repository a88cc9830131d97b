# closeloop: every target creates the environment it needs.
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.8
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
PY := $(VENV)/bin/python
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: help env run test lint fmt clean prometheus

help:
	@echo "make run   - start the whole system locally (broker, database, four services)"
	@echo "make test  - run the whole test suite"
	@echo "make lint  - ruff and mypy"

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --python $(PYTHON)
	@touch $@

env: $(VENV)/.synced

run: env
	$(PY) -m shared.devstack run

# tests/deploy runs promtool and a real Prometheus server: Debian's prometheus package.
# Installed once when missing (CI runs as root on Debian); the tests start the server
# themselves, on a free port.
prometheus:
	@if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian's prometheus package (promtool and the server, for tests/deploy)"; \
	    apt-get update -qq >/dev/null && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	      prometheus >/dev/null; \
	  else \
	    echo "prometheus and promtool are missing: install Debian's prometheus package" \
	      "(apt-get install prometheus); tests/deploy needs them" >&2; \
	  fi; \
	fi

test: env prometheus
	$(PY) -m pytest

lint: env
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

fmt: env
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) $(TOOLS) .localstack .pytest_cache .mypy_cache .ruff_cache
