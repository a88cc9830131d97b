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

.PHONY: help env run test lint fmt clean prometheus chromium kafkacat

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

# tests/e2e/test_survey_browser.py drives the survey page in Debian's chromium (through
# playwright, never a downloaded browser). Installed once when missing (CI runs as root on
# Debian); CLOSELOOP_CHROMIUM points the tests at another chromium binary.
chromium:
	@if [ ! -x "$${CLOSELOOP_CHROMIUM:-/usr/bin/chromium}" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian's chromium package (headless browser for tests/e2e)"; \
	    apt-get update -qq >/dev/null && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	      chromium >/dev/null; \
	  else \
	    echo "chromium is missing: install Debian's chromium package" \
	      "(apt-get install chromium) or set CLOSELOOP_CHROMIUM; tests/e2e needs it" >&2; \
	  fi; \
	fi

# tests/e2e/test_downstream_clients.py reads every topic with Debian's kafkacat (kcat, on
# librdkafka), as integrators' scripts do. Installed once when missing (CI runs as root on
# Debian); CLOSELOOP_KAFKACAT points the tests at another kcat binary.
kafkacat:
	@if ! command -v "$${CLOSELOOP_KAFKACAT:-kcat}" >/dev/null && ! command -v kafkacat >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian's kafkacat package (a librdkafka consumer for tests/e2e)"; \
	    apt-get update -qq >/dev/null && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	      kafkacat >/dev/null; \
	  else \
	    echo "kafkacat is missing: install Debian's kafkacat package" \
	      "(apt-get install kafkacat) or set CLOSELOOP_KAFKACAT; tests/e2e needs it" >&2; \
	  fi; \
	fi

test: env prometheus chromium kafkacat
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
